"""Host functions bound straight to wasmtime's C API, for their fixed WIT types.

wasmtime-py's generic trampoline rebuilds the function's type through ctypes
on every call (the FuncType, each parameter's type, and for a variant each
case, twice): about 7 µs for a call without arguments and about 50 µs for
`submit` (a string in, a variant out). The host interface's types are fixed by
guest/wit/world.wit (and WASI's for the clocks and randomness ptc shadows), so
these trampolines convert exactly those (all but the monotonic clock's rare
`resolution` and `subscribe-*`), the way
wasmtime-py's own converters do (same C calls, same ownership: argument
strings are ours to free, results are handed to wasmtime). A string
argument is read out of the guest only up to what the execution may hold
(`frame`, `output`, names): the size is known before the copy.

A function here must raise only WasmtimeError (boundary._barrier makes sure):
the trap message goes back to wasmtime as a wasmtime_error_t (through
ptc.private.wasmtime.barrier), never through wasmtime-py's process-wide
exception slot.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmtime import WasmtimeError
from wasmtime.component import LinkerInstance

from ptc.hostcalls.wasm.budget import Oversize
from ptc.private.wasmtime import define_func, ffi, store_data

Lift = Callable[[Any, Any], Any]  # (the C value, the execution's state or None) -> the Python value
Lower = Callable[[Any, Any], None]
_MAX_NAME_BYTES = 1024


def _lift_capped(val: Any, cap: int, clip: bool = False) -> str | Oversize:
    """The string, or Oversize past `cap` bytes (or, with `clip`, its first `cap` bytes).

    The guest's bytes are read only up to the cap: a string as large as the
    sandbox's memory is never copied into the host to be refused afterwards.
    """
    size = val.of.string.size
    try:
        if size > cap and not clip:
            return Oversize(size)
        # Decoded in place from wasmtime's buffer: a copy as bytes first would be a
        # second transient as large as the string (6 MB for a 3 MB frame of non-ASCII).
        length = min(size, cap)
        if length == 0:
            return ""
        view = (ctypes.c_char * length).from_address(ctypes.cast(val.of.string.data, ctypes.c_void_p).value or 0)
        return str(view, "utf-8", "ignore" if size > cap else "strict")  # a cut character is dropped
    finally:
        ffi.wasm_byte_vec_delete(ctypes.byref(val.of.string))


def _lift_string(val: Any, state: Any) -> str | Oversize:
    return _lift_capped(val, _MAX_NAME_BYTES)


def _lift_frame(val: Any, state: Any) -> str | Oversize:
    return _lift_capped(val, state.frame_cap() if state is not None else 0)


def _lift_report(val: Any, state: Any) -> str | Oversize:
    return _lift_capped(val, state.report_cap() if state is not None else 0)


def _lift_output(val: Any, state: Any) -> str | Oversize:
    # Four bytes past the room: a clipped text is still longer than the room, so write() marks the truncation.
    return _lift_capped(val, state.output.room() + 4 if state is not None else 0, clip=True)


def _lift_u64(val: Any, state: Any) -> int:
    return int(val.of.u64)


def _lift_s64(val: Any, state: Any) -> int:
    return int(val.of.s64)


def _lift_u8(val: Any, state: Any) -> int:
    return int(val.of.u8)


# Each writes a Python value into a wasmtime_component_val_t (results, list
# and tuple slots, or a boxed payload).


def _set_string(val: Any, value: str) -> None:
    val.kind = ffi.WASMTIME_COMPONENT_STRING
    val.of.string = ffi.str_to_capi(value)


def _set_u64(val: Any, value: int) -> None:
    val.kind = ffi.WASMTIME_COMPONENT_U64
    val.of.u64 = value


def _set_bool(val: Any, value: bool) -> None:
    val.kind = ffi.WASMTIME_COMPONENT_BOOL
    val.of.boolean = value


def _boxed(set_value: Lower, value: Any) -> Any:
    """A heap-allocated val (a variant's or an option's payload), handed to wasmtime."""
    payload = ffi.wasmtime_component_val_t()
    set_value(payload, value)
    return ffi.wasmtime_component_val_new(ctypes.byref(payload))


def _set_submitted(val: Any, value: str | int) -> None:
    """`variant submitted { done(string), pending(u64) }`: a str is done, an int pending."""
    case, set_payload = ("done", _set_string) if isinstance(value, str) else ("pending", _set_u64)
    val.kind = ffi.WASMTIME_COMPONENT_VARIANT
    val.of.variant.discriminant = ffi.str_to_capi(case)
    val.of.variant.val = _boxed(set_payload, value)


def _set_replies(val: Any, replies: list[tuple[int, str]]) -> None:
    """`list<tuple<u64, string>>`: finished calls and their reply frames."""
    items = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(items, len(replies))
    for i, (call_id, frame) in enumerate(replies):
        pair = ffi.wasmtime_component_valtuple_t()
        ffi.wasmtime_component_valtuple_new_uninit(pair, 2)
        _set_u64(pair.data[0], call_id)
        _set_string(pair.data[1], frame)
        items.data[i].kind = ffi.WASMTIME_COMPONENT_TUPLE
        items.data[i].of.tuple = pair
    val.kind = ffi.WASMTIME_COMPONENT_LIST
    val.of.list = items


def _set_option_string(val: Any, value: str | None) -> None:
    val.kind = ffi.WASMTIME_COMPONENT_OPTION
    val.of.option = None if value is None else _boxed(_set_string, value)


_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_VAL_KIND = ffi.wasmtime_component_val_t.kind.offset
_VAL_OF = ffi.wasmtime_component_val_t.of.offset
_U8_KIND = bytes([ffi.WASMTIME_COMPONENT_U8.value])


def _set_bytes(val: Any, data: bytes) -> None:
    """`list<u8>` (random bytes): its vals laid out in one buffer and copied in at once.

    One val per byte, each `{kind: U8, of.u8: byte}`: filled by slice
    assignment (two C loops) where building the vals one by one through
    ctypes cost ~1 µs a byte (a CPython random seed asks for 2,496).
    """
    count = len(data)
    items = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(items, count)
    if count:
        raw = bytearray(count * _VAL_SIZE)
        raw[_VAL_KIND::_VAL_SIZE] = _U8_KIND * count
        raw[_VAL_OF::_VAL_SIZE] = data
        ctypes.memmove(items.data, (ctypes.c_char * len(raw)).from_buffer(raw), len(raw))
    val.kind = ffi.WASMTIME_COMPONENT_LIST
    val.of.list = items


def _set_datetime(val: Any, value: tuple[int, int]) -> None:
    """wasi:clocks/wall-clock's `record datetime { seconds: u64, nanoseconds: u32 }`."""
    record = ffi.wasmtime_component_valrecord_t()
    ffi.wasmtime_component_valrecord_new_uninit(record, 2)
    seconds, nanoseconds = record.data[0], record.data[1]
    seconds.name = ffi.str_to_capi("seconds")
    _set_u64(seconds.val, value[0])
    nanoseconds.name = ffi.str_to_capi("nanoseconds")
    nanoseconds.val.kind = ffi.WASMTIME_COMPONENT_U32
    nanoseconds.val.of.u32 = value[1]
    val.kind = ffi.WASMTIME_COMPONENT_RECORD
    val.of.record = record


