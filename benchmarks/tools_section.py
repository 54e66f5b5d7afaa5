"""Tools section: what one tool call costs, by the path it takes, and calls that overlap.

Every figure is the wall time around `await executor.execute(...)` of one
program, in one running loop, checked for its call count and its value.
The tools are trivial, so what is measured is the boundary, not the work.

To measure another way of serving a call (say a tool policy), add one line to
TOOL_VARIANTS: the catalog gets the tool and the table a round-trip row.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import Row, atimed, check, choose, log, summarize_ms, target_row, walls

from ptc import ExecutionResult, Limits, Policy, ProgrammaticToolExecutor, ToolCatalog
from ptc.examples import budget

TOOL_LIMITS = Limits(max_tool_calls=20_000, timeout=120)
ROUND_TRIP_US = 30.0  # target: an awaited call through the guest's asyncio loop
PLAIN_ROUND_TRIP_US = 10.0  # target: the bare host binding, no asyncio loop
NAP_GATHERS = ((100, 0.05, 0.060), (3, 0.2, 0.21))  # N concurrent naps of S seconds under one gather: wall ≤ target


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


INLINE = {"inline": True}
TOOL_VARIANTS: tuple[ToolVariant, ...] = (
    ToolVariant("noop", _noop_async, "async `noop`, awaited", ROUND_TRIP_US),
    ToolVariant("noop_sync", _noop_sync, "sync `noop_sync` (router thread pool), awaited"),
    ToolVariant(
        "noop_inline_sync", _noop_sync, "sync `noop_inline_sync`, `Policy(inline=True)`, awaited", ROUND_TRIP_US, INLINE
    ),
    ToolVariant(
        "noop_inline", _noop_async, "async `noop_inline`, `Policy(inline=True)`, awaited", ROUND_TRIP_US, INLINE
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
    gather = f"asyncio.gather(*({tool}(x=i{args}) for i in range({calls})))"
    return f"import asyncio\nfrom tools.bench import {tool}\nvalues = await {gather}\nsum(values)\n"


def sum_below(calls: int) -> int:
    return calls * (calls - 1) // 2


# (key, label, program of N calls, what it returns for N, target in µs per call, net)
CallPath = tuple[str, str, Callable[[int], str], Callable[[int], int], float | None]


def call_paths() -> list[CallPath]:
    paths: list[CallPath] = [
        (f"sequential_{v.name}", v.label, functools.partial(sequential_program, v.name), sum_below, v.target_us)
        for v in TOOL_VARIANTS
    ]
    for tool, label in (("noop", "`noop`"), ("noop_inline_sync", "`noop_inline_sync` (inline)")):
        key = "plain_host_call" + ("_inline" if tool != "noop" else "")
        program = functools.partial(plain_program, tool=tool)
        paths.append(
            (key, f"plain: bare `host.call` to {label}, no asyncio loop", program, lambda n: n - 1, PLAIN_ROUND_TRIP_US)
        )
    return paths


Timed = list[tuple[float, ExecutionResult]]  # (seconds around `await executor.execute(...)`, its result) per run


async def timed_runs(
    executor: ProgrammaticToolExecutor, code: str, runs: int, what: str, calls: int | None = None, value: object = ...
) -> Timed:
    """`runs` executions of `code`, each checked (for its value and its number of tool calls, when given)."""
    results: list[ExecutionResult] = []

    async def once() -> None:
        result = check(await executor.execute(code), what, value)
        if calls is not None and len(result.tool_calls) != calls:
            raise RuntimeError(f"{what}: {len(result.tool_calls)} calls, expected {calls}")
        results.append(result)

    log(f"{what}: {runs} run(s)")
    return list(zip(await atimed(once, runs), results, strict=True))


def _walls(runs: Timed) -> dict[str, Any]:
    return {
        **walls([wall for wall, _ in runs]),
        "internal_median_s": statistics.median(r.execution_time for _, r in runs),
    }


def _per_call(runs: Timed, calls: int, empty_s: float) -> dict[str, Any]:
    """Per-call figures from the median run; net subtracts the empty program's cold start."""
    figures = _walls(runs)
    handler = [call.duration or 0.0 for _, result in runs for call in result.tool_calls]
    fuel = [result.fuel_used for _, result in runs if result.fuel_used is not None]
    return {
        "calls": calls,
        **figures,
        "us_per_call": figures["median_s"] / calls * 1e6,
        "net_us_per_call": (figures["median_s"] - empty_s) / calls * 1e6,
        "handler_mean_us": statistics.fmean(handler) * 1e6 if handler else None,
        "fuel_per_call": statistics.median(fuel) / calls if fuel else None,
    }


async def _walkthrough(runs: int) -> dict[str, Any]:
    """The README's budget example: 8 calls × 250 ms, one after another and under gather."""
    executor = ProgrammaticToolExecutor(budget.catalog, limits=Limits(timeout=60))
    measured: dict[str, Timed] = {"sequential": [], "gather": []}
    for _ in range(runs):
        for label, program in (("sequential", budget.SEQUENTIAL), ("gather", budget.GATHER)):
            measured[label] += await timed_runs(executor, program, 1, f"walkthrough {label}")
    if len({repr(result.result) for runs in measured.values() for _, result in runs}) != 1:
        raise RuntimeError("walkthrough: the programs disagree")
    walk: dict[str, Any] = {"latency_s": budget.LATENCY, "runs": runs}
    for label, timed in measured.items():
        walk[label] = {"calls": len(timed[0][1].tool_calls), **_walls(timed)}
    walk["speedup"] = walk["sequential"]["median_s"] / walk["gather"]["median_s"]
    return walk


