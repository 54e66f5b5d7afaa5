"""asyncio's private surface (the standard library's, Python >= 3.11).

- `running_loop()` (`asyncio._get_running_loop`): the running event loop of
  this thread, or None. The tool-call router asks it on every large result
  (encode off the loop only on the session's own loop) and on every inline
  tool that returned an awaitable (no loop: finish it by hand).
  `_get_running_loop` is in `asyncio.events.__all__`, documented as "Return
  the running event loop or None", a low-level function for event loops
  (`_asyncio._get_running_loop`, in C). Public alternative: `asyncio.get_running_loop()`, which raises RuntimeError when
  there is none: a try/except that costs ~510 ns per call without a loop
  (the inline tools' case, on the sandbox thread) against ~55 ns, and
  ~290 ns against ~200 ns with one (measured on CPython 3.11).

The guest subclasses `asyncio.events._BaseDefaultEventLoopPolicy` and calls
`asyncio.events._set_event_loop_policy` (guest/app/_ptc_loop.py), to make
every new loop its host-driven one: that code runs inside the sandbox on the
guest's own CPython (pinned by componentize-py==0.25.1), which cannot import
host modules, so it stays there; tests/test_private_apis.py checks those
names in the sandbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["running_loop"]

running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop
"""The running event loop of this thread, or None (the C function itself: no Python frame per call)."""
