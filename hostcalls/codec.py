"""Frames across the boundary: msgpack bytes carried as latin-1 strings.

Everything decoded here comes from the guest and is hostile: its size and
nesting are capped, and only plain msgpack types are accepted (no ext types,
no timestamps). A bad frame raises FrameError, which the caller answers with
an error frame; it never escapes as a host exception.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_DEPTH = 64
_PLAIN_LEAVES = (type(None), bool, int, float, str, bytes)


class FrameError(ValueError):
    """A frame from the guest is malformed, too large, too deep or not plain data."""


def _no_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack ext type {code} is not allowed")


def check_plain(value: Any, max_depth: int = MAX_DEPTH, *, tuples: bool = False) -> None:
    """Raise FrameError unless value is plain data nested at most max_depth deep.

    Map keys must be scalars (the guest builds dicts from them); `tuples`
    accepts tuples as lists (a tool's result, not a guest frame).
    """
    sequences = (list, tuple) if tuples else list
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _PLAIN_LEAVES):
            continue
        if depth >= max_depth:
            raise FrameError(f"nested deeper than {max_depth} levels")
        if isinstance(item, sequences):
            stack.extend((x, depth + 1) for x in item)
        elif isinstance(item, dict):
            for key, val in item.items():
                if not isinstance(key, _PLAIN_LEAVES):
                    raise FrameError(f"a map key of type {type(key).__name__} is not plain data")
                stack.append((val, depth + 1))
        else:
            raise FrameError(f"{type(item).__name__} is not plain data")


def decode(frame: str, max_bytes: int) -> Any:
    """Decode a guest frame, or raise FrameError."""
    if len(frame) > max_bytes:
        raise FrameError(f"frame of {len(frame)} bytes exceeds the {max_bytes}-byte limit")
    try:
        raw = frame.encode("latin-1")
        value = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            ext_hook=_no_ext,
        )
    except FrameError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for garbage input
        raise FrameError(f"malformed frame ({type(exc).__name__})") from None
    check_plain(value)
    return value


def encode(value: Any) -> str:
    """Encode a host value for the guest; raises TypeError/ValueError if it is not plain data."""
    return msgpack.packb(value, use_bin_type=True).decode("latin-1")
