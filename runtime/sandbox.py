"""One execution in one fresh Store, or one cell in a session's: set the limits, run, name the outcome.

Runs on a worker thread (wasmtime-py has no async component calls; ctypes
releases the GIL while wasm runs). Every way an execution can end maps to one
error kind here; nothing the guest does raises out of `run_program` or
`run_cell`. An outcome says whether the instance trapped: a trapped store is
poisoned, so a session cannot run another cell in it (ptc.sessions).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import ExitTrap, WasmtimeError

from ptc.engine import get_runtime
from ptc.hostcalls.wasm import codec, exports
from ptc.hostcalls.wasm.budget import REPORT_RESERVE, decoded_cost
from ptc.hostcalls.wasm.state import Abort, ExecutionState
from ptc.limits import Limits
from ptc.results import ErrorKind, ExecutionErrorInfo
from ptc.spares import Instance, new_instance


@dataclass
class Outcome:
    value: Any = None
    value_is_repr: bool = False
    error: ExecutionErrorInfo | None = None
    fuel_used: int | None = None
    memory_used: int | None = None
    trapped: bool = False  # the store trapped (or the run never started): its instance is unusable
    warm: bool = False  # the instance had run the spare pool's warm-up


def _error(kind: ErrorKind, type_: str, message: str, traceback: str = "") -> ExecutionErrorInfo:
    return ExecutionErrorInfo(kind=kind, type=type_, message=message, traceback=traceback)


def _aborted(abort: Abort) -> ExecutionErrorInfo:
    return _error(abort.kind, abort.type, abort.message)


# CPython's parser, AST optimizer and compiler recurse on the program's nesting:
# a stack exhausted in them is a parser bomb, like the ones CPython catches itself.
_COMPILER_FRAMES = ("astfold_", "_PyPegen", "_PyParser", "compiler_", "codegen_", "_PyAST_", "symtable_")


def _classify_trap(trap: WasmtimeError, state: ExecutionState, limits: Limits) -> ExecutionErrorInfo:
    if state.abort is not None:
        return _aborted(state.abort)
    if isinstance(trap, ExitTrap):
        return _error("runtime_error", "SystemExit", f"the program exited with status {trap.code}")
    text = str(trap)
    if "all fuel consumed" in text:
        return _error("out_of_fuel", "OutOfFuel", f"the program used its whole fuel budget ({limits.fuel})")
    if "interrupt" in text:
        return _aborted(state.timed_out())
    if "call stack exhausted" in text or "stack overflow" in text:
        if not state.started and any(f"libpython3.14.so!{fn}" in text for fn in _COMPILER_FRAMES):
            return _error("syntax_error", "SyntaxError", "the program is nested too deeply to compile")
        return _error("runtime_error", "RecursionError", "the program exhausted the sandbox stack")
    if "memory" in text and ("grow" in text or "limit" in text or "minimum" in text):
        return _error(
            "memory_limit", "MemoryError", f"the sandbox memory limit ({limits.memory_bytes} bytes) was reached"
        )
    if "rust_oom" in text or "handle_alloc_error" in text:
        return _error("memory_limit", "MemoryError", "the sandbox ran out of memory")
    if "panic" in text:
        # The bindings' Rust code refused a value: a raw host call given the wrong types.
        return _error("runtime_error", "SandboxError", "the program passed a value the sandbox bindings cannot carry")
    if "unreachable" in text:
        # CPython aborts (wasm `unreachable`) when an allocation fails where
        # it cannot raise MemoryError: the memory limit is the usual cause.
        return _error("memory_limit", "MemoryError", "the guest aborted, most likely out of memory")
    # Any other trap is the program's own doing: it can reach the runtime's internals.
    return _error("runtime_error", "SandboxError", "the program made the sandbox trap")


def _release(trap: BaseException) -> None:
    """Drop the trap's traceback: wasmtime-py raises it from a frame that holds it
    (a cycle), and the frames up the chain hold the Store. Left to the cyclic GC,
    every trapped execution kept its ~12 MB instance alive until a collection."""
    trap.__traceback__ = None


def _memory_used(reported: object, limits: Limits) -> int | None:
    """The guest's figure, if it is one wasm could have: whole 64 KiB pages
    within the limit (the limit itself is enforced by wasmtime, not by this)."""
    if type(reported) is int and 0 < reported <= limits.memory_bytes and reported % 65536 == 0:
        return reported
    return None


def _report(state: ExecutionState, limits: Limits) -> Outcome:
    """The guest's report, decoded within the execution's frame and host budgets."""
    frame, state.report = state.report, None
    if frame is None:
        if state.report_refused:  # the guest runtime's own fallback did not fit either
            message = (
                f"the program's report ({state.report_refused} bytes) is larger than the sandbox may return "
                f"(Limits.max_frame_bytes, or what is left of the execution's host budget)"
            )
            return Outcome(error=_error("runtime_error", "ResultTooLargeError", message))
        # Only a program that tampered with the runtime gets here.
        return Outcome(error=_error("runtime_error", "SandboxError", "the program ended without a result"))
    budget = state.budget
    budget.release(len(frame))
    max_items = budget.items_for(len(frame), limits.max_frame_items, reserve=REPORT_RESERVE)
    try:
        report, items = codec.decode_counted(frame, limits.max_frame_bytes, max_items=max_items)
        error = report.get("error")
        outcome = Outcome(
            value=report.get("value"),
            value_is_repr=report.get("repr") is True,
            error=ExecutionErrorInfo(**error) if error else None,
            memory_used=_memory_used(report.get("memory"), limits),
        )
    except codec.FrameTooLarge as exc:
        message = f"the program's result has more elements than the sandbox may return ({exc})"
        return Outcome(error=_error("runtime_error", "ResultTooLargeError", message))
    except codec.FrameError:
        return Outcome(error=_error("runtime_error", "SandboxError", "the program's result could not be read"))
    except (TypeError, ValueError, AttributeError):
        # Only a program that tampered with the runtime gets here.
        return Outcome(error=_error("runtime_error", "SandboxError", "the program's result could not be read"))
    budget.force(decoded_cost(len(frame), items))  # the caller's result holds it now
    error = outcome.error
    if error is not None and error.kind == "memory_limit" and not error.message:
        # CPython's MemoryError from a failed allocation has no text: say which limit it met.
        error.message = f"the program ran out of memory (its limit is {limits.memory_bytes} bytes)"
    return outcome


# Spares wait with a generous memory limit; an execution whose own limit is
# below this instantiates on its own, so "too small to start" is still seen.
SPARE_MIN_MEMORY = 64 * 1024 * 1024


def _not_text(code: str) -> Outcome | None:
    try:
        code.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no valid UTF-8 to give the guest
        message = f"the program contains a character that is not valid Unicode text at position {exc.start}"
        return Outcome(error=_error("syntax_error", "SyntaxError", message))
    return None


def instantiate(runtime: Any, limits: Limits, *, spare: bool = True) -> Instance | Outcome:
    """An instance for `limits` (a spare, if one is ready and may be used), or the outcome of failing to make one."""
    instance = runtime.spares.take() if spare and limits.memory_bytes >= SPARE_MIN_MEMORY else None
    if instance is None:
        try:
            instance = new_instance(runtime, limits.memory_bytes)
        except WasmtimeError as exc:
            if "memory" in str(exc):
                message = f"the sandbox needs more than {limits.memory_bytes} bytes to start"
                return Outcome(error=_error("memory_limit", "MemoryError", message), trapped=True)
            raise
    instance.store.set_limits(memory_size=limits.memory_bytes)
    return instance


def run_program(
    code: str,
    state: ExecutionState,
    limits: Limits,
    made: Instance | Outcome | None = None,
    clock_offset: int | None = None,
) -> Outcome:
    """A program in a fresh instance (`made`: one made already, as a resume makes it like the original's)."""
    bad = _not_text(code)
    if bad is not None:
        return bad
    runtime = get_runtime(fuel=limits.fuel is not None)
    instance = instantiate(runtime, limits) if made is None else made
    if isinstance(instance, Outcome):
        return instance
    call = functools.partial(exports.run, instance.run, instance.store, code, state.report_cap())
    outcome = _run_in(instance, state, limits, call, clock_offset)
    del call  # the store's last references go with the instance, on the spare thread
    outcome.warm = instance.warm
    runtime.spares.retire(instance)
    return outcome


def run_cell(
    instance: Instance, code: str, cell: int, state: ExecutionState, limits: Limits, clock_offset: int
) -> Outcome:
    """One cell of a session in its instance; afterwards the instance is ready for the next, unless trapped."""
    bad = _not_text(code)
    if bad is not None:
        return bad
    call = functools.partial(exports.run_cell, instance.run_cell, instance.store, code, cell, state.report_cap())
    outcome = _run_in(instance, state, limits, call, clock_offset)
    if not outcome.trapped:
        try:
            instance.run_cell.post_return(instance.store)
        except WasmtimeError as trap:
            outcome.trapped = True
            _release(trap)
    instance.data.state = None
    return outcome


def _run_in(
    instance: Instance, state: ExecutionState, limits: Limits, call: Callable[[], None], clock_offset: int | None = None
) -> Outcome:
    store = instance.store
    if limits.fuel is not None:
        store.set_fuel(limits.fuel)
    instance.data.state = state
    state.start(clock_offset)
    store.set_epoch_deadline(1)
    try:
        call()
        outcome = _report(state, limits)
    except ExitTrap as trap:  # os._exit(): no report, but 0 is a success
        outcome = Outcome(error=None if trap.code == 0 and state.abort is None else _classify_trap(trap, state, limits))
        outcome.trapped = True
        _release(trap)
    except WasmtimeError as trap:
        outcome = Outcome(error=_classify_trap(trap, state, limits), trapped=True)
        _release(trap)
    if limits.fuel is not None:
        try:
            outcome.fuel_used = limits.fuel - store.get_fuel()
        except WasmtimeError:
            outcome.fuel_used = limits.fuel
    return outcome
