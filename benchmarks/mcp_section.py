"""MCP figures: what ptc adds to a trivial MCP tool call, and concurrent MCP calls.

Both sides talk to the same real MCP server (benchmarks/mcp_echo_server.py,
stdio subprocess): directly through the SDK's client, and from a program in
the sandbox through ptc's MCP backend.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

from harness import Row, atimed, check
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ptc import Limits, ProgrammaticToolExecutor

SERVER = Path(__file__).with_name("mcp_echo_server.py")
CONCURRENT, NAP_MS = 50, 50


async def _direct(calls: int, runs: int) -> dict[str, Any]:
    async with Client(StdioServerParameters(command=sys.executable, args=[str(SERVER)])) as client:
        for _ in range(20):
            await client.call_tool("echo", {"text": "warm"})
        seconds = sum(await atimed(lambda: client.call_tool("echo", {"text": "x"}), calls))
        naps = lambda: asyncio.gather(*(client.call_tool("nap", {"text": str(i)}) for i in range(CONCURRENT)))  # noqa: E731
        walls = await atimed(naps, runs)
    return {"us_per_call": seconds / calls * 1e6, "concurrent_wall_ms": statistics.median(walls) * 1e3}


async def _through_ptc(calls: int, runs: int) -> dict[str, Any]:
    limits = Limits(timeout=120, max_tool_calls=calls + 10)
    async with ProgrammaticToolExecutor(mcp_servers={"echo": f"{sys.executable} {SERVER}"}, limits=limits) as ex:
        check(
            await ex.execute("from tools.echo import echo\nfor i in range(20):\n    await echo(text='warm')"), "warm-up"
        )
        empty = check(await ex.execute("from tools.echo import echo"), "empty program").execution_time
        seq = await ex.execute(f"from tools.echo import echo\nfor i in range({calls}):\n    await echo(text=str(i))")
        assert len(check(seq, "echo calls").tool_calls) == calls
        program = (
            "import asyncio\nfrom tools.echo import nap\n"
            f"await asyncio.gather(*(nap(text=str(i)) for i in range({CONCURRENT})))"
        )
        walls = [check(await ex.execute(program), "naps").execution_time - empty for _ in range(runs)]
    return {
        "us_per_call": (seq.execution_time - empty) / calls * 1e6,
        "concurrent_wall_ms": statistics.median(walls) * 1e3,
    }


async def measure(quick: bool) -> dict[str, Any]:
    calls, runs = (200, 3) if quick else (1000, 5)
    direct, ptc = await _direct(calls, runs), await _through_ptc(calls, runs)
    overhead = ptc["us_per_call"] - direct["us_per_call"]
    figures = {"calls": calls, "concurrent": CONCURRENT, "nap_ms": NAP_MS, "direct": direct, "ptc": ptc}
    return {**figures, "overhead_us_per_call": overhead}


def rows(figures: dict[str, Any]) -> list[Row]:
    direct, ptc = figures["direct"], figures["ptc"]
    return [
        Row(
            f"MCP `echo` round trip, {figures['calls']:,} sequential calls: direct SDK client, µs per call",
            f"{direct['us_per_call']:.0f} µs",
        ),
        Row(
            "MCP `echo` round trip through the sandbox (net of an empty program), µs per call",
            f"{ptc['us_per_call']:.0f} µs",
        ),
        Row("MCP: what ptc adds per call", f"{figures['overhead_us_per_call']:.0f} µs"),
        Row(
            f"{figures['concurrent']} concurrent {figures['nap_ms']} ms MCP calls: direct SDK `gather` / "
            "sandbox program `gather`, wall",
            f"{direct['concurrent_wall_ms']:.1f} ms / {ptc['concurrent_wall_ms']:.1f} ms",
        ),
    ]
