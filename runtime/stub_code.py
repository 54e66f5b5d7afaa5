"""Stub modules compiled once, by an instance that runs no program, and served as code.

A program that imports one tool loads three stub modules (`tools`, its
domain, the tool); the guest compiled each from source on every execution,
0.5-2 ms apiece in wasm, most of what a tool-calling program cost. The code
objects are the same every time, so they are compiled once per module
source and handed to later instances as marshalled data, which the guest
loads in ~20 us (ptc.hostcalls.wasm.codec.module_text).

Trust: marshalled code is executed by the guest as it is, so it must never
come from a guest that has run a program: a program could have replaced
`compile` or `marshal` and so poisoned every later execution. It is made
here, in a fresh instance of its own that runs only COMPILE_PROGRAM over the
sources the host generated (whose hostile text, tool descriptions and
names, stubgen has already confined to string literals; compiling runs none
of it). A module the compiler refuses is served as source, as before.

Served lazily: the first execution that imports a module gets its source
and queues it; a background thread compiles what is queued, in batches, so
no execution waits for a compile. Entries are per module name and replaced
when the catalog gives the name another source, so the cache is bounded by
the catalog.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from ptc.engine import get_runtime
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.state import ExecutionState
from ptc.limits import Limits
from ptc.sandbox import run_program
from ptc.spares import new_instance
from ptc.wasm_threads import start_thread

COMPILE = "ptc:compile"  # the names to compile, asked by COMPILE_PROGRAM (JSON)
COMPILE_PROGRAM = """
import ast, json, marshal, _ptc_tools
from wit_world.imports import host
result = {}
for name in json.loads(host.load_module("ptc:compile")):
    is_package = _ptc_tools._is_package(name)
    filename = _ptc_tools._filename(name, is_package)
    try:
        tree = ast.parse(host.load_module(name), filename)
        if not is_package and not name.rpartition(".")[2].startswith("_"):
            tree = _ptc_tools.slim(tree)  # a tool module: its TypedDicts made on first use
        code = compile(tree, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        continue
    result[name] = marshal.dumps(code).decode("latin-1")
"""
_LIMITS = Limits(timeout=30, memory_bytes=256 << 20, max_frame_bytes=64 << 20, max_host_bytes=256 << 20)
_BATCH = 256  # modules per compiling instance


@dataclass
class StubCode:
    """One executor's compiled stub modules (its catalog's, by module name)."""

    _compiled: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (source, answer)
    _queued: dict[str, str] = field(default_factory=dict)  # name -> source, to compile
    _compiling: dict[str, str] = field(default_factory=dict)  # the batch the thread is compiling now
    _refused: set[tuple[str, str]] = field(default_factory=set)  # (name, source) the compiler refused
    _idle: threading.Condition = field(default_factory=threading.Condition)  # its lock guards all of the above
    _working: bool = False

    def served(self, name: str, source: str) -> str:
        """What `load-module` answers for this module: its compiled form, or its source (and it is queued)."""
        entry = self._compiled.get(name)
        if entry is not None and entry[0] == source:
            return entry[1]
        with self._idle:
            waiting = (self._queued.get(name), self._compiling.get(name))  # queued, or in the batch compiling now
            if (name, source) not in self._refused and source not in waiting:
                self._queued[name] = source
                if not self._working:
                    self._working = True
                    start_thread(self._work, "ptc-stub-code")
        return source

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until nothing is queued or compiling (for tests and warm-up)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._working, timeout)

    def _work(self) -> None:
        while True:
            with self._idle:
                batch = dict(list(self._queued.items())[:_BATCH])
                for name in batch:
                    del self._queued[name]
                self._compiling = batch
                if not batch:
                    self._working = False
                    self._idle.notify_all()
                    return
            try:
                compiled = _compile(batch)
            except Exception:  # noqa: BLE001 - what the batch held is served as source, as a refused module is
                compiled = {}
            with self._idle:
                for name, source in batch.items():
                    code = compiled.get(name)
                    if code is None:
                        self._refused.add((name, source))
                    else:
                        self._compiled[name] = (source, codec.module_text(code, source))


def _compile(sources: dict[str, str]) -> dict[str, bytes]:
    """Each module's marshalled code, compiled in a fresh instance that runs nothing else; {} if that fails."""
    listing = json.dumps(list(sources))

    def serve(name: str) -> str | None:
        return listing if name == COMPILE else sources.get(name)

    runtime = get_runtime(fuel=True)
    state = ExecutionState.under("ptc-stub-code", _LIMITS, module_source=serve)
    try:
        outcome = run_program(COMPILE_PROGRAM, state, _LIMITS, made=new_instance(runtime, _LIMITS.memory_bytes))
    finally:
        state.close()
    value = outcome.value
    if outcome.error is not None or not isinstance(value, dict):
        return {}
    return {n: c.encode("latin-1") for n, c in value.items() if n in sources and isinstance(c, str)}
