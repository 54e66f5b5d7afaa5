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
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import (
    Clock,
    MiB,
    Row,
    Settings,
    atimed,
    check,
    child_json,
    choose,
    log,
    read_rss,
    report_json,
    rss_bytes,
    summarize_ms,
    target_row,
    timed,
    walls,
)

from ptc import ExecutionResult, Limits, ProgrammaticToolExecutor, Quota

TRIVIAL = "x = 1"
LIMITS = Limits(timeout=60)  # defaults except a generous timeout: nothing here should come near it
GATHER_SLEEPS = "import asyncio\nawait asyncio.gather(asyncio.sleep(0.25), asyncio.sleep(0.25), asyncio.sleep(0.25))\n"
HOLD_SECONDS = 2.0
HOLD = f"import time; time.sleep({HOLD_SECONDS})"
RSS_SAMPLE_AT = 1.0  # seconds after launching the held executions

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


def settings_for(quick: bool) -> Settings:
    return choose(
        quick,
        warmup=(20, 10),
        latency_samples=(300, 50),  # per setup
        spaced_gap_s=(0.01, 0.01),  # idle time between spaced executions: long enough to refill the spares
        gather_runs=(5, 3),
        rss_instances=((20, 50), (20,)),
        growth_warmup=(100, 50),
        growth_checkpoints=((500, 5_000), (150, 600)),  # executions after warm-up at which RSS is read
    )


async def cold_start_pair(warmup: int, samples: int, gap_s: float) -> dict[str, Any]:
    """Wall of `await execute("x = 1")`, back-to-back and spaced, on one warm executor in one running loop."""
    executor = ProgrammaticToolExecutor(limits=LIMITS)

    async def once() -> None:
        check(await executor.execute(TRIVIAL), "cold start")

    await atimed(once, warmup)
    back_to_back = await atimed(once, samples)
    spaced = await atimed(once, samples, gap_s)
    return {
        "spare_instances": os.environ.get("PTC_SPARE_INSTANCES", "default (2)"),
        "back_to_back": summarize_ms(back_to_back),
        "spaced": {"gap_ms": gap_s * 1000, **summarize_ms(spaced)},
    }


def cold_start(settings: Settings) -> dict[str, Any]:
    samples = settings.latency_samples
    log(f"cold start, spares on: {settings.warmup} warm-up + {samples} back-to-back + {samples} spaced")
    figures: dict[str, Any] = {
        "spares_on": asyncio.run(cold_start_pair(settings.warmup, samples, settings.spaced_gap_s))
    }
    gc.collect()
    figures["rss_after_warmup_mb"] = rss_bytes() / MiB
    log(f"cold start, execute_sync (one asyncio.run per call, for information): {samples}")
    executor = ProgrammaticToolExecutor(limits=LIMITS)
    figures["execute_sync"] = summarize_ms(timed(lambda: check(executor.execute_sync(TRIVIAL), "sync"), samples))
    log("cold start, spares off (child process, PTC_SPARE_INSTANCES=0)")
    argv = [sys.executable, str(Path(__file__).resolve()), "--cold-start-child", json.dumps(settings)]
    figures["spares_off"] = child_json(argv, {**os.environ, "PTC_SPARE_INSTANCES": "0"})
    return figures


async def _hold(executor: ProgrammaticToolExecutor, instances: int) -> tuple[int, int, list[ExecutionResult]]:
    gc.collect()
    before = rss_bytes()
    launched = Clock()
    tasks = [asyncio.ensure_future(executor.execute(HOLD)) for _ in range(instances)]
    await asyncio.sleep(RSS_SAMPLE_AT)
    during = rss_bytes()
    sampled_at = launched.split()
    if any(task.done() for task in tasks) or sampled_at >= HOLD_SECONDS:
        raise RuntimeError(f"RSS sampled at {sampled_at:.2f} s, when not every instance was still live")
    return before, during, [check(result, "held execution") for result in await asyncio.gather(*tasks)]


def rss_per_instance(executor: ProgrammaticToolExecutor, settings: Settings) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for instances in settings.rss_instances:
        log(f"rss: {instances} live instances")
        before, during, results = asyncio.run(_hold(executor, instances))
        figures[str(instances)] = {
            "instances": instances,
            "rss_before_mb": before / MiB,
            "rss_during_mb": during / MiB,
            "per_instance_mb": (during - before) / instances / MiB,
            "slowest_execution_s": max(result.execution_time for result in results),
        }
    return figures


