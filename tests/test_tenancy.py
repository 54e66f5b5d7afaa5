"""Many tenants in one process: quotas, cancellation, audit events, labels."""

import asyncio
import hashlib
import time

import pytest

from ptc import AuditEvent, Limits, OverCapacityError, ProgrammaticToolExecutor, Quota, ToolCatalog, ToolEvent


def tenant_executor(tenant: str, **kwargs) -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(tenant_id=tenant, timeout=10, **kwargs)


async def test_two_tenants_run_at_the_same_time():
    a, b = tenant_executor("overlap-a"), tenant_executor("overlap-b")
    started = time.perf_counter()
    ra, rb = await asyncio.gather(
        a.execute("import time\ntime.sleep(0.5)\n'a'"), b.execute("import time\ntime.sleep(0.5)\n'b'")
    )
    assert (ra.result, rb.result) == ("a", "b")
    assert (ra.tenant_id, rb.tenant_id) == ("overlap-a", "overlap-b")
    assert time.perf_counter() - started < 0.95


async def test_quota_queues_then_rejects_at_once():
    ex = tenant_executor("quota-1", quota=Quota(max_concurrent=1, max_queued=1))
    first = asyncio.create_task(ex.execute("import time\ntime.sleep(0.4)\n1"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(ex.execute("2"))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    with pytest.raises(OverCapacityError, match="quota-1"):
        await ex.execute("3")
    assert time.perf_counter() - started < 0.1  # failed at once, did not pile up
    assert not second.done()  # queued behind the first
    assert (await first).result == 1 and (await second).result == 2
    assert (await ex.execute("4")).result == 4  # slots were released


async def test_quota_is_shared_by_the_tenants_executors():
    one = tenant_executor("quota-shared", quota=Quota(max_concurrent=1, max_queued=0))
    two = tenant_executor("quota-shared")
    other = tenant_executor("quota-other")
    busy = asyncio.create_task(one.execute("import time\ntime.sleep(0.3)"))
    await asyncio.sleep(0.05)
    with pytest.raises(OverCapacityError):
        await two.execute("1")
    assert (await other.execute("'free'")).result == "free"  # another tenant is not affected
    await busy


async def test_cancelling_stops_a_cpu_bound_program_promptly():
    audits: list[AuditEvent] = []
    ex = tenant_executor("cancel-cpu", quota=Quota(max_concurrent=1, max_queued=0), on_audit=audits.append)
    task = asyncio.create_task(ex.execute("while True:\n    pass"))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 0.2
    for _ in range(50):
        if audits:
            break
        await asyncio.sleep(0.02)
    assert audits and audits[0].outcome == "cancelled"
    assert (await ex.execute("'next'")).result == "next"  # the slot and the process are fine


async def test_caller_timeout_cancels_a_sleeping_program():
    audits: list[AuditEvent] = []
    ex = tenant_executor("cancel-sleep", on_audit=audits.append)
    started = time.perf_counter()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ex.execute("import time\ntime.sleep(30)"), 0.3)
    assert time.perf_counter() - started < 0.6
    for _ in range(50):
        if audits:
            break
        await asyncio.sleep(0.02)
    assert audits[0].outcome == "cancelled"


async def test_cancelling_stops_tool_calls_in_flight():
    catalog = ToolCatalog()
    state = {"cancelled": False}

    @catalog.tool(domain="slow")
    async def wait_long() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        return "done"

    ex = ProgrammaticToolExecutor(catalog, tenant_id="cancel-tool", timeout=30)
    task = asyncio.create_task(ex.execute("from tools.slow import wait_long\nawait wait_long()"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(50):
        if state["cancelled"]:
            break
        await asyncio.sleep(0.02)
    assert state["cancelled"]


async def test_audit_event_describes_the_execution():
    catalog = ToolCatalog()

    @catalog.tool(domain="m")
    def double(x: int) -> int:
        return 2 * x

    audits: list[AuditEvent] = []
    ex = ProgrammaticToolExecutor(catalog, tenant_id="audited", on_audit=audits.append, timeout=7)
    code = "from tools.m import double\nawait double(x=21)"
    r = await ex.execute(code)
    event = audits[-1]
    assert event.tenant_id == "audited" and event.execution_id == r.execution_id
    assert event.code_sha256 == hashlib.sha256(code.encode()).hexdigest()
    assert event.limits["timeout"] == 7 and event.outcome == "ok" and event.fuel_used == r.fuel_used > 0
    assert event.tool_calls == [
        {"tool": "double", "duration": r.tool_calls[0].duration, "error": None, "attempts": 1, "cache_hit": False}
    ]
    await ex.execute("1/0")
    assert audits[-1].outcome == "runtime_error" and audits[-1].error_type == "ZeroDivisionError"


async def test_audit_event_reports_the_memory_the_program_used():
    audits: list[AuditEvent] = []
    ex = ProgrammaticToolExecutor(on_audit=audits.append, limits=Limits(memory_bytes=256 * 1024 * 1024))
    small = await ex.execute("x = 1")
    big = await ex.execute("blob = bytearray(64 * 1024 * 1024)")
    assert small.memory_used == audits[0].memory_used and big.memory_used == audits[1].memory_used
    # Whole wasm pages, within the limit, and the 64 MiB buffer shows.
    assert small.memory_used % 65536 == 0 and 0 < small.memory_used < 64 * 1024 * 1024
    assert big.memory_used - small.memory_used >= 64 * 1024 * 1024
    assert big.memory_used <= 256 * 1024 * 1024
    # A fresh instance each time: the next execution starts small again.
    assert (await ex.execute("x = 1")).memory_used == small.memory_used
    # A program stopped by a trap reports nothing it could not measure.
    stopped = await ex.execute("while True: pass", limits=Limits(timeout=0.3))
    assert stopped.error.kind == "timeout" and stopped.memory_used is None and audits[-1].memory_used is None


async def test_tenant_labels_records_events_and_idempotency():
    runs = {"n": 0}
    catalog = ToolCatalog()

    @catalog.tool(domain="pay")
    def charge(amount: int) -> int:
        runs["n"] += 1
        return runs["n"]

    events: list[ToolEvent] = []
    a = ProgrammaticToolExecutor(catalog, tenant_id="tenant-a", on_event=events.append)
    b = ProgrammaticToolExecutor(catalog, tenant_id="tenant-b", on_event=events.append)
    code = "from tools.pay import charge\nawait charge(amount=5, idempotency_key='order-1')"
    ra1, ra2, rb = await a.execute(code), await a.execute(code), await b.execute(code)
    assert ra1.result == ra2.result == 1 and rb.result == 2  # one key, two tenants: two charges
    assert ra1.tool_calls[0].caller.tenant_id == "tenant-a" and rb.tool_calls[0].caller.tenant_id == "tenant-b"
    assert {e.tenant_id for e in events} == {"tenant-a", "tenant-b"}
