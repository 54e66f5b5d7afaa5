"""pydantic-monty: a Python interpreter in Rust, run by a pool of worker processes (`AsyncMonty`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import Clock, atimed, version_of

from adapters.base import NAP_S, NAP_VALUE, TRIVIAL, Sandbox, expect, sum_below

LIMITS = {"max_suspensions": 100_000}  # a feed suspends once per external call; the default cap is 1,000


async def noop(x: int) -> int:
    return x


async def nap(x: int) -> int:
    await asyncio.sleep(NAP_S)
    return x


class Adapter(Sandbox):
    """`AsyncMonty` pool of `monty` worker processes. Cold start: a new `checkout()` session (fresh state) per run
    on a warm pool; reused: `feed_run` again on one session; sessions: a new `checkout()` session per agent run,
    `feed_run(block, print_callback=CollectString())` for each block (a session keeps its globals across feeds),
    and the `x = 1` cells fed to one checked-out session; new host: a new `AsyncMonty()` pool (spawns a worker)
    per run; fresh process: the `monty -c` binary. Tools: `async def` externals through `external_lookup`; CPU:
    `feed_run` on a fresh session."""

    key, title = "monty", "pydantic-monty"
    requirement = "pydantic-monty==1.4.0"
    gather_mode = "asyncio.gather (AsyncMonty awaits coroutine externals concurrently)"

    async def start(self) -> None:
        self.pm: Any = importlib.import_module("pydantic_monty")
        names = ("pydantic-monty", "pydantic-monty-client", "pydantic-monty-runtime")
        self.rec.info["versions"] = {name: version_of(name) for name in names}
        clock = Clock()
        self.stack = contextlib.AsyncExitStack()
        self.pool = await self.stack.enter_async_context(self.pm.AsyncMonty())
        self.rec.info["pool_start_s"] = clock.split()
        await self.run(TRIVIAL)
        self.rec.info["first_checkout_s"] = clock.split()

    async def run(self, code: str, expected: object = None) -> None:
        # A checkout is a fresh session on a warm worker: nothing from an earlier one is visible.
        async with self.pool.checkout(limits=LIMITS) as session:
            expect("value", await session.feed_run(code, external_lookup={"noop": noop, "nap": nap}), expected)

    async def calls(self, n: int) -> None:
        await self.run(f"total = 0\nfor i in range({n}):\n    total += await noop(x=i)\ntotal\n", sum_below(n))

    async def gather(self) -> None:
        code = "import asyncio\nvalues = await asyncio.gather(nap(x=0), nap(x=1), nap(x=2))\nsum(values)\n"
        await self.run(code, NAP_VALUE)

    async def reused(self, runs: int) -> list[float]:
        async with self.pool.checkout(limits=LIMITS) as session:

            async def once() -> None:
                expect("value", await session.feed_run(TRIVIAL), None)

            return await atimed(once, runs)

    async def agent_run(self, blocks: Sequence[str], expected: str) -> tuple[float, float]:
        with Clock() as whole:
            async with self.pool.checkout(limits=LIMITS) as session:
                with Clock() as inner:
                    for block in blocks:
                        printed = self.pm.CollectString()  # else it prints to this process's stdout
                        await session.feed_run(block, print_callback=printed)
        expect("output", printed.output.strip(), expected)
        return whole.wall, inner.wall

    async def session_cells(self, runs: int) -> list[float]:
        async with self.pool.checkout(limits=LIMITS) as session:
            expect("value", await session.feed_run("x = 0"), None)

            async def once() -> None:
                expect("value", await session.feed_run(TRIVIAL), None)

            await atimed(once, self.settings.warmup * 10)
            return await atimed(once, runs)

    async def close(self) -> None:
        await self.stack.aclose()

    async def new_host(self) -> None:
        async with self.pm.AsyncMonty() as own, own.checkout() as session:
            expect("value", await session.feed_run(TRIVIAL), None)

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        return [str(Path(sys.executable).with_name("monty")), "-c", TRIVIAL], None
