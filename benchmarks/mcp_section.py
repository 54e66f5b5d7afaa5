"""MCP figures: what ptc adds to a trivial MCP tool call, and concurrent MCP calls.

Both sides talk to the same real MCP server (benchmarks/mcp_echo_server.py,
stdio subprocess): directly through the SDK's client, and from a program in
the sandbox through ptc's MCP backend.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import Row, info
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from ptc import Limits, ProgrammaticToolExecutor

SERVER = Path(__file__).with_name("mcp_echo_server.py")


async def _direct(calls: int, concurrent: int, runs: int) -> dict[str, Any]:
    import asyncio

    async with Client(StdioServerParameters(command=sys.executable, args=[str(SERVER)])) as client:
        for _ in range(20):
            await client.call_tool("echo", {"text": "warm"})
        started = time.perf_counter()
        for i in range(calls):
            await client.call_tool("echo", {"text": str(i)})
        per_call = (time.perf_counter() - started) / calls
        walls = []
        for _ in range(runs):
            started = time.perf_counter()
            await asyncio.gather(*(client.call_tool("nap", {"text": str(i)}) for i in range(concurrent)))
            walls.append(time.perf_counter() - started)
    return {"us_per_call": per_call * 1e6, "concurrent_wall_ms": statistics.median(walls) * 1e3}


async def _through_ptc(calls: int, concurrent: int, runs: int) -> dict[str, Any]:
    limits = Limits(timeout=120, max_tool_calls=calls + 10)
    async with ProgrammaticToolExecutor(mcp_servers={"echo": f"{sys.executable} {SERVER}"}, limits=limits) as ex:
        warm = await ex.execute("from tools.echo import echo\nfor i in range(20):\n    await echo(text='warm')")
        assert warm.error is None, warm.error
        empty = await ex.execute("from tools.echo import echo")
        seq = await ex.execute(f"from tools.echo import echo\nfor i in range({calls}):\n    await echo(text=str(i))")
        assert seq.error is None and len(seq.tool_calls) == calls, seq.error
        per_call = (seq.execution_time - empty.execution_time) / calls
        walls = []
        program = (
            "import asyncio\nfrom tools.echo import nap\n"
            f"await asyncio.gather(*(nap(text=str(i)) for i in range({concurrent})))"
        )
        for _ in range(runs):
            r = await ex.execute(program)
            assert r.error is None and len(r.tool_calls) == concurrent, r.error
            walls.append(r.execution_time - empty.execution_time)
    return {"us_per_call": per_call * 1e6, "concurrent_wall_ms": statistics.median(walls) * 1e3}


async def measure(quick: bool) -> dict[str, Any]:
    calls, runs = (200, 3) if quick else (1000, 5)
    direct = await _direct(calls, 50, runs)
    ptc = await _through_ptc(calls, 50, runs)
    return {
        "calls": calls,
        "concurrent": 50,
        "nap_ms": 50,
        "direct": direct,
        "ptc": ptc,
        "overhead_us_per_call": ptc["us_per_call"] - direct["us_per_call"],
    }


def rows(figures: dict[str, Any]) -> list[Row]:
    direct, ptc = figures["direct"], figures["ptc"]
    return [
        info(
            f"MCP `echo` round trip, {figures['calls']:,} sequential calls: direct SDK client, µs per call",
            f"{direct['us_per_call']:.0f} µs",
        ),
        info(
            "MCP `echo` round trip through the sandbox (net of an empty program), µs per call",
            f"{ptc['us_per_call']:.0f} µs",
        ),
        info("MCP: what ptc adds per call", f"{figures['overhead_us_per_call']:.0f} µs"),
        info(
            f"{figures['concurrent']} concurrent {figures['nap_ms']} ms MCP calls: direct SDK `gather` / "
            "sandbox program `gather`, wall",
            f"{direct['concurrent_wall_ms']:.1f} ms / {ptc['concurrent_wall_ms']:.1f} ms",
        ),
    ]
