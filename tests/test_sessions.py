"""Sessions: state from cell to cell in one instance, errors that leave it usable, limits that restore it from
its journal, cells in call order, closing, quotas. Real guest, real tools, calls counted at the handler."""

import asyncio
import time

import pytest
from session_tools import CALLS, shop

from ptc import (
    ExecutorClosedError,
    Limits,
    OverCapacityError,
    ProgrammaticToolExecutor,
    Quota,
    Session,
    SessionClosedError,
    ToolDefinition,
)

LIMITS = Limits(timeout=5)


@pytest.fixture(scope="module")
def executor() -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(shop(), limits=LIMITS, tenant_id="sessions")


async def test_state_persists_from_cell_to_cell(executor):
    async with executor.session() as session:
        first = await session.execute("orders = [{'sku': 'A1', 'qty': 2}]")
        r = await session.execute("sum(o['qty'] for o in orders)")
        assert (first.error, r.error, r.result) == (None, None, 2)
        assert (first.cell, r.cell) == (0, 1) and first.session_id == r.session_id == session.id
        assert not r.session_restored and session.cells == 2 and not session.closed
        cells = [
            "import json\ndef total(xs):\n    return sum(o['qty'] for o in xs)",
            "class Box:\n    def __init__(self, v):\n        self.v = v",
            "from tools.shop import price\nprint('imported')",
            "b = Box(total(orders))\np = await price(sku='A1')\nprint(json.dumps({'v': b.v, 'p': p}))",
            "b.v, p, type(b).__name__",
        ]
        results = [await session.execute(code) for code in cells]
        assert [r.error for r in results] == [None] * 5
        assert results[2].output == "imported\n" and results[3].output == '{"v": 2, "p": 3.5}\n'  # each its own
        assert results[4].result == [2, 3.5, "Box"] and session.cells == 7
        assert len(results[3].tool_calls) == 1 and results[4].tool_calls == []


async def test_a_cell_reports_its_own_result_only(executor):
    async with executor.session() as session:
        assert (await session.execute("result = 5")).result == 5
        assert (await session.execute("x = 1")).result is None  # the earlier cell's `result` is not this cell's
        assert (await session.execute("result = 5")).result == 5  # set again (the same object): reported
        assert (await session.execute("result + 1")).result == 6
        assert (await session.execute("def f():\n    global result\n    result = 7\nf()")).result == 7
        assert (await session.execute("globals()['result'] = [1]")).result == [1]  # a new object under the name
        assert (await session.execute("x = 2")).result is None
        # the same object again, under a name the parser normalizes (NFKC) to `result`: this cell's own
        same = "\uff52\uff45\uff53\uff55\uff4c\uff54 = globals()['res' + 'ult']"  # (no ASCII `result` in it)
        assert (await session.execute(same)).result == [1]


async def test_errors_leave_the_session_usable_with_the_state_they_left(executor):
    async with executor.session() as session:
        r = await session.execute("a = 1\n1 / 0\na = 2")
        assert r.error.kind == "runtime_error" and r.error.type == "ZeroDivisionError"
        assert "<cell 0>" in r.error.traceback and not r.session_restored
        r = await session.execute("def broken(:")
        assert r.error.kind == "syntax_error"
        r = await session.execute(
            "from tools.shop import refund\nok = await refund(order='o1')\nawait refund(order='bad')"
        )
        assert r.error.type == "ToolError" and "no such order" in r.error.message
        r = await session.execute("a, ok, type(__import__('sys').last_exc).__name__")
        assert r.error is None and r.result == [1, "refunded o1", "ToolError"]
        assert session.cells == 4 and len(session.journal().cells) == 4


