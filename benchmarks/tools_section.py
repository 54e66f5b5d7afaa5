"""Tools section: what one tool call costs, by the path it takes, and calls that overlap.

Every figure is the wall time around `await executor.execute(...)` of one
program, in one running loop, checked for its call count and its value.
The tools are trivial, so what is measured is the boundary, not the work.

To measure another way of serving a call (say a tool policy), add one line to
TOOL_VARIANTS: the catalog gets the tool and the table a round-trip row.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from _common import Row, check, info, log, summarize_ms

from ptc import ExecutionResult, Limits, Policy, ProgrammaticToolExecutor, ToolCatalog
from ptc.examples import budget

EMPTY = ""
TOOL_LIMITS = Limits(max_tool_calls=20_000, timeout=120)
ROUND_TRIP_US = 30.0  # target: an awaited call through the guest's asyncio loop
PLAIN_ROUND_TRIP_US = 10.0  # target: the bare host binding, no asyncio loop


@dataclass(frozen=True)
class ToolSettings:
    warmup: int
    empty_samples: int  # cold starts of the empty program, the baseline for "net" per-call figures
    sequential_calls: int  # awaited one after another in one program
    sequential_runs: int
    gathered_calls: int  # under one asyncio.gather in one program
    gathered_runs: int
    nap_runs: int
    walkthrough_runs: int


FULL = ToolSettings(
    warmup=20,
    empty_samples=50,
    sequential_calls=3_000,
    sequential_runs=3,
    gathered_calls=1_000,
    gathered_runs=5,
    nap_runs=5,
    walkthrough_runs=3,
)
QUICK = ToolSettings(
    warmup=10,
    empty_samples=20,
    sequential_calls=500,
    sequential_runs=1,
    gathered_calls=1_000,
    gathered_runs=3,
    nap_runs=3,
    walkthrough_runs=1,
)


# -- the tools ---------------------------------------------------------------


async def _noop_async(x: int) -> int:
    """Return x (async)."""
    return x


def _noop_sync(x: int) -> int:
    """Return x (sync)."""
    return x


async def _nap(x: int, seconds: float = 0.05) -> int:
    """Sleep `seconds`, then return x."""
    await asyncio.sleep(seconds)
    return x


@dataclass(frozen=True)
class ToolVariant:
    """One way to serve the same trivial call; each gets a tool in domain "bench" and a round-trip row."""

    name: str  # the tool's name: `from tools.bench import <name>`
    handler: Callable[..., Any]
    label: str
    target_us: float | None = None
    policy: dict[str, Any] = field(default_factory=dict)  # Policy(**policy) when not empty


TOOL_VARIANTS: tuple[ToolVariant, ...] = (
    ToolVariant("noop", _noop_async, "async `noop`, awaited", ROUND_TRIP_US),
    ToolVariant("noop_sync", _noop_sync, "sync `noop_sync` (router thread pool), awaited"),
    ToolVariant(
        "noop_inline_sync",
        _noop_sync,
        "sync `noop_inline_sync`, `Policy(inline=True)`, awaited",
        ROUND_TRIP_US,
        {"inline": True},
    ),
    ToolVariant(
        "noop_inline",
        _noop_async,
        "async `noop_inline`, `Policy(inline=True)`, awaited",
        ROUND_TRIP_US,
        {"inline": True},
    ),
)


def bench_catalog() -> ToolCatalog:
    """The TOOL_VARIANTS, plus `nap` (sleeps, for the concurrency figures), in domain "bench"."""
    catalog = ToolCatalog(source="benchmarks")
    for variant in TOOL_VARIANTS:
        policy = Policy(**variant.policy) if variant.policy else None
        catalog.tool(variant.handler, domain="bench", name=variant.name, policy=policy)
    catalog.tool(_nap, domain="bench", name="nap")
    return catalog


# -- the programs --------------------------------------------------------------


def sequential_program(tool: str, calls: int) -> str:
    return (
        f"from tools.bench import {tool}\ntotal = 0\nfor i in range({calls}):\n    total += await {tool}(x=i)\ntotal\n"
    )


def plain_program(calls: int, tool: str = "noop") -> str:
    """The bare boundary and router: the raw host binding, no stub and no asyncio loop in the guest.

    Only the last reply is decoded (to check it): the loop is what the brief calls the plain path.
    """
    return (
        "import sys, _ptc_codec\n"
        "host = sys.modules['wit_world.imports.host']\n"
        "reply = None\n"
        f"for i in range({calls}):\n"
        f"    frame = _ptc_codec.pack({{'tool': '{tool}', 'args': {{'x': i}}, 'key': None}})\n"
        "    reply = host.call(frame.decode('latin-1'))\n"
        "_ptc_codec.unpack(reply.encode('latin-1'))['ok'] if reply is not None else None\n"
    )


def gathered_program(tool: str, calls: int, args: str = "") -> str:
    return (
        f"import asyncio\n"
        f"from tools.bench import {tool}\n"
        f"values = await asyncio.gather(*({tool}(x=i{args}) for i in range({calls})))\n"
        f"sum(values)\n"
    )


@dataclass(frozen=True)
class CallPath:
    """A program of N sequential calls down one path, and what it must return."""

    key: str
    label: str
    program: Callable[[int], str]
    expected: Callable[[int], int]
    target_us: float | None


def _sum_below(calls: int) -> int:
    return calls * (calls - 1) // 2


def call_paths() -> list[CallPath]:
    paths = [
        CallPath(
            f"sequential_{variant.name}",
            variant.label,
            lambda calls, tool=variant.name: sequential_program(tool, calls),
            _sum_below,
            variant.target_us,
        )
        for variant in TOOL_VARIANTS
    ]
    paths.append(
        CallPath(
            "plain_host_call",
            "plain: bare `host.call` to `noop`, no asyncio loop",
            plain_program,
            lambda calls: calls - 1,
            PLAIN_ROUND_TRIP_US,
        )
    )
    paths.append(
        CallPath(
            "plain_host_call_inline",
            "plain: bare `host.call` to `noop_inline_sync` (inline), no asyncio loop",
            lambda calls: plain_program(calls, "noop_inline_sync"),
            lambda calls: calls - 1,
            PLAIN_ROUND_TRIP_US,
        )
    )
    return paths


@dataclass(frozen=True)
class NapGather:
    """N concurrent `nap` calls of `seconds` each under one gather: the wall should be one nap."""

    calls: int
    seconds: float
    target_s: float

    @property
    def key(self) -> str:
        return f"gather_{self.calls}_naps_{self.seconds * 1000:g}ms"


NAP_GATHERS = (NapGather(100, 0.05, 0.060), NapGather(3, 0.2, 0.21))


# -- measuring -------------------------------------------------------------------


@dataclass
class Timed:
    wall: float  # seconds around `await executor.execute(...)`
    result: ExecutionResult


async def timed(executor: ProgrammaticToolExecutor, code: str, what: str) -> Timed:
    started = time.perf_counter()
    result = await executor.execute(code)
    wall = time.perf_counter() - started
    check(result, what)
    return Timed(wall, result)


async def _program_runs(
    executor: ProgrammaticToolExecutor, code: str, runs: int, calls: int, expected: int, what: str
) -> list[Timed]:
    out: list[Timed] = []
    for run in range(runs):
        log(f"{what}: run {run + 1}/{runs}")
        one = await timed(executor, code, what)
        if len(one.result.tool_calls) != calls or one.result.result != expected:
            raise RuntimeError(
                f"{what}: {len(one.result.tool_calls)} calls and value {one.result.result!r}, "
                f"expected {calls} and {expected}"
            )
        out.append(one)
    return out


def _walls(runs: Sequence[Timed]) -> dict[str, Any]:
    walls = [one.wall for one in runs]
    return {
        "runs": len(walls),
        "walls_s": walls,
        "median_wall_s": statistics.median(walls),
        "max_wall_s": max(walls),
        "internal_median_s": statistics.median(one.result.execution_time for one in runs),
    }


def _per_call(runs: Sequence[Timed], calls: int, empty_s: float) -> dict[str, Any]:
    """Per-call figures from the median run; net subtracts the empty program's cold start."""
    walls = _walls(runs)
    wall = walls["median_wall_s"]
    handler = [call.duration or 0.0 for one in runs for call in one.result.tool_calls]
    fuel = [one.result.fuel_used for one in runs if one.result.fuel_used is not None]
    return {
        "calls": calls,
        **walls,
        "us_per_call": wall / calls * 1e6,
        "net_us_per_call": (wall - empty_s) / calls * 1e6,
        "handler_mean_us": statistics.fmean(handler) * 1e6 if handler else None,
        "fuel_per_call": statistics.median(fuel) / calls if fuel else None,
    }


