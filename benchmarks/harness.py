"""What every benchmark shares: timing, percentiles, memory readings, the tables, the JSON, the environment.

Nothing here imports ptc: the peers' drivers import this module in virtual environments without it.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Self

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"

# -- the CPU workloads: the same programs in the cpu section and peers.py -------

LOOP_N = 3_000_000
LOOP_BODY = f"total = 0\nfor i in range({LOOP_N}):\n    total += i\n"
LOOP_VALUE = LOOP_N * (LOOP_N - 1) // 2
FIB_N = 25
FIB_BODY = f"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\ntotal = fib({FIB_N})\n"
FIB_VALUE = 75_025
CPU_WORKLOADS = {"loop": (LOOP_BODY, LOOP_VALUE), "fib": (FIB_BODY, FIB_VALUE)}


class Settings(dict[str, Any]):
    """A run's sample counts, as attributes; a dict, so it goes into the JSON as it is."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def choose(quick: bool, **full_and_quick: tuple[Any, Any]) -> Settings:
    """Settings from (full run, --quick) pairs."""
    return Settings({name: pair[1] if quick else pair[0] for name, pair in full_and_quick.items()})


# -- timing and statistics ----------------------------------------------------------


class Clock:
    """Seconds since it was made: `split()` meanwhile; after `with Clock() as c:`, c.wall and c.cpu (this
    process's CPU seconds) of the block, even when it raised."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def split(self) -> float:
        return time.perf_counter() - self._wall

    def __enter__(self) -> Clock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall, self.cpu = self.split(), time.process_time() - self._cpu


def timed(once: Callable[[], object], runs: int) -> list[float]:
    """Wall seconds of `runs` calls of `once()`."""
    walls: list[float] = []
    for _ in range(runs):
        with Clock() as clock:
            once()
        walls.append(clock.wall)
    return walls


async def atimed(once: Callable[[], Awaitable[object]], runs: int, gap_s: float = 0.0) -> list[float]:
    """Wall seconds of `runs` awaits of `once()`, with `gap_s` idle before each (0: back-to-back)."""
    walls: list[float] = []
    for _ in range(runs):
        if gap_s:
            await asyncio.sleep(gap_s)
        with Clock() as clock:
            await once()
        walls.append(clock.wall)
    return walls


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


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


def walls(samples: Sequence[float]) -> dict[str, Any]:
    """A few wall times in seconds, with their median and max."""
    return {
        "runs": len(samples),
        "walls_s": list(samples),
        "median_s": statistics.median(samples),
        "max_s": max(samples),
    }


# -- the tables ------------------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


@dataclass
class Row:
    """One line of a figures-and-targets table; met is None when the figure has no target."""

    metric: str
    value: str
    target: str = "—"
    met: bool | None = None


def target_row(metric: str, value: str, figure: float, bound: float | None, unit: str) -> Row:
    """A row whose figure must stay at or below `bound` (None: a row without a target)."""
    return Row(metric, value) if bound is None else Row(metric, value, f"≤ {bound:g}{unit}", figure <= bound)


def targets_table(rows: Sequence[Row]) -> str:
    status = {None: "—", True: "met", False: "**not met**"}
    return table(("metric", "value", "target", "status"), ((r.metric, r.value, r.target, status[r.met]) for r in rows))


Cell = tuple[str, float | None]  # what a table cell shows, and the figure behind it (None: none)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def ratio_table(first: str, base: str, others: Sequence[str], rows: Iterable[tuple[str, Cell, Sequence[Cell]]]) -> str:
    """Side by side: a row's figure for `base`, then for each other column its figure and base ÷ it."""
    header = [first, base, *(name for other in others for name in (other, f"{base}/{other}"))]
    lines = []
    for label, (base_text, base_value), cells in rows:
        line = [label, base_text]
        for text, value in cells:
            line += [text, f"{fmt(base_value / value)}×" if base_value is not None and value else "—"]
        lines.append(line)
    return table(header, lines)


def log(message: str) -> None:
    """Progress goes to stderr, so stdout stays the tables alone."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


def check(result: Any, what: str, value: object = ...) -> Any:
    """A ptc result that must have ended well (and with `value`, if given): a figure of failing programs means
    nothing."""
    if result.error is not None:
        raise RuntimeError(f"{what} failed: {result.error.kind}: {result.error.type}: {result.error.message}")
    if value is not ... and result.result != value:
        raise RuntimeError(f"{what}: value {result.result!r}, expected {value!r}")
    return result


def describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- memory --------------------------------------------------------------------------------


def _proc_kib(path: str, field: str) -> int:
    with open(path) as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in {path}")


def rss_bytes() -> int:
    """This process's resident set size (VmRSS)."""
    return _proc_kib("/proc/self/status", "VmRSS")


