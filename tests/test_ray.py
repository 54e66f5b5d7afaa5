"""RayExecutor on a real local Ray cluster (2 CPUs): executions spread over 2 actors, handlers that run
on the actors, events and audit forwarded to the driver, sessions, and actors killed mid-run."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_server import RedisServer, available

ray = pytest.importorskip("ray")

from ptc import (  # noqa: E402
    AuditEvent,
    ExecutorClosedError,
    JournalError,
    Limits,
    MissingExtraError,
    OverCapacityError,
    Policy,
    ProgrammaticToolExecutor,
    Quota,
    RedisState,
    SessionClosedError,
    ToolCatalog,
    ToolDefinition,
    ToolEvent,
    ToolParameter,
    WorkerStartError,
)
from ptc.ray import RayExecutor  # noqa: E402

LOST = "the worker was lost"


@pytest.fixture(scope="module", autouse=True)
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def _catalog(log: Path) -> ToolCatalog:
    """Tools whose handlers are closures over `log`: each run appends a line (O_APPEND: from any process)."""
    catalog = ToolCatalog()

    def note(*words: object) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (" ".join(map(str, words)) + "\n").encode())
        finally:
            os.close(fd)

    def where(payload: dict[str, Any]) -> dict[str, Any]:
        note("where", payload["x"], os.getpid())
        return {"pid": os.getpid(), "x": payload["x"]}

    def once(payload: dict[str, Any]) -> str:
        note("once", payload["key"], os.getpid())
        return f"once {payload['key']}"

    async def slow(payload: dict[str, Any]) -> str:
        note("start", payload["key"], os.getpid())
        await asyncio.sleep(payload["seconds"])
        note("done", payload["key"], os.getpid())
        return f"ran {payload['key']}"

    catalog.add_tool(
        ToolDefinition(name="where", domain="ops", parameters=[ToolParameter(name="x", type="integer")]), handler=where
    )
    catalog.add_tool(
        ToolDefinition(name="once", domain="ops", parameters=[ToolParameter(name="key", type="string")]), handler=once
    )
    catalog.add_tool(
        ToolDefinition(
            name="slow",
            domain="ops",
            parameters=[ToolParameter(name="key", type="string"), ToolParameter(name="seconds", type="number")],
        ),
        handler=slow,
    )
    return catalog


def _executor(log: Path, **kwargs: Any) -> RayExecutor:
    return RayExecutor(_catalog(log), **{"workers": 2, "limits": Limits(timeout=30), **kwargs})


async def _until(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_executions_spread_over_two_actors_and_handlers_run_there(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = _executor(log)
    try:
        pids = await executor.warm_up()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        code = "from tools.ops import where\nr = await where(x={})\nprint('got', r['x'])\nr"
        results = await asyncio.gather(*(executor.execute(code.format(i)) for i in range(8)))
        assert [r.error for r in results] == [None] * 8
        assert [r.result["x"] for r in results] == list(range(8))
        assert [r.output for r in results] == [f"got {i}\n" for i in range(8)]
        assert len({r.execution_id for r in results}) == 8
        assert all(
            len(r.tool_calls) == 1 and r.tool_calls[0].tool == "where" and r.tool_calls[0].result_size for r in results
        )
        assert {r.result["pid"] for r in results} == set(pids)  # the least-loaded actor: both got some
        # the closure ran in the actors' processes (not the driver's), once per call
        ran = _lines(log)
        assert sorted(int(x) for _, x, _ in ran) == list(range(8))
        assert {int(pid) for _, _, pid in ran} == set(pids)
        assert executor.execute_sync  # (a sync caller: below, from a thread without a loop)
        synced = await asyncio.to_thread(executor.execute_sync, "1 + 1")
        assert synced.result == 2
        assert executor.search_tools("where")[0]["name"] == "ops.where"
        assert "def where" in (executor.describe_tool("ops.where") or {})["stub"]
    finally:
        await executor.aclose()


async def test_events_and_audit_reach_the_drivers_callbacks_before_the_result(tmp_path: Path) -> None:
    events: list[ToolEvent] = []
    audits: list[AuditEvent] = []
    threads: set[str] = set()
    executor = _executor(tmp_path / "log", on_event=events.append)

    @executor.on_audit
    def audit(event: AuditEvent) -> None:
        threads.add(threading.current_thread().name)
        audits.append(event)

    try:
        results = await asyncio.gather(
            *(executor.execute(f"from tools.ops import where\nawait where(x={i})") for i in range(4))
        )
        for result in results:  # all of it delivered by the time execute() returned
            kinds = [e.kind for e in events if e.execution_id == result.execution_id]
            assert kinds == ["start", "complete"]
            assert [a.outcome for a in audits if a.execution_id == result.execution_id] == ["ok"]
        failed = await executor.execute("1 / 0")
        assert failed.error is not None and failed.error.kind == "runtime_error"
        assert [a.outcome for a in audits if a.execution_id == failed.execution_id] == ["runtime_error"]
        assert threads == {"ptc-ray"}
    finally:
        await executor.aclose()
    with pytest.raises(ExecutorClosedError):
        await executor.execute("1")


async def test_a_session_keeps_its_state_across_cells_on_its_actor(tmp_path: Path) -> None:
    executor = _executor(tmp_path / "log")
    try:
        async with executor.session() as session:
            first = await session.execute("from tools.ops import where\nseen = await where(x=7)\ncount = 1")
            second = await session.execute("count += 1\n(count, seen['x'])")
            assert first.error is None and second.result == [2, 7]
            assert (first.cell, second.cell) == (0, 1) and second.session_id == session.id
            assert not second.session_restored
            assert session.cells == 2 and session.actor is not None
            journal = session.journal()
            assert journal is not None and len(journal.cells) == 2
        assert session.closed
        with pytest.raises(SessionClosedError):
            await session.execute("count")
        # its journal restores on any actor, with no tool run again
        restored = await executor.restore_session(journal)
        again = await restored.execute("(count, seen['pid'] > 0)")
        assert again.result == [2, True]
        assert len([line for line in _lines(tmp_path / "log") if line[0] == "where"]) == 1
        await restored.aclose()
    finally:
        await executor.aclose()


async def test_a_killed_actor_loses_exactly_its_executions_and_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = _executor(log)
    try:
        pids = await executor.warm_up()
        victim, victim_pid = executor.actors[0], pids[0]
        code = "from tools.ops import slow\nawait slow(key={key!r}, seconds=1.5, idempotency_key={key!r})"
        keys = [f"k{i}" for i in range(8)]
        runs = [asyncio.ensure_future(executor.execute(code.format(key=key))) for key in keys]
        await _until(lambda: len(_lines(log)) >= len(keys))  # every call has started on one of the two actors
        started_on_victim = {key for word, key, pid in _lines(log) if word == "start" and int(pid) == victim_pid}
        assert 0 < len(started_on_victim) < len(keys)
        ray.kill(victim)
        results = await asyncio.gather(*runs)  # exactly one result per execution submitted
        assert len(results) == len(keys)
        lost = {key for key, r in zip(keys, results, strict=True) if r.error is not None}
        assert lost == started_on_victim
        for key, result in zip(keys, results, strict=True):
            if key in lost:
                assert result.error is not None
                assert (result.error.kind, result.error.message) == ("internal_error", LOST)
                assert result.tool_calls == [] and result.result is None
            else:
                assert result.error is None and result.result == f"ran {key}"
        started = [key for word, key, _ in _lines(log) if word == "start"]
        assert sorted(started) == sorted(keys)  # no idempotent call ran twice, none was sent again
        # the actor was replaced: two live actors, and executions go on
        assert executor.replaced == 1 and len(executor.actors) == 2 and victim not in executor.actors
        after = await asyncio.gather(*(executor.execute("21 * 2") for _ in range(4)))
        assert [r.result for r in after] == [42] * 4
    finally:
        await executor.aclose()


async def test_a_session_whose_actor_is_killed_goes_on_from_its_journal(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = _executor(log)
    try:
        session = executor.session()
        assert (await session.execute("x = 41")).error is None
        counted = await session.execute("from tools.ops import where\ny = (await where(x=1))['x']")
        assert counted.error is None
        victim = session.actor
        running = asyncio.ensure_future(
            session.execute("from tools.ops import slow\nx = 0\nawait slow(key='cell', seconds=10)")
        )
        await _until(lambda: any(line[0] == "start" for line in _lines(log)))
        ray.kill(victim)
        cut = await running
        assert cut.error is not None and (cut.error.kind, cut.error.message) == ("internal_error", LOST)
        assert cut.session_id == session.id and cut.cell == 2  # it keeps its index, as a stopped cell does
        nxt = await session.execute("x + y")  # the state after the last completed cell, on another actor
        assert nxt.error is None and nxt.result == 42 and nxt.session_restored and nxt.cell == 3
        assert session.actor is not None and session.actor != victim
        following = await session.execute("x += 1\nx")
        assert following.result == 42 and not following.session_restored
        # an actor lost while the session is idle: its next cell restores too
        ray.kill(session.actor)
        await _until(lambda: executor.replaced == 2)
        idle = await session.execute("x")
        assert idle.error is None and idle.result == 42 and idle.session_restored
        assert [line[0] for line in _lines(log)] == ["where", "start"]  # the replays ran no tool again
        await session.aclose()
    finally:
        await executor.aclose()


async def test_cancelling_an_execution_stops_its_program_on_the_actor(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = _executor(log, workers=1)
    try:
        running = asyncio.ensure_future(
            executor.execute("from tools.ops import slow\nawait slow(key='c', seconds=1.0)\nprint('after')")
        )
        await _until(lambda: len(_lines(log)) == 1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        after = await executor.execute("from tools.ops import where\nawait where(x=3)")  # the actor carries on
        assert after.error is None and after.result["x"] == 3
        await asyncio.sleep(1.5)  # past the cancelled tool's own sleep: it never finished
        assert [line[0] for line in _lines(log)] == ["start", "where"]
        assert executor.replaced == 0
    finally:
        await executor.aclose()


async def test_what_the_actors_executor_raises_is_raised_as_itself(tmp_path: Path) -> None:
    log = tmp_path / "log"
    executor = _executor(log, workers=1, tenant_id="ray-full", quota=Quota(max_concurrent=1, max_queued=0))
    try:
        first = asyncio.ensure_future(executor.execute("from tools.ops import slow\nawait slow(key='q', seconds=1.0)"))
        await _until(lambda: len(_lines(log)) == 1)
        with pytest.raises(OverCapacityError):
            await executor.execute("1")
        assert (await first).error is None
        with pytest.raises(JournalError):
            await executor.restore_session('{"version": 1}')
    finally:
        await executor.aclose()


async def test_a_suspended_execution_resumes_on_any_actor(tmp_path: Path) -> None:
    log = tmp_path / "log"
    catalog = _catalog(log)
    catalog.add_tool(
        ToolDefinition(
            name="approved",
            domain="ops",
            parameters=[ToolParameter(name="x", type="integer")],
            policy=Policy(requires_approval=True),
        ),
        handler=lambda payload: payload["x"] * 10,
    )
    executor = RayExecutor(catalog, workers=2, limits=Limits(timeout=30))
    try:
        code = "from tools.ops import where, approved\nr = await where(x=1)\n(r['x'], await approved(x=4))"
        suspended = await executor.execute(code)
        assert suspended.suspended and suspended.journal is not None
        [pending] = suspended.pending_approvals
        resumed = await executor.resume(suspended.journal.model_dump_json(), {pending.call_id: True})
        assert resumed.error is None and resumed.result == [1, 40]
        assert resumed.execution_id == suspended.execution_id
        assert [line[0] for line in _lines(log)] == ["where"]  # the earlier call answered from the journal
    finally:
        await executor.aclose()


def _children_running(script: str) -> dict[int, int]:
    """pid -> parent pid of the processes whose command line names `script`."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
                parent = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if script.encode() in command:
                found[int(entry)] = parent
    return found