async def _warm_up(executor: ProgrammaticToolExecutor, settings: ToolSettings) -> None:
    """The first execution and the first import of each stub on this executor."""
    for _ in range(settings.warmup):
        await timed(executor, EMPTY, "empty program (warm-up)")
    for path in call_paths():
        await timed(executor, path.program(10), f"{path.key} warm-up")


async def _walkthrough(settings: ToolSettings) -> dict[str, Any]:
    """The README's budget example: 8 calls × 250 ms, one after another and under gather."""
    executor = ProgrammaticToolExecutor(budget.catalog, limits=Limits(timeout=60))
    runs: dict[str, list[Timed]] = {"sequential": [], "gather": []}
    for run in range(settings.walkthrough_runs):
        for label, program in (("sequential", budget.SEQUENTIAL), ("gather", budget.GATHER)):
            log(f"walkthrough {label}: run {run + 1}/{settings.walkthrough_runs}")
            runs[label].append(await timed(executor, program, f"walkthrough {label}"))
    values = {repr(one.result.result) for measured in runs.values() for one in measured}
    if len(values) != 1:
        raise RuntimeError(f"walkthrough: the programs disagree: {sorted(values)}")
    walk: dict[str, Any] = {"latency_s": budget.LATENCY, "runs": settings.walkthrough_runs}
    for label, measured in runs.items():
        walk[label] = {"calls": len(measured[0].result.tool_calls), **_walls(measured)}
    walk["speedup"] = walk["sequential"]["median_wall_s"] / walk["gather"]["median_wall_s"]
    return walk


