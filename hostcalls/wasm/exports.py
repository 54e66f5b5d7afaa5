"""The guest's exports (`run`, `run-cell` in guest/wit/world.wit), called with their arguments lowered here.

wasmtime-py's `Func.__call__` asks wasmtime for the function's type and
builds a converter per parameter on every call; these exports' types are
fixed by the WIT world, so their arguments are written straight into
component values (ptc.private.wasmtime.call_func). The code string is
copied once, into the value wasmtime lowers into the guest.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import Store
from wasmtime.component import Func

from ptc.private.wasmtime import call_func, ffi

_STRING = ffi.WASMTIME_COMPONENT_STRING
_U32 = ffi.WASMTIME_COMPONENT_U32
_U64 = ffi.WASMTIME_COMPONENT_U64


def _call(func: Func, store: Store, code: str, numbers: tuple[tuple[Any, int], ...]) -> None:
    args = (ffi.wasmtime_component_val_t * (1 + len(numbers)))()
    args[0].kind = _STRING
    args[0].of.string = ffi.str_to_capi(code)
    for slot, (kind, value) in enumerate(numbers, 1):
        args[slot].kind = kind
        if kind is _U32:
            args[slot].of.u32 = value
        else:
            args[slot].of.u64 = value
    try:
        call_func(func, store, args, len(args))
    finally:
        ffi.wasmtime_component_val_delete(ctypes.byref(args[0]))  # the string's bytes (the integers own nothing)


def run(func: Func, store: Store, code: str, report_limit: int) -> None:
    """`run: func(code: string, report-limit: u64)`: a program in a fresh instance."""
    _call(func, store, code, ((_U64, report_limit),))


def run_cell(func: Func, store: Store, code: str, cell: int, report_limit: int) -> None:
    """`run-cell: func(code: string, cell: u32, report-limit: u64)`: one cell of a session."""
    _call(func, store, code, ((_U32, cell), (_U64, report_limit)))