async def test_each_actor_opens_its_own_mcp_connections(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    shop = tmp_path / "shop_for_ray.py"  # a path of this test's own: other tests' shop servers do not count
    shop.write_text((Path(__file__).resolve().parent / "mcp_servers" / "shop.py").read_text())
    executor = RayExecutor(mcp_servers={"shop": f"{sys.executable} {shop}"}, workers=2, limits=Limits(timeout=30))
    try:
        pids = await executor.warm_up()
        code = "from tools.shop import get_weather\nawait get_weather(city='Oslo')"
        results = await asyncio.gather(*(executor.execute(code) for _ in range(4)))
        assert all(r.error is None and "Oslo" in str(r.result) for r in results), [r.error for r in results]
        assert sorted(_children_running(str(shop)).values()) == sorted(pids)  # one server per actor, its child
        assert executor.search_tools("weather")[0]["name"] == "shop.get_weather"  # an actor answers: it has them
        assert "def get_weather(" in executor.api_reference()
        assert executor.check(code) == []
        bad = executor.check("from tools.shop import get_weather\nawait get_weather(town='Oslo')")
        assert bad and all(d.severity == "error" for d in bad) and bad[0].line == 2, bad
    finally:
        await executor.aclose()
    assert _children_running(str(shop)) == {}  # closing closed them


async def test_the_api_reference_and_type_checks_are_the_catalogs_and_run_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ty")
    log = tmp_path / "log"
    executor = _executor(log)
    local = ProgrammaticToolExecutor(_catalog(log))
    good = "from tools.ops import where\nr = await where(x=1)"
    bad = "from tools.ops import where\nr = await where(x='one')"
    try:
        assert executor.api_reference() == local.api_reference()
        assert "def where(" in executor.api_reference()
        assert executor.check(good) == local.check(good) == []
        found = executor.check(bad)
        assert found and [(d.line, d.severity) for d in found] == [(d.line, d.severity) for d in local.check(bad)]
        assert found[0].line == 2 and found[0].severity == "error", found
        assert _lines(log) == []  # nothing ran
    finally:
        local.close()
        await executor.aclose()
    with pytest.raises(ExecutorClosedError):
        executor.check(good)


async def test_closing_kills_the_actors(tmp_path: Path) -> None:
    executor = _executor(tmp_path / "log")
    await executor.warm_up()
    actors = executor.actors
    await executor.aclose()
    await executor.aclose()  # twice is fine
    for actor in actors:
        with pytest.raises(ray.exceptions.RayActorError):
            await actor.ready.remote()
    assert executor.closed


class _OnlyHere:
    """A handler whose class cloudpickle sends by reference: its module (this test file, not importable in
    Ray's workers) is missing there, as a handler's package missing on a cluster's nodes."""

    def __call__(self, payload: dict[str, Any]) -> int:
        return 1


async def test_actors_that_die_as_they_start_end_in_a_clear_error(tmp_path: Path) -> None:
    catalog = ToolCatalog()
    catalog.add_tool(ToolDefinition(name="here", domain="ops", parameters=[]), handler=_OnlyHere())
    executor = RayExecutor(catalog, workers=1)
    try:
        with pytest.raises(WorkerStartError, match="No module named 'test_ray'"):
            await executor.warm_up()
        with pytest.raises(WorkerStartError):
            await executor.execute("1")
        assert executor.actors == []
    finally:
        await executor.aclose()


def test_options_are_checked_at_once_and_a_missing_ray_says_which_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TypeError):
        RayExecutor(_catalog(tmp_path / "log"), no_such_option=1)
    with pytest.raises(ValueError):
        RayExecutor(workers=0)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"ptc\[ray\]"):
        RayExecutor()


