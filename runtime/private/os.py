"""os' underscore surface (the standard library's).

- `exit_now` (over `os._exit`): a worker process (ptc.workers.child) whose
  parent is gone must end at once, from its reader loop, with execution
  threads still in wasm: `sys.exit` would raise in that thread only and then
  wait for the others at interpreter shutdown (a program may run for its
  whole timeout), and atexit handlers have nothing left to do for a parent
  that is gone. `os._exit` is documented and stable; it is only its
  underscore that puts it here.
"""

from __future__ import annotations

import os
from typing import NoReturn

__all__ = ["exit_now"]


def exit_now(status: int = 0) -> NoReturn:
    """End this process now: no cleanup, no waiting for threads."""
    os._exit(status)
