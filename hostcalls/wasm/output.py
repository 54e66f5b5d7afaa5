"""A program's stdout and stderr as the host keeps them: interleaved, capped, charged to the budget.

The cap is the smaller of what the limits keep (`max_output_bytes`) and
what the host may still hold (the execution's budget). The trampolines read
a `write` only up to `room()` (+4 bytes, so a clipped text still shows as
cut); past the cap the text is cut at a character boundary, and once
truncated every later write is refused, so the program learns at once that
nothing more is kept.

Live output (`on_output`): what is kept is also handed, as it arrives, to a
`LiveOutput`, which delivers it to the caller's callback on the caller's
loop. The sandbox thread only appends to a list and, once per batch, wakes
the loop: it never waits for the callback. Only kept text is delivered, so
the total is the result's (≤ max_output_bytes), and what waits for a slow
callback is at most that too: while one delivery runs, later text is
coalesced into the next (one call per stream run).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Protocol

from ptc.hostcalls.wasm.budget import HostBudget, Oversize

logger = logging.getLogger("ptc")
OutputCallback = Callable[[str, str], Awaitable[None] | None]  # (stream: "stdout" | "stderr", text)
_STREAMS = {1: "stdout", 2: "stderr"}


class Parts(Protocol):
    """Where the kept text goes as it arrives: a LiveOutput, or a worker's link to its parent."""

    def push(self, fd: int, text: str) -> None: ...


@dataclass
class Output:
    max_bytes: int
    budget: HostBudget
    parts: list[tuple[int, str]] = field(default_factory=list)  # (1 stdout | 2 stderr, text), as written
    bytes: int = 0
    truncated: bool = False
    live: Parts | None = None  # on_output: the kept text, as it arrives (a LiveOutput here; in a worker, its parent)

    def room(self) -> int:
        return max(0, min(self.max_bytes - self.bytes, self.budget.room()))

    def write(self, fd: int, text: str | Oversize) -> bool:
        """Keep what fits; False once the output is cut (the program stops sending more)."""
        if self.truncated or isinstance(text, Oversize):
            self.truncated = True
            return False
        fd = 1 if fd == 1 else 2  # anything not stdout is stderr
        data = text.encode("utf-8", "surrogatepass")
        room = self.room()
        if len(data) > room:
            text = data[:room].decode("utf-8", "ignore")
            self.truncated = True
        if text:
            kept = min(len(data), room)
            self.budget.force(kept)
            self.parts.append((fd, text))
            self.bytes += kept
            if self.live is not None:
                self.live.push(fd, text)
        return not self.truncated

    def joined(self) -> tuple[str, str, str]:
        """(interleaved, stdout, stderr)."""
        both = "".join(text for _, text in self.parts)
        out = "".join(text for fd, text in self.parts if fd == 1)
        err = "".join(text for fd, text in self.parts if fd == 2)
        return both, out, err


class LiveOutput:
    """Output delivered to a callback on the caller's loop while the program runs (see the module docstring).

    A callback that raises is logged (the `ptc` logger) and counted in
    `failures`; the execution goes on, and so do later deliveries.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: OutputCallback) -> None:
        self.loop = loop
        self.callback = callback
        self.failures = 0
        self.delivered = 0  # characters handed to the callback
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str]] = []
        self._woken = False  # a wake-up of the loop is on its way (one per batch)
        self._task: asyncio.Task[None] | None = None  # an async callback's delivery in progress

    def push(self, fd: int, text: str) -> None:
        """On the sandbox thread: queue `text`; wake the loop if no wake-up is on its way already."""
        with self._lock:
            self._pending.append((fd, text))
            if self._woken:
                return
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the caller's loop is closed: nobody to deliver to
            pass

    def _take(self) -> list[tuple[str, str]]:
        with self._lock:
            pending, self._pending, self._woken = self._pending, [], False
        return [(_STREAMS[fd], "".join(text for _, text in run)) for fd, run in groupby(pending, key=itemgetter(0))]

    def _wake(self) -> None:
        """On the loop: deliver what is queued (an async callback: in a task, which coalesces while it awaits)."""
        if self._task is not None:
            return  # the running delivery takes it next
        batch = self._take()
        for i, (stream, text) in enumerate(batch):
            pending = self._call(stream, text)
            if pending is not None:
                self._task = self.loop.create_task(self._deliver(pending, batch[i + 1 :]))
                return

    def _call(self, stream: str, text: str) -> Awaitable[None] | None:
        self.delivered += len(text)
        try:
            value = self.callback(stream, text)
        except Exception as exc:  # noqa: BLE001 - the caller's callback must not break the execution
            self._failed(exc)
            return None
        return value if inspect.isawaitable(value) else None

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        logger.warning("on_output callback raised %s: %s", type(exc).__name__, exc)

    async def _deliver(self, first: Awaitable[None], rest: list[tuple[str, str]]) -> None:
        try:
            pending: Awaitable[None] | None = first
            while True:
                if pending is not None:
                    try:
                        await pending
                    except Exception as exc:  # noqa: BLE001 - as in _call
                        self._failed(exc)
                if rest:
                    stream, text = rest.pop(0)
                    pending = self._call(stream, text)
                    continue
                rest = self._take()
                if not rest:
                    return
                pending = None
        finally:
            self._task = None

    async def finish(self, timeout: float = 10.0) -> None:
        """On the loop, once the program ended: deliver what is still queued, so that everything was
        delivered before the result is returned (an async callback stuck longer than `timeout`: given up)."""
        while True:
            task = self._task
            if task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(task), timeout)
                except TimeoutError:
                    logger.warning("on_output callback still running after %g s: the rest is not delivered", timeout)
                    task.cancel()
                    return
                continue
            if not self._pending:
                return
            self._wake()
            if self._task is None:  # sync callbacks: all delivered
                return
