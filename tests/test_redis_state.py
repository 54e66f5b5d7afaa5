"""Shared policy state in a real redis-server: two executors in two processes share keys, breakers, quotas, journals.

Each cross-process test starts `tests/redis_worker.py` subprocesses (a
separate interpreter each, like two machines) against one server started by
the fixture on a free loopback port; handlers count their runs in files.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_server import RedisServer, available
from redis_worker import catalog as worker_catalog

from ptc import (
    JournalError,
    Policy,
    ProgrammaticToolExecutor,
    RedisState,
    StateUnavailableError,
    ToolCatalog,
    ToolDefinition,
)

pytestmark = pytest.mark.skipif(
    not available(), reason="needs Debian's redis-server: apt-get install -y redis-server (.ci/run does)"
)
ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "redis_worker.py"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own, which it may stop and start again (stopped after, whatever happened)."""
    srv = RedisServer(tmp_path)
    srv.start()
    yield srv
    srv.stop()


SPAWNED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def no_worker_left():
    """A test that fails midway leaves no worker behind (they would wait for "go" forever)."""
    yield
    while SPAWNED:
        proc = SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def spawn(mode: str, url: str, out: Path, count: int = 1, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, str(out), str(count)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stderr=subprocess.PIPE,
    )
    SPAWNED.append(proc)
    return proc


def wait_ready(out: Path, n: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while len(list(out.glob("ready-*"))) < n:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(p.stderr.read().decode() if p.stderr else "a worker died")
        assert time.monotonic() < deadline, "workers did not get ready"
        time.sleep(0.05)


def finish(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()


def outcomes(out: Path, mode: str) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(out.glob(f"{mode}-*.json"))]


def runs(out: Path, name: str) -> list[str]:
    path = out / name
    return path.read_text().split() if path.exists() else []


def test_one_idempotency_key_runs_once_across_two_processes(server, tmp_path):
    # the call (1.5 s) outlasts the lease (0.6 s): only the claimant's renewals keep the others waiting
    env = {"TENANT": "idem-1", "LEASE": "0.6", "CHARGE_SECONDS": "1.5"}
    procs = [spawn("charge", server.url, tmp_path, 2, **env) for _ in range(2)]
    wait_ready(tmp_path, 2, procs)
    (tmp_path / "go").touch()
    finish(procs)
    assert len(runs(tmp_path, "charge-runs")) == 1  # four executions in two processes, all at once: one run
    results = [o for doc in outcomes(tmp_path, "charge") for o in doc["outcome"]]
    assert len(results) == 4 and all(r["error"] is None for r in results)
    assert len({json.dumps(r["result"]) for r in results}) == 1  # every caller got the one run's result
    assert sorted(hit for r in results for hit in r["hits"]) == [False, True, True, True]


def phase(server, base: Path, name: str, mode: str, counts: list[int], **env: str) -> list[dict]:
    """Start one worker per count (all at once on "go"), wait for them; their outcome documents."""
    out = base / name
    out.mkdir()
    procs = [spawn(mode, server.url, out, n, COUNT_DIR=str(base), **env) for n in counts]
    wait_ready(out, len(procs), procs)
    (out / "go").touch()
    finish(procs)
    return outcomes(out, mode)


def test_one_breaker_across_two_processes_with_one_half_open_trial(server, tmp_path):
    env = {"TENANT": "cb-1"}
    first = phase(server, tmp_path, "a", "flaky", [2], **env)  # two honest failures: threshold 2, open
    opened = time.monotonic()
    assert [o["result"][0] for o in first[0]["outcome"]] == ["ToolError", "ToolError"]
    assert "circuit_open" in first[0]["events"]
    assert len(runs(tmp_path, "flaky-runs")) == 2
    second = phase(server, tmp_path, "b", "flaky", [1], **env)  # another process: refused, the tool not run
    assert second[0]["outcome"][0]["result"][0] == "CircuitOpenError", second
    assert len(runs(tmp_path, "flaky-runs")) == 2
    time.sleep(max(0.0, opened + 4.1 - time.monotonic()))  # past circuit_reset_timeout (RESET, 4 s)
    (tmp_path / "flaky-ok").touch()
    third = phase(server, tmp_path, "c", "flaky", [3, 3], **env)  # six callers at once, in two processes
    results = [o["result"] for doc in third for o in doc["outcome"]]
    assert len(runs(tmp_path, "flaky-runs")) == 3  # exactly one half-open trial ran, fleet-wide
    assert results.count("ok") == 1 and sum(r[0] == "CircuitOpenError" for r in results if r != "ok") == 5
    events = [e for doc in third for e in doc["events"]]
    assert events.count("circuit_half_open") == 1 and events.count("circuit_closed") == 1


def test_one_quota_across_two_processes_never_two_at_once(server, tmp_path):
    docs = phase(server, tmp_path, "a", "slot", [3, 3], TENANT="quota-1")  # max_concurrent=1, both processes
    assert [o["error"] for doc in docs for o in doc["outcome"]] == [None] * 6
    log = [line.split() for line in (tmp_path / "slot-log").read_text().splitlines()]
    assert len(log) == 12 and len({pid for _, _, pid in log}) == 2  # both processes ran their share
    running = peak = 0
    for kind, _, _ in sorted(log, key=lambda e: (float(e[1]), e[0] == "start")):  # an end before a start at a tie
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 1  # the handler never ran twice at once, across both processes


def other_process(server, tmp_path: Path, mode: str, **env: str) -> dict:
    proc = spawn(mode, server.url, tmp_path, 1, **env)
    finish([proc])
    [doc] = outcomes(tmp_path, mode)
    return doc


async def test_a_session_is_stored_after_each_cell_and_restored_by_id_in_another_process(server, tmp_path):
    state = RedisState(server.url)
    ex = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=state, tenant_id="journal-1")
    try:
        async with ex.session("shared-session-1") as session:
            await session.execute("x = 20")
            stored = json.loads(await state.get_journal("session", "shared-session-1"))
            assert [c["code"] for c in stored["cells"]] == ["x = 20"]  # stored after the first cell already
            await session.execute("y = 22")
        doc = other_process(server, tmp_path, "restore", SESSION_ID="shared-session-1", TENANT="journal-1")
        assert doc == {"result": [20, 22, 42], "error": None}
        with pytest.raises(JournalError, match="no session journal"):
            await ex.restore_session("no-such-session")
    finally:
        await ex.aclose()
        state.close()


