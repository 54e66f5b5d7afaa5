"""The guest's frame codec is byte-compatible with msgpack (it runs on the host too: pure Python)."""

import importlib.util
import math
from pathlib import Path

import msgpack
import pytest

_spec = importlib.util.spec_from_file_location(
    "_ptc_codec", Path(__file__).parents[1] / "guest" / "app" / "_ptc_codec.py"
)
codec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(codec)

VALUES = [
    None,
    True,
    False,
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    -1,
    -32,
    -33,
    -128,
    -129,
    -32768,
    -32769,
    -(2**31),
    -(2**31) - 1,
    -(2**63),
    0.0,
    -1.5,
    1e300,
    math.inf,
    "",
    "a",
    "é✓😀",
    "x" * 31,
    "x" * 32,
    "x" * 255,
    "x" * 256,
    "x" * 65536,
    b"",
    b"\x00\xff",
    b"x" * 256,
    b"x" * 65536,
    [],
    [1, [2, [3]]],
    list(range(15)),
    list(range(16)),
    list(range(70000)),
    {},
    {"a": 1},
    {i: str(i) for i in range(15)},
    {i: i for i in range(16)},
    {str(i): i for i in range(70000)},
    {"tool": "get_team_budget", "args": {"team_id": "eng", "fiscal_year": 2024, "include_spent": True}, "key": None},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:30])
def test_pack_matches_msgpack_and_round_trips(value):
    packed = codec.pack(value)
    assert packed == msgpack.packb(value, use_bin_type=True)
    assert codec.unpack(msgpack.packb(value, use_bin_type=True)) == msgpack.unpackb(
        packed, raw=False, strict_map_key=False
    )


def test_tuples_and_subclasses_pack_as_their_base():
    class S(str):
        pass

    assert codec.unpack(codec.pack((1, (2, S("x"))))) == [1, [2, "x"]]


def test_float32_from_other_packers():
    assert codec.unpack(msgpack.packb(1.5, use_single_float=True)) == 1.5


@pytest.mark.parametrize(
    "value, error", [({1, 2}, TypeError), (object(), TypeError), (2**64, OverflowError), (-(2**63) - 1, OverflowError)]
)
def test_unsupported_values(value, error):
    with pytest.raises(error):
        codec.pack(value)


@pytest.mark.parametrize("data", [b"", b"\x92\x01", b"\xc1", b"\x01\x02", b"\xd9\x05ab", b"\x91" * 200 + b"\x01"])
def test_bad_input_raises_value_error(data):
    with pytest.raises(ValueError):
        codec.unpack(data)