LIFT: dict[str, Lift] = {
    "string": _lift_string,  # a name: at most 1 KiB
    "frame": _lift_frame,  # a call frame: at most what the execution may still hold
    "report": _lift_report,  # the report: that, or the reserve kept for it
    "output": _lift_output,  # program output: at most what the output cap still takes
    "u64": _lift_u64,
    "s64": _lift_s64,
    "u8": _lift_u8,
}
LOWER: dict[str, Lower] = {
    "string": _set_string,
    "u64": _set_u64,
    "bool": _set_bool,
    "submitted": _set_submitted,
    "replies": _set_replies,
    "option-string": _set_option_string,
    "bytes": _set_bytes,
    "datetime": _set_datetime,
}


def add_func(
    instance: LinkerInstance,
    name: str,
    func: Callable[..., Any],
    params: tuple[str, ...] = (),
    result: str | None = None,
) -> None:
    """Define `name` as func(store data, *arguments), with WIT types from LIFT / LOWER."""
    lifts = tuple(LIFT[kind] for kind in params)
    lower = LOWER[result] if result is not None else None
    count = len(lifts)

    def trampoline(env: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> None:
        if nargs != count or nresults != (lower is not None):
            raise WasmtimeError(f"ptc: {name} called with the wrong arity")
        data = store_data(context)
        value = func(data, *[lift(args[i], data.state) for i, lift in enumerate(lifts)])
        if lower is not None:
            lower(results.contents, value)

    define_func(instance, name, trampoline, lambda exc: f"ptc: host function {name} failed: {type(exc).__name__}")
