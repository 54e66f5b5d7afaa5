"""Stopping running wasm: a wall-clock deadline and prompt cancellation.

Compiled code caches its store's epoch deadline, so lowering the deadline from
another thread does nothing until the old one passes. Instead every store
runs on a one-tick epoch slice (EPOCH_TICK) with a deadline callback: at each
tick the callback either grants one more tick or traps, when the execution
was cancelled or its deadline passed. One Python call per tick per running
store (~10 µs every 10 ms) buys a stop within one tick.

wasmtime-py does not wrap the callback (`wasmtime_store_epoch_deadline_callback`
in the C API): ptc.private.wasmtime binds it, behind the trap barrier that
keeps an exception here from unwinding into wasmtime.
"""

from __future__ import annotations

import time
from typing import Any

from wasmtime import Store, WasmtimeError

from ptc.private.wasmtime import epoch_deadline_callback, set_epoch_deadline_callback


def _ticks(data: Any) -> int:
    """One more tick, or a trap when the execution was cancelled or its deadline passed."""
    state = data.state
    if state is None:
        return 1
    if state.stop.is_set():
        raise WasmtimeError("ptc: cancelled")
    if time.monotonic() >= state.deadline:
        if state.abort is None:
            state.abort = state.timed_out()
        raise WasmtimeError("ptc: timeout")
    return 1


_on_tick = epoch_deadline_callback(_ticks, "ptc: interrupt check failed")


def watch(store: Store) -> None:
    """Check the store's execution (its StoreData) at every epoch tick, from the next tick on."""
    set_epoch_deadline_callback(store, _on_tick)
    store.set_epoch_deadline(1)
