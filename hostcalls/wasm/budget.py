"""What the host holds on one execution's behalf, counted against what it may hold.

A program can make the host hold memory without spending any of its own:
frames it sends (decoded, a Python object is up to ~70x its msgpack bytes),
replies it never waits for, output, its report. Each of these is charged
here before the host keeps it, and released when the host lets it go; what
does not fit is refused (the call fails, the reply becomes a short error),
so a hostile program finds the host's door closed at the size of its own
limit (`Limits.max_host_bytes`, by default its sandbox memory).

Charges come from the sandbox thread and from the event loop (replies), so
the counters are behind a lock. `peak` is what the execution cost the host.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

# Host bytes charged per decoded element (a list slot and a small object):
# measured 64.6 bytes per element for a frame of empty arrays, the worst case.
ITEM_COST = 72
# A tool-call record, its caller and timings, without its parameters.
RECORD_COST = 1024
# Room every execution keeps for its report (value, error, memory): a program
# that filled its budget with calls or output still ends with a readable result.
# The only overdraft of the budget, with the fixed error replies; a constant.
REPORT_RESERVE = 64 * 1024
# What a program is told instead of a reply that would take the host past its budget.
OVER_BUDGET_MESSAGE = (
    "the reply did not fit in this execution's host memory budget (Limits.max_host_bytes): "
    "await results before starting more calls, or ask for less"
)


def decoded_cost(frame_bytes: int, items: int) -> int:
    """What the host holds for a decoded frame: its strings' bytes and a charge per element."""
    return frame_bytes + items * ITEM_COST


@dataclass
class HostBudget:
    limit: int
    held: int = 0
    peak: int = 0
    # Bytes held by what gives way when the program's own traffic needs the room (its journal):
    # counted in `held` and `peak`, but a charge that fits without them drops them first (`give_way`).
    yielding: int = 0
    give_way: Callable[[], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def room(self) -> int:
        """Bytes that may still be charged."""
        return max(0, self.limit - self.held + self.yielding)

    def charge(self, size: int) -> bool:
        """Hold `size` more bytes if they fit (what yields giving way first); False (and nothing held) if not."""
        with self._lock:
            if self.held + size <= self.limit:
                self.held += size
                self.peak = max(self.peak, self.held)
                return True
            if not (self.yielding and self.held - self.yielding + size <= self.limit and self.give_way):
                return False
            give_way = self.give_way
        give_way()  # releases the yielding bytes (release_yielding), outside the lock
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            self.peak = max(self.peak, self.held)
            return True

    def charge_yielding(self, size: int) -> bool:
        """Hold `size` bytes that give way to later charges; False if they do not fit now."""
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            self.yielding += size
            self.peak = max(self.peak, self.held)
            return True

    def release_yielding(self, size: int) -> None:
        with self._lock:
            self.held = max(0, self.held - size)
            self.yielding = max(0, self.yielding - size)

    def force(self, size: int) -> None:
        """Hold `size` bytes even past the limit: a fixed, small error reply that must be sent."""
        with self._lock:
            self.held += size
            self.peak = max(self.peak, self.held)

    def items_for(self, frame_bytes: int, limit: int, reserve: int = 0) -> int:
        """How many elements a frame of `frame_bytes` may decode to: `limit`, or fewer if the room
        (plus `reserve`, for the report) is short."""
        return min(limit, max(0, (self.room() + reserve - frame_bytes) // ITEM_COST))

    def release(self, size: int) -> None:
        with self._lock:
            self.held = max(0, self.held - size)


class Oversize:
    """A string argument the host did not copy out of the guest: longer than it may hold."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size
