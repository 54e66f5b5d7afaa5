"""One actor's events and audit events, delivered to the driver's callbacks in the order the actor made them.

Items come two ways (ptc.ray.actor): the long poll's batches and the tail that comes back with each
result; each item carries the actor's sequence number, so whichever arrives first, the callbacks get
them in order and each once. A result is handed to its caller only once everything up to the sequence
number it came with has been delivered (`through`): the caller sees an execution's events and its audit
event before its result, as in one process. Used on the driver's private loop only (no locks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ptc.events import logger

Deliver = Callable[[str, Any], None]


class Stream:
    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._next = 1
        self._held: dict[int, tuple[str, Any]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._ended = False

    def add(self, items: list[tuple[int, str, Any]]) -> None:
        for seq, kind, item in items:
            if seq >= self._next:
                self._held[seq] = (kind, item)
        while self._next in self._held:
            kind, item = self._held.pop(self._next)
            self._next += 1
            try:
                self._deliver(kind, item)
            except Exception:  # a broken listener must not stop the others, nor a result
                logger.exception("ptc.ray: delivering a forwarded %s failed", kind)
        self._wake()

    async def through(self, seq: int) -> None:
        """Until every item up to `seq` has been delivered (or the actor is gone: what is lost is lost)."""
        if self._ended or seq < self._next:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, waiter))
        await waiter

    def end(self) -> None:
        """The actor is gone: nothing more will come; nobody waits for it."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        keep = []
        for seq, waiter in self._waiters:
            if self._ended or seq < self._next:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                keep.append((seq, waiter))
        self._waiters = keep
