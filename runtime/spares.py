"""Pre-instantiated spare instances: the cold start off the critical path.

Instantiating the guest takes ~0.6 ms and its first run pays ~0.9 ms of
copy-on-write page faults as CPython first writes to its snapshot. A
background thread keeps a few instances instantiated and warmed by one run
of a fixed internal no-op program, so an execution can start on one at
once. Each instance still runs exactly one user program and is then dropped:
nothing of one user's execution can reach another's.

`PTC_SPARE_INSTANCES` sets how many are kept (default 2; 0 turns this off).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from wasmtime import Store, WasiConfig, WasmtimeError

from ptc.hostcalls.wasm import exports
from ptc.hostcalls.wasm.state import ExecutionState, StoreData
from ptc.interrupts import watch
from ptc.wasm_threads import start_thread

WARM_UP = "pass"
_INSTANTIATE_FUEL = 10**10
_MAX_RETIRED = 4
_SETTLE = 0.0015  # seconds between an execution's end and the pool's work
_WARM_UP_LIMIT = 1 << 31  # memory while waiting; the execution's own limit is set at checkout


@dataclass
class Instance:
    store: Store
    data: StoreData
    run: Any
    run_cell: Any
    warm: bool = False  # it ran the warm-up program (a replay must start from the same kind of instance)


def new_instance(runtime: Any, memory_limit: int) -> Instance:
    data = StoreData()
    store = Store(runtime.engine, data=data)
    store.set_wasi(WasiConfig())  # no preopens, no environment, no arguments, no network, no stdio
    store.set_limits(memory_size=memory_limit)
    if runtime.fuel:
        store.set_fuel(_INSTANTIATE_FUEL)  # instantiation runs guest code too
    watch(store)
    instance = runtime.linker.instantiate(store, runtime.component)
    run, run_cell = instance.get_func(store, "run"), instance.get_func(store, "run-cell")
    assert run is not None and run_cell is not None
    return Instance(store, data, run, run_cell)


def warm_instance(runtime: Any) -> Instance:
    """A new instance that has run the warm-up program, as every spare has (set its memory limit at checkout)."""
    spare = new_instance(runtime, _WARM_UP_LIMIT)
    state = ExecutionState("warm-up", timeout=10, max_output_bytes=0, max_tool_calls=0, max_frame_bytes=1 << 20)
    spare.data.state = state
    if runtime.fuel:
        spare.store.set_fuel(_INSTANTIATE_FUEL)
    state.start()
    spare.store.set_epoch_deadline(1)
    exports.run(spare.run, spare.store, WARM_UP, 1 << 20)
    spare.run.post_return(spare.store)
    spare.data.state = None
    spare.warm = True
    return spare


class SparePool:
    def __init__(self, runtime: Any, size: int) -> None:
        self._runtime = runtime
        self._size = size
        self._spares: deque[Instance] = deque()
        self._retired: deque[Instance] = deque()
        self._wanted = threading.Event()
        self._wanted.set()
        start_thread(self._work, "ptc-spares")

    def retire(self, instance: Instance) -> None:
        """Drop a used instance off the caller's path (freeing its memory takes ~0.3 ms).

        Only a few wait for the spare thread: under sustained load it falls
        behind, so past _MAX_RETIRED the caller frees its own (it returns
        and the last reference goes) and memory stays bounded.
        """
        instance.data.state = None
        if len(self._retired) < _MAX_RETIRED:
            self._retired.append(instance)
        self._wanted.set()

    def take(self) -> Instance | None:
        """A warm spare, if one is ready. The pool refills when an execution
        retires its instance, not here: a refill (~2-6 ms of instantiating and
        warming, partly holding the GIL) running beside the execution that just
        took a spare slowed that execution by as much as it saved."""
        try:
            return self._spares.popleft()
        except IndexError:
            return None

    def filled(self, timeout: float = 2.0) -> bool:
        """Wait until the pool holds its spares (executor.warm_up: the first executions start in one).

        Unlike settle(), instances still being freed do not count: under load
        this returns as soon as the spares are there. False after `timeout`.
        """
        deadline = time.monotonic() + timeout
        while len(self._spares) < self._size:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.002)
        return True

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the pool has nothing left to do (full, nothing retired waiting to be freed).

        For measurements: a refill instantiates ~10 MB in the background, so
        resident memory read while one runs says more about the pool than
        about what is measured. False if it did not settle within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._wanted.is_set() and not self._retired and len(self._spares) >= self._size:
                return True
            time.sleep(0.002)
        return False

    def _work(self) -> None:
        last_trim = 0.0
        while True:
            if not self._wanted.wait(timeout=1.0):
                # Idle: give back what glibc keeps after a burst of instances
                # (without this, settled RSS stays at the burst's high-water mark).
                if time.monotonic() - last_trim > 1.0 and _malloc_trim is not None:
                    _malloc_trim(0)
                    last_trim = time.monotonic()
                continue
            self._wanted.clear()
            # Let the execution that just retired hand back its result first:
            # freeing a store and faulting in a new one interrupt this process's
            # other threads (TLB shootdowns). Measured 10 ms apart: p90 of
            # `x = 1` 4.0 -> 1.7 ms, medians unchanged.
            time.sleep(_SETTLE)
            while self._retired:
                self._retired.popleft()  # the last reference: the store is freed here
            while len(self._spares) < self._size:
                try:
                    self._spares.append(warm_instance(self._runtime))
                except WasmtimeError:  # pragma: no cover - executions instantiate on their own then
                    break


def _find_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()


def pool_size() -> int:
    try:
        return max(0, int(os.environ.get("PTC_SPARE_INSTANCES", "2")))
    except ValueError:
        return 2
