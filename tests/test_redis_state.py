"""Shared policy state in a real redis-server: two executors in two processes share keys, breakers, quotas, journals.

Each cross-process test starts `tests/redis_worker.py` subprocesses (a
separate interpreter each, like two machines) against one server started by
the fixture on a free loopback port; handlers count their runs in files.
"""

from __future__ import annotations

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
    ProgrammaticToolExecutor,
    RedisState,
)
from ptc.errors import JournalError

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


def spawn(mode: str, url: str, out: Path, count: int = 1, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, url, str(out), str(count)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stderr=subprocess.PIPE,
    )


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
    procs = [spawn("charge", server.url, tmp_path, 2, TENANT="idem-1") for _ in range(2)]
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
