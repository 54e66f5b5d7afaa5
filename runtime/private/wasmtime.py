"""wasmtime-py's private surface, all of it (pinned by pyproject: wasmtime>=50.0.1,<51).

Nothing else in ptc imports `wasmtime._*` or calls a `WasmtimeError._*`
method; tests/test_private_apis.py checks each name below, and every
`ffi.<name>` used anywhere in ptc, against the installed wasmtime.

- `ffi` (`wasmtime._ffi`), the ctypes bindings of wasmtime's C API, for:
  * typed host functions (ptc.hostcalls.wasm.trampolines, registered by
    `define_func`). Public alternative: `LinkerInstance.add_func`, whose
    generic trampoline rebuilds the function's type through ctypes on every
    call: about 7 µs for a call without arguments and about 50 µs for
    `submit` (a string in, a variant out), ~7x the typed ones.
  * the epoch-deadline callback (`epoch_deadline_callback`, used by
    ptc.interrupts), which wasmtime-py does not wrap. Public alternative:
    `Store.set_epoch_deadline` alone; but compiled code caches its store's
    deadline, so lowering it from another thread does nothing until the old
    one passes: no stop within one tick.
  * the async stack size (`set_async_stack_size`, ptc.engine): `Config` has
    no property for it, and an Engine whose `max_wasm_stack` exceeds it (2 MiB
    by default) does not raise, it aborts the process (a Rust panic in
    `wasm_engine_new_with_config`, seen on 50.0.1). No public alternative at
    ptc's 8 MiB wasm stack.
- `store_data` / `context_data` (`wasmtime._value._unintern`,
  `StoreContext._context`): the object a Store was given as data, from the
  context a callback gets (a `wasmtime_context_t*` for ours, a StoreContext
  for wasmtime-py's own trampolines). Public alternative: `Store.data()`,
  which needs the Store; a callback has only its context.
- `error` (`WasmtimeError._from_ptr`): a WasmtimeError that owns an error the
  C API returned; the public constructor takes only a message.
- `barrier` (`WasmtimeError._consume`): the one trap barrier of ptc's C
  callbacks (the host-function trampolines and the epoch callback).
- `call_func` (`component.Func._func`, `Store._context`): an export called
  with arguments already lowered. Public alternative: `Func.__call__`,
  which asks wasmtime for the function's type and rebuilds every
  parameter's converter on each call: measured ~25 us of a session cell's
  ~300 us (`run-cell`: a string and two integers), against ~3 us here.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any, cast

from wasmtime import Config, Store, StoreContext, WasmtimeError, _value
from wasmtime import _ffi as ffi
from wasmtime.component import Func, LinkerInstance

__all__ = [
    "ffi",
    "barrier",
    "call_func",
    "context_data",
    "define_func",
    "epoch_deadline_callback",
    "error",
    "set_async_stack_size",
    "set_epoch_deadline_callback",
    "store_data",
]

# A component host function, as wasmtime calls it: (env, context, type, args, nargs, results, nresults) -> error.
FUNC_CALLBACK = ffi.wasmtime_component_func_callback_t
# `wasmtime_store_epoch_deadline_callback`'s callback: (context, env, *delta, *kind) -> error.
EPOCH_DEADLINE_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
_NULL_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))
_NOOP_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda data: None)

# wasmtime keeps the callbacks' C pointers: they must live as long as the linker.
_alive: list[Any] = []


def _address(pointer: Any) -> int:
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0


def barrier(failure: Callable[[BaseException], str]) -> Callable[[Callable[..., None]], Callable[..., int]]:
    """A C callback's body as the callback: 0 when it returns, else a trap for wasmtime.

    The trap is an owned `wasmtime_error_t*`, handed to wasmtime: a
    WasmtimeError raised by the body is that error (its message), anything
    else a new one with `failure(exc)`. Nothing may unwind out of a ctypes
    callback: ctypes would print the exception and return 0, which wasmtime
    reads as success with the results never written. (wasmtime-py's own
    trampolines keep a non-WasmtimeError in a process-wide slot that another
    thread's call could pick up.) It costs one Python call with `*args`
    (~0.1 µs; ctypes passes no keywords) on a host function's fast path.
    """

    def wrap(body: Callable[..., None]) -> Callable[..., int]:
        def callback(*args: Any) -> int:
            try:
                body(*args)
                return 0
            except WasmtimeError as trap:
                return _address(trap._consume())
            except BaseException as exc:  # noqa: BLE001 - nothing may unwind into wasmtime
                return _address(WasmtimeError(failure(exc))._consume())

        return callback

    return wrap


def call_func(func: Func, store: Store, args: Any, nargs: int, results: Any = None, nresults: int = 0) -> None:
    """Call a component export with `nargs` lowered `args` (a `wasmtime_component_val_t`
    array, still the caller's to delete), its results written to `results`; a trap raises WasmtimeError.

    A host function's exception never reaches here: ptc's trampolines turn
    every one into a trap at their barrier."""
    failed = ffi.wasmtime_component_func_call(
        ctypes.byref(func._func), store._context(), args, nargs, results, nresults
    )
    if failed:
        raise error(failed)


def error(pointer: Any) -> WasmtimeError:
    """The WasmtimeError that owns `pointer`, a `wasmtime_error_t*` a C API call returned."""
    return WasmtimeError._from_ptr(pointer)


def store_data(context: Any) -> Any:
    """The Store's data object (what `Store(engine, data=...)` was given), from its `wasmtime_context_t*`."""
    # The binding is annotated as returning a pointer; its restype is c_void_p, which ctypes gives as an int.
    data = cast("int | None", ffi.wasmtime_context_get_data(context))
    return _value._unintern(data) if data else None


def context_data(context: StoreContext) -> Any:
    """The same, from the StoreContext wasmtime-py's own trampolines pass."""
    return store_data(context._context())


def set_async_stack_size(config: Config, size: int) -> None:
    """The stack async calls run on; it must be at least the config's `max_wasm_stack`."""
    ffi.wasmtime_config_async_stack_size_set(config.ptr(), size)


def define_func(
    instance: LinkerInstance,
    name: str,
    body: Callable[[Any, Any, Any, Any, int, Any, int], None],
    failure: Callable[[BaseException], str],
) -> None:
    """Define `name` as a C-API host function behind `barrier`.

    body(env, context, type, args, nargs, results, nresults) reads its
    arguments from `args` and writes its result into `results`.
    """
    callback = FUNC_CALLBACK(barrier(failure)(body))
    _alive.append(callback)
    encoded = name.encode("utf-8")
    failed = ffi.wasmtime_component_linker_instance_add_func(
        instance.ptr(), ctypes.create_string_buffer(encoded), len(encoded), callback, None, _NOOP_FINALIZER
    )
    if failed:
        raise error(failed)


def epoch_deadline_callback(ticks: Callable[[Any], int], failure: str) -> Any:
    """An epoch-deadline callback: ticks(store data) is how many more epochs the store runs, or it raises to trap.

    A WasmtimeError traps with its message, anything else with `failure`.
    Keep the callback alive as long as a store may call it.
    """

    @barrier(lambda exc: failure)
    def body(context: Any, env: Any, delta: Any, kind: Any) -> None:
        delta[0] = ticks(store_data(context))
        kind[0] = _CONTINUE

    return EPOCH_DEADLINE_CALLBACK(body)


def set_epoch_deadline_callback(store: Store, callback: Any) -> None:
    """Have wasmtime call `callback` (from `epoch_deadline_callback`) whenever the store's epoch deadline passes."""
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, _NULL_FINALIZER)
