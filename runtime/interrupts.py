"""Stopping running wasm: a wall-clock deadline and prompt cancellation.

Compiled code caches its store's epoch deadline, so lowering the deadline from
another thread does nothing until the old one passes. Instead every store
runs on a one-tick epoch slice (EPOCH_TICK) with a deadline callback: at each
tick the callback either grants one more tick or traps, when the execution
was cancelled or its deadline passed. One Python call per tick per running
store (~10 µs every 10 ms) buys a stop within one tick.

wasmtime-py does not wrap the callback (`wasmtime_store_epoch_deadline_callback`
in the C API), so this module calls its ctypes binding directly.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

from wasmtime import Store, StoreContext
from wasmtime import _ffi as ffi

_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE


def _trap(message: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(message.encode()), ctypes.c_void_p).value or 0


@ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
def _on_tick(context: Any, data: Any, delta: Any, kind: Any) -> int:
    try:
        state = Store.data(StoreContext(context)).state  # type: ignore[arg-type, union-attr]
        if state is None:
            delta[0] = 1
            kind[0] = _CONTINUE
            return 0
        if state.stop.is_set():
            return _trap("ptc: cancelled")
        if time.monotonic() >= state.deadline:
            if state.abort is None:
                state.abort = state.timed_out()
            return _trap("ptc: timeout")
        delta[0] = 1
        kind[0] = _CONTINUE
        return 0
    except BaseException:  # noqa: BLE001 - an exception must not unwind through wasmtime
        return _trap("ptc: interrupt check failed")


_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


def watch(store: Store) -> None:
    """Check the store's execution (its StoreData) at every epoch tick, from the next tick on."""
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), _on_tick, None, _NO_FINALIZER)
    store.set_epoch_deadline(1)
