"""Shared policy state in a real redis-server: two executors in two processes share keys, breakers, quotas, journals.

Each cross-process test starts `tests/redis_worker.py` subprocesses (a
separate interpreter each, like two machines) against one server started by
the fixture on a free loopback port; handlers count their runs in files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_server import RedisServer, available

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
