"""The process-wide wasmtime engine, compiled guest, linker and epoch ticker.

Compiling the guest with Cranelift takes 5-20 s on 2 cores; loading a serialized
(precompiled) component takes a few ms. The precompiled artifact is cached
next to the guest component, keyed by the wasmtime version and this engine's
configuration, so only the first start on a machine pays compilation.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from wasmtime import Config, Engine, WasmtimeError
from wasmtime.component import Component, Linker

from ptc.guest.build import guest_key, guest_wasm, progress
from ptc.hostcalls.wasm import boundary
from ptc.private.wasmtime import set_async_stack_size
from ptc.spares import SparePool, pool_size
from ptc.wasm_threads import MAX_WASM_STACK

COMPILE_TIME = "5-20 s"  # measured 7, 10, 12 and 17 s on 2 cores
EPOCH_TICK = 0.01  # seconds per epoch; deadlines are this precise


def _config(fuel: bool) -> tuple[Config, str]:
    config = Config()
    config.consume_fuel = fuel
    config.epoch_interruption = True
    # Native (not linear-memory) stack for wasm frames, on threads made for it
    # (ptc.wasm_threads); wasmtime wants its async stack at least as large
    # (a smaller one aborts the process in Engine(), see ptc.private.wasmtime).
    set_async_stack_size(config, MAX_WASM_STACK + 1024 * 1024)
    config.max_wasm_stack = MAX_WASM_STACK
    config.cranelift_opt_level = "speed"
    config.parallel_compilation = True
    tag = f"wasmtime{metadata.version('wasmtime')}-{'fuel-' if fuel else ''}epoch-stack{MAX_WASM_STACK}-speed"
    return config, tag


def _load_component(engine: Engine, tag: str, wasm: Path) -> Component:
    digest = hashlib.sha256(tag.encode()).hexdigest()[:12]
    compiled = wasm.with_name(f"{wasm.stem}-{digest}.cwasm")
    if compiled.exists():
        try:
            return Component.deserialize_file(engine, str(compiled))
        except WasmtimeError:
            compiled.unlink(missing_ok=True)  # stale or corrupt: compile again
    with progress(f"compiling the guest for wasmtime ({COMPILE_TIME}, once)"):
        component = Component.from_file(engine, str(wasm))
    partial = compiled.with_suffix(f".partial{os.getpid()}")
    partial.write_bytes(component.serialize())
    os.replace(partial, compiled)
    return component


@dataclass
class Runtime:
    """Everything executions share: created once per process."""

    engine: Engine
    component: Component
    linker: Linker
    fuel: bool
    guest: str  # the guest build's key (a journal names it: replay needs the same build)
    spares: SparePool = field(init=False)

    def __post_init__(self) -> None:
        self.spares = SparePool(self, pool_size())

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK)
            self.engine.increment_epoch()


# The WASI interfaces ptc shadows (boundary.define); any other clock or randomness would reach the
# guest unrecorded, and a replay could not give it again.
_SHADOWED = {
    "monotonic_clock": "wasi:clocks/monotonic-clock@",
    "wall_clock": "wasi:clocks/wall-clock@",
    "random": "wasi:random/random@",
}


def _wasi_names(component: Component, engine: Engine) -> boundary.WasiNames:
    imports = list(component.type.imports(engine))
    found = {}
    for field_name, prefix in _SHADOWED.items():
        names = [name for name in imports if name.startswith(prefix)]
        if len(names) != 1:
            raise RuntimeError(f"the guest imports {len(names)} versions of {prefix.rstrip('@')}, not one")
        found[field_name] = names[0]
    unshadowed = [n for n in imports if n.startswith(("wasi:clocks/", "wasi:random/")) and n not in found.values()]
    if unshadowed:
        raise RuntimeError(f"the guest imports {unshadowed}: ptc cannot record or replay them")
    return boundary.WasiNames(**found)


def _create(fuel: bool) -> Runtime:
    config, tag = _config(fuel)
    engine = Engine(config)
    wasm = guest_wasm()
    component = _load_component(engine, tag, wasm)
    linker = Linker(engine)
    linker.add_wasip2()
    linker.allow_shadowing = True
    with linker.root() as root:
        boundary.define(root, _wasi_names(component, engine))
    runtime = Runtime(engine, component, linker, fuel, guest_key(wasm))
    threading.Thread(target=runtime._tick, name="ptc-epoch", daemon=True).start()
    return runtime


_lock = threading.Lock()
_runtimes: dict[bool, Runtime] = {}
_preparing: dict[bool, concurrent.futures.Future[Runtime]] = {}


def get_runtime(fuel: bool = True) -> Runtime:
    """The process-wide runtime, created (and the guest built or loaded) on first use.

    Fuel metering is compiled into the code, so executions without a fuel
    budget (`Limits(fuel=None)`) run on a second, epoch-only engine: measured
    ~17% faster on CPU-bound Python, with only the wall-clock deadline.
    """
    runtime = _runtimes.get(fuel)
    if runtime is None:
        with _lock:
            runtime = _runtimes.get(fuel)
            if runtime is None:
                runtime = _runtimes[fuel] = _create(fuel)
    return runtime


def runtime_ready(fuel: bool = True) -> bool:
    """Whether the runtime exists already (no build, compile or load left to wait for)."""
    return fuel in _runtimes


def prepare_runtime(fuel: bool = True) -> concurrent.futures.Future[Runtime]:
    """The runtime, created on a thread of its own: a future that is done when it is ready.

    For callers on an event loop (`await asyncio.wrap_future(prepare_runtime())`):
    concurrent callers share one future, so no caller's thread waits a minute on
    the build lock, and cancelling a waiter cannot cancel the creation. A
    creation that failed (say the guest build) is tried again by the next call.
    """
    with _lock:
        runtime = _runtimes.get(fuel)
        if runtime is not None:
            done: concurrent.futures.Future[Runtime] = concurrent.futures.Future()
            done.set_result(runtime)
            return done
        future = _preparing.get(fuel)
        if future is not None:
            return future
        future = _preparing[fuel] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # running: a waiter that gives up cannot cancel it

    def create() -> None:
        try:
            runtime = get_runtime(fuel)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiters
            with _lock:
                _preparing.pop(fuel, None)
            future.set_exception(exc)
            return
        with _lock:
            _preparing.pop(fuel, None)
        future.set_result(runtime)

    threading.Thread(target=create, name="ptc-runtime", daemon=True).start()
    return future


if __name__ == "__main__":  # build_guest.sh: build the guest and precompile both variants ahead of time
    print(guest_wasm())
    get_runtime(fuel=True)  # compiles and caches the .cwasm next to the component
    get_runtime(fuel=False)  # and the epoch-only variant used by Limits(fuel=None)
