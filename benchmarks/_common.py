"""Helpers every benchmark script shares."""

from __future__ import annotations

import asyncio
import gc
import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

MiB = 1 << 20
RSS_SETTLE_S = 0.2  # between settled-RSS readings
RSS_SETTLE_TRIES = 25

# -- CPU workloads: the same programs in peers.py and run.py's cpu section ----

LOOP_N = 3_000_000
LOOP_BODY = f"total = 0\nfor i in range({LOOP_N}):\n    total += i\n"
LOOP_VALUE = LOOP_N * (LOOP_N - 1) // 2
FIB_N = 25
FIB_BODY = f"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\ntotal = fib({FIB_N})\n"
FIB_VALUE = 75_025


def value_program(body: str) -> str:
    """For sandboxes that return the last expression (ptc, Monty)."""
    return body + "total\n"


# -- statistics and reporting --------------------------------------------------


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


@dataclass
class Row:
    """One line of run.py's table; met is None when the figure has no target."""

    metric: str
    value: str
    target: str
    met: bool | None


def info(metric: str, value: str) -> Row:
    """A row without a target."""
    return Row(metric, value, "—", None)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays the table alone."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def check(result: Any, what: str) -> None:
    """Fail the run on a failed execution: a figure of failing programs would mean nothing."""
    if result.error is not None:
        raise RuntimeError(f"{what} failed: {result.error.kind}: {result.error.message}")


# -- memory ----------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


@dataclass
class RssReading:
    executions: int  # measured executions so far
    at_end_mb: float  # right after the executions, after gc.collect()
    settled_mb: float  # once it stopped falling

    @property
    def mb(self) -> float:
        return self.settled_mb


async def read_rss(executions: int) -> RssReading:
    """VmRSS with nothing running: at once, and once it stops falling (ptc frees used instances on a
    background thread, so a reading right after a burst can still include some)."""
    gc.collect()
    at_end = previous = rss_bytes()
    for _ in range(RSS_SETTLE_TRIES):
        await asyncio.sleep(RSS_SETTLE_S)
        gc.collect()
        current = rss_bytes()
        if previous - current < MiB:
            previous = current
            break
        previous = current
    return RssReading(executions, at_end / MiB, previous / MiB)


# -- environment -------------------------------------------------------------------


def loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages: how busy the machine was, from outside this run."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """The facts a figure depends on: when, which Python, machine, wasmtime and ptc."""
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "wasmtime": metadata.version("wasmtime"),
        "ptc": metadata.version("ptc"),
    }
