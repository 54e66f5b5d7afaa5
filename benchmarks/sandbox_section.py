"""Sandbox section: cold start (with and without spare instances), a gather of sleeps, memory.

Spare instances (PTC_SPARE_INSTANCES, default 2) are read once per process, so
the figures without them come from a child process of this script run with
PTC_SPARE_INSTANCES=0 (`python sandbox_section.py --cold-start-child JSON`),
which prints its samples as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import Row, check, info, log, read_rss, rss_bytes, summarize_ms

from ptc import ExecutionResult, Limits, ProgrammaticToolExecutor, Quota

TRIVIAL = "x = 1"
LIMITS = Limits(timeout=60)  # defaults except a generous timeout: nothing here should come near it
GATHER_SLEEPS = "import asyncio\nawait asyncio.gather(asyncio.sleep(0.25), asyncio.sleep(0.25), asyncio.sleep(0.25))\n"
HOLD_SECONDS = 2.0
HOLD = f"import time; time.sleep({HOLD_SECONDS})"
RSS_SAMPLE_AT = 1.0  # seconds after launching the held executions
CHILD_MARK = "COLD-START-JSON "

# targets
COLD_START_MS = 1.0  # a fresh instance per execution
COLD_START_SPARE_MS = 0.3  # an execution that finds a spare instance ready
GATHER_WALL_S = 0.3
RSS_PER_INSTANCE_MB = 10.0
RSS_GROWTH_PCT = 10.0

# A mixed but cheap workload for the RSS-over-time figure: (program, ends ok, weight). The tool
# program costs ~5x `x = 1` (its stub import) and the raise ~3x (the traceback), so they come
# once in a cycle of 16: about 3.5 ms an execution on average.
MIXED_WEIGHTS: tuple[tuple[str, bool, int], ...] = (
    (TRIVIAL, True, 8),
    ("sum(i * i for i in range(500))", True, 2),
    ("import json\njson.dumps({'a': [1, 2, 3], 'b': 'x' * 100})", True, 2),
    ("print('hello ' * 20)", True, 1),
    ("len({'k%d' % i: [i] * 3 for i in range(200)})", True, 1),
    ("raise ValueError('expected')", False, 1),
    ("from tools.bench import noop\n(await noop(x=1)) + (await noop(x=2)) + (await noop(x=3))", True, 1),
)
MIXED = tuple((code, ok) for code, ok, weight in MIXED_WEIGHTS for _ in range(weight))


@dataclass(frozen=True)
class SandboxSettings:
    warmup: int
    latency_samples: int  # per setup
    spaced_gap_s: float  # idle time between spaced executions: long enough to refill the spares
    gather_runs: int
    rss_instances: tuple[int, ...]
    growth_warmup: int
    growth_checkpoints: tuple[int, int]  # executions after warm-up at which RSS is read


FULL = SandboxSettings(
    warmup=20,
    latency_samples=300,
    spaced_gap_s=0.01,
    gather_runs=5,
    rss_instances=(20, 50),
    growth_warmup=100,
    growth_checkpoints=(500, 5_000),
)
QUICK = SandboxSettings(
    warmup=10,
    latency_samples=50,
    spaced_gap_s=0.01,
    gather_runs=3,
    rss_instances=(20,),
    growth_warmup=50,
    growth_checkpoints=(150, 600),
)


# -- cold start -------------------------------------------------------------------


async def _latencies(executor: ProgrammaticToolExecutor, samples: int, gap_s: float) -> list[float]:
    """Wall of `await execute("x = 1")`; gap_s > 0 idles between executions (spaced), 0 is back-to-back."""
    walls: list[float] = []
    for _ in range(samples):
        if gap_s:
            await asyncio.sleep(gap_s)
        started = time.perf_counter()
        result = await executor.execute(TRIVIAL)
        walls.append(time.perf_counter() - started)
        check(result, "cold start")
    return walls


async def cold_start_pair(warmup: int, samples: int, gap_s: float) -> dict[str, Any]:
    """Back-to-back and spaced cold starts on one warm executor, in one running loop."""
    executor = ProgrammaticToolExecutor(limits=LIMITS)
    await _latencies(executor, warmup, 0)
    back_to_back = await _latencies(executor, samples, 0)
    spaced = await _latencies(executor, samples, gap_s)
    return {
        "spare_instances": os.environ.get("PTC_SPARE_INSTANCES", "default (2)"),
        "back_to_back": summarize_ms(back_to_back),
        "spaced": {"gap_ms": gap_s * 1000, **summarize_ms(spaced)},
    }


def _execute_sync_latency(samples: int) -> dict[str, float]:
    """The same through `execute_sync` (one asyncio.run per call), for information."""
    executor = ProgrammaticToolExecutor(limits=LIMITS)
    walls: list[float] = []
    for _ in range(samples):
        started = time.perf_counter()
        result = executor.execute_sync(TRIVIAL)
        walls.append(time.perf_counter() - started)
        check(result, "cold start (sync)")
    return summarize_ms(walls)


def _without_spares(settings: SandboxSettings) -> dict[str, Any]:
    """cold_start_pair in a child process with PTC_SPARE_INSTANCES=0."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--cold-start-child", json.dumps(asdict(settings))]
    env = {**os.environ, "PTC_SPARE_INSTANCES": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(CHILD_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"cold-start child exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return json.loads(lines[-1][len(CHILD_MARK) :])


def cold_start(settings: SandboxSettings) -> dict[str, Any]:
    samples = settings.latency_samples
    log(f"cold start, spares on: {settings.warmup} warm-up + {samples} back-to-back + {samples} spaced")
    figures = {"spares_on": asyncio.run(cold_start_pair(settings.warmup, samples, settings.spaced_gap_s))}
    gc.collect()
    figures["rss_after_warmup_mb"] = rss_bytes() / 2**20
    log(f"cold start, execute_sync: {samples}")
    figures["execute_sync"] = _execute_sync_latency(samples)
    log("cold start, spares off (child process, PTC_SPARE_INSTANCES=0)")
    figures["spares_off"] = _without_spares(settings)
    return figures


# -- asyncio.gather of three sleeps ------------------------------------------------


def gather_sleeps(executor: ProgrammaticToolExecutor, settings: SandboxSettings) -> dict[str, Any]:
    log(f"gather of three 0.25 s sleeps: {settings.gather_runs} runs")
    walls: list[float] = []
    for _ in range(settings.gather_runs):
        started = time.perf_counter()
        check(executor.execute_sync(GATHER_SLEEPS), "gather of sleeps")
        walls.append(time.perf_counter() - started)
    return {"runs": len(walls), "median_s": statistics.median(walls), "max_s": max(walls), "walls_s": walls}


# -- RSS per live instance -----------------------------------------------------------


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


def rss_per_instance(executor: ProgrammaticToolExecutor, settings: SandboxSettings) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for instances in settings.rss_instances:
        log(f"rss: {instances} live instances")
        before, during, results = asyncio.run(_hold(executor, instances))
        for result in results:
            check(result, "held execution")
        figures[str(instances)] = {
            "instances": instances,
            "rss_before_mb": before / 2**20,
            "rss_during_mb": during / 2**20,
            "per_instance_mb": (during - before) / instances / 2**20,
            "slowest_execution_s": max(result.execution_time for result in results),
        }
    return figures


# -- RSS over many executions ----------------------------------------------------------


async def _run_mixed(executor: ProgrammaticToolExecutor, start: int, count: int) -> None:
    for i in range(start, start + count):
        code, ok = MIXED[i % len(MIXED)]
        result = await executor.execute(code)
        if result.ok != ok:
            raise RuntimeError(f"mixed workload: {code!r} ended ok={result.ok} ({result.error}), expected ok={ok}")


async def _rss_growth(settings: SandboxSettings) -> dict[str, Any]:
    from tools_section import bench_catalog

    executor = ProgrammaticToolExecutor(bench_catalog(), limits=LIMITS)
    await _run_mixed(executor, 0, settings.growth_warmup)
    readings = [await read_rss(0)]
    done = 0
    started = time.perf_counter()
    for checkpoint in settings.growth_checkpoints:
        log(f"rss growth: executions {done:,} to {checkpoint:,}")
        await _run_mixed(executor, done, checkpoint - done)
        done = checkpoint
        readings.append(await read_rss(done))
    low, high = readings[1], readings[2]
    return {
        "programs": [{"code": code, "ok": ok, "weight": weight} for code, ok, weight in MIXED_WEIGHTS],
        "warmup": settings.growth_warmup,
        "seconds": time.perf_counter() - started,
        "readings": [asdict(reading) for reading in readings],
        "growth_pct": (high.mb - low.mb) / low.mb * 100,
    }


def rss_growth(settings: SandboxSettings) -> dict[str, Any]:
    """VmRSS (settled) after N and after M executions of MIXED, serially in one loop: flat means no leak."""
    return asyncio.run(_rss_growth(settings))


# -- the section --------------------------------------------------------------------------


def measure(quick: bool) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    figures: dict[str, Any] = {"settings": asdict(settings), "cold_start": cold_start(settings)}
    # Its own tenant with room for every held instance at once (the default Quota runs 8).
    executor = ProgrammaticToolExecutor(
        limits=LIMITS, tenant_id="bench-sandbox", quota=Quota(max_concurrent=max(settings.rss_instances), max_queued=0)
    )
    check(executor.execute_sync(TRIVIAL), "warm-up")
    figures["gather_sleeps"] = gather_sleeps(executor, settings)
    figures["rss_per_instance"] = rss_per_instance(executor, settings)
    figures["rss_growth"] = rss_growth(settings)
    return figures


def _latency_row(label: str, summary: dict[str, float], target_ms: float | None) -> Row:
    median = summary["median_ms"]
    return Row(
        f"cold start `x = 1`, {label}: median (p90)",
        f"{median:.2f} ms ({summary['p90_ms']:.2f} ms)",
        "—" if target_ms is None else f"≤ {target_ms:g} ms",
        None if target_ms is None else median <= target_ms,
    )


def _cold_rows(cold: dict[str, Any]) -> list[Row]:
    on, off = cold["spares_on"], cold["spares_off"]
    gap = f"{on['spaced']['gap_ms']:g} ms apart"
    return [
        _latency_row(
            "`await execute`, no spares (`PTC_SPARE_INSTANCES=0`), back-to-back", off["back_to_back"], COLD_START_MS
        ),
        _latency_row(f"`await execute`, no spares, spaced {gap}", off["spaced"], COLD_START_MS),
        _latency_row("`await execute`, 2 spares (default), back-to-back", on["back_to_back"], COLD_START_MS),
        _latency_row(f"`await execute`, 2 spares (default), spaced {gap}", on["spaced"], COLD_START_SPARE_MS),
        _latency_row("`execute_sync` (one `asyncio.run` each), 2 spares, back-to-back", cold["execute_sync"], None),
    ]


def _rss_rows(figures: dict[str, Any]) -> list[Row]:
    out = [info("RSS baseline after cold-start warm-up", f"{figures['cold_start']['rss_after_warmup_mb']:.1f} MB")]
    for held in figures["rss_per_instance"].values():
        per = held["per_instance_mb"]
        out.append(
            Row(
                f"RSS per live instance, N = {held['instances']} (before / while holding: "
                f"{held['rss_before_mb']:.0f} / {held['rss_during_mb']:.0f} MB)",
                f"{per:.2f} MB",
                f"≤ {RSS_PER_INSTANCE_MB:g} MB",
                per <= RSS_PER_INSTANCE_MB,
            )
        )
    growth = figures["rss_growth"]
    low, high = growth["readings"][1], growth["readings"][2]
    out.append(
        Row(
            f"RSS after {low['executions']:,} / {high['executions']:,} executions of a mixed cheap workload "
            "(settled), growth",
            f"{low['settled_mb']:.1f} / {high['settled_mb']:.1f} MB, {growth['growth_pct']:+.1f} %",
            f"flat (≤ {RSS_GROWTH_PCT:g} %)",
            growth["growth_pct"] <= RSS_GROWTH_PCT,
        )
    )
    return out


def rows(figures: dict[str, Any]) -> list[Row]:
    gather = figures["gather_sleeps"]
    wall = gather["median_s"]
    return [
        *_cold_rows(figures["cold_start"]),
        Row(
            f"3 × `asyncio.sleep(0.25)` under `gather`, wall (median of {gather['runs']})",
            f"{wall:.3f} s",
            f"≤ {GATHER_WALL_S:g} s",
            wall <= GATHER_WALL_S,
        ),
        *_rss_rows(figures),
    ]


def _child(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(description="cold-start samples in this process, as JSON on stdout")
    parser.add_argument("--cold-start-child", required=True, help="SandboxSettings as JSON")
    settings = json.loads(parser.parse_args(argv).cold_start_child)
    figures = asyncio.run(cold_start_pair(settings["warmup"], settings["latency_samples"], settings["spaced_gap_s"]))
    print(CHILD_MARK + json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