@pytest.mark.parametrize(
    ("code", "kind", "limits"),
    [
        ("import time\ntime.sleep(30)", "timeout", {"timeout": 0.5}),
        ("while True:\n    pass", "out_of_fuel", {"fuel": 200_000_000}),
        ("x = bytearray(200 * 1024 * 1024)", "memory_limit", {"memory_bytes": 128 * 1024 * 1024}),
        ("for _ in range(5):\n    await price(sku='A1')", "tool_call_limit", {"max_tool_calls": 3}),
        ("import os\nos._exit(3)", "runtime_error", {}),  # the instance dies mid-cell: a trap
    ],
)
async def test_a_limit_restores_the_state_after_the_last_completed_cell(code, kind, limits):
    executor = ProgrammaticToolExecutor(shop(), limits=LIMITS.model_copy(update=limits), tenant_id="sessions")
    async with executor.session() as session:
        setup = (
            "from tools.shop import price, stock\nimport random\nseen = [await price(sku='B2'), await stock(sku='A1')]"
        )
        assert (await session.execute(setup)).error is None
        assert (await session.execute("seen.append(random.random())\nlater = 'kept'")).error is None
        before = CALLS.copy()
        r = await session.execute("later = 'lost'\nseen.append('lost')\n" + code)
        assert r.error is not None and r.error.kind == kind, r.error
        assert r.session_restored and not session.closed
        during = CALLS - before  # what the stopped cell itself called (it ran for real, once)
        r = await session.execute("later, seen, len(seen)")
        assert r.error is None and r.result[0] == "kept" and r.result[1][:2] == [12.0, 7] and r.result[2] == 3
        assert CALLS - before == during  # restoring ran no tool again
        assert r.cell == 3 and session.cells == 4


async def test_cancelling_a_cell_restores_the_session(executor):
    async with executor.session() as session:
        await session.execute("n = 41")
        task = asyncio.create_task(session.execute("import time\nn = 0\ntime.sleep(30)"))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        r = await session.execute("n + 1")  # waits for the restore, which the cancelled cell's work runs
        assert r.error is None and r.result == 42 and not r.session_restored
        assert session.cells == 3


async def test_cells_sent_at_once_run_one_after_another_in_call_order(executor):
    async with executor.session() as session:
        slow = session.execute("import time\ntime.sleep(0.2)\nx = 1\nlog = ['first']")
        then = session.execute("log.append('second')\nx + 1")
        last = session.execute("log")
        a, b, c = await asyncio.gather(slow, then, last)
        assert (a.error, b.error, b.result, c.result) == (None, None, 2, ["first", "second"])
        assert (a.cell, b.cell, c.cell) == (0, 1, 2)


async def test_a_closed_session_raises_and_closing_twice_is_fine(executor):
    session = executor.session()
    assert isinstance(session, Session)
    assert (await session.execute("1")).result == 1
    await session.aclose()
    await session.aclose()
    assert session.closed and "closed" in session.closed_reason
    with pytest.raises(SessionClosedError, match="closed"):
        await session.execute("1")


async def test_execute_sync_for_callers_without_a_loop(executor):
    session = executor.session()

    def sync_caller() -> list:
        session.execute_sync("total = 40")
        return session.execute_sync("total + 2").result

    assert await asyncio.to_thread(sync_caller) == 42
    with pytest.raises(RuntimeError, match="running event loop"):
        session.execute_sync("1")
    await session.aclose()


async def test_nothing_crosses_sessions_or_executors(executor):
    other_executor = ProgrammaticToolExecutor(shop(), limits=LIMITS, tenant_id="sessions-other")
    async with executor.session() as one, executor.session() as two, other_executor.session() as three:
        await one.execute("secret = 'one'\nimport sys\nsys.marker = 1")
        for session in (two, three):
            r = await session.execute("import sys\n('secret' in globals(), hasattr(sys, 'marker'))")
            assert r.result == [False, False]
        assert (await executor.execute("'secret' in globals()")).result is False  # nor a one-shot execution
    await other_executor.aclose()


async def test_a_session_starts_from_nothing_its_spare_ran(executor):
    # A spare ran the warm-up program before it was handed out; each session seeds `random` afresh.
    draws = []
    for _ in range(3):
        async with executor.session() as session:
            r = await session.execute("sorted(k for k in globals() if not k.startswith('__'))")
            assert r.error is None and r.result == [], r.result
            draws.append((await session.execute("import random\nrandom.random()")).result)
    assert len(set(draws)) == 3, draws


async def test_quota_bounds_a_tenants_open_sessions():
    quota = Quota(max_sessions=2)
    one = ProgrammaticToolExecutor(limits=LIMITS, tenant_id="sessions-quota", quota=quota)
    two = ProgrammaticToolExecutor(limits=LIMITS, tenant_id="sessions-quota")
    a, b = one.session(), two.session()  # counted per tenant, across executors
    started = time.perf_counter()
    with pytest.raises(OverCapacityError, match="max_sessions=2"):
        one.session()
    assert time.perf_counter() - started < 0.05
    await a.aclose()
    c = one.session()
    assert (await c.execute("1 + 1")).result == 2
    await one.aclose()  # closes its sessions (b is two's)
    assert c.closed and "executor" in c.closed_reason and not b.closed
    with pytest.raises(SessionClosedError, match="executor"):
        await c.execute("1")
    with pytest.raises(ExecutorClosedError):
        one.session()
    d = two.session()  # c's and a's slots are free again
    await asyncio.gather(b.aclose(), d.aclose())
    with pytest.raises(ValueError, match="already open"):
        two.session(session_id="same"), two.session(session_id="same")
    await two.aclose()