needs_redis = pytest.mark.skipif(
    not available(), reason="needs Debian's redis-server: apt-get install -y redis-server (.ci/run does)"
)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@needs_redis
async def test_with_shared_state_a_lost_execution_sent_again_runs_no_idempotent_key_twice(
    tmp_path: Path, redis_url: str
) -> None:
    """The key's tool finished on the actor that was then killed; its execution, sent again by the caller,
    lands on the other actor, which gets the stored result from Redis instead of running the tool."""
    log = tmp_path / "log"
    executor = _executor(log, state=redis_url)
    try:
        pids = await executor.warm_up()
        victim, victim_pid = executor.actors[0], pids[0]
        code = (
            "from tools.ops import once, slow\n"
            "first = await once(key={key!r}, idempotency_key={key!r})\n"
            "await slow(key={key!r}, seconds=1.5)\nfirst"
        )
        keys = [f"r{i}" for i in range(6)]
        runs = [asyncio.ensure_future(executor.execute(code.format(key=key))) for key in keys]
        await _until(lambda: len([line for line in _lines(log) if line[0] == "start"]) >= len(keys))
        ray.kill(victim)
        results = await asyncio.gather(*runs)
        lost = [key for key, r in zip(keys, results, strict=True) if r.error is not None]
        on_victim = {key for word, key, pid in _lines(log) if word == "once" and int(pid) == victim_pid}
        assert lost and set(lost) == on_victim
        assert all(r.error.message == LOST for r in results if r.error is not None)
        again = await asyncio.gather(*(executor.execute(code.format(key=key)) for key in lost))
        assert [r.result for r in again] == [f"once {key}" for key in lost]
        assert all(r.tool_calls[0].cache_hit for r in again)  # answered from the store
        ran = [key for word, key, _ in _lines(log) if word == "once"]
        assert sorted(ran) == sorted(keys)  # each key ran once, fleet-wide
    finally:
        await executor.aclose()


