"""A small msgpack codec for the guest's frames (plain data only).

msgpack's pure-Python fallback sets up a Packer per call: ~190 µs for a tiny
map on wasm CPython. This encodes and decodes the subset frames use (nil,
bool, int, float64, str, bin, array, map) in a few µs, byte-compatible with
the host's msgpack (`use_bin_type=True`). Pure Python with no guest
dependencies, so the host's tests check it against msgpack directly.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

_MAX_DEPTH = 100
_FIXINT = [bytes((i,)) for i in range(128)]
_NEG_FIXINT = {i: bytes((i & 0xFF,)) for i in range(-32, 0)}
_B = Struct(">B").pack
_H = Struct(">H").pack
_I = Struct(">I").pack
_Q = Struct(">Q").pack
_b = Struct(">b").pack
_h = Struct(">h").pack
_i = Struct(">i").pack
_q = Struct(">q").pack
_d = Struct(">d").pack


def _int(value: int, out: list[bytes]) -> None:
    if 0 <= value < 128:
        out.append(_FIXINT[value])
    elif -32 <= value < 0:
        out.append(_NEG_FIXINT[value])
    elif value >= 0:
        if value < 0x100:
            out.append(b"\xcc" + _B(value))
        elif value < 0x10000:
            out.append(b"\xcd" + _H(value))
        elif value < 0x100000000:
            out.append(b"\xce" + _I(value))
        elif value < 0x10000000000000000:
            out.append(b"\xcf" + _Q(value))
        else:
            raise OverflowError("int too big to convert")
    elif value >= -0x80:
        out.append(b"\xd0" + _b(value))
    elif value >= -0x8000:
        out.append(b"\xd1" + _h(value))
    elif value >= -0x80000000:
        out.append(b"\xd2" + _i(value))
    elif value >= -0x8000000000000000:
        out.append(b"\xd3" + _q(value))
    else:
        raise OverflowError("int too big to convert")


def _header(n: int, fix: int, fix_limit: int, one: bytes | None, two: bytes, four: bytes, out: list[bytes]) -> None:
    if n < fix_limit:
        out.append(_FIXINT[fix | n] if (fix | n) < 128 else bytes((fix | n,)))
    elif one is not None and n < 0x100:
        out.append(one + _B(n))
    elif n < 0x10000:
        out.append(two + _H(n))
    elif n < 0x100000000:
        out.append(four + _I(n))
    else:
        raise ValueError("object too large")


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8")
        _header(len(data), 0xA0, 32, b"\xd9", b"\xda", b"\xdb", out)
        out.append(data)
    elif kind is int:
        _int(value, out)
    elif value is None:
        out.append(b"\xc0")
    elif value is True:
        out.append(b"\xc3")
    elif value is False:
        out.append(b"\xc2")
    elif kind is float:
        out.append(b"\xcb" + _d(value))
    elif kind is dict or kind is list or kind is tuple:
        if depth > _MAX_DEPTH:
            raise ValueError("nested deeper than %d levels" % _MAX_DEPTH)
        if kind is dict:
            _header(len(value), 0x80, 16, None, b"\xde", b"\xdf", out)
            for key, item in value.items():
                _encode(key, out, depth + 1)
                _encode(item, out, depth + 1)
        else:
            _header(len(value), 0x90, 16, None, b"\xdc", b"\xdd", out)
            for item in value:
                _encode(item, out, depth + 1)
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = bytes(value)
        _header(len(data), 0, 0, b"\xc4", b"\xc5", b"\xc6", out)
        out.append(data)
    elif isinstance(value, bool):
        out.append(b"\xc3" if value else b"\xc2")
    elif isinstance(value, int):
        _int(int(value), out)
    elif isinstance(value, float):
        out.append(b"\xcb" + _d(float(value)))
    elif isinstance(value, str):
        _encode(str.__str__(value), out, depth)
    elif isinstance(value, (bytes, bytearray)):
        _encode(bytes(value), out, depth)
    elif isinstance(value, dict):
        _encode(dict(value), out, depth)
    elif isinstance(value, (list, tuple)):
        _encode(list(value), out, depth)
    else:
        raise TypeError("can not serialize %r object" % type(value).__name__)


def pack(value: Any) -> bytes:
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        start = self.pos
        end = start + n
        if end > len(self.data):
            raise ValueError("truncated msgpack data")
        self.pos = end
        return self.data[start:end]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def sint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big", signed=True)

    def value(self, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("nested deeper than %d levels" % _MAX_DEPTH)
        data = self.data
        if self.pos >= len(data):
            raise ValueError("truncated msgpack data")
        b = data[self.pos]
        self.pos += 1
        if b < 0x80:
            return b
        if b >= 0xE0:
            return b - 0x100
        if 0xA0 <= b <= 0xBF:
            return self.take(b & 0x1F).decode("utf-8")
        if 0x90 <= b <= 0x9F:
            return [self.value(depth + 1) for _ in range(b & 0x0F)]
        if 0x80 <= b <= 0x8F:
            return self.map(b & 0x0F, depth)
        if b == 0xC0:
            return None
        if b == 0xC2:
            return False
        if b == 0xC3:
            return True
        if b == 0xCB:
            return Struct(">d").unpack(self.take(8))[0]
        if b == 0xCA:
            return Struct(">f").unpack(self.take(4))[0]
        if 0xCC <= b <= 0xCF:
            return self.uint(1 << (b - 0xCC))
        if 0xD0 <= b <= 0xD3:
            return self.sint(1 << (b - 0xD0))
        if 0xD9 <= b <= 0xDB:
            return self.take(self.uint(1 << (b - 0xD9))).decode("utf-8")
        if 0xC4 <= b <= 0xC6:
            return self.take(self.uint(1 << (b - 0xC4)))
        if b == 0xDC or b == 0xDD:
            return [self.value(depth + 1) for _ in range(self.uint(2 if b == 0xDC else 4))]
        if b == 0xDE or b == 0xDF:
            return self.map(self.uint(2 if b == 0xDE else 4), depth)
        raise ValueError("unsupported msgpack type 0x%02x" % b)

    def map(self, n: int, depth: int) -> dict[Any, Any]:
        out = {}
        for _ in range(n):
            key = self.value(depth + 1)
            out[key] = self.value(depth + 1)
        return out


def unpack(data: bytes) -> Any:
    reader = _Reader(data)
    value = reader.value()
    if reader.pos != len(data):
        raise ValueError("extra data after the msgpack value")
    return value
