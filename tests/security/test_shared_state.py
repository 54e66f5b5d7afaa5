"""Shared state survives whatever a program controls.

Breakers, the idempotency cache, thread pools and admission are shared by
every execution of an executor (every client of `ptc serve`), and threads
and admission by every tenant of the process. Each case here has one
program do something it fully controls (abandon a call, fail on purpose,
squat a key, flood) and then checks that another execution, or another
tenant, is still served as if nothing happened: only the honest failure of
a backend may change what others get.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

import ptc.tenancy
from ptc import Limits, OverCapacityError, Policy, ProgrammaticToolExecutor, Quota, ToolCatalog, ToolError, ToolEvent
from ptc.errors import CircuitOpenError
from ptc.hostcalls.calls.breaker import CircuitBreaker

SHOP = Path(__file__).resolve().parents[1] / "mcp_servers" / "shop.py"
STDIO = f"{sys.executable} {SHOP}"
MiB = 1024 * 1024
TRY = "from tools import ToolError\ntry:\n    result = await {call}\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]"


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait (polling) until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.01)


# -- 1. an abandoned half-open trial must not wedge the breaker --------------------------------


class Backend:
    """One backend behind a tool; the host (never the program) decides how it behaves."""

    def __init__(self) -> None:
        self.mode = "up"  # "up", "down" (ConnectionError) or "slow" (answers after 30 s)
        self.calls = 0

    async def __call__(self, payload: dict) -> int:
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "down":
            raise ConnectionError("backend down")
        return payload["x"]


def backend_executor(backend: Backend, tenant: str, **policy) -> ProgrammaticToolExecutor:
    from ptc import ToolDefinition, ToolParameter

    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(name="svc", domain="ops", parameters=[ToolParameter(name="x", type="integer")]), handler=backend
    )
    return ProgrammaticToolExecutor(catalog, policy=Policy(timeout=5, **policy), tenant_id=tenant, timeout=5)


ABANDON = {
    "wait_for": "import asyncio\nfrom tools.ops import svc\ntry:\n    await asyncio.wait_for(svc(x=1), 0.1)\nexcept TimeoutError:\n    result = 'gave up'",
    "program-ends": "import asyncio\nfrom tools.ops import svc\ntask = asyncio.create_task(svc(x=1))\nawait asyncio.sleep(0.1)\nresult = 'left it'",
    "execution-timeout": "from tools.ops import svc\nawait svc(x=1)",
    "caller-cancels": "from tools.ops import svc\nawait svc(x=1)",
}


@pytest.mark.parametrize("how", list(ABANDON))
async def test_an_abandoned_half_open_trial_does_not_wedge_the_breaker(how):
    backend = Backend()
    ex = backend_executor(backend, f"breaker-trial-{how}", circuit_failure_threshold=1, circuit_reset_timeout=0.2)
    backend.mode = "down"
    r = await ex.execute("from tools.ops import svc\n" + TRY.format(call="svc(x=1)"))
    assert r.result[0] == "ToolError"  # an honest failure: the circuit opens
    await asyncio.sleep(0.25)
    backend.mode = "slow"  # the half-open trial will hang, and the program abandons it
    if how == "execution-timeout":
        r = await ex.execute(ABANDON[how], limits=Limits(timeout=0.3))
        assert r.error is not None and r.error.kind == "timeout"
    elif how == "caller-cancels":
        task = asyncio.create_task(ex.execute(ABANDON[how]))
        await until(lambda: backend.calls == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        r = await ex.execute(ABANDON[how])
        assert r.error is None, r.error
    assert backend.calls == 2  # the trial did reach the backend
    backend.mode = "up"
    await asyncio.sleep(0.25)  # well past any cool-down
    # Another execution, once the backend is healthy, is served.
    r = await ex.execute("from tools.ops import svc\n" + TRY.format(call="svc(x=7)"))
    assert r.result == 7, r.result


async def test_an_abandoned_trial_does_not_take_out_an_mcp_server():
    """Through one MCP server's breaker: the program abandons the trial on `hang`; `get_weather` still works."""
    policy = Policy(timeout=5, circuit_failure_threshold=1, circuit_reset_timeout=0.2)
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=policy, tenant_id="breaker-mcp") as ex:
        r = await ex.execute("from tools.shop import crash\n" + TRY.format(call="crash()"))
        assert r.result[0] == "ToolError"  # the server died: an honest failure opens the circuit
        await asyncio.sleep(0.25)
        r = await ex.execute(
            "import asyncio\nfrom tools.shop import hang\ntry:\n    await asyncio.wait_for(hang(), 0.2)\nexcept TimeoutError:\n    result = 'gave up'"
        )
        assert r.result == "gave up", r.result
        r = await ex.execute("from tools.shop import get_weather\n" + TRY.format(call="get_weather(city='Oslo')"))
        assert r.result == "sunny in Oslo", r.result


