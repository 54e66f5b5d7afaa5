"""Callers waiting, each on its own event loop, for a grant made on any thread.

Three admission books share this shape: a tenant's quota (ptc.tenancy's
gate), the fair share of execution threads (ptc.tenancy.FairShare) and the
sync tools' threads (ptc.hostcalls.calls.sync_threads). Each decides *who*
gets the next grant; this module holds *how* a grant reaches a waiter
safely: executors run on many loops and threads, a grant is made under the
book's lock on whatever thread frees a slot, the waiter may be cancelled at
any moment, and its loop may already be closed.

The rules, each a bug once:
* a grant is handed over on the waiter's own loop (`call_soon_threadsafe`);
  if that loop is closed, `grant` says so and the book takes the grant back;
* a waiter cancelled before its grant arrives leaves the queue; one
  cancelled just as it arrives gives the grant back (`release`), so no slot
  leaks either way.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[T]"]


class WaitQueues(Generic[K, T]):
    """One FIFO queue of waiters per key, the keys in turn order (a key served moves to the back).

    Every method but `wait` is called with the book's `lock` held; `wait` takes it itself.
    """

    def __init__(self, lock: threading.Lock, release: Callable[[T], None]) -> None:
        self._lock = lock
        self._release = release  # gives a grant back to the book (takes the lock itself)
        self._queues: OrderedDict[K, deque[_Waiter[T]]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._queues)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._queues))

    def __contains__(self, key: K) -> bool:
        return key in self._queues

    def count(self, key: K) -> int:
        return len(self._queues.get(key, ()))

    def push(self, key: K) -> asyncio.Future[T]:
        """A new waiter for `key`, on the running loop (await it with `wait`)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queues.setdefault(key, deque()).append((loop, waiter))
        return waiter

    def drop(self, key: K) -> None:
        """Forget the key's waiters (their callers are being cancelled anyway)."""
        self._queues.pop(key, None)

    def grant(self, key: K, value: T) -> bool:
        """Hand `value` to the key's first waiter; False when its loop is closed (the grant was not taken)."""
        queue = self._queues[key]
        loop, waiter = queue.popleft()
        if queue:
            self._queues.move_to_end(key)
        else:
            del self._queues[key]
        try:
            loop.call_soon_threadsafe(self._hand_over, waiter, value)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            return False
        return True

    def _hand_over(self, waiter: asyncio.Future[T], value: T) -> None:
        if waiter.done():  # cancelled meanwhile: the grant goes back to the book, and on to the next
            self._release(value)
        else:
            waiter.set_result(value)

    async def wait(self, key: K, waiter: asyncio.Future[T]) -> T:
        try:
            return await waiter
        except asyncio.CancelledError:
            with self._lock:
                queue = self._queues.get(key)
                if queue is not None and (waiter.get_loop(), waiter) in queue:
                    queue.remove((waiter.get_loop(), waiter))
                    if not queue:
                        del self._queues[key]
                    raise
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # the grant arrived just as we were cancelled
            raise