@needs_redis
async def test_with_shared_state_a_sessions_journal_is_stored_and_restored_by_id(
    tmp_path: Path, redis_url: str
) -> None:
    first = _executor(tmp_path / "log", state=redis_url, workers=1)
    try:
        session = first.session()
        await session.execute("from tools.ops import once\nseen = await once(key='s')\ntotal = 40")
        await session.execute("total += 2")
        session_id = session.id
        await session.aclose()
    finally:
        await first.aclose()
    store = RedisState(redis_url)  # a store object: the driver uses it, each actor makes one like it
    second = _executor(tmp_path / "log", state=store)  # another driver: only the id is known
    try:
        restored = await second.restore_session(session_id)
        assert restored.id == session_id
        result = await restored.execute("(total, seen)")
        assert result.result == [42, "once s"] and result.cell == 2
        assert [line[0] for line in _lines(tmp_path / "log")] == ["once"]  # the replay ran no tool
        await restored.aclose()
        with pytest.raises(JournalError):
            await second.restore_session("no-such-session")
        keyed = await second.execute("from tools.ops import once\nawait once(key='s', idempotency_key='k-s')")
        again = await second.execute("from tools.ops import once\nawait once(key='s', idempotency_key='k-s')")
        assert keyed.error is None and again.tool_calls[0].cache_hit  # the actors share the store's key
    finally:
        await second.aclose()
    assert await store.get_journal("session", session_id) is not None  # still open: the caller's to close
    store.close()
