"""concurrent.futures' private surface (the standard library's, Python >= 3.11).

- `ThreadPool.start_threads` (over `ThreadPoolExecutor._adjust_thread_count`):
  a ThreadPoolExecutor starts its worker threads lazily, in `submit`, from
  `_adjust_thread_count`; ptc.wasm_threads needs to run that with a larger
  thread stack size (threads that run wasm need one, or a deep recursion
  segfaults). Public alternatives: `initializer` runs in the new thread,
  after its stack is made; setting `threading.stack_size` for the whole
  process would size every thread any library starts; a pool of ptc's own
  is ~100 lines of what the standard library already gets right.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["ThreadPool"]


class ThreadPool(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose worker threads are started through `start_threads` (override it)."""

    def start_threads(self, start: Callable[[], None]) -> None:
        """Call `start`, which starts the threads this submit needs (if any)."""
        start()

    def _adjust_thread_count(self) -> None:
        self.start_threads(super()._adjust_thread_count)