async def _measure(settings: Any) -> dict[str, Any]:
    executor = ProgrammaticToolExecutor(bench_catalog(), limits=TOOL_LIMITS)
    figures: dict[str, Any] = {"settings": settings, "limits": TOOL_LIMITS.model_dump()}
    await timed_runs(executor, "", settings.warmup, "empty program (warm-up)")  # the first execution, each first import
    for key, _, program, expected, _ in call_paths():
        await timed_runs(executor, program(10), 1, f"{key} warm-up", 10, expected(10))

    empty = [wall for wall, _ in await timed_runs(executor, "", settings.empty_samples, "empty program")]
    empty_s = statistics.median(empty)
    figures["empty_program"] = summarize_ms(empty)

    calls = settings.sequential_calls
    for key, label, program, expected, target in call_paths():
        runs = await timed_runs(
            executor, program(calls), settings.sequential_runs, f"{calls} × {key}", calls, expected(calls)
        )
        figures[key] = {"label": label, "target_us": target, **_per_call(runs, calls, empty_s)}

    calls = settings.gathered_calls
    code = gathered_program("noop", calls)
    runs = await timed_runs(executor, code, settings.gathered_runs, f"gather of {calls}", calls, sum_below(calls))
    figures["gathered_noop"] = _per_call(runs, calls, empty_s)

    for calls, seconds, target in NAP_GATHERS:
        code = gathered_program("nap", calls, f", seconds={seconds!r}")
        runs = await timed_runs(
            executor, code, settings.nap_runs, f"gather of {calls} × {seconds:g} s naps", calls, sum_below(calls)
        )
        figures[f"gather_{calls}_naps_{seconds * 1000:g}ms"] = {
            "calls": calls,
            "nap_s": seconds,
            "target_s": target,
            **_walls(runs),
        }

    figures["walkthrough"] = await _walkthrough(settings.walkthrough_runs)
    return figures


def measure(quick: bool) -> dict[str, Any]:
    settings = choose(
        quick,
        warmup=(20, 10),
        empty_samples=(50, 20),  # cold starts of the empty program, the baseline for "net" per-call figures
        sequential_calls=(3_000, 500),  # awaited one after another in one program
        sequential_runs=(3, 1),
        gathered_calls=(1_000, 1_000),  # under one asyncio.gather in one program
        gathered_runs=(5, 3),
        nap_runs=(5, 3),
        walkthrough_runs=(3, 1),
    )
    return asyncio.run(_measure(settings))


def _runs(figures: dict[str, Any]) -> str:
    return f"median of {figures['runs']}" if figures["runs"] > 1 else "1 run"


def rows(figures: dict[str, Any]) -> list[Row]:
    out = [
        Row(
            "tools: empty program cold start, median (baseline for net)",
            f"{figures['empty_program']['median_ms']:.2f} ms",
        )
    ]
    for key, *_ in call_paths():  # the target is on the net figure: the per-call cost once the program's start is out
        path = figures[key]
        metric = f"tool-call round trip, {path['label']}, {path['calls']:,} sequential calls: µs per call, net"
        gross = f"gross {path['us_per_call']:.1f} µs; wall {path['median_s']:.3f} s, {_runs(path)}"
        value = f"{path['net_us_per_call']:.1f} µs ({gross})"
        out.append(target_row(metric, value, path["net_us_per_call"], path["target_us"], " µs"))
    gathered = figures["gathered_noop"]
    metric = f"{gathered['calls']:,} × `noop` under one `gather`: wall ({_runs(gathered)}) / µs per call"
    value = f"{gathered['median_s'] * 1000:.1f} ms / {gathered['us_per_call']:.1f} µs"
    value += f" (net {gathered['net_us_per_call']:.1f} µs)"
    out.append(Row(metric, value))
    for calls, seconds, target in NAP_GATHERS:
        naps = figures[f"gather_{calls}_naps_{seconds * 1000:g}ms"]
        metric = f"{calls} × {seconds * 1000:g} ms tool calls under one `gather`, wall ({_runs(naps)})"
        if target < 0.1:
            out.append(
                target_row(metric, f"{naps['median_s'] * 1000:.1f} ms", naps["median_s"] * 1000, target * 1000, " ms")
            )
        else:
            out.append(target_row(metric, f"{naps['median_s']:.3f} s", naps["median_s"], target, " s"))
    walk = figures["walkthrough"]
    metric = (
        f"walkthrough `budget` ({walk['sequential']['calls']} calls × {walk['latency_s'] * 1000:.0f} ms): "
        f"sequential / gather wall ({_runs(walk)}), speedup"
    )
    out.append(
        Row(
            metric,
            f"{walk['sequential']['median_s']:.3f} s / {walk['gather']['median_s']:.3f} s, {walk['speedup']:.2f}×",
        )
    )
    return out
