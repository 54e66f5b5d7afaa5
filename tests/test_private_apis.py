"""The private APIs ptc relies on (ptc.private), checked against the installed libraries.

Each check names the library and version that changed what, so an upgrade
within a pinned range (or a new pin) fails here, in so many words, and not
somewhere deep in a sandbox run. Also: no module outside ptc.private reaches
into a library's private names.
"""

from __future__ import annotations

import ast
import asyncio
import ctypes
import inspect
import subprocess
import sys
import threading
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from wasmtime import Config, Engine, Instance, Module, Store, StoreContext, WasmtimeError
from wasmtime.component import Component, Linker

from ptc.private import asyncio as private_asyncio
from ptc.private import wasmtime as private_wasmtime
from ptc.private.futures import ThreadPool
from ptc.private.wasmtime import ffi

ROOT = Path(__file__).resolve().parent.parent
WASMTIME = f"wasmtime {metadata.version('wasmtime')}"
PYTHON = f"CPython {sys.version.split()[0]}"


def _host_modules() -> dict[str, Path]:
    """Every host module by import name (guest/app runs in the sandbox: not host code)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in mapping.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder)
            if relative.parts[0] != "app":
                parts = [p for p in relative.with_suffix("").parts if p != "__init__"]
                modules.setdefault(".".join([package, *parts]), path)
    return modules


MODULES = _host_modules()
# Private names that are not spelled `library._name`: methods and attributes reached on wasmtime-py's objects.
PRIVATE_MEMBERS = {"_from_ptr", "_consume", "_unintern", "_context", "_adjust_thread_count", "_func"}


def _private_uses(path: Path) -> set[str]:
    """`library._name` (imports and attributes of imported libraries) and PRIVATE_MEMBERS, outside ptc."""
    tree = ast.parse(path.read_text(), str(path))
    libraries: dict[str, str] = {}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("ptc"):
                    libraries[alias.asname or alias.name.split(".")[0]] = alias.name
                    found.update(alias.name for part in alias.name.split(".") if part.startswith("_"))
        elif isinstance(node, ast.ImportFrom) and not node.level and not (node.module or "").startswith("ptc"):
            module = node.module or ""
            if any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names if a.name.startswith("_"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in libraries:
                found.add(f"{libraries[node.value.id]}.{node.attr}")
            elif node.attr in PRIVATE_MEMBERS and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.add(f"._{node.attr.lstrip('_')}")
    return found


def test_private_apis_are_used_only_in_ptc_private() -> None:
    outside = {}
    for name, path in sorted(MODULES.items()):
        if name.startswith("ptc.private"):
            continue
        uses = _private_uses(path)
        if uses:
            outside[name] = sorted(uses)
    assert not outside, f"private APIs used outside ptc.private (move them there, with a check here): {outside}"


def test_the_scan_sees_a_private_use(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio\nfrom wasmtime import _ffi as ffi\nfrom mcp.shared._httpx_utils import x\n"
        "asyncio._get_running_loop()\nerror._consume()\nself._own()\n"
    )
    assert _private_uses(sample) == {
        "asyncio._get_running_loop",
        "wasmtime._ffi",
        "mcp.shared._httpx_utils",
        "._consume",
    }


# wasmtime


def _ffi_uses() -> dict[str, set[int]]:
    """Every `ffi.NAME` in ptc, with the positional-argument counts it is called with."""
    uses: dict[str, set[int]] = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ffi":
                uses.setdefault(node.attr, set())
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                func = node.func
                if isinstance(func.value, ast.Name) and func.value.id == "ffi":
                    uses.setdefault(func.attr, set()).add(len(node.args))
    return uses


def test_every_ffi_name_ptc_uses_exists_with_its_arity() -> None:
    uses = _ffi_uses()
    assert {"wasmtime_context_get_data", "wasmtime_component_linker_instance_add_func"} <= set(uses)
    missing = sorted(name for name in uses if not hasattr(ffi, name))
    assert not missing, f"{WASMTIME} no longer has wasmtime._ffi.{missing}"
    for name, counts in uses.items():
        value = getattr(ffi, name)
        if isinstance(value, type) or not callable(value):
            continue  # a ctypes type or a constant: its fields are checked below
        parameters = inspect.signature(value).parameters
        for count in counts:
            assert count == len(parameters), (
                f"{WASMTIME} changed wasmtime._ffi.{name}: it takes {list(parameters)}, ptc passes {count} arguments"
            )


def test_component_values_have_the_fields_the_trampolines_write() -> None:
    def fields(struct: Any) -> set[str]:
        return {name for name, *_ in struct._fields_}

    val = ffi.wasmtime_component_val_t
    expected = {
        "wasmtime_component_val_t": (val, {"kind", "of"}),
        "wasmtime_component_valunion_t": (
            type(val().of),
            {"string", "u64", "s64", "u8", "boolean", "variant", "list", "tuple", "option"},
        ),
        "wasmtime_component_valvariant_t": (type(val().of.variant), {"discriminant", "val"}),
        "wasmtime_component_vallist_t": (ffi.wasmtime_component_vallist_t, {"size", "data"}),
        "wasmtime_component_valtuple_t": (ffi.wasmtime_component_valtuple_t, {"size", "data"}),
        "wasm_byte_vec_t": (type(val().of.string), {"size", "data"}),
    }
    for name, (struct, wanted) in expected.items():
        assert wanted <= fields(struct), f"{WASMTIME} changed {name}: fields {sorted(fields(struct))}"
    names = sorted(name for name in _ffi_uses() if name.startswith("WASMTIME_COMPONENT_"))
    kinds = {getattr(ffi, name).value for name in names}
    assert len(names) >= 6 and len(kinds) == len(names), f"{WASMTIME} changed the kinds {names}: {kinds}"


def test_a_string_round_trips_through_a_component_value() -> None:
    from ptc.hostcalls.wasm import trampolines

    val = ffi.wasmtime_component_val_t()
    trampolines.LOWER["string"](val, "héllo, wörld")
    assert trampolines.LIFT["string"](val, None) == "héllo, wörld", f"{WASMTIME}: str_to_capi / string_at"
    trampolines.LOWER["u64"](val, 2**64 - 1)
    assert trampolines.LIFT["u64"](val, None) == 2**64 - 1


def test_error_owns_a_c_error() -> None:
    error = private_wasmtime.error(ffi.wasmtime_error_new(b"boom"))
    assert isinstance(error, WasmtimeError) and str(error) == "boom", f"{WASMTIME} changed WasmtimeError._from_ptr"


def _trap_message(address: int) -> str:
    assert address, "the barrier returned 0 (success) for a failure"
    return str(private_wasmtime.error(ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t))))


def test_the_barrier_turns_exceptions_into_traps() -> None:
    def body(exc: BaseException | None) -> None:
        if exc is not None:
            raise exc

    callback = private_wasmtime.barrier(lambda exc: f"failed: {type(exc).__name__}")(body)
    assert callback(None) == 0
    assert _trap_message(callback(WasmtimeError("ptc: timeout"))) == "ptc: timeout", (
        f"{WASMTIME} changed WasmtimeError._consume"
    )
    assert _trap_message(callback(KeyError("x"))) == "failed: KeyError"
    assert _trap_message(callback(KeyboardInterrupt())) == "failed: KeyboardInterrupt"


class _Data:
    state = None
    seen: object = None
    ticks = 0


def test_store_data_from_a_context() -> None:
    data = _Data()
    store = Store(Engine(), data=data)
    context = ffi.wasmtime_store_context(store.ptr())
    assert private_wasmtime.store_data(context) is data, f"{WASMTIME} changed wasmtime._value._unintern"
    assert private_wasmtime.context_data(StoreContext(context)) is data, f"{WASMTIME} changed StoreContext._context"
    assert private_wasmtime.store_data(ffi.wasmtime_store_context(Store(Engine()).ptr())) is None


_COMPONENT = """
(component
  (import "f" (func $f (param "x" u64) (result u64)))
  (core func $lowered (canon lower (func $f)))
  (core module $m
    (import "" "f" (func $g (param i64) (result i64)))
    (func (export "run") (param i64) (result i64) local.get 0 call $g))
  (core instance $i (instantiate $m (with "" (instance (export "f" (func $lowered))))))
  (func (export "run") (param "x" u64) (result u64) (canon lift (core func $i "run")))
)
"""


def test_define_func_is_called_by_a_component() -> None:
    """A host function bound through the C API, called from wasm: its value, and each kind of trap."""
    engine = Engine()
    component = Component(engine, _COMPONENT)
    linker = Linker(engine)

    def body(env: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, n: int) -> None:
        x = args[0].of.u64
        if x == 13:
            raise KeyError(x)
        if x == 14:
            raise WasmtimeError("ptc: fourteen")
        private_wasmtime.store_data(context).seen = x
        results.contents.kind = ffi.WASMTIME_COMPONENT_U64
        results.contents.of.u64 = x + 1

    with linker.root() as root:
        private_wasmtime.define_func(root, "f", body, lambda exc: f"failed: {type(exc).__name__}")
    for x, expected in ((41, 42), (13, "failed: KeyError"), (14, "ptc: fourteen")):
        data = _Data()
        store = Store(engine, data=data)
        run = linker.instantiate(store, component).get_func(store, "run")
        assert run is not None
        try:
            got: object = run(store, x)
        except WasmtimeError as trap:
            got = str(trap)
        if isinstance(expected, int):
            assert (got, data.seen) == (expected, x), f"{WASMTIME}: the component function callback returned {got}"
        else:
            assert isinstance(got, str) and expected in got, f"{WASMTIME}: the trap was {got!r}"


def test_call_func_calls_an_export_with_lowered_arguments() -> None:
    """An export called through the C API with arguments written by hand: its result, and a trap."""
    engine = Engine()
    component = Component(engine, _COMPONENT)
    linker = Linker(engine)

    def body(env: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, n: int) -> None:
        if args[0].of.u64 == 13:
            raise KeyError(13)
        results.contents.kind = ffi.WASMTIME_COMPONENT_U64
        results.contents.of.u64 = args[0].of.u64 * 2

    with linker.root() as root:
        private_wasmtime.define_func(root, "f", body, lambda exc: "failed")
    store = Store(engine, data=_Data())
    run = linker.instantiate(store, component).get_func(store, "run")
    assert run is not None
    args = (ffi.wasmtime_component_val_t * 1)()
    result = ffi.wasmtime_component_val_t()
    args[0].kind = ffi.WASMTIME_COMPONENT_U64
    args[0].of.u64 = 21
    private_wasmtime.call_func(run, store, args, 1, ctypes.byref(result), 1)
    assert (result.kind, result.of.u64) == (ffi.WASMTIME_COMPONENT_U64.value, 42), f"{WASMTIME}: call_func"
    args[0].of.u64 = 13
    with pytest.raises(WasmtimeError, match="failed"):
        private_wasmtime.call_func(run, store, args, 1, ctypes.byref(result), 1)


def test_the_epoch_deadline_callback_grants_ticks_and_traps() -> None:
    config = Config()
    config.epoch_interruption = True
    engine = Engine(config)
    module = Module(engine, '(module (func (export "spin") (loop br 0)))')

    def ticks(data: _Data) -> int:
        data.ticks += 1
        if data.ticks >= 3:
            raise WasmtimeError("ptc: stop")
        return 1

    callback = private_wasmtime.epoch_deadline_callback(ticks, "ptc: check failed")
    data = _Data()
    store = Store(engine, data=data)
    private_wasmtime.set_epoch_deadline_callback(store, callback)
    store.set_epoch_deadline(1)
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            time.sleep(0.001)
            engine.increment_epoch()

    threading.Thread(target=tick, daemon=True).start()
    spin = Instance(store, module, []).exports(store)["spin"]
    try:
        with pytest.raises(WasmtimeError, match="ptc: stop"):
            spin(store)
    finally:
        stop.set()
    assert data.ticks == 3, f"{WASMTIME}: the epoch callback ran {data.ticks} times, not 3"


def test_the_epoch_callback_type_is_the_bindings() -> None:
    from wasmtime import _bindings

    declared = _bindings._wasmtime_store_epoch_deadline_callback.argtypes[1]
    ours = private_wasmtime.EPOCH_DEADLINE_CALLBACK
    assert (ours._restype_, ours._argtypes_) == (declared._restype_, declared._argtypes_), (
        f"{WASMTIME} changed wasmtime_store_epoch_deadline_callback's callback type"
    )


def test_the_async_stack_size_lets_an_engine_have_a_large_wasm_stack() -> None:
    """Without it the Engine aborts the process, so this runs in a child."""
    code = (
        "from wasmtime import Config, Engine\n"
        "from ptc.private.wasmtime import set_async_stack_size\n"
        "from ptc.wasm_threads import MAX_WASM_STACK\n"
        "config = Config()\n"
        "config.max_wasm_stack = MAX_WASM_STACK\n"
        "set_async_stack_size(config, MAX_WASM_STACK + 1024 * 1024)\n"
        "Engine(config)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{WASMTIME} changed wasmtime_config_async_stack_size_set:\n{done.stderr[-2000:]}"


# asyncio (the standard library's)


async def test_running_loop_is_the_running_loop() -> None:
    assert private_asyncio.running_loop() is asyncio.get_running_loop()


def test_running_loop_is_none_without_one() -> None:
    assert private_asyncio.running_loop is asyncio.events._get_running_loop, f"{PYTHON} moved _get_running_loop"
    assert threading_result(private_asyncio.running_loop) is None, f"{PYTHON}: _get_running_loop without a loop"


def threading_result(function: Any) -> object:
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(function()))
    thread.start()
    thread.join()
    return out[0]


async def test_the_guests_asyncio_has_the_loop_policy_hooks(run) -> None:
    """guest/app/_ptc_loop.py subclasses them on the guest's CPython (pinned by componentize-py)."""
    result = await run(
        "import sys, asyncio, asyncio.events\n"
        "print(sys.version.split()[0], asyncio.events._BaseDefaultEventLoopPolicy.__name__,"
        " callable(asyncio.events._set_event_loop_policy), type(asyncio.new_event_loop()).__name__)\n"
    )
    assert result.error is None, result.error
    version, *names = result.stdout.split()
    assert names == ["_BaseDefaultEventLoopPolicy", "True", "HostEventLoop"], (
        f"the guest's CPython {version} (componentize-py {metadata.version('componentize-py')}) changed "
        f"asyncio.events' loop policy hooks: {names}"
    )