def test_a_trial_that_never_reports_is_a_lease_that_expires():
    """The backstop: a trial whose call never reports back (a lost task) frees the breaker after its timeout."""
    breaker = CircuitBreaker("lease")
    policy = Policy(timeout=0.1, circuit_failure_threshold=1, circuit_reset_timeout=0.05)
    breaker.before_call(policy)
    breaker.record(False, policy)
    time.sleep(0.06)
    breaker.before_call(policy)  # the trial: it never records anything
    with pytest.raises(CircuitOpenError):
        breaker.before_call(policy)  # while it runs, no other call
    time.sleep(0.12)
    breaker.before_call(policy)  # the lease lapsed: a new trial may go


# -- 2. failures a program chooses must not open the breaker ------------------------------------


async def test_deliberate_tool_errors_and_rejected_calls_do_not_open_the_breaker():
    known = {"c-1": {"name": "Ada"}}
    health = {"down": False}
    catalog = ToolCatalog()

    @catalog.tool(domain="crm")
    def get_customer(customer_id: str) -> dict:
        """A lookup that fails on purpose for an unknown id."""
        if health["down"]:
            raise ConnectionError("database unreachable")
        if customer_id not in known:
            raise ToolError(f"no such customer {customer_id!r}")
        return known[customer_id]

    ex = ProgrammaticToolExecutor(
        catalog, policy=Policy(circuit_failure_threshold=3, circuit_reset_timeout=60), tenant_id="breaker-deliberate"
    )
    hostile = (
        "from tools.crm import get_customer\nfrom tools import ToolError\nout = []\n"
        "for i in range(10):\n"
        "    for args in ({'customer_id': f'nope-{i}'}, {'customer_id': i}, {'id': 'c-1'}):\n"
        "        try:\n            await get_customer(**args)\n        except ToolError as e:\n            out.append(type(e).__name__)\n"
        "sorted(set(out))"
    )
    r = await ex.execute(hostile)
    assert r.result == ["ToolError", "ToolValidationError"], r.result
    # Another execution (another client of the same server) is still served.
    r = await ex.execute("from tools.crm import get_customer\n" + TRY.format(call="get_customer(customer_id='c-1')"))
    assert r.result == {"name": "Ada"}, r.result
    # An honest backend failure still counts: three of them open the circuit.
    health["down"] = True
    code = "from tools.crm import get_customer\n" + TRY.format(call="get_customer(customer_id='c-1')")
    kinds = [(await ex.execute(code)).result[0] for _ in range(4)]
    assert kinds == ["ToolError", "ToolError", "ToolError", "CircuitOpenError"]


async def test_mcp_error_replies_do_not_open_the_server_breaker():
    """isError results and JSON-RPC refusals are the server answering; five of them deny nobody the server."""
    policy = Policy(timeout=5, circuit_failure_threshold=2, circuit_reset_timeout=60)
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=policy, tenant_id="breaker-iserror") as ex:
        r = await ex.execute(
            "from tools.shop import fail, reject\nfrom tools import ToolError\nout = []\nfor i in range(5):\n"
            "    for call in (fail(message=f'no such order {i}'), reject(order_id=i)):\n"
            "        try:\n            await call\n        except ToolError as e:\n            out.append(type(e).__name__)\nout"
        )
        assert r.result == ["ToolError"] * 10
        r = await ex.execute("from tools.shop import get_weather\n" + TRY.format(call="get_weather(city='Oslo')"))
        assert r.result == "sunny in Oslo", r.result


# -- 3. the idempotency cache ------------------------------------------------------------------


def keyed_executor(handler, tenant: str, **kwargs) -> ProgrammaticToolExecutor:
    from ptc import ToolDefinition, ToolParameter

    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(name="svc", domain="ops", parameters=[ToolParameter(name="x", type="integer")]), handler=handler
    )
    return ProgrammaticToolExecutor(catalog, tenant_id=tenant, timeout=10, **kwargs)


KEYED = "from tools.ops import svc\nawait svc(x=1, idempotency_key='k')"


