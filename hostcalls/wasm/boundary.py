"""The host functions the guest imports, wired onto a component linker.

Each function finds its ExecutionState in the store and delegates to it. The
frequent ones go through ptc.hostcalls.wasm.trampolines (typed for the WIT, ~7×
cheaper per call than wasmtime-py's generic path); the clock's rarer functions
keep wasmtime-py's own conversions. A
Python exception must never leave a host function: wasmtime-py keeps it in a
process-wide slot that another thread's call could pick up. So every function
runs behind a barrier that turns Abort (a limit, the deadline, cancellation)
and anything unexpected into a WasmtimeError trap, after noting the reason on
the execution. That is the execution's half; the C half, which hands the
WasmtimeError to wasmtime as its trap, is ptc.private.wasmtime.barrier for
the trampolines and wasmtime-py's own for the clock's generic functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wasmtime import WasmtimeError
from wasmtime.component import LinkerInstance

from ptc.hostcalls.wasm import trampolines
from ptc.hostcalls.wasm.budget import Oversize
from ptc.hostcalls.wasm.state import Abort, ExecutionState, StoreData
from ptc.private.wasmtime import context_data

HOST_INTERFACE = "ptc:sandbox/host@0.1.0"


def _barrier(method: Callable[..., Any]) -> Callable[..., Any]:
    """method(state, *args) as host_function(store data, *args)."""

    def host_function(data: StoreData, *args: Any) -> Any:
        state = data.state
        if state is None:  # pragma: no cover - a store runs only with an execution in its slot
            raise WasmtimeError("ptc: no execution for this store")
        try:
            return method(state, *args)
        except Abort as abort:
            state.abort = state.abort or abort
        except BaseException as exc:  # noqa: BLE001 - see module docstring
            state.abort = state.abort or Abort(
                "internal_error", "InternalError", f"host function failed: {type(exc).__name__}"
            )
        raise WasmtimeError(f"ptc: {state.abort.kind}")

    return host_function


def _deny_blocking(state: ExecutionState, *args: Any) -> Any:
    raise Abort(
        "runtime_error",
        "SandboxError",
        "blocking waits outside the ptc runtime are not permitted; use time.sleep or asyncio.sleep",
    )


def _write(state: ExecutionState, fd: int, text: str | Oversize) -> bool:
    return state.output.write(fd, text)


def _resolution(data: StoreData) -> tuple[int, int]:
    return (0, 1)


def _generic(method: Callable[..., Any]) -> Callable[..., Any]:
    """For wasmtime-py's own trampoline, which passes a StoreContext."""
    function = _barrier(method)
    return lambda store, *args: function(context_data(store), *args)


@dataclass(frozen=True)
class WasiNames:
    """The versioned names of the WASI interfaces ptc shadows, as the guest imports them."""

    monotonic_clock: str
    wall_clock: str
    random: str


def define(root: LinkerInstance, wasi: WasiNames) -> None:
    """Add the ptc host interface, and WASI's clocks and randomness as the execution's tape gives them.

    Every clock reading and random byte the guest gets comes from its
    ExecutionState (so from its journal's tape, ptc.hostcalls.wasm.tape):
    shadowed here over wasmtime's own, which ptc could neither record nor
    replay. The monotonic clock's waits cannot outlive the deadline.
    """
    add = trampolines.add_func
    with root.add_instance(HOST_INTERFACE) as host:
        add(host, "submit", _barrier(ExecutionState.submit), ("frame",), "submitted")
        add(host, "wait", _barrier(ExecutionState.wait), ("s64",), "replies")
        add(host, "cancel", _barrier(ExecutionState.cancel_call), ("u64",))
        add(host, "call", _barrier(ExecutionState.call), ("frame",), "string")
        add(host, "sleep", _barrier(ExecutionState.sleep), ("u64",))
        add(host, "write", _barrier(_write), ("u8", "output"), "bool")
        add(host, "report", _barrier(ExecutionState.set_report), ("report",), "bool")
        add(host, "started", _barrier(ExecutionState.mark_started))
        add(host, "load-module", _barrier(ExecutionState.load_module), ("string",), "option-string")
    # wasmtime's own subscribe-duration/instant block inside the host where
    # neither epochs nor our deadline reach; the guest runtime never uses
    # them (it sleeps through `host.sleep`), so a program that digs out the
    # C-level sleep ends instead of pinning a host thread.
    with root.add_instance(wasi.monotonic_clock) as clock:
        add(clock, "now", _barrier(ExecutionState.now), (), "u64")
        clock.add_func("resolution", lambda store: 1)
        clock.add_func("subscribe-duration", _generic(_deny_blocking))
        clock.add_func("subscribe-instant", _generic(_deny_blocking))
    with root.add_instance(wasi.wall_clock) as wall:
        add(wall, "now", _barrier(ExecutionState.wall_now), (), "datetime")
        add(wall, "resolution", _resolution, (), "datetime")
    with root.add_instance(wasi.random) as random:
        add(random, "get-random-bytes", _barrier(ExecutionState.random_bytes), ("u64",), "bytes")
        add(random, "get-random-u64", _barrier(ExecutionState.random_u64), (), "u64")
