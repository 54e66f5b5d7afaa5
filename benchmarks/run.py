"""Speed and memory figures for ptc, measured through the public API.

    python benchmarks/run.py                # full run (about 80 s: sandbox ~45 s, tools ~35 s)
    python benchmarks/run.py --quick        # smoke run (under ~25 s)
    python benchmarks/run.py --only tools   # one section: sandbox, tools, mcp or all (default)

Prints a markdown table (metric | value | target | status) and writes every
figure, plus the raw samples' summaries and the environment, to
benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import machine, percentile, rss_bytes
from ptc import ExecutionResult, Limits, ProgrammaticToolExecutor, ToolCatalog
from ptc.examples import budget

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRIVIAL = "x = 1"
GATHER_SLEEPS = "import asyncio\nawait asyncio.gather(asyncio.sleep(0.25), asyncio.sleep(0.25), asyncio.sleep(0.25))\n"
HOLD_SECONDS = 2.0
HOLD = f"import time; time.sleep({HOLD_SECONDS})"
RSS_SAMPLE_AT = 1.0  # seconds after launching the held executions

EMPTY = ""
NAP_SECONDS = 0.05
NAP_CALLS = 100
TOOL_LIMITS = Limits(max_tool_calls=20_000, timeout=120)

# targets
COLD_START_MEDIAN_MS = 5.0
GATHER_WALL_S = 0.3
RSS_PER_INSTANCE_MB = 16.0
ROUND_TRIP_US = 30.0
NAP_GATHER_WALL_MS = 80.0


@dataclass(frozen=True)
class Settings:
    warmup: int
    latency_samples: int
    throughput_seconds: float  # per setup and round
    throughput_rounds: int
    gather_runs: int
    rss_instances: tuple[int, ...]
    # tools section
    empty_samples: int  # cold starts of the empty program, the baseline for "net" per-call figures
    sequential_calls: int  # awaited one after another in one program
    sequential_runs: int
    gathered_calls: int  # under one asyncio.gather in one program
    gathered_runs: int
    nap_runs: int
    walkthrough_runs: int


FULL = Settings(
    warmup=20,
    latency_samples=300,
    throughput_seconds=2.0,
    throughput_rounds=3,
    gather_runs=5,
    rss_instances=(20, 50),
    empty_samples=50,
    sequential_calls=10_000,
    sequential_runs=3,
    gathered_calls=1_000,
    gathered_runs=5,
    nap_runs=5,
    walkthrough_runs=3,
)
QUICK = Settings(
    warmup=10,
    latency_samples=50,
    throughput_seconds=1.0,
    throughput_rounds=1,
    gather_runs=3,
    rss_instances=(20, 50),
    empty_samples=20,
    sequential_calls=2_000,
    sequential_runs=1,
    gathered_calls=1_000,
    gathered_runs=3,
    nap_runs=3,
    walkthrough_runs=1,
)


@dataclass
class Row:
    metric: str
    value: str
    target: str
    met: bool | None  # None: no target


# -- helpers ---------------------------------------------------------------


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """Seconds in, a millisecond summary out."""
    ms = [s * 1000 for s in samples]
    return {
        "n": len(ms),
        "median_ms": statistics.median(ms),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "mean_ms": statistics.fmean(ms),
    }


def check(result: ExecutionResult, what: str) -> None:
    if result.error is not None:
        raise RuntimeError(f"{what} failed: {result.error.kind}: {result.error.message}")


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


# -- 1. cold start ---------------------------------------------------------


async def _latency_async(executor: ProgrammaticToolExecutor, samples: int) -> tuple[list[float], list[float]]:
    walls: list[float] = []
    internal: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        result = await executor.execute(TRIVIAL)
        walls.append(time.perf_counter() - started)
        check(result, "cold start")
        internal.append(result.execution_time)
    return walls, internal


def cold_start(executor: ProgrammaticToolExecutor, settings: Settings) -> dict[str, Any]:
    rss_after_warmup = 0

    async def warm_then_measure() -> tuple[list[float], list[float]]:
        nonlocal rss_after_warmup
        await _latency_async(executor, settings.warmup)
        gc.collect()
        rss_after_warmup = rss_bytes()
        return await _latency_async(executor, settings.latency_samples)

    walls, internal = asyncio.run(warm_then_measure())

    sync_walls: list[float] = []
    for _ in range(settings.latency_samples):
        started = time.perf_counter()
        result = executor.execute_sync(TRIVIAL)
        sync_walls.append(time.perf_counter() - started)
        check(result, "cold start (sync)")

    return {
        "rss_after_warmup_mb": rss_after_warmup / 2**20,
        "execute": summarize_ms(walls),
        "execute_internal_execution_time": summarize_ms(internal),
        "execute_sync": summarize_ms(sync_walls),
    }


# -- 2. throughput ---------------------------------------------------------


def _serial_sync(executor: ProgrammaticToolExecutor, deadline: float) -> int:
    count = 0
    while time.perf_counter() < deadline:
        check(executor.execute_sync(TRIVIAL), "throughput")
        count += 1
    return count


def _serial_loop(executor: ProgrammaticToolExecutor, deadline: float) -> int:
    async def body() -> int:
        count = 0
        while time.perf_counter() < deadline:
            check(await executor.execute(TRIVIAL), "throughput")
            count += 1
        return count

    return asyncio.run(body())


def _batched_loop(executor: ProgrammaticToolExecutor, deadline: float, batch: int) -> int:
    async def body() -> int:
        count = 0
        while time.perf_counter() < deadline:
            results = await asyncio.gather(*(executor.execute(TRIVIAL) for _ in range(batch)))
            for result in results:
                check(result, "throughput")
            count += batch
        return count

    return asyncio.run(body())


def _per_second(workers: Sequence[Callable[[float], int]], seconds: float) -> dict[str, float]:
    """Run each worker on its own thread until the deadline; executions per second overall."""
    counts = [0] * len(workers)
    errors: list[BaseException] = []

    def target(index: int, deadline: float) -> None:
        try:
            counts[index] = workers[index](deadline)
        except BaseException as exc:  # reported on the main thread
            errors.append(exc)

    started = time.perf_counter()
    deadline = started + seconds
    threads = [threading.Thread(target=target, args=(i, deadline)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    total = sum(counts)
    return {"executions": total, "seconds": elapsed, "per_second": total / elapsed}


def throughput(executor: ProgrammaticToolExecutor, settings: Settings) -> dict[str, Any]:
    seconds = settings.throughput_seconds

    def batched(batch: int) -> Callable[[float], int]:
        return lambda deadline: _batched_loop(executor, deadline, batch)

    def serial_loop(deadline: float) -> int:
        return _serial_loop(executor, deadline)

    def serial_sync(deadline: float) -> int:
        return _serial_sync(executor, deadline)

    plans: dict[str, Sequence[Callable[[float], int]]] = {
        "serial_one_loop": [serial_loop],
        "serial_execute_sync": [serial_sync],
        "two_threads_execute_sync": [serial_sync, serial_sync],
        "two_threads_own_loops": [serial_loop, serial_loop],
        "gather_batches_of_2": [batched(2)],
        "gather_batches_of_4": [batched(4)],
    }
    # Round-robin over the setups, so slow drift on the machine does not
    # favour whichever setup happens to run first.
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in plans}
    for round_ in range(settings.throughput_rounds):
        for name, workers in plans.items():
            log(f"throughput round {round_ + 1}/{settings.throughput_rounds}: {name}")
            runs[name].append(_per_second(workers, seconds))
    figures: dict[str, Any] = {}
    for name, measured in runs.items():
        executions = sum(run["executions"] for run in measured)
        elapsed = sum(run["seconds"] for run in measured)
        figures[name] = {
            "executions": executions,
            "seconds": elapsed,
            "per_second": executions / elapsed,
            "per_round": [run["per_second"] for run in measured],
        }
    return figures


# -- 3. asyncio.gather of three sleeps --------------------------------------


def gather_sleeps(executor: ProgrammaticToolExecutor, settings: Settings) -> dict[str, Any]:
    walls: list[float] = []
    internal: list[float] = []
    for _ in range(settings.gather_runs):
        started = time.perf_counter()
        result = executor.execute_sync(GATHER_SLEEPS)
        walls.append(time.perf_counter() - started)
        check(result, "gather of sleeps")
        internal.append(result.execution_time)
    return {
        "runs": len(walls),
        "median_s": statistics.median(walls),
        "max_s": max(walls),
        "walls_s": walls,
        "internal_median_s": statistics.median(internal),
    }


# -- 4. RSS per live instance ----------------------------------------------


async def _hold(executor: ProgrammaticToolExecutor, instances: int) -> tuple[int, int, list[ExecutionResult]]:
    gc.collect()
    before = rss_bytes()
    launched = time.perf_counter()
    tasks = [asyncio.ensure_future(executor.execute(HOLD)) for _ in range(instances)]
    await asyncio.sleep(RSS_SAMPLE_AT)
    during = rss_bytes()
    sampled_at = time.perf_counter() - launched
    if any(task.done() for task in tasks) or sampled_at >= HOLD_SECONDS:
        raise RuntimeError(f"RSS sampled at {sampled_at:.2f} s, when not every instance was still live")
    results = list(await asyncio.gather(*tasks))
    return before, during, results


def rss_per_instance(executor: ProgrammaticToolExecutor, settings: Settings) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for instances in settings.rss_instances:
        log(f"rss: {instances} live instances")
        before, during, results = asyncio.run(_hold(executor, instances))
        for result in results:
            check(result, "held execution")
        slowest = max(result.execution_time for result in results)
        figures[str(instances)] = {
            "instances": instances,
            "rss_before_mb": before / 2**20,
            "rss_during_mb": during / 2**20,
            "per_instance_mb": (during - before) / instances / 2**20,
            "slowest_execution_s": slowest,
        }
    return figures


# -- 5. tools: host-call round trips ----------------------------------------


def bench_catalog() -> ToolCatalog:
    """Trivial tools in domain "bench": the cost measured is the boundary, not the work."""
    catalog = ToolCatalog(source="benchmarks")

    @catalog.tool(domain="bench")
    async def noop(x: int) -> int:
        """Return x (async)."""
        return x

    @catalog.tool(domain="bench")
    def noop_sync(x: int) -> int:
        """Return x (sync; runs in the router's thread pool)."""
        return x

    @catalog.tool(domain="bench")
    async def nap(x: int) -> int:
        """Sleep 50 ms, then return x."""
        await asyncio.sleep(NAP_SECONDS)
        return x

    return catalog


def sequential_program(tool: str, calls: int) -> str:
    return (
        f"from tools.bench import {tool}\ntotal = 0\nfor i in range({calls}):\n    total += await {tool}(x=i)\ntotal\n"
    )


def gathered_program(tool: str, calls: int) -> str:
    return (
        f"import asyncio\n"
        f"from tools.bench import {tool}\n"
        f"values = await asyncio.gather(*({tool}(x=i) for i in range({calls})))\n"
        f"sum(values)\n"
    )


@dataclass
class Timed:
    wall: float  # seconds around `await executor.execute(...)`
    result: ExecutionResult


async def _timed(executor: ProgrammaticToolExecutor, code: str, what: str) -> Timed:
    started = time.perf_counter()
    result = await executor.execute(code)
    wall = time.perf_counter() - started
    check(result, what)
    return Timed(wall, result)


async def _program_runs(
    executor: ProgrammaticToolExecutor, code: str, runs: int, calls: int, expected: int, what: str
) -> list[Timed]:
    timed: list[Timed] = []
    for run in range(runs):
        log(f"{what}: run {run + 1}/{runs}")
        one = await _timed(executor, code, what)
        if len(one.result.tool_calls) != calls or one.result.result != expected:
            raise RuntimeError(
                f"{what}: {len(one.result.tool_calls)} calls and value {one.result.result!r}, "
                f"expected {calls} and {expected}"
            )
        timed.append(one)
    return timed


def _per_call(timed: Sequence[Timed], calls: int, empty_s: float) -> dict[str, Any]:
    """Per-call figures from the median run; net subtracts the empty program's cold start."""
    walls = [one.wall for one in timed]
    wall = statistics.median(walls)
    handler = [call.duration or 0.0 for one in timed for call in one.result.tool_calls]
    fuel = [one.result.fuel_used for one in timed if one.result.fuel_used is not None]
    return {
        "calls": calls,
        "runs": len(walls),
        "walls_s": walls,
        "median_wall_s": wall,
        "internal_median_s": statistics.median(one.result.execution_time for one in timed),
        "us_per_call": wall / calls * 1e6,
        "net_us_per_call": (wall - empty_s) / calls * 1e6,
        "handler_mean_us": statistics.fmean(handler) * 1e6 if handler else None,
        "fuel_per_call": statistics.median(fuel) / calls if fuel else None,
    }


async def _tools_async(settings: Settings) -> dict[str, Any]:
    executor = ProgrammaticToolExecutor(bench_catalog(), limits=TOOL_LIMITS)
    figures: dict[str, Any] = {"limits": TOOL_LIMITS.model_dump()}

    # Warm-up: the first execution and the first stub import on this executor.
    for _ in range(settings.warmup):
        await _timed(executor, EMPTY, "empty program (warm-up)")
    await _timed(executor, sequential_program("noop", 10), "tool warm-up")
    await _timed(executor, sequential_program("noop_sync", 10), "tool warm-up")

    log(f"empty program: {settings.empty_samples} cold starts")
    empty = [(await _timed(executor, EMPTY, "empty program")).wall for _ in range(settings.empty_samples)]
    empty_s = statistics.median(empty)
    figures["empty_program"] = summarize_ms(empty)

    calls = settings.sequential_calls
    expected = calls * (calls - 1) // 2
    for key, tool in (("sequential_async", "noop"), ("sequential_sync", "noop_sync")):
        code = sequential_program(tool, calls)
        timed = await _program_runs(executor, code, settings.sequential_runs, calls, expected, f"{calls} × {tool}")
        figures[key] = {"tool": tool, **_per_call(timed, calls, empty_s)}

    calls = settings.gathered_calls
    expected = calls * (calls - 1) // 2
    code = gathered_program("noop", calls)
    timed = await _program_runs(executor, code, settings.gathered_runs, calls, expected, f"gather of {calls} × noop")
    figures["gathered_async"] = {"tool": "noop", **_per_call(timed, calls, empty_s)}

    code = gathered_program("nap", NAP_CALLS)
    expected = NAP_CALLS * (NAP_CALLS - 1) // 2
    timed = await _program_runs(executor, code, settings.nap_runs, NAP_CALLS, expected, f"gather of {NAP_CALLS} × nap")
    walls = [one.wall for one in timed]
    figures["gathered_naps"] = {
        "calls": NAP_CALLS,
        "nap_s": NAP_SECONDS,
        "runs": len(walls),
        "walls_s": walls,
        "median_wall_s": statistics.median(walls),
        "max_wall_s": max(walls),
        "internal_median_s": statistics.median(one.result.execution_time for one in timed),
    }

    walkthrough = ProgrammaticToolExecutor(budget.catalog, limits=Limits(timeout=60))
    runs: dict[str, list[Timed]] = {"sequential": [], "gather": []}
    for run in range(settings.walkthrough_runs):
        for label, program in (("sequential", budget.SEQUENTIAL), ("gather", budget.GATHER)):
            log(f"walkthrough {label}: run {run + 1}/{settings.walkthrough_runs}")
            runs[label].append(await _timed(walkthrough, program, f"walkthrough {label}"))
    values = {repr(one.result.result) for timed in runs.values() for one in timed}
    if len(values) != 1:
        raise RuntimeError(f"walkthrough: the programs disagree: {sorted(values)}")
    walk: dict[str, Any] = {"latency_s": budget.LATENCY, "runs": settings.walkthrough_runs}
    for label, timed in runs.items():
        walk[label] = {
            "calls": len(timed[0].result.tool_calls),
            "walls_s": [one.wall for one in timed],
            "median_wall_s": statistics.median(one.wall for one in timed),
            "internal_median_s": statistics.median(one.result.execution_time for one in timed),
        }
    walk["speedup"] = walk["sequential"]["median_wall_s"] / walk["gather"]["median_wall_s"]
    figures["walkthrough"] = walk
    return figures


def tools(settings: Settings) -> dict[str, Any]:
    return asyncio.run(_tools_async(settings))


# -- report ----------------------------------------------------------------


def sandbox_rows(report: dict[str, Any]) -> list[Row]:
    cold = report["cold_start"]
    tput = report["throughput"]
    gather = report["gather_sleeps"]
    rss = report["rss"]
    median = cold["execute"]["median_ms"]
    out = [
        Row(
            "cold start `x = 1`, `await execute` median",
            f"{median:.2f} ms",
            f"≤ {COLD_START_MEDIAN_MS:g} ms",
            median <= COLD_START_MEDIAN_MS,
        ),
        Row("cold start `x = 1`, `await execute` p90", f"{cold['execute']['p90_ms']:.2f} ms", "—", None),
        Row(
            "cold start `x = 1`, `execute_sync` median (info)", f"{cold['execute_sync']['median_ms']:.2f} ms", "—", None
        ),
        Row("cold start `x = 1`, `execute_sync` p90 (info)", f"{cold['execute_sync']['p90_ms']:.2f} ms", "—", None),
    ]
    labels = {
        "serial_one_loop": "executions/s, serial (one loop)",
        "serial_execute_sync": "executions/s, serial `execute_sync`",
        "two_threads_execute_sync": "executions/s, 2 threads × `execute_sync`",
        "two_threads_own_loops": "executions/s, 2 threads × own event loop",
        "gather_batches_of_2": "executions/s, one loop, `gather` batches of 2",
        "gather_batches_of_4": "executions/s, one loop, `gather` batches of 4",
    }
    for key, label in labels.items():
        figures = tput[key]
        value = f"{figures['per_second']:.0f}"
        if len(figures["per_round"]) > 1:
            value += " (rounds: " + ", ".join(f"{rate:.0f}" for rate in figures["per_round"]) + ")"
        out.append(Row(label, value, "—", None))
    wall = gather["median_s"]
    out.append(
        Row(
            f"3 × `asyncio.sleep(0.25)` under `gather`, wall (median of {gather['runs']})",
            f"{wall:.3f} s",
            f"≤ {GATHER_WALL_S:g} s",
            wall <= GATHER_WALL_S,
        )
    )
    out.append(Row("RSS baseline after warm-up", f"{cold['rss_after_warmup_mb']:.1f} MB", "—", None))
    for figures in rss.values():
        out.append(
            Row(
                f"RSS before / while holding N = {figures['instances']}",
                f"{figures['rss_before_mb']:.1f} / {figures['rss_during_mb']:.1f} MB",
                "—",
                None,
            )
        )
        per = figures["per_instance_mb"]
        out.append(
            Row(
                f"RSS per live instance, N = {figures['instances']}",
                f"{per:.2f} MB",
                f"≤ {RSS_PER_INSTANCE_MB:g} MB",
                per <= RSS_PER_INSTANCE_MB,
            )
        )
    return out


def tool_rows(report: dict[str, Any]) -> list[Row]:
    figures = report["tools"]
    empty_ms = figures["empty_program"]["median_ms"]
    out = [Row("tools: empty program cold start, median (baseline for net)", f"{empty_ms:.2f} ms", "—", None)]
    for key, kind in (("sequential_async", "async"), ("sequential_sync", "sync")):
        seq = figures[key]
        runs = f"median of {seq['runs']}" if seq["runs"] > 1 else "1 run"
        label = f"host-call round trip, {kind} `{seq['tool']}`, {seq['calls']:,} sequential calls"
        gross, net = seq["us_per_call"], seq["net_us_per_call"]
        out.append(
            Row(
                f"{label}: µs per call",
                f"{gross:.1f} µs (wall {seq['median_wall_s']:.3f} s, {runs})",
                f"≤ {ROUND_TRIP_US:g} µs",
                gross <= ROUND_TRIP_US,
            )
        )
        out.append(
            Row(
                f"{label}: µs per call, net of empty-program cold start",
                f"{net:.1f} µs",
                f"≤ {ROUND_TRIP_US:g} µs",
                net <= ROUND_TRIP_US,
            )
        )
    gathered = figures["gathered_async"]
    out.append(
        Row(
            f"{gathered['calls']:,} × `noop` under one `gather`: wall (median of {gathered['runs']}) / µs per call",
            f"{gathered['median_wall_s'] * 1000:.1f} ms / {gathered['us_per_call']:.1f} µs "
            f"(net {gathered['net_us_per_call']:.1f} µs)",
            "—",
            None,
        )
    )
    naps = figures["gathered_naps"]
    wall_ms = naps["median_wall_s"] * 1000
    out.append(
        Row(
            f"{naps['calls']} concurrent {naps['nap_s'] * 1000:.0f} ms calls under one `gather`, wall "
            f"(median of {naps['runs']})",
            f"{wall_ms:.2f} ms",
            f"≤ {NAP_GATHER_WALL_MS:g} ms",
            wall_ms <= NAP_GATHER_WALL_MS,
        )
    )
    walk = figures["walkthrough"]
    runs = f"median of {walk['runs']}" if walk["runs"] > 1 else "1 run"
    for label in ("sequential", "gather"):
        out.append(
            Row(
                f"walkthrough `budget.{label.upper()}` ({walk[label]['calls']} calls × "
                f"{walk['latency_s'] * 1000:.0f} ms), wall ({runs})",
                f"{walk[label]['median_wall_s']:.3f} s",
                "—",
                None,
            )
        )
    out.append(Row("walkthrough speedup, sequential / gather", f"{walk['speedup']:.2f}×", "—", None))
    return out


def mcp_rows(report: dict[str, Any]) -> list[Row]:
    figures = report["mcp"]
    direct, ptc = figures["direct"], figures["ptc"]
    return [
        Row(
            f"MCP `echo` round trip, {figures['calls']:,} sequential calls: direct SDK client, µs per call",
            f"{direct['us_per_call']:.0f} µs",
            "—",
            None,
        ),
        Row(
            "MCP `echo` round trip through the sandbox (net of an empty program), µs per call",
            f"{ptc['us_per_call']:.0f} µs",
            "—",
            None,
        ),
        Row("MCP: what ptc adds per call", f"{figures['overhead_us_per_call']:.0f} µs", "—", None),
        Row(
            f"{figures['concurrent']} concurrent {figures['nap_ms']} ms MCP calls: direct SDK `gather` / "
            "sandbox program `gather`, wall",
            f"{direct['concurrent_wall_ms']:.1f} ms / {ptc['concurrent_wall_ms']:.1f} ms",
            "—",
            None,
        ),
    ]


def rows(report: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    if "cold_start" in report:
        out += sandbox_rows(report)
    if "tools" in report:
        out += tool_rows(report)
    if "mcp" in report:
        out += mcp_rows(report)
    return out


def markdown(table: list[Row]) -> str:
    lines = ["| metric | value | target | status |", "|---|---|---|---|"]
    for row in table:
        status = "—" if row.met is None else ("met" if row.met else "**not met**")
        lines.append(f"| {row.metric} | {row.value} | {row.target} | {status} |")
    return "\n".join(lines)


def environment(mode: str, only: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "only": only,
        **machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run in under ~25 s")
    parser.add_argument(
        "--only", choices=("sandbox", "tools", "mcp", "all"), default="all", help="run one section (default: all)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"

    began = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(mode, args.only), "settings": asdict(settings)}
    # Defaults except a generous timeout: nothing here should come near it.
    executor = ProgrammaticToolExecutor(limits=Limits(timeout=60))
    log("loading the runtime (first execution)")
    first_started = time.perf_counter()
    check(executor.execute_sync(TRIVIAL), "first execution")
    report["first_execution_s"] = time.perf_counter() - first_started

    if args.only in ("sandbox", "all"):
        log(f"cold start: {settings.warmup} warm-up + {settings.latency_samples} samples (execute, then execute_sync)")
        report["cold_start"] = cold_start(executor, settings)
        report["throughput"] = throughput(executor, settings)
        log(f"gather of three 0.25 s sleeps: {settings.gather_runs} runs")
        report["gather_sleeps"] = gather_sleeps(executor, settings)
        report["rss"] = rss_per_instance(executor, settings)
    if args.only in ("tools", "all"):
        report["tools"] = tools(settings)
    if args.only in ("mcp", "all"):
        from mcp_section import measure

        log("MCP: direct SDK client vs through the sandbox")
        report["mcp"] = asyncio.run(measure(args.quick))
    report["total_seconds"] = time.perf_counter() - began

    table = rows(report)
    report["table"] = [asdict(row) for row in table]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(markdown(table))
    print(f"\n{mode} run ({args.only}), {report['total_seconds']:.1f} s; JSON written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
