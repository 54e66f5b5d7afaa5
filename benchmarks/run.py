"""Speed and memory figures for ptc, measured through the public API.

    python benchmarks/run.py           # full run (about 45 s)
    python benchmarks/run.py --quick   # smoke run (under ~20 s)

Prints a markdown table (metric | value | target | status) and writes every
figure, plus the raw samples' summaries and the environment, to
benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from ptc import ExecutionResult, Limits, ProgrammaticToolExecutor

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRIVIAL = "x = 1"
GATHER_SLEEPS = "import asyncio\nawait asyncio.gather(asyncio.sleep(0.25), asyncio.sleep(0.25), asyncio.sleep(0.25))\n"
HOLD_SECONDS = 2.0
HOLD = f"import time; time.sleep({HOLD_SECONDS})"
RSS_SAMPLE_AT = 1.0  # seconds after launching the held executions

# targets
COLD_START_MEDIAN_MS = 5.0
GATHER_WALL_S = 0.3
RSS_PER_INSTANCE_MB = 16.0


@dataclass(frozen=True)
class Settings:
    warmup: int
    latency_samples: int
    throughput_seconds: float  # per setup and round
    throughput_rounds: int
    gather_runs: int
    rss_instances: tuple[int, ...]


FULL = Settings(
    warmup=20, latency_samples=300, throughput_seconds=2.0, throughput_rounds=3, gather_runs=5, rss_instances=(20, 50)
)
QUICK = Settings(
    warmup=10, latency_samples=50, throughput_seconds=1.0, throughput_rounds=1, gather_runs=3, rss_instances=(20, 50)
)


@dataclass
class Row:
    metric: str
    value: str
    target: str
    met: bool | None  # None: no target


# -- helpers ---------------------------------------------------------------


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


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


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


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


# -- report ----------------------------------------------------------------


def rows(report: dict[str, Any]) -> list[Row]:
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


def markdown(table: list[Row]) -> str:
    lines = ["| metric | value | target | status |", "|---|---|---|---|"]
    for row in table:
        status = "—" if row.met is None else ("met" if row.met else "**not met**")
        lines.append(f"| {row.metric} | {row.value} | {row.target} | {status} |")
    return "\n".join(lines)


def environment(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "wasmtime": metadata.version("wasmtime"),
        "ptc": metadata.version("ptc"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run in well under 20 s")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"

    began = time.perf_counter()
    # Defaults except a generous timeout: nothing here should come near it.
    executor = ProgrammaticToolExecutor(limits=Limits(timeout=60))
    log("loading the runtime (first execution)")
    first_started = time.perf_counter()
    check(executor.execute_sync(TRIVIAL), "first execution")
    first_execution_s = time.perf_counter() - first_started

    log(f"cold start: {settings.warmup} warm-up + {settings.latency_samples} samples (execute, then execute_sync)")
    report: dict[str, Any] = {"environment": environment(mode), "settings": asdict(settings)}
    report["first_execution_s"] = first_execution_s
    report["cold_start"] = cold_start(executor, settings)
    report["throughput"] = throughput(executor, settings)
    log(f"gather of three 0.25 s sleeps: {settings.gather_runs} runs")
    report["gather_sleeps"] = gather_sleeps(executor, settings)
    report["rss"] = rss_per_instance(executor, settings)
    report["total_seconds"] = time.perf_counter() - began

    table = rows(report)
    report["table"] = [asdict(row) for row in table]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(markdown(table))
    print(f"\n{mode} run, {report['total_seconds']:.1f} s; JSON written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
