"""Worker processes (`workers=N`): forwarded calls under the parent's policies, a killed worker, cancellation,
shutdown and orphans, against the real guest in real child processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ptc import (
    AuditEvent,
    Limits,
    Policy,
    ProgrammaticToolExecutor,
    RetryableError,
    ToolCatalog,
    ToolDefinition,
    ToolEvent,
    ToolParameter,
)
from ptc.workers.pool import WORKERS_ENV, WorkerPool
from ptc.workers.wire import Connection, WorkerProtocolError, decode, encode

RETRIES = Policy(max_retries=3, backoff=0)


class Flaky:
    """Fails `failures` times with a transient error, then answers; counts every attempt it sees."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableError(f"failure {self.calls}")
        return {"x": payload["x"], "calls": self.calls}


class Gate:
    """An async tool that blocks until released (a call in flight at a chosen moment)."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, payload: dict[str, Any]) -> str:
        self.entered.set()
        await self.release.wait()
        return "released"


def _catalog(flaky: Flaky, counted: list[int], gate: Gate | None = None) -> ToolCatalog:
    catalog = ToolCatalog()
    x = [ToolParameter(name="x", type="integer")]
    catalog.add_tool(ToolDefinition(name="flaky", domain="ops", parameters=x, policy=RETRIES), handler=flaky)

    def counted_tool(payload: dict[str, Any]) -> int:
        counted.append(payload["x"])
        return int(payload["x"]) * 2

    catalog.add_tool(ToolDefinition(name="double", domain="ops", parameters=x), handler=counted_tool)
    catalog.add_tool(ToolDefinition(name="blob", domain="ops", parameters=x), handler=lambda p: "é" * p["x"])
    if gate is not None:
        catalog.add_tool(ToolDefinition(name="gate", domain="ops", parameters=[]), handler=gate)
    return catalog


def _executor(workers: int, **kwargs: Any) -> tuple[ProgrammaticToolExecutor, Flaky, list[int], list[Any]]:
    flaky, counted, events = Flaky(2), [], []
    gate = kwargs.pop("gate", None)
    executor = ProgrammaticToolExecutor(
        _catalog(flaky, counted, gate), limits=Limits(timeout=20), workers=workers, on_event=events.append, **kwargs
    )
    return executor, flaky, counted, events


@pytest.fixture
async def pooled() -> AsyncIterator[tuple[ProgrammaticToolExecutor, Flaky, list[int], list[Any]]]:
    made = _executor(2)
    await made[0].warm_up()
    yield made
    await made[0].aclose()


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for a reaper that may never come)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _worker_children() -> list[int]:
    """This process's children that are ptc workers."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rpartition(")")[2].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"ptc.workers.child" in command and _alive(int(entry)):
            found.append(int(entry))
    return found


def _pool(executor: ProgrammaticToolExecutor) -> WorkerPool:
    pool = executor._pool
    assert pool is not None
    return pool


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


CALLS = textwrap.dedent(
    """
    from tools.ops import flaky, double
    a = await flaky(x=7)
    b = [await double(x=5, idempotency_key="k"), await double(x=5, idempotency_key="k")]
    print("done", a["x"], b)
    [a, b]
    """
)


async def test_a_forwarded_call_gets_the_parents_policies(pooled: Any) -> None:
    executor, flaky, counted, events = pooled
    result = await executor.execute(CALLS)
    assert result.error is None, result.error
    assert result.result == [{"x": 7, "calls": 3}, [10, 10]]
    assert result.output == "done 7 [10, 10]\n"
    assert flaky.calls == 3  # two transient failures retried by the parent's router
    assert counted == [5]  # the idempotency key: the second call was answered from the parent's cache
    flaky_record, first, second = result.tool_calls
    assert flaky_record.attempts == 3 and not first.cache_hit and second.cache_hit
    assert {e.tool for e in events if isinstance(e, ToolEvent)} == {"flaky", "double"}
    assert result.journal is not None and len(result.journal.cells[0].calls) == 3


def _shape(result: Any) -> dict[str, Any]:
    """What must not depend on where the program ran."""
    return {
        "status": result.status,
        "output": result.output,
        "result": result.result,
        "error": result.error,
        "calls": [
            (r.tool, r.domain, r.type, r.parameters, r.error, r.attempts, r.cache_hit, r.result_size, r.caller.tool_id)
            for r in result.tool_calls
        ],
        "journal": [(c.tool, c.frame, c.reply) for c in result.journal.cells[0].calls] if result.journal else None,
    }