async def test_resume_by_id_in_another_process_once_fleet_wide(server, tmp_path):
    state = RedisState(server.url)
    ex = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=state, tenant_id="journal-2")
    try:
        r = await ex.execute("from tools.bank import transfer\nresult = await transfer(amount=7)")
        assert r.suspended and r.journal is not None
        call_id = r.journal.pending[0].call_id
        doc = other_process(
            server, tmp_path, "resume", EXECUTION_ID=r.execution_id, CALL_ID=call_id, TENANT="journal-2"
        )
        assert doc == {"result": "sent 7", "error": None}
        assert len(runs(tmp_path, "transfer-runs")) == 1
        with pytest.raises(JournalError, match="already resumed"):  # here, by id: claimed by the other process
            await ex.resume(r.execution_id, {call_id: True})
        with pytest.raises(JournalError, match="already resumed"):  # the journal itself: the same one claim
            await ex.resume(r.journal, {call_id: True})
    finally:
        await ex.aclose()
        state.close()


def test_a_claimant_killed_mid_call_gives_its_key_back_after_the_lease(server, tmp_path):
    env = {"TENANT": "idem-kill", "LEASE": "1.5"}
    a = tmp_path / "a"
    a.mkdir()
    killed = spawn("charge", server.url, a, 1, COUNT_DIR=str(tmp_path), CHARGE_SECONDS="60", **env)
    wait_ready(a, 1, [killed])
    (a / "go").touch()
    deadline = time.monotonic() + 60
    while not runs(tmp_path, "charge-runs"):  # it claimed the key and its tool is running
        assert time.monotonic() < deadline and killed.poll() is None
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    docs = phase(server, tmp_path, "b", "charge", [1], CHARGE_SECONDS="0.1", **env)
    [outcome] = docs[0]["outcome"]
    assert outcome["error"] is None and outcome["hits"] == [False]  # it waited, then claimed and ran it itself
    assert runs(tmp_path, "charge-runs") == [str(killed.pid), str(outcome["result"]["by"])]


def downable(tmp_path: Path, server: RedisServer) -> ToolCatalog:
    """pay.charge (idempotent use) and ops.outage, whose handler stops the server mid-execution."""
    cat = worker_catalog(tmp_path)

    def outage(payload):
        server.stop()
        return "stopped"

    cat.add_tool(ToolDefinition(name="outage", domain="ops", parameters=[]), handler=outage)
    return cat


