"""Faulty tools under real policies: every call recorded, retries/breakers/timeouts do their job."""

import asyncio
import random

from ptc import Policy, ProgrammaticToolExecutor, RetryableError, ToolCatalog


def flaky_catalog(seed: int):
    rng = random.Random(seed)
    catalog = ToolCatalog()
    stats = {"runs": 0}

    @catalog.tool(domain="svc")
    async def sometimes(i: int) -> int:
        stats["runs"] += 1
        await asyncio.sleep(0)
        roll = rng.random()
        if roll < 0.3:
            raise RetryableError("transient")
        if roll < 0.4:
            raise ValueError("permanent")
        if roll < 0.45:
            await asyncio.sleep(10)  # hangs past the timeout
        return i

    @catalog.tool(domain="svc")
    def garbage(kind: str) -> object:
        return {"set": {1, 2}, "object": object(), "bytes": b"\xff" * 10}[kind]

    return catalog, stats


PROGRAM = """
import asyncio
from tools.svc import sometimes
from tools import ToolError
async def one(i):
    try:
        return ["ok", await sometimes(i=i)]
    except ToolError as e:
        return [type(e).__name__, str(e)]
result = await asyncio.gather(*(one(i) for i in range(60)))
"""


async def test_random_failures_are_retried_timed_out_and_all_recorded():
    catalog, stats = flaky_catalog(seed=7)
    policy = Policy(timeout=0.2, max_retries=3, backoff=0.01, circuit_failure_threshold=1000)
    events = []
    ex = ProgrammaticToolExecutor(catalog, policy=policy, timeout=30, on_event=events.append)
    r = await ex.execute(PROGRAM)
    assert r.error is None, r.error
    outcomes = r.result
    assert len(outcomes) == 60 and len(r.tool_calls) == 60  # one record per call, none lost
    for i, (outcome, record) in enumerate(
        zip(outcomes, sorted(r.tool_calls, key=lambda c: c.parameters["i"]), strict=True)
    ):
        assert record.parameters == {"i": i}
        if outcome[0] == "ok":
            assert outcome[1] == i and record.error is None
        else:
            assert record.error is not None and record.error.type == outcome[0]
        assert 1 <= record.attempts <= 4
    assert sum(rec.attempts for rec in r.tool_calls) == stats["runs"]  # every attempt is counted
    assert any(rec.attempts > 1 and rec.error is None for rec in r.tool_calls)  # retries rescued some calls
    kinds = {o[0] for o in outcomes}
    assert "ToolError" in kinds  # permanent failures were not retried into success
    retried = [e.error for e in events if e.kind == "retry"]
    assert retried and not any("permanent" in error for error in retried)  # only transient failures are retried
    assert any("ToolTimeoutError" in error for error in retried)  # timeouts are transient


async def test_breaker_trips_under_a_failing_backend_and_calls_are_still_recorded():
    catalog = ToolCatalog()

    @catalog.tool(domain="svc")
    def down() -> str:
        raise ConnectionError("backend down")

    ex = ProgrammaticToolExecutor(
        catalog, policy=Policy(max_retries=0, circuit_failure_threshold=3, circuit_reset_timeout=60)
    )
    r = await ex.execute(
        "from tools.svc import down\nfrom tools import ToolError\nout = []\nfor _ in range(10):\n"
        "    try:\n        await down()\n    except ToolError as e:\n        out.append(type(e).__name__)\nout"
    )
    assert r.result == ["ToolError"] * 3 + ["CircuitOpenError"] * 7
    assert [c.error.type for c in r.tool_calls] == r.result


async def test_garbage_results_become_recorded_tool_errors():
    catalog, _ = flaky_catalog(seed=1)
    ex = ProgrammaticToolExecutor(catalog)
    r = await ex.execute(
        "from tools.svc import garbage\nfrom tools import ToolError\nout = []\nfor k in ['set', 'object', 'bytes']:\n"
        "    try:\n        out.append(await garbage(kind=k))\n    except ToolError as e:\n        out.append('error')\nout"
    )
    assert r.result == ["error", "error", b"\xff" * 10]
    assert [c.error is not None for c in r.tool_calls] == [True, True, False]
