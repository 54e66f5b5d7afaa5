"""`ptc demo`: the budget walkthrough, sequential and under asyncio.gather, then MCP + A2A.

Every figure it prints is one it measured: the runtime is made ready before
either program runs (on a fresh machine that is the guest build, with its
progress on stderr), so neither timing includes it, and the comparison says
"faster", "slower" or "about the same" from the two execution times.

The last run adds an A2A agent to the budget tools: the demo starts a local
advisor agent (ptc.examples.advisor) on a free loopback port, the program
asks it to review each team's budget (`tools.advisor.review_budget`), and
the agent is stopped at the end. Without the `a2a` extra that run is
skipped, and the demo says so.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from ptc.catalog import ToolCatalog
from ptc.errors import MissingExtraError, require_a2a
from ptc.events import ToolEvent
from ptc.executor import ProgrammaticToolExecutor
from ptc.results import ExecutionResult


def _table(result: ExecutionResult, out: TextIO) -> None:
    if not result.tool_calls:
        return
    start = min(call.timestamp for call in result.tool_calls)
    out.write(f"  {'#':>2}  {'tool':<21} {'parameters':<55} {'start':>7} {'took':>7}  status\n")
    for n, call in enumerate(result.tool_calls, 1):
        params = ", ".join(f"{k}={v!r}" for k, v in (call.parameters or {}).items())
        status = "ok" if call.error is None else f"{call.error.type}"
        out.write(
            f"  {n:>2}  {call.tool:<21} {params[:55]:<55} {call.timestamp - start:>6.3f}s "
            f"{(call.duration or 0):>6.3f}s  {status}\n"
        )


def _tools_span(result: ExecutionResult) -> float:
    """Seconds from the first tool call's start to the last one's end."""
    if not result.tool_calls:
        return 0.0
    start = min(call.timestamp for call in result.tool_calls)
    return max(call.timestamp + (call.duration or 0.0) for call in result.tool_calls) - start


def comparison(sequential: float, gathered: float) -> str:
    """How the gather run compares with the sequential one, as measured (within 10% is "about the same")."""
    if gathered <= 0 or sequential <= 0:
        return "no comparison (a time of zero)"
    ratio = sequential / gathered
    if ratio >= 1.1:
        return f"gather {ratio:.1f}x faster"
    if ratio <= 1 / 1.1:
        return f"gather {1 / ratio:.1f}x slower"
    return "about the same"


def _report(out: TextIO, heading: str, result: ExecutionResult) -> None:
    """One run: its heading, the program's output (or error), its calls."""
    out.write(f"\n== {heading} ==\n")
    out.write(result.output)
    if result.error:
        out.write(f"error: {result.error}\n{result.error.traceback}")
    _table(result, out)


async def run_demo(out: TextIO = sys.stdout) -> dict[str, ExecutionResult]:
    from ptc.examples import budget

    executor = ProgrammaticToolExecutor(budget.catalog, timeout=30)
    out.write(f"ptc demo: {len(budget.TEAMS)} teams, 2 tools per team, {budget.LATENCY * 1000:.0f} ms per call\n")
    out.flush()
    await executor.warm_up()  # the build (first run on a machine) and the engine's load: timed by neither program
    results: dict[str, ExecutionResult] = {}
    for label, code in (("sequential", budget.SEQUENTIAL), ("asyncio.gather", budget.GATHER)):
        result = await executor.execute(code)
        results[label] = result
        span = f"first call start to last call end: {_tools_span(result):.3f} s"
        took = f"{len(result.tool_calls)} tool calls in {result.execution_time:.3f} s"
        _report(out, f"{label}: {took} ({span})", result)
    sequential, gathered = results["sequential"], results["asyncio.gather"]
    failed = [label for label, result in results.items() if result.error is not None]
    verdict = (
        f"no comparison: {' and '.join(failed)} failed"
        if failed
        else comparison(sequential.execution_time, gathered.execution_time)
    )
    out.write(
        f"\nsummary: sequential {sequential.execution_time:.3f} s, gather {gathered.execution_time:.3f} s "
        f"({verdict}); same result: {sequential.result == gathered.result}\n"
    )
    with_agent = await _with_agent(out)
    if with_agent is not None:
        results["MCP + A2A"] = with_agent
    return results


async def _with_agent(out: TextIO) -> ExecutionResult | None:
    """The budget tools and a local A2A agent in one program; None when the `a2a` extra is missing."""
    from ptc.examples import budget

    try:
        require_a2a("the demo's A2A agent")
        from ptc.examples import advisor

        with advisor.running() as url:
            catalog = ToolCatalog(source=budget.catalog.source, version=budget.catalog.version)
            catalog.merge(budget.catalog)  # the agent's tools go into this copy
            statuses: list[ToolEvent] = []

            def status(event: ToolEvent) -> None:
                if event.kind == "a2a_status":
                    statuses.append(event)

            executor = ProgrammaticToolExecutor(catalog, a2a_agents={"advisor": url}, timeout=30, on_event=status)
            async with executor:
                result = await executor.execute(budget.WITH_AGENT)
    except (MissingExtraError, ImportError):
        out.write("\n== MCP + A2A: skipped (the A2A agent needs the a2a extra: pip install 'ptc[a2a]') ==\n")
        return None
    agent_calls = [c for c in result.tool_calls if c.type == "a2a"]
    calls = f"{len(result.tool_calls)} tool calls ({len(agent_calls)} to the A2A agent `advisor` at {url}"
    _report(out, f"MCP + A2A: {calls}, started by the demo) in {result.execution_time:.3f} s", result)
    out.write(
        f"\nA2A: {len(statuses)} task status updates as a2a_status events "
        f"({', '.join(dict.fromkeys(e.state or '?' for e in statuses))}); the agent is stopped\n"
    )
    return result


def main() -> int:
    results = asyncio.run(run_demo())
    return 0 if all(r.error is None for r in results.values()) else 1
