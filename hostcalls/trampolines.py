"""Host functions bound straight to wasmtime's C API, for their fixed WIT types.

wasmtime-py's generic trampoline rebuilds the function's type through ctypes
on every call (the FuncType, each parameter's type, and for a variant each
case, twice): about 7 µs for a call without arguments and about 50 µs for
`submit` (a string in, a variant out). The host interface's types are fixed by
guest/wit/world.wit, so these trampolines convert exactly those (all but the
clock's rare `resolution` and `subscribe-*`), the way
wasmtime-py's own converters do (same C calls, same ownership: argument
strings are ours to free, results are handed to wasmtime).

A function here must raise only WasmtimeError (boundary._barrier makes sure):
the trap message goes back to wasmtime as a wasmtime_error_t, never through
wasmtime-py's process-wide exception slot.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

from wasmtime import WasmtimeError
from wasmtime import _ffi as ffi
from wasmtime import _value as slab
from wasmtime.component import LinkerInstance

Lift = Callable[[Any], Any]
Lower = Callable[[Any, Any], None]

# wasmtime keeps the callbacks' C pointers: they must live as long as the linker.
_alive: list[Any] = []


def _lift_string(val: Any) -> str:
    text = ctypes.string_at(val.of.string.data, val.of.string.size).decode("utf-8")
    ffi.wasm_byte_vec_delete(ctypes.byref(val.of.string))
    return text


def _lift_u64(val: Any) -> int:
    return int(val.of.u64)


def _lift_s64(val: Any) -> int:
    return int(val.of.s64)


def _lift_u8(val: Any) -> int:
    return int(val.of.u8)


def _lower_string(ptr: Any, value: str) -> None:
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_STRING
    ptr.contents.of.string = ffi.str_to_capi(value)


def _lower_u64(ptr: Any, value: int) -> None:
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_U64
    ptr.contents.of.u64 = value


def _lower_bool(ptr: Any, value: bool) -> None:
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_BOOL
    ptr.contents.of.boolean = value


def _lower_submitted(ptr: Any, value: str | int) -> None:
    """`variant submitted { done(string), pending(u64) }`: a str is done, an int pending."""
    payload = ffi.wasmtime_component_val_t()
    if isinstance(value, str):
        case = "done"
        payload.kind = ffi.WASMTIME_COMPONENT_STRING
        payload.of.string = ffi.str_to_capi(value)
    else:
        case = "pending"
        payload.kind = ffi.WASMTIME_COMPONENT_U64
        payload.of.u64 = value
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_VARIANT
    ptr.contents.of.variant.discriminant = ffi.str_to_capi(case)
    ptr.contents.of.variant.val = ffi.wasmtime_component_val_new(ctypes.byref(payload))


def _lower_replies(ptr: Any, replies: list[tuple[int, str]]) -> None:
    """`list<tuple<u64, string>>`: finished calls and their reply frames."""
    items = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(items, len(replies))
    for i, (call_id, frame) in enumerate(replies):
        pair = ffi.wasmtime_component_valtuple_t()
        ffi.wasmtime_component_valtuple_new_uninit(pair, 2)
        pair.data[0].kind = ffi.WASMTIME_COMPONENT_U64
        pair.data[0].of.u64 = call_id
        pair.data[1].kind = ffi.WASMTIME_COMPONENT_STRING
        pair.data[1].of.string = ffi.str_to_capi(frame)
        items.data[i].kind = ffi.WASMTIME_COMPONENT_TUPLE
        items.data[i].of.tuple = pair
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = items


def _lower_option_string(ptr: Any, value: str | None) -> None:
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_OPTION
    if value is None:
        ptr.contents.of.option = None
        return
    payload = ffi.wasmtime_component_val_t()
    payload.kind = ffi.WASMTIME_COMPONENT_STRING
    payload.of.string = ffi.str_to_capi(value)
    ptr.contents.of.option = ffi.wasmtime_component_val_new(ctypes.byref(payload))


LIFT: dict[str, Lift] = {"string": _lift_string, "u64": _lift_u64, "s64": _lift_s64, "u8": _lift_u8}
LOWER: dict[str, Lower] = {
    "string": _lower_string,
    "u64": _lower_u64,
    "bool": _lower_bool,
    "submitted": _lower_submitted,
    "replies": _lower_replies,
    "option-string": _lower_option_string,
}


def store_data(context: Any) -> Any:
    """The Store's data object (what `Store(engine, data=...)` was given)."""
    return slab._unintern(ffi.wasmtime_context_get_data(context))


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

    def trampoline(env: Any, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> int:
        try:
            if nargs != count or nresults != (lower is not None):
                raise WasmtimeError(f"ptc: {name} called with the wrong arity")
            value = func(store_data(context), *[lift(args[i]) for i, lift in enumerate(lifts)])
            if lower is not None:
                lower(results, value)
            return 0
        except WasmtimeError as error:
            return ctypes.cast(error._consume(), ctypes.c_void_p).value or 0
        except BaseException as exc:  # noqa: BLE001 - nothing may unwind into wasmtime
            error = WasmtimeError(f"ptc: host function {name} failed: {type(exc).__name__}")
            return ctypes.cast(error._consume(), ctypes.c_void_p).value or 0

    callback = ffi.wasmtime_component_func_callback_t(trampoline)
    _alive.append(callback)
    encoded = name.encode("utf-8")
    error = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), callback, None, _NO_FINALIZER
    )
    if error:
        raise WasmtimeError._from_ptr(error)


_NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda data: None)