async def test_a_joiner_takes_over_when_the_first_caller_is_cancelled():
    runs = {"n": 0}
    first_started = asyncio.Event()

    async def handler(payload: dict) -> int:
        runs["n"] += 1
        if runs["n"] == 1:
            first_started.set()
            await asyncio.sleep(30)  # the first run is cancelled with its execution
        return runs["n"]

    events: list[ToolEvent] = []
    ex = keyed_executor(handler, "idem-takeover", on_event=events.append)
    first = asyncio.create_task(ex.execute(KEYED))
    await asyncio.wait_for(first_started.wait(), 5)
    second = asyncio.create_task(ex.execute(KEYED))
    await until(lambda: any(e.kind == "cache_hit" for e in events))  # the second joined the first's call
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    r = await asyncio.wait_for(second, 5)
    assert r.error is None and r.result == 2, r.error  # it ran the call itself
    assert (await ex.execute(KEYED)).result == 2 and runs["n"] == 2  # and its result is the key's now


async def test_a_joiner_that_gives_up_does_not_break_the_call_for_the_others():
    release = asyncio.Event()
    runs = {"n": 0}

    async def handler(payload: dict) -> str:
        runs["n"] += 1
        await release.wait()
        return "done"

    events: list[ToolEvent] = []
    ex = keyed_executor(handler, "idem-joiner-cancel", on_event=events.append)
    runner = asyncio.create_task(ex.execute(KEYED))
    await until(lambda: runs["n"] == 1)
    quitter = asyncio.create_task(ex.execute(KEYED))
    await until(lambda: sum(e.kind == "cache_hit" for e in events) == 1)
    other = asyncio.create_task(ex.execute(KEYED))
    await until(lambda: sum(e.kind == "cache_hit" for e in events) == 2)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    await asyncio.sleep(0.05)
    release.set()
    ra, rb = await asyncio.wait_for(asyncio.gather(runner, other), 5)
    assert (ra.result, rb.result) == ("done", "done"), (ra.error, rb.error)
    assert runs["n"] == 1


