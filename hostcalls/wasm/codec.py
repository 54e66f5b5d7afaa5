"""Frames across the boundary: msgpack bytes carried as latin-1 strings.

Everything decoded here comes from the guest and is hostile. Bytes are not
the measure of what a frame costs the host: one byte of msgpack is an empty
array, which is a 56-byte list plus its slot in the parent (~70x). So a
frame is bounded three ways before the host keeps anything of it:

* bytes: `max_bytes` (and the trampoline never copies a longer string out
  of the guest);
* elements: msgpack calls a hook as each array or map is built; the hook
  counts elements and stops the decode past `max_items`, so the host never
  builds more than `max_items` objects of a frame (a single container's
  length is refused from its header, before allocation);
* time: the same hook checks the execution's deadline every few thousand
  containers, and, being Python, lets the interpreter hand the GIL to the
  event loop as it goes (one long C call would hold it throughout).

Only plain msgpack types come out: ext types and timestamps are refused,
array or map keys are refused by msgpack itself (unhashable); nesting is
capped at MAX_DEPTH by a level-by-level walk whose steps are C-level scans.
A bad frame raises FrameError, which the caller answers with an error
frame; it never escapes as a host exception.
"""

from __future__ import annotations

import time
from itertools import compress
from typing import Any

import msgpack

from ptc.errors import PtcError

MAX_DEPTH = 64
DEFAULT_MAX_ITEMS = 1_000_000
_DEADLINE_EVERY = 2048  # containers between deadline checks (~1 ms of decoding)
_LEAVES = frozenset({type(None), bool, int, float, str, bytes})


class FrameError(PtcError, ValueError):
    """A frame from the guest is malformed, too large, too deep or not plain data."""


class FrameTooLarge(FrameError):
    """The frame holds more elements than it may (`max_items`): refused before the host built them all."""


class FrameTimeout(FrameError):
    """The execution's deadline passed while the host was decoding its frame."""


def _no_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack ext type {code} is not allowed")


class _Counter:
    """The list and map hook: counts elements, stops the decode past a budget or the deadline."""

    __slots__ = ("items", "max_items", "deadline", "_calls")

    def __init__(self, max_items: int, deadline: float) -> None:
        self.items = 1
        self.max_items = max_items
        self.deadline = deadline
        self._calls = 0

    def list_hook(self, value: list[Any]) -> list[Any]:
        self._count(len(value))
        return value

    def map_hook(self, value: dict[Any, Any]) -> dict[Any, Any]:
        self._count(2 * len(value))  # a key and a value per entry
        return value

    def _count(self, n: int) -> None:
        self.items += n
        if self.items > self.max_items:
            raise FrameTooLarge(f"more than {self.max_items} elements")
        self._calls += 1
        if self._calls % _DEADLINE_EVERY == 0 and time.monotonic() > self.deadline:
            raise FrameTimeout("the deadline passed while decoding")


def decode_counted(
    frame: str, max_bytes: int, *, max_items: int = DEFAULT_MAX_ITEMS, deadline: float = float("inf")
) -> tuple[Any, int]:
    """Decode a guest frame: (value, number of elements), or raise FrameError."""
    if len(frame) > max_bytes:
        raise FrameError(f"frame of {len(frame)} bytes exceeds the {max_bytes}-byte limit")
    counter = _Counter(max_items, deadline)
    try:
        value = msgpack.unpackb(
            frame.encode("latin-1"),
            raw=False,
            strict_map_key=False,
            ext_hook=_no_ext,
            list_hook=counter.list_hook,
            object_hook=counter.map_hook,
            max_array_len=max_items,
            max_map_len=max_items,
        )
    except FrameError:
        raise
    except ValueError as exc:
        if "exceeds max_" in str(exc):  # one container's header asks for more than the budget
            raise FrameTooLarge(f"more than {max_items} elements") from None
        raise FrameError(f"malformed frame ({type(exc).__name__})") from None
    except Exception as exc:  # msgpack raises a zoo of types for garbage input
        raise FrameError(f"malformed frame ({type(exc).__name__})") from None
    check_plain(value)  # msgpack gives plain leaves, lists and dicts, but a timestamp slips past the ext hook
    return value, counter.items


def decode(frame: str, max_bytes: int, *, max_items: int = DEFAULT_MAX_ITEMS, deadline: float = float("inf")) -> Any:
    """Decode a guest frame, or raise FrameError."""
    return decode_counted(frame, max_bytes, max_items=max_items, deadline=deadline)[0]


def check_plain(value: Any, max_depth: int = MAX_DEPTH, *, tuples: bool = False) -> None:
    """Raise FrameError unless value is plain data nested at most max_depth deep.

    For a decoded frame and for a tool's result. Map keys must be scalars
    (the guest builds dicts from them); `tuples` accepts tuples as lists (a
    result, not a frame). Walked level by level, with C-level scans per
    container; an empty container is not visited (nothing in it to check).
    """
    sequences = frozenset({list, tuple}) if tuples else frozenset({list})
    containers = sequences | {dict}
    allowed = _LEAVES | containers
    is_container = containers.__contains__
    level = [value]
    for depth in range(max_depth + 1):
        deeper: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is dict:
                if not _LEAVES.issuperset(map(type, item)):
                    bad = next(k for k in item if type(k) not in _LEAVES)
                    raise FrameError(f"a map key of type {type(bad).__name__} is not plain data")
                values: Any = item.values()
            elif kind in sequences:
                values = item
            elif kind in _LEAVES:
                continue
            else:
                raise FrameError(f"{kind.__name__} is not plain data")
            kinds = list(map(type, values))
            if not allowed.issuperset(kinds):
                raise FrameError(f"{next(k for k in kinds if k not in allowed).__name__} is not plain data")
            deeper.extend(filter(None, compress(values, map(is_container, kinds))))
        if not deeper:
            return
        if depth >= max_depth - 1:
            raise FrameError(f"nested deeper than {max_depth} levels")
        level = deeper


def error_frame(type_: str, message: str) -> str:
    """The reply frame of a failed call: `{"error": {"type", "message"}}` (the guest raises that class)."""
    return encode({"error": {"type": type_, "message": message}})


def encode(value: Any) -> str:
    """Encode a host value for the guest; raises TypeError/ValueError if it is not plain data."""
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed.decode("latin-1")


def module_text(code: bytes, source: str) -> str:
    """A stub module as `load-module` answers it with its code compiled already (the
    guest's `_ptc_tools._code` reads it): a NUL (no source holds one), the code's
    length, a NUL, the code as latin-1 text, then the source (for tracebacks)."""
    return f"\0{len(code)}\0{code.decode('latin-1')}{source}"


def module_source(text: str) -> str:
    """The source in a `load-module` answer: what a journal records the digest of,
    whether the module came compiled or not."""
    if not text.startswith("\0"):
        return text
    split = text.index("\0", 1)
    return text[split + 1 + int(text[1:split]) :]