async def _measure(settings: ToolSettings) -> dict[str, Any]:
    executor = ProgrammaticToolExecutor(bench_catalog(), limits=TOOL_LIMITS)
    figures: dict[str, Any] = {"limits": TOOL_LIMITS.model_dump()}
    await _warm_up(executor, settings)

    log(f"empty program: {settings.empty_samples} cold starts")
    empty = [(await timed(executor, EMPTY, "empty program")).wall for _ in range(settings.empty_samples)]
    empty_s = statistics.median(empty)
    figures["empty_program"] = summarize_ms(empty)

    calls = settings.sequential_calls
    for path in call_paths():
        what = f"{calls} × {path.key}"
        runs = await _program_runs(
            executor, path.program(calls), settings.sequential_runs, calls, path.expected(calls), what
        )
        figures[path.key] = {"label": path.label, "target_us": path.target_us, **_per_call(runs, calls, empty_s)}

    calls = settings.gathered_calls
    code = gathered_program("noop", calls)
    runs = await _program_runs(executor, code, settings.gathered_runs, calls, _sum_below(calls), f"gather of {calls}")
    figures["gathered_noop"] = _per_call(runs, calls, empty_s)

    for naps in NAP_GATHERS:
        code = gathered_program("nap", naps.calls, f", seconds={naps.seconds!r}")
        what = f"gather of {naps.calls} × {naps.seconds:g} s naps"
        runs = await _program_runs(executor, code, settings.nap_runs, naps.calls, _sum_below(naps.calls), what)
        figures[naps.key] = {"calls": naps.calls, "nap_s": naps.seconds, "target_s": naps.target_s, **_walls(runs)}

    figures["walkthrough"] = await _walkthrough(settings)
    return figures


def measure(quick: bool) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    return {"settings": asdict(settings), **asyncio.run(_measure(settings))}


# -- the table ---------------------------------------------------------------------


def _runs(figures: dict[str, Any]) -> str:
    return f"median of {figures['runs']}" if figures["runs"] > 1 else "1 run"


def _round_trip_row(figures: dict[str, Any]) -> Row:
    """The target is on the net figure: the per-call cost once the program's own start is taken out."""
    net, target = figures["net_us_per_call"], figures["target_us"]
    return Row(
        f"tool-call round trip, {figures['label']}, {figures['calls']:,} sequential calls: µs per call, net",
        f"{net:.1f} µs (gross {figures['us_per_call']:.1f} µs; wall {figures['median_wall_s']:.3f} s, "
        f"{_runs(figures)})",
        "—" if target is None else f"≤ {target:g} µs",
        None if target is None else net <= target,
    )


def _nap_row(figures: dict[str, Any]) -> Row:
    wall, target = figures["median_wall_s"], figures["target_s"]
    nap = figures["nap_s"] * 1000
    in_ms = target < 0.1
    return Row(
        f"{figures['calls']} × {nap:g} ms tool calls under one `gather`, wall ({_runs(figures)})",
        f"{wall * 1000:.1f} ms" if in_ms else f"{wall:.3f} s",
        f"≤ {target * 1000:g} ms" if in_ms else f"≤ {target:g} s",
        wall <= target,
    )


def rows(figures: dict[str, Any]) -> list[Row]:
    empty_ms = figures["empty_program"]["median_ms"]
    out = [info("tools: empty program cold start, median (baseline for net)", f"{empty_ms:.2f} ms")]
    out += [_round_trip_row(figures[path.key]) for path in call_paths() if path.key in figures]
    gathered = figures["gathered_noop"]
    out.append(
        info(
            f"{gathered['calls']:,} × `noop` under one `gather`: wall ({_runs(gathered)}) / µs per call",
            f"{gathered['median_wall_s'] * 1000:.1f} ms / {gathered['us_per_call']:.1f} µs "
            f"(net {gathered['net_us_per_call']:.1f} µs)",
        )
    )
    out += [_nap_row(figures[naps.key]) for naps in NAP_GATHERS]
    walk = figures["walkthrough"]
    out.append(
        info(
            f"walkthrough `budget` ({walk['sequential']['calls']} calls × {walk['latency_s'] * 1000:.0f} ms): "
            f"sequential / gather wall ({_runs(walk)}), speedup",
            f"{walk['sequential']['median_wall_s']:.3f} s / {walk['gather']['median_wall_s']:.3f} s, "
            f"{walk['speedup']:.2f}×",
        )
    )
    return out