async def test_a_key_cannot_be_squatted_by_another_execution():
    async def charge(payload: dict) -> dict:
        return {"charged": payload["x"]}

    ex = keyed_executor(charge, "idem-squat")
    squat = "from tools.ops import svc\nawait svc(x=0, idempotency_key='order-1')"
    assert (await ex.execute(squat)).result == {"charged": 0}
    # Another execution uses the same (predictable) key for its own call: it just runs.
    r = await ex.execute("from tools.ops import svc\n" + TRY.format(call="svc(x=5, idempotency_key='order-1')"))
    assert r.result == {"charged": 5}, r.result
    # The same call with the same key still gets the first call's result.
    assert (await ex.execute(squat)).result == {"charged": 0}
    assert [c.cache_hit for c in (await ex.execute(squat)).tool_calls] == [True]
    # Within one execution, reusing a key with other parameters is still the program's own error.
    r = await ex.execute(
        "from tools.ops import svc\nfrom tools import ToolValidationError\nawait svc(x=1, idempotency_key='mine')\n"
        "try:\n    await svc(x=2, idempotency_key='mine')\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "different parameters" in r.result


async def test_the_idempotency_cache_is_bounded_by_bytes():
    """Three executions each cache twelve 8 MiB results: the cache keeps at most its 64 MiB, least recently used out."""
    runs: dict[int, int] = {}

    def blob(x: int) -> str:
        runs[x] = runs.get(x, 0) + 1
        return "x" * (8 * MiB) + str(x)

    catalog = ToolCatalog()
    catalog.tool(domain="ops")(blob)
    ex = ProgrammaticToolExecutor(catalog, tenant_id="idem-memory", timeout=30)
    for execution in range(3):
        code = (
            "from tools.ops import blob\nsizes = []\n"
            f"for x in range({execution * 12}, {execution * 12 + 12}):\n"
            "    sizes.append(len(await blob(x=x, idempotency_key=f'k{x}')))\n"
            "if x == 35:\n    sizes.append(len(await blob(x=34, idempotency_key='k34')))\n"  # recently used: kept
            "sizes"
        )
        r = await ex.execute(code)
        assert r.error is None, r.error
    cache = ex.router.idempotency
    assert cache.bytes <= 64 * MiB and len(cache) <= 8, (cache.bytes, len(cache))
    again = "from tools.ops import blob\n[len(await blob(x=x, idempotency_key=f'k{x}')) for x in (0, 34)]"
    r = await ex.execute(again)
    assert r.error is None and [c.cache_hit for c in r.tool_calls] == [False, True]  # k0 was evicted, k34 kept
    assert runs[0] == 2 and runs[34] == 1


async def test_a_result_bigger_than_an_entry_share_is_not_cached():
    def blob(x: int) -> str:
        return "y" * (2 * MiB)

    catalog = ToolCatalog()
    catalog.tool(domain="ops")(blob)
    ex = ProgrammaticToolExecutor(catalog, tenant_id="idem-entry", timeout=10, idempotency_max_bytes=4 * MiB)
    code = "from tools.ops import blob\n[len(await blob(x=1, idempotency_key='big')) for _ in range(2)]"
    r = await ex.execute(code)
    assert r.result == [2 * MiB] * 2 and [c.cache_hit for c in r.tool_calls] == [False, False]
    assert ex.router.idempotency.bytes == 0


# -- 4. threads and admission ------------------------------------------------------------------


async def test_a_tenant_without_a_quota_cannot_take_every_execution_thread():
    flood = ProgrammaticToolExecutor(tenant_id="flood-no-quota", timeout=10)
    quiet = ProgrammaticToolExecutor(tenant_id="quiet-tenant", timeout=10)
    tasks = [asyncio.create_task(flood.execute("import time\ntime.sleep(2)")) for _ in range(300)]
    try:
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        r = await quiet.execute("1")
        elapsed = time.perf_counter() - started
        assert r.result == 1
        assert not any(t.done() and not t.cancelled() and t.exception() is None for t in tasks)  # ahead of them all
        assert elapsed < 1, elapsed
        rejected = [t for t in tasks if t.done() and isinstance(t.exception(), OverCapacityError)]
        assert len(rejected) == 300 - (Quota().max_concurrent + Quota().max_queued)  # the default quota holds
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_execution_threads_are_shared_fairly_between_tenants(monkeypatch):
    """Quotas that together exceed the process's threads: no tenant holds more than its share while others wait."""
    await until(lambda: ptc.tenancy.admission.running() == 0, 10)  # earlier tests' cancelled programs have stopped
    monkeypatch.setattr(ptc.tenancy.admission, "capacity", 8)
    big = Quota(max_concurrent=100, max_queued=100)
    flood = ProgrammaticToolExecutor(tenant_id="fair-flood", quota=big, timeout=10)
    quiet = ProgrammaticToolExecutor(tenant_id="fair-quiet", quota=big, timeout=10)
    tasks = [asyncio.create_task(flood.execute("import time\ntime.sleep(1.5)")) for _ in range(30)]
    try:
        await asyncio.sleep(0.3)
        started = time.perf_counter()
        r = await quiet.execute("1")
        elapsed = time.perf_counter() - started
        assert r.result == 1 and not any(t.done() for t in tasks) and elapsed < 1, elapsed
        assert ptc.tenancy.admission.held("fair-flood") <= 8 // 2
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_a_slot_comes_back_when_the_callers_loop_is_gone_before_its_program_stops():
    """asyncio.run(wait_for(execute(...), t)): the loop closes before the cancelled program's thread ends."""
    ex = ProgrammaticToolExecutor(tenant_id="slot-loop-gone", quota=Quota(max_concurrent=1, max_queued=0), timeout=10)

    def once_free(run):  # the cancelled program before may take an epoch tick to stop and free the slot
        deadline = time.monotonic() + 5
        while True:
            try:
                return run()
            except OverCapacityError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    for _ in range(3):
        with pytest.raises(TimeoutError):
            once_free(lambda: asyncio.run(asyncio.wait_for(ex.execute("while True:\n    pass"), 0.2)))
    assert once_free(lambda: ex.execute_sync("'next'")).result == "next"


def sync_executor(tenant: str) -> ProgrammaticToolExecutor:
    catalog = ToolCatalog()

    @catalog.tool(domain="legacy")
    def slow(seconds: float) -> str:
        """A blocking call (a sync client library)."""
        time.sleep(seconds)
        return "slow"

    @catalog.tool(domain="legacy")
    def instant() -> str:
        """Answers at once."""
        return "instant"

    return ProgrammaticToolExecutor(catalog, tenant_id=tenant, policy=Policy(timeout=1), timeout=10)


FILL_SYNC = (
    "import asyncio\nfrom tools.legacy import slow\n"
    "calls = [asyncio.create_task(slow(seconds=4)) for _ in range(40)]\n"
    "await asyncio.sleep(0.3)\n"
)
INSTANT = "from tools.legacy import instant\n" + TRY.format(call="instant()")


async def test_abandoned_sync_calls_do_not_starve_the_next_execution():
    ex = sync_executor("sync-abandoned")
    r = await ex.execute(FILL_SYNC + "result = 'walked away'")
    assert r.result == "walked away"
    r = await ex.execute(INSTANT)
    assert r.result == "instant" and r.tool_calls[0].duration < 0.5, (r.result, r.tool_calls[0].duration)


async def test_a_running_execution_cannot_hold_every_sync_thread():
    ex = sync_executor("sync-hog")
    hog = asyncio.create_task(ex.execute(FILL_SYNC + "await asyncio.gather(*calls, return_exceptions=True)"))
    try:
        await asyncio.sleep(0.3)
        r = await ex.execute(INSTANT)
        assert r.result == "instant" and r.tool_calls[0].duration < 0.5, (r.result, r.tool_calls[0].duration)
    finally:
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)


