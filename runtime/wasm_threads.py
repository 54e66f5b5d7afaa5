"""Threads that run wasm, with native stacks sized for it.

Wasm frames run on the native stack of the thread that calls into the
guest, up to the engine's `MAX_WASM_STACK`; a thread whose own stack is
smaller would overflow it (a segfault, not a trap). Python's threads get
the platform default (often 8 MiB, from `ulimit -s`, but not everywhere),
so every thread that runs a guest is made here, with `STACK_BYTES`: the
wasm stack plus room for the host frames around it. A stack is reserved
address space; only the pages a deep recursion touches become resident.

Why the wasm stack is 8 MiB: CPython's guard against deep recursion in C
code (repr, ==, json, deepcopy of deep data) watches the guest's shadow
stack in linear memory, but every C frame also takes native stack, ~30-60x
as much for some paths (measured: a 1 MiB native stack ended after ~16 KiB
of shadow stack in repr, and ~300 levels of json.loads needed that much).
The guest lowers CPython's shadow-stack budget (`GUEST_C_STACK` in
guest/app/ptc_guest.py) so that its RecursionError comes well before the
native stack ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ptc.private.futures import ThreadPool

MAX_WASM_STACK = 8 * 1024 * 1024
STACK_BYTES = MAX_WASM_STACK + 8 * 1024 * 1024

_lock = threading.Lock()


def _with_stack(start: Callable[[], Any]) -> Any:
    """Run `start` (which creates threads) with STACK_BYTES as the new threads' stack size."""
    with _lock:
        previous = threading.stack_size(STACK_BYTES)
        try:
            return start()
        finally:
            threading.stack_size(previous)


def start_thread(target: Callable[[], Any], name: str) -> threading.Thread:
    """A daemon thread that may run wasm."""
    thread = threading.Thread(target=target, name=name, daemon=True)
    _with_stack(thread.start)
    return thread


class WasmThreadPool(ThreadPool):
    """A ThreadPoolExecutor whose threads may run wasm (it starts them lazily, in submit)."""

    def start_threads(self, start: Callable[[], None]) -> None:
        _with_stack(start)