def mem_total_bytes() -> int:
    return _proc_kib("/proc/meminfo", "MemTotal")


def malloc_trim() -> bool:
    """Give the C heap's free memory back to the system (glibc only): what is left is really in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


@dataclass
class RssReading:
    executions: int  # measured executions so far
    at_end_mb: float  # right after the executions, after gc.collect()
    settled_mb: float  # once it stopped falling

    @property
    def mb(self) -> float:
        return self.settled_mb


async def read_rss(executions: int, settle_s: float = 0.2, tries: int = 25) -> RssReading:
    """VmRSS with nothing running: at once, and once it stops falling (ptc frees used instances on a
    background thread, so a reading right after a burst can still include some)."""
    gc.collect()
    at_end = previous = rss_bytes()
    for _ in range(tries):
        await asyncio.sleep(settle_s)
        gc.collect()
        current = rss_bytes()
        falling, previous = previous - current >= MiB, current
        if not falling:
            break
    return RssReading(executions, at_end / MiB, previous / MiB)


class Ticker:
    """`with Ticker(every_s, tick):` runs `tick()` on the running loop every `every_s` until the block ends."""

    def __init__(self, every_s: float, tick: Callable[[], None]) -> None:
        self.every_s, self.tick = every_s, tick
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.every_s)

    def __enter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()


class PeakRss(Ticker):
    """VmRSS sampled every 0.1 s while the block runs; `over_cap()` is called once if it passes `cap` bytes."""

    def __init__(self, cap: int, over_cap: Callable[[], None]) -> None:
        super().__init__(0.1, self._sample)
        self.cap, self.over_cap, self.peak, self.exceeded = cap, over_cap, rss_bytes(), False

    def _sample(self) -> None:
        current = rss_bytes()
        self.peak = max(self.peak, current)
        if current > self.cap and not self.exceeded:
            self.exceeded = True
            self.over_cap()

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__()
        self.peak = max(self.peak, rss_bytes())


# -- children: a process that reports one JSON line -------------------------------------------

MARK = "BENCH-JSON "


def report_json(data: Any) -> None:
    """A child's report: the last line of its stdout."""
    sys.stdout.write(MARK + json.dumps(data) + "\n")
    sys.stdout.flush()


def child_json(argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 600.0) -> Any:
    """Run a child that ends with report_json (its stderr passes through); its report."""
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True, env=env, timeout=timeout)
    reports = [line[len(MARK) :] for line in done.stdout.splitlines() if line.startswith(MARK)]
    if not reports:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {done.returncode} without a report")
    return json.loads(reports[-1])


# -- the environment and the JSON ------------------------------------------------------------------


def version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages: how busy the machine was, from outside this run."""
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def git_state() -> dict[str, Any]:
    """The commit measured, and whether ptc's sources differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--", "runtime", "hostcalls", "stubgen", "guest")
        return {"commit": git("rev-parse", "--short", "HEAD"), "ptc_sources_modified": bool(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "ptc_sources_modified": None}


def environment(mode: str, **more: Any) -> dict[str, Any]:
    """The facts a figure depends on: when, which Python, machine, wasmtime, ptc and commit, the load."""
    return {
        "mode": mode,
        **more,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "wasmtime": version_of("wasmtime"),
        "ptc": version_of("ptc"),
        **git_state(),
        "loadavg_at_start": loadavg(),
    }


def finish(report: dict[str, Any], output: Path, run: Clock, what: str) -> str:
    """Close the report (total time since `run` began, load at the end), write it as JSON; the run's last line."""
    report["total_seconds"] = run.split()
    env = report["environment"]
    env["loadavg_at_end"] = loadavg()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    load = ""
    if env["loadavg_at_start"] and env["loadavg_at_end"]:
        load = (
            f"; 1-min load average {env['loadavg_at_start'][0]:.1f} at start, {env['loadavg_at_end'][0]:.1f} at end, "
            f"on {env['cpu_count']} CPUs"
        )
    modified = " (ptc sources modified)" if env["ptc_sources_modified"] else ""
    commit = f" at {env['commit']}{modified}" if env["commit"] else ""
    return f"\n{what}{commit}, {report['total_seconds']:.1f} s{load}; JSON written to {output}"
