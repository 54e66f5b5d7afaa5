"""ptc itself, in the comparing process, through its public API."""

from __future__ import annotations

import asyncio
import sys

from harness import Clock, check, version_of

from adapters.base import NAP_S, NAP_VALUE, REUSE, TRIVIAL, Sandbox, sum_below
from ptc import Limits, ProgrammaticToolExecutor, ToolCatalog

PROCESS = (
    "from ptc import ProgrammaticToolExecutor\n"
    "result = ProgrammaticToolExecutor().execute_sync('x = 1')\n"
    "raise SystemExit(result.error is not None)\n"
)
GATHER = "import asyncio\nfrom tools.bench import nap\nvalues = await asyncio.gather(nap(x=0), nap(x=1), nap(x=2))\n"


def catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="benchmarks-peers")

    @catalog.tool(domain="bench")
    async def noop(x: int) -> int:
        """Return x."""
        return x

    @catalog.tool(domain="bench")
    async def nap(x: int) -> int:
        """Sleep 200 ms, then return x."""
        await asyncio.sleep(NAP_S)
        return x

    return catalog


class Adapter(Sandbox):
    """`await executor.execute(code)` in one running loop (default `Limits` but a 60 s timeout; tools:
    `max_tool_calls=20_000`), every execution a fresh instance of the snapshot. New host: a new
    `ProgrammaticToolExecutor` per run; fresh process: `python -c` importing ptc and calling `execute_sync`."""

    key = title = "ptc"
    in_process = True
    not_applicable = {REUSE: "every execution gets a fresh instance of the snapshot; nothing is kept"}

    async def start(self) -> None:
        self.rec.info["versions"] = {"ptc": version_of("ptc"), "wasmtime": version_of("wasmtime")}
        self.plain = ProgrammaticToolExecutor(limits=Limits(timeout=60))
        self.no_fuel = ProgrammaticToolExecutor(limits=Limits(timeout=60, fuel=None))
        self.tools = ProgrammaticToolExecutor(catalog(), limits=Limits(timeout=120, max_tool_calls=20_000))
        with Clock() as clock:
            await self.run(TRIVIAL)
        self.rec.info["first_execution_s"] = clock.wall

    async def run(self, code: str, expected: object = None, executor: ProgrammaticToolExecutor | None = None) -> None:
        check(await (executor or self.plain).execute(code), "program", expected)

    async def calls(self, n: int) -> None:
        code = f"from tools.bench import noop\ntotal = 0\nfor i in range({n}):\n    total += await noop(x=i)\ntotal\n"
        await self.run(code, sum_below(n), self.tools)

    async def gather(self) -> None:
        await self.run(GATHER + "sum(values)\n", NAP_VALUE, self.tools)

    async def new_host(self) -> None:
        await self.run(TRIVIAL, None, ProgrammaticToolExecutor(limits=Limits(timeout=60)))

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        return [sys.executable, "-c", PROCESS], None

    async def measure_cpu(self, suffix: str = "", **options: object) -> None:
        await super().measure_cpu()
        await super().measure_cpu("_nofuel", executor=self.no_fuel)