# concurrent.futures (the standard library's)


def test_thread_pool_starts_its_threads_through_the_hook() -> None:
    assert list(inspect.signature(ThreadPoolExecutor._adjust_thread_count).parameters) == ["self"], (
        f"{PYTHON} changed ThreadPoolExecutor._adjust_thread_count"
    )
    started: list[int] = []

    class Counting(ThreadPool):
        def start_threads(self, start: Any) -> None:
            before = threading.active_count()
            start()
            started.append(threading.active_count() - before)

    with Counting(max_workers=1) as pool:
        assert pool.submit(lambda: 7).result() == 7
    assert started[:1] == [1], f"{PYTHON}: ThreadPoolExecutor no longer starts its threads in _adjust_thread_count"


# os (the standard library's)


def test_exit_now_ends_the_process_without_waiting_for_its_threads() -> None:
    program = (
        "import atexit, threading, time\n"
        "from ptc.private.os import exit_now\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "exit_now(3)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 3 and "atexit ran" not in done.stdout, f"{PYTHON} changed os._exit"
    assert time.monotonic() - started < 20


# mcp


def test_the_mcp_http_client_has_the_sdks_defaults() -> None:
    pytest.importorskip("mcp")
    from mcp.shared import _httpx_utils

    from ptc.private.mcp import http_client

    version = f"mcp {metadata.version('mcp')}"
    assert "headers" in inspect.signature(_httpx_utils.create_mcp_http_client).parameters, (
        f"{version} changed mcp.shared._httpx_utils.create_mcp_http_client"
    )
    client = http_client({"X-Test": "1"})
    try:
        assert client.headers.get("X-Test") == "1", f"{version}: create_mcp_http_client dropped the headers"
        assert client.timeout.read == _httpx_utils.MCP_DEFAULT_SSE_READ_TIMEOUT
    finally:
        asyncio.run(client.aclose())


def test_the_regex_parser_gives_the_tree_the_pattern_analysis_reads() -> None:
    from ptc.private import re as private_re

    python = sys.version.split()[0]
    tree = private_re.parser.parse(r"^(a+)+$")
    ops = [op for op, _ in tree]
    constants = private_re.constants
    assert ops[0] == constants.AT and ops[-1] == constants.AT, f"Python {python}: re._parser's tree changed"
    assert ops[1] == constants.MAX_REPEAT, f"Python {python}: re._parser's repeats changed"
    low, high, inner = tree[1][1]
    assert (low, high) == (1, constants.MAXREPEAT) and inner[0][0] == constants.SUBPATTERN, f"Python {python}: groups"
    for name in (
        "MAX_REPEAT",
        "MIN_REPEAT",
        "POSSESSIVE_REPEAT",
        "GROUPREF",
        "GROUPREF_EXISTS",
        "BRANCH",
        "ASSERT",
        "ASSERT_NOT",
        "ATOMIC_GROUP",
        "AT_BEGINNING",
        "AT_BEGINNING_STRING",
        "IN",
        "LITERAL",
    ):
        assert hasattr(constants, name), f"Python {python}: re._constants has no {name}"