CHARGE = "from tools.pay import charge\nresult = await charge(amount=1, idempotency_key='k-{n}')"
OUTAGE_THEN_CHARGE = """
from tools.ops import outage
from tools.pay import charge
from tools import ToolError
await outage()
result = []
for call in (lambda: charge(amount=1, idempotency_key='k-down'), outage):  # keyed, then plain (its breaker)
    try:
        result.append(await call())
    except ToolError as e:
        result.append([type(e).__name__, str(e)])
"""
UNAVAILABLE = ["ToolError", "the shared state this call needs is unavailable; the call was not run"]


async def test_server_down_mid_run_fails_clearly_then_works_again(own_server, tmp_path):
    server = own_server
    events = []
    state = RedisState(server.url, timeout=0.5)
    ex = ProgrammaticToolExecutor(
        downable(tmp_path, server), state=state, tenant_id="down-1", on_event=events.append, timeout=20
    )
    try:
        assert (await ex.execute(CHARGE.format(n=1))).error is None
        r = await ex.execute(OUTAGE_THEN_CHARGE)  # admitted while up; the server stops inside the program
        assert r.result == [UNAVAILABLE, UNAVAILABLE]  # neither ran: the key's claim, the breaker need the store
        assert [c.error.type if c.error else None for c in r.tool_calls] == [None, "ToolError", "ToolError"]
        failure = [e for e in events if e.kind == "failure"][-1]
        assert failure.error is not None and failure.error.startswith("ToolError: StateUnavailableError: shared state")
        assert "state_unavailable" in [e.kind for e in events]
        assert not runs(tmp_path, "charge-runs")[1:]  # the charge that needed the store did not run
        with pytest.raises(StateUnavailableError, match=f"redis://127.0.0.1:{server.port}/0 is unavailable"):
            await ex.execute(CHARGE.format(n=2))  # admission needs the fleet's quota
        server.start()  # the same port, an empty server
        r = await ex.execute(CHARGE.format(n=3))
        assert r.error is None and r.result["charged"] == 1
        assert "state_restored" in [e.kind for e in events]
    finally:
        await ex.aclose()
        state.close()
        server.stop()


async def test_fallback_carries_on_in_process_with_a_warning_and_goes_back(own_server, tmp_path, caplog):
    server = own_server
    events = []
    state = RedisState(server.url, fallback=True, timeout=0.5, retry_after=0.2)
    ex = ProgrammaticToolExecutor(
        downable(tmp_path, server), state=state, tenant_id="down-2", on_event=events.append, timeout=20
    )
    try:
        r = await ex.execute(OUTAGE_THEN_CHARGE)
        assert r.error is None and r.result[0]["charged"] == 1 and r.result[1] == "stopped"  # ran, in-process
        r = await ex.execute(CHARGE.format(n=1) + "\nagain = await charge(amount=1, idempotency_key='k-1')")
        assert r.error is None and [c.cache_hit for c in r.tool_calls] == [False, True]  # the local cache holds
        warnings = [e for e in events if e.kind == "state_unavailable"]
        assert len(warnings) == 1 and "falling back to in-process state" in (warnings[0].text or "")
        assert "falling back to in-process state" in caplog.text
        server.start()
        await asyncio.sleep(0.3)  # past retry_after: the next operation tries the server again
        assert (await ex.execute(CHARGE.format(n=2))).error is None
        assert "state_restored" in [e.kind for e in events]
        raw = await state.get_journal("session", "none")  # the server answers again (nothing stored under it)
        assert raw is None
        assert any(k.startswith(b"ptc:idem:") for k in server_keys(server))  # k-2 went to the store
    finally:
        await ex.aclose()
        state.close()
        server.stop()


def server_keys(server: RedisServer) -> list[bytes]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port)
    try:
        return list(client.keys("*"))
    finally:
        client.close()


async def test_a_password_never_reaches_a_message(tmp_path):
    server = RedisServer(tmp_path, password="s3cret-pw")
    server.start()
    try:
        await _password_checks(server, tmp_path)
    finally:
        server.stop()
    with pytest.raises(ValueError) as bad:
        RedisState("redis://:s3cret-pw@127.0.0.1:notaport/0")
    assert "s3cret-pw" not in str(bad.value)


async def _password_checks(server: RedisServer, tmp_path: Path) -> None:
    events = []
    state = RedisState(server.url, timeout=0.5)
    assert "s3cret-pw" not in repr(state) and "s3cret-pw" not in state.name
    ex = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=state, tenant_id="pw-1", on_event=events.append)
    try:
        assert (await ex.execute(CHARGE.format(n=1))).error is None  # it authenticates
        server.stop()
        with pytest.raises(StateUnavailableError) as caught:
            await ex.execute(CHARGE.format(n=2))
        assert "s3cret-pw" not in str(caught.value)
        assert all("s3cret-pw" not in (e.text or "") + (e.error or "") for e in events)
    finally:
        await ex.aclose()
        state.close()