async def test_an_inline_async_tool_is_bound_by_the_execution_deadline():
    catalog = ToolCatalog()

    @catalog.tool(domain="fast", policy=Policy(inline=True, timeout=None))
    async def stall() -> str:
        """An inline tool that does not answer at once after all."""
        await asyncio.sleep(5)
        return "late"

    ex = ProgrammaticToolExecutor(catalog, tenant_id="inline-deadline", timeout=0.5)
    started = time.perf_counter()
    r = await ex.execute("from tools.fast import stall\nawait stall()")
    assert time.perf_counter() - started < 2
    assert r.error is not None and r.error.kind == "timeout", r.error


# -- 5. connect and quotas ---------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_concurrent_first_executions_connect_once(tmp_path):
    starts = tmp_path / "starts"
    command = ["sh", "-c", f'echo $$ >> "{starts}"; exec "{sys.executable}" "{SHOP}"']
    ex = ProgrammaticToolExecutor(mcp_servers={"shop": {"command": command}}, tenant_id="connect-once", timeout=20)
    pids: list[int] = []
    try:
        code = "from tools.shop import pid\nawait pid()"
        results = await asyncio.gather(ex.execute(code), ex.execute(code))
        assert [r.error for r in results] == [None, None]
        pids = [int(line) for line in starts.read_text().split()]
        assert len(pids) == 1, f"{len(pids)} server processes were started"
        assert {r.result for r in results} == set(pids)
    finally:
        await ex.aclose()
        await until(lambda: not any(_alive(p) for p in pids), 10)  # closing ended every one of them
        for pid in pids:
            if _alive(pid):
                os.kill(pid, 9)


async def test_a_cancelled_first_connect_leaves_nothing_behind_and_others_still_connect(tmp_path):
    starts = tmp_path / "starts"
    command = ["sh", "-c", f'echo $$ >> "{starts}"; sleep 0.5; exec "{sys.executable}" "{SHOP}"']
    ex = ProgrammaticToolExecutor(mcp_servers={"shop": {"command": command}}, tenant_id="connect-cancel", timeout=20)
    code = "from tools.shop import pid\nawait pid()"
    try:
        first = asyncio.create_task(ex.execute(code))
        await until(lambda: starts.exists())
        second = asyncio.create_task(ex.execute(code))
        await asyncio.sleep(0.05)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        r = await asyncio.wait_for(second, 20)
        assert r.error is None, r.error
        pids = [int(line) for line in starts.read_text().split()]
        await until(lambda: [p for p in pids if _alive(p)] == [r.result], 10)  # only the server in use runs
    finally:
        await ex.aclose()
        for pid in [int(line) for line in starts.read_text().split()] if starts.exists() else []:
            if _alive(pid):
                os.kill(pid, 9)


def test_a_second_different_quota_for_a_tenant_is_an_error():
    first = ProgrammaticToolExecutor(tenant_id="quota-conflict", quota=Quota(max_concurrent=1, max_queued=0))
    ProgrammaticToolExecutor(tenant_id="quota-conflict")  # no quota: it shares the tenant's
    ProgrammaticToolExecutor(tenant_id="quota-conflict", quota=Quota(max_concurrent=1, max_queued=0))  # the same one
    with pytest.raises(ValueError, match="quota-conflict"):
        ProgrammaticToolExecutor(tenant_id="quota-conflict", quota=Quota(max_concurrent=50, max_queued=50))
    assert ptc.tenancy.gate_for(first.tenant_id, None).quota == Quota(max_concurrent=1, max_queued=0)