async def test_an_idle_session_is_closed_and_frees_its_slot():
    ex = ProgrammaticToolExecutor(limits=LIMITS, tenant_id="sessions-idle", quota=Quota(max_sessions=1))
    session = ex.session(idle_timeout=0.3)
    assert (await session.execute("x = 1")).result is None
    await asyncio.sleep(0.2)
    assert (await session.execute("x")).result == 1  # a cell resets the idle clock
    await asyncio.sleep(0.8)
    assert session.closed and "idle" in session.closed_reason  # closed by the reaper, not by a call
    with pytest.raises(SessionClosedError, match="idle"):
        await session.execute("x")
    assert (await ex.session().execute("2")).result == 2  # its slot is free
    await ex.aclose()


async def test_a_journal_past_max_journal_bytes_closes_the_session(executor):
    session = executor.session(max_journal_bytes=4096)
    assert (await session.execute("x = 1")).error is None
    r = await session.execute("y = '" + "z" * 5000 + "'\nlen(y)")
    assert r.error is None and r.result == 5000  # the cell that passed the bound still ran and reported
    assert session.closed and "max_journal_bytes" in session.closed_reason
    with pytest.raises(SessionClosedError, match="max_journal_bytes"):
        await session.execute("x")


async def test_a_session_whose_restore_fails_is_closed():
    catalog = shop()
    ex = ProgrammaticToolExecutor(catalog, limits=LIMITS.model_copy(update={"timeout": 0.5}), tenant_id="sessions")
    session = ex.session()
    assert (await session.execute("from tools.shop import price\np = await price(sku='A1')")).error is None
    # the stub the first cell imported changes under it: its replay cannot be the same
    catalog.add_tool(ToolDefinition(name="discount", domain="shop", description="New."), lambda p: 0)
    r = await session.execute("import time\ntime.sleep(10)")
    assert r.error.kind == "timeout" and not r.session_restored
    assert session.closed and "restore" in session.closed_reason and "stub module" in session.closed_reason
    with pytest.raises(SessionClosedError, match="restore"):
        await session.execute("p")
    await ex.aclose()


async def test_each_cell_ends_what_it_left_running_as_asyncio_run_does(executor):
    async with executor.session() as session:
        r = await session.execute(
            "import asyncio\nfrom tools.shop import price\nevents = []\n"
            "async def slow():\n    try:\n        await asyncio.sleep(30)\n    except asyncio.CancelledError:\n"
            "        events.append('cancelled')\n        raise\n"
            "left = asyncio.create_task(slow())\npending = asyncio.ensure_future(price(sku='A1'))\nawait asyncio.sleep(0)"
        )
        assert r.error is None and r.execution_time < 5
        r = await session.execute("events, left.cancelled(), await price(sku='B2')")
        assert r.error is None and r.result == [["cancelled"], True, 12.0]
        r = await session.execute("asyncio.get_running_loop().close()")  # a program may close its loop
        assert r.error is not None
        r = await session.execute("await asyncio.sleep(0)\n'next'")
        assert r.error is None and r.result == "next"


async def test_closing_stops_the_running_cell_and_refuses_the_waiting_ones(executor):
    session = executor.session()
    await session.execute("x = 1")
    running = asyncio.create_task(session.execute("import time\ntime.sleep(30)"))
    waiting = asyncio.create_task(session.execute("x"))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    await session.aclose()  # returns once the running cell has stopped and the instance is freed
    assert time.perf_counter() - started < 2 and running.done()
    r = await running
    assert r.error.kind == "cancelled" and not r.session_restored
    with pytest.raises(SessionClosedError):
        await waiting


async def test_after_warm_up_a_session_begins_in_a_spare_and_its_journal_says_so(executor):
    from ptc.spares import pool_size

    if pool_size() == 0:
        pytest.skip("PTC_SPARE_INSTANCES=0: there are no spares")
    for _ in range(3):  # (each session takes one spare; warm_up waits until the pool has made them again)
        await executor.warm_up()
        async with executor.session() as session:
            assert (await session.execute("x = 1")).error is None
            assert session.journal().warm  # and so its restores start in a spare too