async def test_max_sessions_across_executors_and_a_dead_holders_slot_comes_back(server, tmp_path):
    from ptc import OverCapacityError, Quota

    quota = Quota(max_concurrent=4, max_queued=4, max_sessions=1)
    dead = RedisState(server.url, lease=1.0)
    alive = RedisState(server.url, lease=1.0)
    a = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=dead, tenant_id="sessions-1", quota=quota)
    b = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=alive, tenant_id="sessions-1", quota=quota)
    try:
        held = a.session()  # the tenant's one session, fleet-wide
        with pytest.raises(OverCapacityError, match="across every process"):
            b.session()
        dead.close()  # its heartbeat stops, as if its process died holding the slot
        await asyncio.sleep(1.3)  # past the lease
        other = b.session()  # the dead holder's slot came back
        await other.aclose()
        held.close()
    finally:
        await b.aclose()
        alive.close()
        a.close()


def test_without_the_client_the_extra_is_named(monkeypatch):
    from ptc import MissingExtraError

    monkeypatch.setitem(sys.modules, "redis.asyncio", None)  # as if redis-py were not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'ptc\[redis\]'"):
        RedisState("redis://127.0.0.1:1/0")
    with pytest.raises(MissingExtraError):
        ProgrammaticToolExecutor(state="redis://127.0.0.1:1/0")


def test_execute_sync_a_loop_per_call_shares_one_key_and_leaves_no_client_behind(server, tmp_path):
    state = RedisState(server.url)
    ex = ProgrammaticToolExecutor(worker_catalog(tmp_path), state=state, tenant_id="sync-1")
    try:
        code = "from tools.pay import charge\nresult = await charge(amount=3, idempotency_key='sync')"
        results = [ex.execute_sync(code) for _ in range(3)]  # three event loops, one after another
        assert [r.error for r in results] == [None] * 3 and len(runs(tmp_path, "charge-runs")) == 1
        assert len(state._clients) <= 2  # the private loop's and the last loop's: closed loops' clients dropped
    finally:
        ex.close()
        state.close()


async def test_max_queued_holds_across_executors_sharing_the_state(server, tmp_path):
    from ptc import OverCapacityError, Quota

    quota = Quota(max_concurrent=1, max_queued=1)
    states = [RedisState(server.url), RedisState(server.url)]  # two clients, as two processes would have
    executors = [
        ProgrammaticToolExecutor(worker_catalog(tmp_path), state=s, tenant_id="queue-1", quota=quota) for s in states
    ]
    try:
        for ex in executors:
            await ex.warm_up()
        code = "from tools.work import slot\nresult = await slot()"
        running = asyncio.ensure_future(executors[0].execute(code))
        await asyncio.sleep(0.1)  # it holds the one slot
        queued = asyncio.ensure_future(executors[1].execute(code))
        await asyncio.sleep(0.1)  # it holds the one place in line
        with pytest.raises(OverCapacityError, match="across every process"):
            await executors[0].execute(code)
        assert [(await t).error for t in (running, queued)] == [None, None]  # the queued one ran after
        assert (await executors[0].execute(code)).error is None  # the slot and the place were given back
    finally:
        for ex in executors:
            await ex.aclose()
        for s in states:
            s.close()


async def test_with_fallback_the_local_breaker_judges_while_the_store_is_down(own_server, tmp_path):
    server = own_server
    state = RedisState(server.url, fallback=True, timeout=0.5)
    events = []
    ex = ProgrammaticToolExecutor(
        worker_catalog(tmp_path),
        state=state,
        tenant_id="fallback-cb",
        policy=Policy(circuit_failure_threshold=2, circuit_reset_timeout=60),
        on_event=events.append,
    )
    code = (
        "from tools.net import flaky\nfrom tools import ToolError\nresult = []\nfor _ in range(3):\n"
        "    try:\n        await flaky()\n    except ToolError as e:\n        result.append(type(e).__name__)"
    )
    try:
        await ex.warm_up()
        server.stop()
        r = await ex.execute(code)
        assert r.result == ["ToolError", "ToolError", "CircuitOpenError"]  # opened in-process after two failures
        assert len(runs(tmp_path, "flaky-runs")) == 2
        assert [e.kind for e in events if e.kind.startswith(("circuit", "state"))] == [
            "state_unavailable",
            "circuit_open",
        ]
    finally:
        await ex.aclose()
        state.close()
