"""`ptc demo`: the budget walkthrough, sequential and under asyncio.gather."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from ptc.executor import ProgrammaticToolExecutor
from ptc.results import ExecutionResult


def _table(result: ExecutionResult, out: TextIO) -> None:
    if not result.tool_calls:
        return
    start = min(call.timestamp for call in result.tool_calls)
    out.write(f"  {'#':>2}  {'tool':<18} {'parameters':<58} {'start':>7} {'took':>7}  status\n")
    for n, call in enumerate(result.tool_calls, 1):
        params = ", ".join(f"{k}={v!r}" for k, v in (call.parameters or {}).items())
        status = "ok" if call.error is None else f"{call.error.type}"
        out.write(
            f"  {n:>2}  {call.tool:<18} {params[:58]:<58} {call.timestamp - start:>6.3f}s "
            f"{(call.duration or 0):>6.3f}s  {status}\n"
        )


async def run_demo(out: TextIO = sys.stdout) -> dict[str, ExecutionResult]:
    from ptc.examples import budget

    executor = ProgrammaticToolExecutor(budget.catalog, timeout=30)
    out.write(f"ptc demo: {len(budget.TEAMS)} teams, 2 tools per team, {budget.LATENCY * 1000:.0f} ms per call\n")
    results: dict[str, ExecutionResult] = {}
    for label, code in (("sequential", budget.SEQUENTIAL), ("asyncio.gather", budget.GATHER)):
        result = await executor.execute(code)
        results[label] = result
        out.write(f"\n== {label}: {len(result.tool_calls)} tool calls in {result.execution_time:.3f} s ==\n")
        out.write(result.output)
        if result.error:
            out.write(f"error: {result.error}\n{result.error.traceback}")
        _table(result, out)
    sequential, gathered = results["sequential"], results["asyncio.gather"]
    out.write(
        f"\nsummary: sequential {sequential.execution_time:.3f} s, gather {gathered.execution_time:.3f} s "
        f"({sequential.execution_time / max(gathered.execution_time, 1e-9):.1f}x faster); "
        f"same result: {sequential.result == gathered.result}\n"
    )
    return results


def main() -> int:
    results = asyncio.run(run_demo())
    return 0 if all(r.error is None for r in results.values()) else 1
