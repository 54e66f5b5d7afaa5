"""Threads for sync tool handlers, shared fairly by the executions of one router.

A sync handler holds its thread until it returns, and nothing can stop it
(a timeout or a cancellation only stops the waiting). With one FIFO pool, a
program that started many slow sync calls and walked away (gave up on them,
timed out, ended) kept every thread busy, and the next execution's instant
call waited in the queue until its own timeout ran out there. So:

* Each execution holds at most `per_execution` threads (default: half the
  pool); its further calls wait behind its own, and freed threads go to the
  waiting executions in turn. At least half the pool is always there for
  the other executions.
* A call's timeout starts when its handler starts: the wait for a thread is
  not the tool's slowness (it is still bounded by the execution's deadline,
  and by cancellation).
* When an execution ends, its calls still running become orphans: they stop
  counting against the pool (up to `max_orphans` extra threads take their
  place), and count against the orphan budget instead. Orphans beyond that
  budget count against the pool again; a call that finds the whole pool held
  by them fails at once with a clear ToolError rather than wait silently for
  a thread that may not come.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from ptc.errors import ToolError
from ptc.handoff import WaitQueues

SYNC_THREADS = 32


class SyncLane:
    """One execution's claim on the sync threads (its key in the pool's books)."""

    __slots__ = ("retired",)

    def __init__(self) -> None:
        self.retired = False


class _Slot:
    __slots__ = ("lane", "kind")

    def __init__(self, lane: SyncLane) -> None:
        self.lane = lane
        self.kind: Literal["live", "orphan", "overflow"] = "live"


class SyncThreads:
    def __init__(self, threads: int = SYNC_THREADS, per_execution: int | None = None, max_orphans: int | None = None):
        self.threads = threads
        self.per_execution = per_execution or max(1, threads // 2)
        self.max_orphans = threads if max_orphans is None else max_orphans
        self._pool = ThreadPoolExecutor(max_workers=threads + self.max_orphans, thread_name_prefix="ptc-tool")
        self._lock = threading.Lock()
        self._live = 0  # threads counted against the pool: running executions' calls and overflow orphans
        self._orphans = 0  # orphans within their budget (not counted against the pool)
        self._overflow = 0  # orphans past it
        self._slots: dict[SyncLane, set[_Slot]] = {}
        self._waiting: WaitQueues[SyncLane, _Slot] = WaitQueues(self._lock, self._release)  # lanes in turn order

    def counts(self) -> dict[str, int]:
        """Threads in use: `live` (counted against the pool), `orphans` (within budget), `overflow`, `waiting` calls."""
        with self._lock:
            waiting = len(self._waiting)
            return {"live": self._live, "orphans": self._orphans, "overflow": self._overflow, "waiting": waiting}

    async def run(self, lane: SyncLane, call: Callable[[], Any]) -> asyncio.Future[Any]:
        """Wait for a thread for `lane`, start `call` on it and return the future of its result.

        The thread is counted until `call` returns, whatever happens to the
        caller (a cancelled wait for a call already running does not free it).
        """
        slot = await self._acquire(lane)
        try:
            future = self._pool.submit(call)
        except BaseException:
            self._release(slot)
            raise
        future.add_done_callback(lambda _: self._release(slot))
        return asyncio.wrap_future(future)

    def retire(self, lane: SyncLane) -> None:
        """The lane's execution ended: its calls still running become orphans (see the module docstring)."""
        with self._lock:
            lane.retired = True
            self._waiting.drop(lane)  # their callers are being cancelled with the execution
            for slot in self._slots.pop(lane, ()):
                if self._orphans < self.max_orphans:
                    slot.kind = "orphan"
                    self._orphans += 1
                    self._live -= 1
                else:
                    slot.kind = "overflow"
                    self._overflow += 1
            self._dispatch()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the books (all under self._lock) ---------------------------------------
    def _may_start(self, lane: SyncLane) -> bool:
        return self._live < self.threads and len(self._slots.get(lane, ())) < self.per_execution

    def _grant(self, lane: SyncLane) -> _Slot:
        slot = _Slot(lane)
        self._slots.setdefault(lane, set()).add(slot)
        self._live += 1
        return slot

    async def _acquire(self, lane: SyncLane) -> _Slot:
        with self._lock:
            if lane.retired:
                raise ToolError("the execution has ended")
            if lane not in self._waiting and self._may_start(lane):
                return self._grant(lane)
            if self._overflow >= self.threads:
                raise ToolError(
                    f"all {self.threads} threads for sync tools are held by calls of executions that already ended; "
                    "try again later"
                )
            waiter = self._waiting.push(lane)
        return await self._waiting.wait(lane, waiter)

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            self._ungrant(slot)
            self._dispatch()

    def _ungrant(self, slot: _Slot) -> None:
        if slot.kind == "live":
            self._live -= 1
            slots = self._slots.get(slot.lane)
            if slots is not None:
                slots.discard(slot)
                if not slots:
                    del self._slots[slot.lane]
        elif slot.kind == "orphan":
            self._orphans -= 1
        else:
            self._overflow -= 1
            self._live -= 1

    def _dispatch(self) -> None:
        """Hand free threads to waiting lanes in turn, skipping lanes at their share."""
        while self._live < self.threads and self._waiting:
            lane = next((w for w in self._waiting if len(self._slots.get(w, ())) < self.per_execution), None)
            if lane is None:
                return  # every waiting lane is at its share
            slot = self._grant(lane)
            if not self._waiting.grant(lane, slot):  # its loop is closed: the thread is not taken
                self._ungrant(slot)