async def test_results_records_and_events_match_one_process(pooled: Any) -> None:
    in_process, _, _, local_events = _executor(0)
    try:
        pooled_executor, _, _, pooled_events = pooled
        big = "from tools.ops import blob\nlen(await blob(x=300_000))"  # a reply sent off the event loop
        for code in (CALLS, "1 / 0", "from tools.ops import double\nawait double(x='no')", "print('x' * 10)\n42", big):
            here, there = await in_process.execute(code), await pooled_executor.execute(code)
            assert _shape(there) == _shape(here), code
        kinds = [(type(e).__name__, getattr(e, "tool", None), getattr(e, "kind", None)) for e in local_events]
        assert [(type(e).__name__, getattr(e, "tool", None), getattr(e, "kind", None)) for e in pooled_events] == kinds
    finally:
        await in_process.aclose()


async def test_limits_apply_in_the_worker(pooled: Any) -> None:
    executor = pooled[0]
    result = await executor.execute("while True:\n    pass", limits=Limits(timeout=0.5))
    assert result.error is not None and result.error.kind == "timeout"
    result = await executor.execute("print('y' * 5000)", limits=Limits(max_output_bytes=100))
    assert result.output_truncated and len(result.output) <= 100
    result = await executor.execute(
        "from tools.ops import double\n[await double(x=i) for i in range(3)]", limits=Limits(max_tool_calls=2)
    )
    assert result.error is not None and result.error.kind == "tool_call_limit"
    await executor.warm_up(limits=Limits(fuel=None))  # the epoch-only runtime, loaded in every worker
    assert _pool(executor).ready(fuel=False)
    result = await executor.execute("sum(range(10))", limits=Limits(fuel=None))
    assert result.result == 45 and result.fuel_used is None


async def test_a_killed_worker_fails_only_its_execution_and_is_replaced() -> None:
    gate = Gate()
    executor, _, _, _ = _executor(2, gate=gate)
    audits: list[AuditEvent] = []
    executor.on_audit(audits.append)
    try:
        await executor.warm_up()
        pool = _pool(executor)
        before = set(pool.pids)
        doomed = asyncio.ensure_future(executor.execute("from tools.ops import gate\nawait gate()"))
        await asyncio.wait_for(gate.entered.wait(), 10)
        victim = next(w for w in pool._workers if w.jobs)
        other = asyncio.ensure_future(executor.execute("import time\ntime.sleep(0.5)\nprint('survived')"))
        await _until(lambda: all(w.jobs for w in pool._workers))  # the other execution is on the other worker
        os.kill(victim.pid, signal.SIGKILL)
        result = await asyncio.wait_for(doomed, 10)
        assert result.error is not None and result.error.kind == "internal_error"
        assert "the worker process died" in result.error.message and "signal 9" in result.error.message
        assert [r.tool for r in result.tool_calls] == ["gate"]  # its call is in its result, not run again
        survivor = await asyncio.wait_for(other, 10)
        assert survivor.error is None and survivor.output == "survived\n"
        await _until(lambda: len(pool.pids) == 2 and victim.pid not in pool.pids)
        assert len(set(pool.pids) - before) == 1
        assert pool.wait_ready(30)
        for result in await asyncio.gather(*(executor.execute("21 * 2") for _ in range(4))):
            assert result.error is None and result.result == 42
        assert not _alive(victim.pid)
        assert [a.outcome for a in audits].count("internal_error") == 1
    finally:
        gate.release.set()
        await executor.aclose()


async def test_a_cancelled_execute_stops_the_program_in_its_worker(pooled: Any) -> None:
    executor = pooled[0]
    audits: list[AuditEvent] = []
    executor.on_audit(audits.append)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(executor.execute("while True:\n    pass"), 0.5)
    pool = _pool(executor)
    await _until(lambda: not any(w.jobs for w in pool._workers) and audits, 5)
    assert time.monotonic() - started < 5  # stopped by the cancel, long before its 20 s timeout
    assert audits[-1].outcome == "cancelled"
    result = await executor.execute("1 + 1")
    assert result.result == 2


async def test_close_ends_every_worker() -> None:
    executor, _, _, _ = _executor(2)
    await executor.warm_up()
    pids = _pool(executor).pids
    assert len(pids) == 2 and set(pids) <= set(_worker_children())
    await executor.aclose()
    assert not any(_alive(pid) for pid in pids)
    assert _worker_children() == []


