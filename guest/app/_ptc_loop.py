"""An asyncio event loop whose selector is the host.

CPython's default loop needs a socketpair, which WASI does not have. This loop
keeps BaseEventLoop's scheduling and replaces the selector: `select(timeout)`
becomes the host's `wait`, which blocks (bounded by the execution's deadline)
until some submitted host call has finished. Tool calls are `submit`ted and
resolved here, so calls under `asyncio.gather` run concurrently on the host.
"""

from __future__ import annotations

import asyncio
import asyncio.events
from time import time as _wall_clock

from _ptc_io import flush_before_blocking
from wit_world.imports import host
from wit_world.imports.host import Submitted_Done


class _HostSelector:
    def __init__(self, loop: HostEventLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None) -> list[tuple[int, str]]:
        if timeout is not None and timeout <= 0:
            if not self._loop._calls:
                return []
            return host.wait(0)
        flush_before_blocking()  # what the program printed reaches the host before it waits
        if timeout is None:
            return host.wait(-1)
        return host.wait(int(timeout * 1e9))

    def close(self) -> None:
        pass


class HostEventLoop(asyncio.BaseEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[int, asyncio.Future[str]] = {}
        self._selector = _HostSelector(self)

    _last_time = 0.0

    def time(self) -> float:
        """The loop's clock, read every iteration.

        Both clocks are the host's (every reading goes to the execution's
        journal, ptc.hostcalls.wasm.tape); the wall clock's typed host function
        is the cheaper of the two. Clamped so it never runs backwards, it
        times an execution's few seconds well.
        """
        now = _wall_clock()
        if now < self._last_time:
            return self._last_time
        self._last_time = now
        return now

    def submit(self, frame: str) -> asyncio.Future[str]:
        """Start a host call; the future resolves to the reply frame.

        A call the host finished at once comes back done: awaiting it does not
        suspend, so an inline tool costs no trip through the loop.
        """
        future: asyncio.Future[str] = self.create_future()
        submitted = host.submit(frame)
        if type(submitted) is Submitted_Done:
            future.set_result(submitted.value)
            return future
        call_id = submitted.value
        self._calls[call_id] = future
        future.add_done_callback(lambda f, call_id=call_id: self._forget(call_id, f))
        return future

    def _forget(self, call_id: int, future: asyncio.Future[str]) -> None:
        if self._calls.pop(call_id, None) is not None and future.cancelled():
            host.cancel(call_id)

    def _process_events(self, event_list: list[tuple[int, str]]) -> None:
        for call_id, frame in event_list:
            future = self._calls.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(frame)

    def _write_to_self(self) -> None:
        # call_soon_threadsafe: there are no other threads to wake us.
        pass

    def forget_calls(self) -> None:
        """Let go of the host calls still pending (their execution is over: a session's next cell is another)."""
        for call_id in list(self._calls):
            host.cancel(call_id)
        self._calls.clear()

    def close(self) -> None:
        self.forget_calls()
        super().close()


class _Policy(asyncio.events._BaseDefaultEventLoopPolicy):  # type: ignore[name-defined]
    _loop_factory = HostEventLoop


def install() -> None:
    """Make every new loop (asyncio.run, new_event_loop) a HostEventLoop."""
    asyncio.events._set_event_loop_policy(_Policy())
