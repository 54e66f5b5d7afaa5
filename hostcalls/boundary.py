"""The host functions the guest imports, wired onto a component linker.

Each function finds its ExecutionState in the store and delegates to it. A
Python exception must never leave a host function: wasmtime-py keeps it in a
process-wide slot that another thread's call could pick up. So every function
runs behind a barrier that turns Abort (a limit, the deadline, cancellation)
and anything unexpected into a WasmtimeError trap, after noting the reason on
the execution.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptc.hostcalls.state import Abort, ExecutionState
from wasmtime import Store, WasmtimeError
from wasmtime.component import LinkerInstance

HOST_INTERFACE = "ptc:sandbox/host@0.1.0"


def state_of(store: Any) -> ExecutionState:
    # Host functions receive a StoreContext; Store.data only needs its context pointer.
    state = Store.data(store).state  # type: ignore[arg-type, union-attr]
    if state is None:  # pragma: no cover - a store runs only with an execution in its slot
        raise WasmtimeError("ptc: no execution for this store")
    return state


def _barrier(method: Callable[..., Any]) -> Callable[..., Any]:
    def host_function(store: Any, *args: Any) -> Any:
        state = state_of(store)
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


def define(root: LinkerInstance, monotonic_clock: str) -> None:
    """Add the ptc host interface, and a monotonic clock whose waits cannot outlive the deadline."""
    with root.add_instance(HOST_INTERFACE) as host:
        host.add_func("submit", _barrier(ExecutionState.submit))
        host.add_func("wait", _barrier(ExecutionState.wait))
        host.add_func("cancel", _barrier(ExecutionState.cancel_call))
        host.add_func("call", _barrier(ExecutionState.call))
        host.add_func("sleep", _barrier(ExecutionState.sleep))
        host.add_func("write", _barrier(ExecutionState.write))
        host.add_func("started", _barrier(ExecutionState.mark_started))
        host.add_func("load-module", _barrier(lambda state, name: state.module_source(name)))
    # wasmtime's own subscribe-duration/instant block inside the host where
    # neither epochs nor our deadline reach; the guest runtime never uses
    # them (it sleeps through `host.sleep`), so a program that digs out the
    # C-level sleep ends instead of pinning a host thread.
    with root.add_instance(monotonic_clock) as clock:
        clock.add_func("now", _barrier(ExecutionState.now))
        clock.add_func("resolution", lambda store: 1)
        clock.add_func("subscribe-duration", _barrier(_deny_blocking))
        clock.add_func("subscribe-instant", _barrier(_deny_blocking))
