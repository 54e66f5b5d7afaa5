"""ptc itself, in the comparing process, through its public API."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from harness import Clock, atimed, check, version_of

from adapters.base import NAP_S, NAP_VALUE, REUSE, TRIVIAL, Sandbox, expect, sum_below
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
    `max_tool_calls=20_000`), every execution a fresh instance of the snapshot. Sessions: a new
    `executor.session()` per agent run, `await session.execute(block)` for each block (the first takes an
    instance, from the executor's spares when one is ready), then `aclose()`; the `x = 1` cells in one open
    session. New host: a new `ProgrammaticToolExecutor` per run; fresh process: `python -c` importing ptc and
    calling `execute_sync`."""

    key = title = "ptc"
    in_process = True
    not_applicable = {
        REUSE: "every execution gets a fresh instance of the snapshot; nothing is kept (a session keeps its "
        "state: see the session rows)"
    }

    async def start(self) -> None:
        self.rec.info["versions"] = {"ptc": version_of("ptc"), "wasmtime": version_of("wasmtime")}
        self.plain = ProgrammaticToolExecutor(limits=Limits(timeout=60))
        self.no_fuel = ProgrammaticToolExecutor(limits=Limits(timeout=60, fuel=None))
        self.tools = ProgrammaticToolExecutor(catalog(), limits=Limits(timeout=120, max_tool_calls=20_000))
        self.sessions = ProgrammaticToolExecutor(limits=Limits(timeout=60))
        await self.sessions.warm_up()
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

    async def agent_run(self, blocks: Sequence[str], expected: str) -> tuple[float, float]:
        with Clock() as whole:
            session = self.sessions.session()
            with Clock() as inner:
                results = [await session.execute(block) for block in blocks]
            await session.aclose()
        for i, result in enumerate(results):
            check(result, f"agent block {i}")
        expect("output", results[-1].output.strip(), expected)
        return whole.wall, inner.wall

    async def session_cells(self, runs: int) -> list[float]:
        session = self.sessions.session()
        try:
            check(await session.execute("x = 0"), "first cell")

            async def once() -> None:
                check(await session.execute(TRIVIAL), "cell")

            await atimed(once, self.settings.warmup * 10)
            return await atimed(once, runs)
        finally:
            await session.aclose()

    async def close(self) -> None:
        await self.sessions.aclose()

    async def new_host(self) -> None:
        await self.run(TRIVIAL, None, ProgrammaticToolExecutor(limits=Limits(timeout=60)))

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        return [sys.executable, "-c", PROCESS], None

    async def measure_cpu(self, suffix: str = "", **options: object) -> None:
        await super().measure_cpu()
        await super().measure_cpu("_nofuel", executor=self.no_fuel)
