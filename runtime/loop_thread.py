"""A private event loop, on a daemon thread of its own.

A backend's clients (MCP sessions, A2A HTTP clients, the shared state's
Redis client) belong to the loop they were made on, and the executor's
callers come with loops of their own (`execute_sync` makes a new one per
call). So each keeps its clients on one private loop, which outlives every
caller's: calls are submitted to it from any loop, and it is closed in one
place.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ptc.telemetry import carried

_T = TypeVar("_T")


class LoopThread:
    """An event loop running on a daemon thread until `close()`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        """Run `coro` on the private loop; await the result on the caller's loop.

        Cancelling the awaiting task cancels `coro` on the private loop too.
        The caller's trace context goes with it (ptc.telemetry.carried): the
        client there propagates the caller's span upstream.
        """
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(carried(coro), self.loop))

    def close(self, last: Callable[[], Coroutine[Any, Any, Any]] | None = None, timeout: float = 20) -> None:
        """Run `last()` (the clients' own close) on the loop, then end it as asyncio.run ends its own
        (what is left cancelled, async generators closed), stop it and join the thread; blocks.

        Without the second step a client's async generator (a stream it was
        reading) was finalized after the loop had closed: "Task was destroyed
        but it is pending!" at the process's exit.
        """
        if last is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(last(), self.loop).result(timeout=timeout)
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_wind_down(), self.loop).result(timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


async def _wind_down() -> None:
    """Cancel the loop's other tasks and close its async generators, as asyncio.run does at its end."""
    loop = asyncio.get_running_loop()
    left = [task for task in asyncio.all_tasks(loop) if task is not asyncio.current_task()]
    for task in left:
        task.cancel()
    if left:
        await asyncio.gather(*left, return_exceptions=True)
    await loop.shutdown_asyncgens()
