"""What shared state in Redis adds: per tool call with an idempotency key, per execution with a quota.

Starts its own redis-server on a free loopback port (Debian's package) and
compares one executor with `state=None` against one with `state=RedisState`,
same catalog and programs, medians over many runs:

    python benchmarks/redis_cost.py [runs]

per execution: `x = 1`, which calls no tool (the fleet-wide quota slot,
taken and freed, is the whole difference);
per call: a program making CALLS sequential calls, each with a new
idempotency key (so each claims, runs and stores), minus the same program
with no calls, divided by CALLS.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import RedisServer  # noqa: E402

from ptc import ProgrammaticToolExecutor, RedisState, ToolCatalog, ToolDefinition, ToolParameter  # noqa: E402

CALLS = 20


def catalog() -> ToolCatalog:
    cat = ToolCatalog()
    cat.add_tool(
        ToolDefinition(name="echo", domain="t", parameters=[ToolParameter(name="n", type="integer")]),
        handler=lambda p: p["n"],
    )
    return cat


def program(run: int, calls: int, keyed: bool) -> str:
    key = (lambda i: f", idempotency_key='r{run}-{i}'") if keyed else (lambda i: "")
    body = "".join(f"await echo(n={i}{key(i)})\n" for i in range(calls))
    return "from tools.t import echo\n" + body + "x = 1\n"


async def median(ex: ProgrammaticToolExecutor, runs: int, calls: int, offset: int, keyed: bool = True) -> float:
    times = []
    for run in range(runs):
        code = program(offset + run, calls, keyed)
        started = time.perf_counter()
        result = await ex.execute(code)
        times.append(time.perf_counter() - started)
        assert result.error is None, result.error
    return statistics.median(times)


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        state = RedisState(server.url)
        local = ProgrammaticToolExecutor(catalog(), tenant_id="bench-local")
        shared = ProgrammaticToolExecutor(catalog(), tenant_id="bench-shared", state=state)
        try:
            for ex in (local, shared):
                await ex.warm_up()
                await median(ex, 5, CALLS, 10_000_000)  # warm: stubs compiled, connections open
            figures = {}
            for name, ex in (("local", local), ("redis", shared)):
                figures[name, "none"] = await median(ex, runs, 0, 0)
                figures[name, "plain"] = await median(ex, runs, CALLS, runs, keyed=False)
                figures[name, "keyed"] = await median(ex, runs, CALLS, 2 * runs)

            def added(kind: str) -> float:
                return (figures["redis", kind] - figures["redis", "none"]) - (
                    figures["local", kind] - figures["local", "none"]
                )

            print(f"runs={runs}, medians")
            for (name, kind), value in sorted(figures.items()):
                calls = 0 if kind == "none" else CALLS
                print(f"  {name:5} {kind:5} ({calls} calls): {value * 1000:8.3f} ms per execution")
            per_execution = figures["redis", "none"] - figures["local", "none"]
            print(f"Redis adds per execution (quota slot): {per_execution * 1000:.3f} ms")
            print(f"Redis adds per tool call without a key (breaker): {added('plain') / CALLS * 1000:.3f} ms")
            print(f"Redis adds per tool call with an idempotency key: {added('keyed') / CALLS * 1000:.3f} ms")
        finally:
            await local.aclose()
            await shared.aclose()
            state.close()
            server.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 200))