def test_workers_outlive_the_thread_that_started_them() -> None:
    """PR_SET_PDEATHSIG follows the starting thread: every worker is started by one long-lived thread."""
    made: list[ProgrammaticToolExecutor] = []

    def start() -> None:  # the thread ends after its worker has asked for the signal (before it says ready)
        made.append(ProgrammaticToolExecutor(workers=1))
        assert _pool(made[0]).wait_ready(60)

    starter = threading.Thread(target=start)
    starter.start()
    starter.join()
    executor = made[0]
    try:
        time.sleep(0.5)
        (pid,) = _pool(executor).pids
        assert _alive(pid)
        assert executor.execute_sync("40 + 2").result == 42
    finally:
        executor.close()


PARENT = textwrap.dedent(
    """
    import asyncio, sys, time
    from ptc import ProgrammaticToolExecutor
    async def main():
        executor = ProgrammaticToolExecutor(workers=2)
        await executor.warm_up()
        print(*executor._pool.pids, flush=True)
        await executor.execute("import time\\ntime.sleep(30)")
    asyncio.run(main())
    """
)


def test_a_parent_killed_leaves_no_orphans() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        time.sleep(0.3)  # one of them is running the sleeping program
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 5
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in pids)
    finally:
        parent.kill()


async def test_ptc_workers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKERS_ENV, "1")
    executor = ProgrammaticToolExecutor()
    try:
        assert len(_pool(executor).pids) == 1
        result = await executor.execute("import sys\nsys.platform")
        assert result.result == "wasi"
    finally:
        await executor.aclose()
    monkeypatch.setenv(WORKERS_ENV, "0")
    assert ProgrammaticToolExecutor()._pool is None
    monkeypatch.setenv(WORKERS_ENV, "many")
    with pytest.raises(ValueError, match="PTC_WORKERS"):
        ProgrammaticToolExecutor()
    with pytest.raises(ValueError):
        ProgrammaticToolExecutor(workers=-1)


def test_the_wire_refuses_what_a_hostile_worker_could_send() -> None:
    assert decode(encode(["done", 1, {"a": [1, 2]}])[4:]) == ["done", 1, {"a": [1, 2]}]
    for body in (b"\xc1", b"\x91\x01", b"\xa3abc", b"\xd4\x01\x00"):  # garbage, a non-string kind, no array, ext
        with pytest.raises(WorkerProtocolError):
            decode(body)
    with pytest.raises(WorkerProtocolError):
        decode(encode(["x", list(range(100))])[4:], max_items=10)
    ours, theirs = socket.socketpair()
    conn = Connection(ours)
    try:
        theirs.sendall(struct.pack(">I", 1 << 30))  # a header claiming 1 GiB: refused before a byte is read
        with pytest.raises(WorkerProtocolError, match="over its"):
            conn.receive(max_bytes=1 << 20)
        theirs.sendall(struct.pack(">I", 10) + b"\x93")  # then EOF in the middle of a body
        theirs.close()
        with pytest.raises(WorkerProtocolError, match="middle"):
            conn.receive()
    finally:
        conn.close()


async def test_ptc_serve_workers_flag() -> None:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    args = ["-m", "ptc.cli", "serve", "--tools", "ptc.examples.budget:catalog", "--workers", "2"]
    code = "from tools.finance import get_team_budget\nimport os\n(await get_team_budget(team_id='ops-team-3'))"
    with open(os.devnull, "w") as errlog:
        params = StdioServerParameters(command=sys.executable, args=args)
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool("execute_python", {"code": code + "['total_budget']"})
    assert not result.is_error, result.content
    assert result.structured_content is not None and result.structured_content["result"] == 410000


async def test_a_session_lives_on_one_worker_and_restores_there(pooled: Any) -> None:
    executor, _, counted, _ = pooled
    async with executor.session(limits=Limits(timeout=1)) as session:
        first = await session.execute("from tools.ops import double\nx = await double(x=4)\nx")
        pid = session.worker_pid
        assert first.error is None and first.result == 8 and pid in _pool(executor).pids
        assert (await session.execute("x += 1\nx")).result == 9
        stopped = await session.execute("while True:\n    pass")  # a limit: the instance is dropped, then restored
        assert stopped.error is not None and stopped.error.kind == "timeout"
        after = await session.execute("x")
        assert after.result == 9 and after.session_restored is False and stopped.session_restored is True
        assert session.worker_pid == pid and counted == [4]  # the replay ran no tool
        with pytest.raises(asyncio.TimeoutError):  # a caller's timeout cancels the cell in its worker
            await asyncio.wait_for(session.execute("x = 0\nwhile True:\n    pass"), 0.3)
        assert (await session.execute("x")).result == 9  # the cancelled cell left nothing behind
        journal = session.journal()
    restored = await executor.restore_session(journal)
    try:
        assert (await restored.execute("x * 2")).result == 18 and counted == [4]
    finally:
        await restored.aclose()