async def rss_growth(settings: Settings) -> dict[str, Any]:
    """VmRSS (settled) after N and after M executions of MIXED, serially in one loop: flat means no leak."""
    from tools_section import bench_catalog

    executor = ProgrammaticToolExecutor(bench_catalog(), limits=LIMITS)

    async def run_mixed(start: int, stop: int) -> None:
        for i in range(start, stop):
            code, ok = MIXED[i % len(MIXED)]
            result = await executor.execute(code)
            if result.ok != ok:
                raise RuntimeError(f"mixed workload: {code!r} ended ok={result.ok} ({result.error}), expected {ok}")

    await run_mixed(0, settings.growth_warmup)
    readings = [await read_rss(0)]
    done, clock = 0, Clock()
    for checkpoint in settings.growth_checkpoints:
        log(f"rss growth: executions {done:,} to {checkpoint:,}")
        await run_mixed(done, checkpoint)
        done = checkpoint
        readings.append(await read_rss(done))
    low, high = readings[1], readings[2]
    return {
        "programs": [{"code": code, "ok": ok, "weight": weight} for code, ok, weight in MIXED_WEIGHTS],
        "warmup": settings.growth_warmup,
        "seconds": clock.split(),
        "readings": [asdict(reading) for reading in readings],
        "growth_pct": (high.mb - low.mb) / low.mb * 100,
    }


def measure(quick: bool) -> dict[str, Any]:
    settings = settings_for(quick)
    figures: dict[str, Any] = {"settings": settings, "cold_start": cold_start(settings)}
    # Its own tenant with room for every held instance at once (the default Quota runs 8).
    quota = Quota(max_concurrent=max(settings.rss_instances), max_queued=0)
    executor = ProgrammaticToolExecutor(limits=LIMITS, tenant_id="bench-sandbox", quota=quota)
    check(executor.execute_sync(TRIVIAL), "warm-up")
    log(f"gather of three 0.25 s sleeps: {settings.gather_runs} runs")
    figures["gather_sleeps"] = walls(
        timed(lambda: check(executor.execute_sync(GATHER_SLEEPS), "gather"), settings.gather_runs)
    )
    figures["rss_per_instance"] = rss_per_instance(executor, settings)
    figures["rss_growth"] = asyncio.run(rss_growth(settings))
    return figures


def rows(figures: dict[str, Any]) -> list[Row]:
    cold = figures["cold_start"]
    on, off = cold["spares_on"], cold["spares_off"]
    gap = f"{on['spaced']['gap_ms']:g} ms apart"
    latencies = (
        ("`await execute`, no spares (`PTC_SPARE_INSTANCES=0`), back-to-back", off["back_to_back"], COLD_START_MS),
        (f"`await execute`, no spares, spaced {gap}", off["spaced"], COLD_START_MS),
        ("`await execute`, 2 spares (default), back-to-back", on["back_to_back"], COLD_START_MS),
        (f"`await execute`, 2 spares (default), spaced {gap}", on["spaced"], COLD_START_SPARE_MS),
        ("`execute_sync` (one `asyncio.run` each), 2 spares, back-to-back", cold["execute_sync"], None),
    )
    out = [
        target_row(
            f"cold start `x = 1`, {label}: median (p90)",
            f"{s['median_ms']:.2f} ms ({s['p90_ms']:.2f} ms)",
            s["median_ms"],
            ms,
            " ms",
        )
        for label, s, ms in latencies
    ]
    gather = figures["gather_sleeps"]
    metric = f"3 × `asyncio.sleep(0.25)` under `gather`, wall (median of {gather['runs']})"
    out.append(target_row(metric, f"{gather['median_s']:.3f} s", gather["median_s"], GATHER_WALL_S, " s"))
    out.append(Row("RSS baseline after cold-start warm-up", f"{cold['rss_after_warmup_mb']:.1f} MB"))
    for held in figures["rss_per_instance"].values():
        metric = (
            f"RSS per live instance, N = {held['instances']} (before / while holding: "
            f"{held['rss_before_mb']:.0f} / {held['rss_during_mb']:.0f} MB)"
        )
        out.append(
            target_row(metric, f"{held['per_instance_mb']:.2f} MB", held["per_instance_mb"], RSS_PER_INSTANCE_MB, " MB")
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="cold-start samples in this process, as JSON on stdout")
    parser.add_argument("--cold-start-child", required=True, help="the section's settings, as JSON")
    child = json.loads(parser.parse_args().cold_start_child)
    report_json(asyncio.run(cold_start_pair(child["warmup"], child["latency_samples"], child["spaced_gap_s"])))
