"""A second process for tests/test_redis_state.py: one executor against the same Redis server.

python tests/redis_worker.py MODE URL DIR: runs MODE's program, writes its
outcome as JSON to DIR/<MODE>-<pid>.json. The handlers count what they run
in files under DIR, so the test counts runs across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from ptc import Policy, ProgrammaticToolExecutor, Quota, RedisState, ToolCatalog, ToolDefinition, ToolParameter


def catalog(out: Path) -> ToolCatalog:
    cat = ToolCatalog()
    out = Path(os.environ.get("COUNT_DIR", str(out)))  # where runs are counted (shared by phases of a test)

    async def charge(payload: dict[str, object]) -> dict[str, object]:
        with open(out / "charge-runs", "a") as f:  # one line per run, from any process
            f.write(f"{os.getpid()}\n")
        await asyncio.sleep(float(os.environ.get("CHARGE_SECONDS", "0.5")))
        return {"charged": payload["amount"], "by": os.getpid()}

    async def flaky(payload: dict[str, object]) -> str:
        with open(out / "flaky-runs", "a") as f:
            f.write(f"{os.getpid()}\n")
        if (out / "flaky-ok").exists():
            await asyncio.sleep(1.0)  # the half-open trial: long enough that every other caller arrives during it
            return "ok"
        raise ConnectionError("backend down")

    async def slot(payload: dict[str, object]) -> str:
        mark = out / "slot-active"
        with open(out / "slot-log", "a") as f:
            f.write(f"start {time.time()} {os.getpid()}\n")
        await asyncio.sleep(0.3)
        with open(out / "slot-log", "a") as f:
            f.write(f"end {time.time()} {os.getpid()}\n")
        return str(mark)

    cat.add_tool(
        ToolDefinition(name="charge", domain="pay", parameters=[ToolParameter(name="amount", type="integer")]),
        handler=charge,
    )
    cat.add_tool(ToolDefinition(name="flaky", domain="net", parameters=[], backend="net"), handler=flaky)
    cat.add_tool(ToolDefinition(name="slot", domain="work", parameters=[]), handler=slot)

    def transfer(payload: dict[str, object]) -> str:
        with open(out / "transfer-runs", "a") as f:
            f.write(f"{os.getpid()}\n")
        return f"sent {payload['amount']}"

    cat.add_tool(
        ToolDefinition(
            name="transfer",
            domain="bank",
            parameters=[ToolParameter(name="amount", type="integer")],
            policy=Policy(requires_approval=True),
        ),
        handler=transfer,
    )
    return cat


PROGRAMS = {
    "charge": "from tools.pay import charge\nresult = await charge(amount=5, idempotency_key='order-1')",
    "flaky": (
        "from tools.net import flaky\nfrom tools import ToolError\n"
        "try:\n    result = await flaky()\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]"
    ),
    "slot": "from tools.work import slot\nresult = await slot()",
}


async def other_side(ex: ProgrammaticToolExecutor, mode: str) -> dict[str, object]:
    """restore: a session by id, one more cell; resume: a suspended execution by id, approved."""
    if mode == "restore":
        session = await ex.restore_session(os.environ["SESSION_ID"])
        result = await session.execute("result = [x, y, x + y]")
        await session.aclose()
        return {"result": result.result, "error": result.error.message if result.error else None}
    result = await ex.resume(os.environ["EXECUTION_ID"], {os.environ["CALL_ID"]: True})
    return {"result": result.result, "error": result.error.message if result.error else None}


async def main(mode: str, url: str, out: Path, count: int) -> None:
    tenant = os.environ.get("TENANT", "t-" + mode)
    state = RedisState(url, lease=float(os.environ.get("LEASE", "10")))
    quota = Quota(max_concurrent=1, max_queued=16) if mode == "slot" else None
    events: list[str] = []
    ex = ProgrammaticToolExecutor(
        catalog(out),
        state=state,
        tenant_id=tenant,
        quota=quota,
        policy=Policy(
            circuit_failure_threshold=2, circuit_reset_timeout=float(os.environ.get("RESET", "4")), timeout=20
        ),
        on_event=lambda e: events.append(e.kind),
        timeout=30,
    )
    await ex.warm_up()
    if mode in ("restore", "resume"):
        (out / f"{mode}-{os.getpid()}.json").write_text(json.dumps(await other_side(ex, mode)))
        await ex.aclose()
        state.close()
        return
    (out / f"ready-{mode}-{os.getpid()}").touch()
    go = out / "go"
    while not go.exists():
        await asyncio.sleep(0.01)
    results = await asyncio.gather(*(ex.execute(PROGRAMS[mode]) for _ in range(count)))
    outcome = [
        {"result": r.result, "error": r.error.message if r.error else None, "hits": [c.cache_hit for c in r.tool_calls]}
        for r in results
    ]
    (out / f"{mode}-{os.getpid()}.json").write_text(json.dumps({"outcome": outcome, "events": events}))
    await ex.aclose()
    state.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1))