async def test_a_session_outlives_its_worker(pooled: Any) -> None:
    executor, _, counted, _ = pooled
    async with executor.session() as session:
        assert (await session.execute("from tools.ops import double\ny = await double(x=3)")).error is None
        pid = session.worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: pid not in _pool(executor).pids)
        again = await session.execute("y + 1")
        assert again.error is None and again.result == 7 and again.session_restored
        assert session.worker_pid not in (None, pid) and counted == [3]
        during = asyncio.ensure_future(session.execute("import time\ntime.sleep(5)"))
        await asyncio.sleep(0.5)
        os.kill(session.worker_pid or 0, signal.SIGKILL)
        died = await asyncio.wait_for(during, 10)
        assert died.error is not None and died.error.kind == "internal_error" and died.session_restored
        assert (await session.execute("y")).result == 6


def test_a_workers_report_is_checked_field_by_field() -> None:
    from ptc.hostcalls.wasm.state import ExecutionState
    from ptc.workers.pool import Job, _outcome, _take_part

    limits = Limits(max_output_bytes=10)

    def checked(done: object) -> Any:
        job = Job(1, None, ExecutionState.under("x", limits), limits)  # type: ignore[arg-type]
        return _outcome(job, done)

    good = checked({"parts": [[1, "out"], [2, "err"]], "value": [1, {"a": None}], "error": None, "fuel": 5})
    assert good.value == [1, {"a": None}] and good.fuel_used == 5
    deep: Any = []
    for _ in range(70):
        deep = [deep]
    hostile = [
        "not a map",
        {"parts": [[1, "x" * 11]]},  # more output than the limit
        {"parts": [[3, "x"]]},  # no such stream
        {"parts": "text"},
        {"value": deep},  # nested past the frame depth
        {"error": {"kind": "no_such_kind", "type": "X", "message": "m"}},
        {"cell": "{not json"},
        {"deferred": [["1", "tool_call_1"]]},
        {"peak": "lots"},
    ]
    for done in hostile:
        with pytest.raises(WorkerProtocolError):
            checked(done)

    # a live job's parts come one by one ("output" messages): they and the report's share the one cap
    job = Job(1, None, ExecutionState.under("x", limits), limits)  # type: ignore[arg-type]
    _take_part(job, [1, "12345"])
    _take_part(job, [2, "678"])
    with pytest.raises(WorkerProtocolError):
        _take_part(job, [1, "abc"])
    with pytest.raises(WorkerProtocolError):
        _outcome(job, {"parts": [[1, "abc"]]})
    assert job.state.output.joined()[0] == "12345678"


async def test_output_reaches_on_output_while_the_worker_runs_it() -> None:
    gate = Gate()
    executor = _executor(1, gate=gate)[0]
    seen: list[tuple[str, str]] = []
    code = "from tools.ops import gate\nprint('first')\nawait gate()\nprint('second')"
    try:
        running = asyncio.create_task(executor.execute(code, on_output=lambda s, t: seen.append((s, t))))
        await asyncio.wait_for(gate.entered.wait(), 20)
        await _until(lambda: bool(seen))  # "first" came while the program waits in its worker for the call
        assert seen == [("stdout", "first\n")] and not running.done()
        gate.release.set()
        result = await running
        assert result.error is None and result.output == "first\nsecond\n"  # every part once, in order
        assert "".join(text for _, text in seen) == result.output
    finally:
        await executor.aclose()


async def test_a_session_cell_on_a_worker_streams_its_output(pooled: Any) -> None:
    executor = pooled[0]
    parts: list[str] = []
    async with executor.session() as session:
        r = await session.execute(
            "import sys\nprint('out')\nprint('err', file=sys.stderr)", on_output=lambda s, t: parts.append(s)
        )
        assert r.error is None and r.stdout == "out\n" and r.stderr == "err\n"
        quiet = await session.execute("print('kept')")  # no on_output: the report carries it, as before
        assert quiet.output == "kept\n"
    assert parts == ["stdout", "stderr"]
