"""RayExecutor: the executor's API, each execution run by one of N Ray actors.

    RayExecutor(catalog, handlers=..., workers=N, state=..., **ProgrammaticToolExecutor options)
      N actors (ptc.ray.actor.RayWorker), each with a ProgrammaticToolExecutor of its own
      execute(code) ─ the least-loaded live actor runs it ─ its ExecutionResult, as in one process
      session()     ─ pinned to one actor; its journal kept here (ptc.ray.session)

What travels: the catalog, the handlers and the options are pickled once (Ray's cloudpickle: closures
and lambdas too) and every actor unpickles its own copy, so a tool handler runs on the actor that runs
the program, in that actor's process (with `processes_per_worker`, the actor's own worker processes run
the sandboxes, the handlers stay in the actor). MCP servers and A2A agents are configs: each actor opens
its own connections. Policy state (idempotency cache, breakers, tenant quotas) is each actor's own unless
`state=` names a shared store (ptc's Redis state): with it, a key runs once fleet-wide.

Events and audit events reach the driver's callbacks through each actor's long poll (ptc.ray.stream):
an event is delivered about one Ray round trip after the actor emitted it (~2-5 ms on one machine),
before the result of its execution is returned, on the driver's private thread ("ptc-ray").

Ray: if it is not initialized, the constructor calls `ray.init(address=address)`; with no address (and
no RAY_ADDRESS in the environment) that starts a local Ray instance on this machine, its dashboard off.
A Ray the user started (`ray.init(...)` before, any address) is used as it is. Closing kills the actors
and leaves Ray running (it may be the user's; a local one started here ends with the process).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal

from ptc.approvals import ApprovalDecision
from ptc.audit import AuditCallback
from ptc.catalog import ToolCatalog
from ptc.closing import Closing
from ptc.errors import ExecutorClosedError
from ptc.events import EventCallback
from ptc.executor import ProgrammaticToolExecutor
from ptc.fleet import is_journal_id, shared_state, stored_journal
from ptc.journal import DEFAULT_MAX_JOURNAL_BYTES, Journal
from ptc.limits import Limits
from ptc.private.asyncio import running_loop
from ptc.ray.fleet import Fleet, Member, import_ray
from ptc.ray.session import RaySession
from ptc.results import Diagnostic, ExecutionResult
from ptc.state import SharedState

Lifecycle = Literal["open", "closed"]
DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1}
CLOSE_TIMEOUT = 10.0  # seconds the actors get to close their executors before they are killed
_DRIVER_ONLY = ("on_event", "on_audit", "workers")


class RayExecutor(Closing):
    """Runs programs on N Ray actors, each holding a ProgrammaticToolExecutor (see the module docstring).

    workers: how many actors (each reserves `actor_options`, by default one CPU: a program runs on
        one core at a time, and Ray then spreads the actors over the cluster's CPUs).
    state: the shared policy store, for each actor's ProgrammaticToolExecutor and for the driver's session
        journals: a URL ("redis://host:6379/0": each actor and the driver make their own RedisState), a
        factory called once in each process (`functools.partial(RedisState, url, fallback=True)`), or a
        RedisState (the driver uses it, still the caller's to close; each actor makes one like it from its
        URL and options, since its connections are this process's; another store object: TypeError). Then
        idempotency keys, breakers and quotas hold across the actors (and other machines naming the
        store), each session's journal is stored after each cell (by the actor's executor), and
        `restore_session(session_id)` / `resume(execution_id)` find journals by id from any driver.
    processes_per_worker: each actor's own worker processes (its executor's `workers=`); 0 runs the
        sandboxes in the actor's process.
    address: the Ray cluster to join when Ray is not initialized yet (None: RAY_ADDRESS, else a new
        local instance).
    actor_options: Ray actor options (`num_cpus`, `resources`, `scheduling_strategy`, `runtime_env`, ...).
    Every other keyword is a ProgrammaticToolExecutor option (limits, policy, policies, tenant_id, quota,
    mcp_servers, a2a_agents, on_approval, ...), checked here at once and applied in every actor.
    """

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        *,
        workers: int = 2,
        state: str | SharedState | Callable[[], SharedState] | None = None,
        processes_per_worker: int = 0,
        address: str | None = None,
        actor_options: Mapping[str, Any] | None = None,
        on_event: EventCallback | None = None,
        on_audit: AuditCallback | None = None,
        **options: Any,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more Ray actors, not {workers}")
        if processes_per_worker < 0:
            raise ValueError(f"processes_per_worker must be 0 or more, not {processes_per_worker}")
        taken = [name for name in _DRIVER_ONLY if name in options]
        if taken:
            raise TypeError(f"RayExecutor takes no option {taken[0]!r} for its actors")
        given: SharedState | None = None
        if isinstance(state, SharedState):  # its connections are this process's: each actor makes its own
            factory = getattr(state, "factory", None)
            if not callable(factory):
                raise TypeError(
                    "this store object cannot travel to the actors: give its URL or a factory, "
                    "e.g. state=functools.partial(RedisState, url, fallback=True)"
                )
            given, state = state, factory
        if state is not None and not isinstance(state, str) and not callable(state):
            raise TypeError(f"state must be None, a Redis URL or a factory of a store, not {type(state).__name__}")
        ray = import_ray("ptc.ray.RayExecutor")
        # the options checked here, by the executor itself (a misspelled one is a TypeError now, not a dead actor)
        self._local = ProgrammaticToolExecutor(catalog, handlers, workers=0, **options)
        self.catalog = self._local.catalog
        self.tenant_id = self._local.tenant_id
        self.limits = self._local.limits
        actor_kwargs = dict(options, workers=processes_per_worker)
        if state is not None:
            actor_kwargs["state"] = state
        if not ray.is_initialized():
            if address is None and not os.environ.get("RAY_ADDRESS"):
                ray.init(include_dashboard=False)
            else:
                ray.init(address=address)
        # the driver's own store: it reads journals by id (a URL: a RedisState it owns, as each actor does)
        self._owns_state = given is None
        self._state: SharedState | None = (
            given
            if given is not None
            else None
            if state is None
            else shared_state(state)[0]
            if isinstance(state, str)
            else state()
        )
        self._lifecycle: Lifecycle = "open"
        self._lock = threading.Lock()
        self._sessions: dict[str, RaySession] = {}
        self._fleet = Fleet(
            ray,
            ray.put((self.catalog, handlers, actor_kwargs)),
            workers,
            dict(actor_options) if actor_options is not None else DEFAULT_ACTOR_OPTIONS,
            self.tenant_id,
            self.limits,
            on_event,
            on_audit,
        )

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def lifecycle(self) -> Lifecycle:
        return self._lifecycle

    @property
    def closed(self) -> bool:
        return self._lifecycle == "closed"

    @property
    def actors(self) -> list[Any]:
        """The live actors' handles, in worker order (for operations: `ray.kill(executor.actors[0])`)."""
        return [m.handle for m in self._fleet.members if m.alive]

    @property
    def replaced(self) -> int:
        """How many actors were started to replace lost ones."""
        return self._fleet.replaced

    def _check_open(self) -> None:
        if self._lifecycle == "closed":
            raise ExecutorClosedError("this executor is closed (aclose() was called); make a new one")

    async def warm_up(self) -> list[int]:
        """Wait until every actor has started and loaded the sandbox runtime; their process ids."""
        self._check_open()
        return await self._fleet.submit(self._warm_up())  # type: ignore[no-any-return]

    async def _warm_up(self) -> list[int]:
        """Each actor's `ready`; one that dies meanwhile is replaced and waited for (WorkerStartError if they
        keep dying as they start)."""
        fleet, pids = self._fleet, []
        for index in range(len(fleet.members)):
            while True:
                member = fleet.members[index]
                if fleet.broken is not None or not member.alive:
                    fleet.pick()  # raises WorkerStartError, saying why
                try:
                    pids.append(await member.handle.ready.remote())
                except fleet.ray.exceptions.RayActorError as exc:
                    fleet.lost(member, exc)
                    continue
                member.answered = True
                break
        return pids

    async def aclose(self) -> None:
        """Close the sessions, the actors' executors, then kill the actors. Final; twice is fine."""
        if self._close():
            await self._fleet.submit(self._aclose())
            self._fleet.stop()

    def close(self) -> None:
        """aclose() for callers without an event loop."""
        if self._close():
            self._fleet.call(self._aclose(), timeout=CLOSE_TIMEOUT + 10)
            self._fleet.stop()

    def _close(self) -> bool:
        with self._lock:
            was, self._lifecycle = self._lifecycle, "closed"
        return was != "closed"

    async def _aclose(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session._close_here("its executor was closed")
        await self._fleet.aclose(CLOSE_TIMEOUT)
        self._local.close()
        if self._state is not None and self._owns_state:  # a store object given is its caller's to close
            await asyncio.to_thread(self._state.close)

    def _enter(self) -> None:  # `with executor:` (ptc.closing)
        self._check_open()

    async def _aenter(self) -> None:  # `async with executor:`
        await self.warm_up()

    # -- configuration -----------------------------------------------------------------------
    def on_event(self, callback: EventCallback) -> EventCallback:
        """Register a tool-event callback (usable as a decorator); called on the driver's "ptc-ray" thread."""
        self._fleet.loop.call_soon_threadsafe(self._fleet.listen, callback, None)
        return callback

    def on_audit(self, callback: AuditCallback) -> AuditCallback:
        """Register a callback for the one audit event of every execution; called on the "ptc-ray" thread."""
        self._fleet.loop.call_soon_threadsafe(self._fleet.listen, None, callback)
        return callback

    def search_tools(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """As ProgrammaticToolExecutor.search_tools. With MCP servers or A2A agents an actor answers (it
        has connected them); otherwise the driver's copy of the catalog does, with no call to Ray."""
        if not self._remote_tools():
            return self._local.search_tools(query, limit)
        self._check_open()
        return self._fleet.call(self._ask("search_tools", query, limit))

    def describe_tool(self, name: str) -> dict[str, Any] | None:
        """As ProgrammaticToolExecutor.describe_tool (answered like search_tools)."""
        if not self._remote_tools():
            return self._local.describe_tool(name)
        self._check_open()
        return self._fleet.call(self._ask("describe_tool", name))  # type: ignore[no-any-return]

    def api_reference(self) -> str:
        """As ProgrammaticToolExecutor.api_reference (answered like search_tools)."""
        if not self._remote_tools():
            return self._local.api_reference()
        self._check_open()
        return self._fleet.call(self._ask("api_reference"))  # type: ignore[no-any-return]

    def check(self, code: str) -> list[Diagnostic]:
        """As ProgrammaticToolExecutor.check: type-check `code` against the stubs, running nothing
        (answered like search_tools: with MCP servers or A2A agents, by an actor, which has their tools)."""
        if not self._remote_tools():
            self._check_open()
            return self._local.check(code)
        self._check_open()
        return self._fleet.call(self._ask("check", code))

    def _remote_tools(self) -> bool:
        return bool(self._local._mcp.configs or self._local._a2a.configs)

    async def _ask(self, method: str, *args: Any) -> Any:
        member = self._fleet.pick()
        return await getattr(member.handle, method).remote(*args)

    # -- running ----------------------------------------------------------------------------------
    async def execute(
        self, code: str, *, limits: Limits | None = None, typecheck: bool | None = None
    ) -> ExecutionResult:
        """Run one program on the least-loaded live actor; never raises for anything the program does.

        An actor lost while it runs the program gives an `internal_error` result, "the worker was lost"
        (the program is not run again: its tools may have run). Raises what the actor's executor raises
        (OverCapacityError, ...), ExecutorClosedError after aclose(). Cancelling the awaiting task
        cancels the program on its actor.
        """
        self._check_open()
        return await self._fleet.submit(self._execute(code, limits, typecheck))  # type: ignore[no-any-return]

    def execute_sync(
        self, code: str, *, limits: Limits | None = None, typecheck: bool | None = None
    ) -> ExecutionResult:
        """execute() for callers without an event loop."""
        if running_loop() is not None:
            raise RuntimeError("execute_sync() called from a running event loop; use `await executor.execute(code)`")
        self._check_open()
        return self._fleet.call(self._execute(code, limits, typecheck))

    async def _execute(self, code: str, limits: Limits | None, typecheck: bool | None) -> ExecutionResult:
        return await self._run(code, limits, lambda m: m.handle.execute.remote(code, limits, typecheck))

    async def _run(self, code: str, limits: Limits | None, send: Callable[[Member], Any]) -> ExecutionResult:
        member = self._fleet.pick()
        started, clock = time.time(), time.perf_counter()
        result = await self._fleet.reply(member, send(member))
        return result if result is not None else self._fleet.lost_result(code, limits, started, clock)

    async def resume(
        self,
        journal: Journal | str | bytes,
        decisions: Mapping[str, bool | str | ApprovalDecision] | None = None,
        *,
        limits: Limits | None = None,
    ) -> ExecutionResult:
        """As ProgrammaticToolExecutor.resume, on the least-loaded actor (one resume per journal holds per
        actor; with a shared `state`, fleet-wide where the store keeps resume ids)."""
        self._check_open()
        code = _code_of(journal)
        return await self._fleet.submit(  # type: ignore[no-any-return]
            self._run(code, limits, lambda m: m.handle.resume.remote(journal, decisions, limits))
        )

    # -- sessions -----------------------------------------------------------------------------------
    def session(
        self,
        session_id: str | None = None,
        limits: Limits | None = None,
        idle_timeout: float = 300.0,
        max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES,
    ) -> RaySession:
        """A session pinned to one actor (ptc.ray.session); placed with its first cell, so the tenant's
        `max_sessions` (per actor, or fleet-wide with a shared state) is checked then."""
        return self._new_session(session_id, limits, idle_timeout, max_journal_bytes, None)

    async def restore_session(
        self,
        journal: Journal | str | bytes,
        *,
        session_id: str | None = None,
        limits: Limits | None = None,
        idle_timeout: float = 300.0,
        max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES,
    ) -> RaySession:
        """A session rebuilt from a journal on the least-loaded actor (checked and replayed there: JournalError,
        ReplayDivergedError as in one process). The id is the journal's unless `session_id` is given.

        With a `state` store, `journal` may be a session's id: its journal as stored after its last
        completed cell (JournalError if the store holds none; StateUnavailableError if it is down).
        """
        if is_journal_id(journal):  # a session id: its journal as the actor's executor stored it after each cell
            assert isinstance(journal, str)
            session_id, journal = session_id or journal, await stored_journal(self._state, "session", journal)
        if session_id is None:
            session_id = _session_id_of(journal)
        session = self._new_session(session_id, limits, idle_timeout, max_journal_bytes, journal)
        try:
            await self._fleet.submit(session._open())
        except BaseException:
            session._close_here("its restore failed")
            raise
        return session

    def _new_session(
        self,
        session_id: str | None,
        limits: Limits | None,
        idle_timeout: float,
        max_journal_bytes: int,
        journal: Journal | str | bytes | None,
    ) -> RaySession:
        self._check_open()
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (seconds)")
        session_id = session_id if session_id is not None else uuid.uuid4().hex
        with self._lock:
            if session_id in self._sessions:
                raise ValueError(f"a session {session_id!r} is already open in this executor")
            make = partial(
                RaySession, self._fleet, self._forget, session_id, limits, idle_timeout, max_journal_bytes, journal
            )
            session = self._fleet.call(_made(make))
            self._sessions[session_id] = session
        return session

    def _forget(self, session: RaySession) -> None:
        with self._lock:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]


async def _made(make: Callable[[], RaySession]) -> RaySession:
    """A RaySession made on the private loop (its lock belongs there)."""
    return make()


def _parsed(journal: Journal | str | bytes) -> Journal | None:
    if isinstance(journal, Journal):
        return journal
    try:
        return Journal.model_validate_json(journal)
    except ValueError:
        return None  # the actor's checks say what is wrong with it


def _session_id_of(journal: Journal | str | bytes) -> str | None:
    parsed = _parsed(journal)
    return parsed.session_id if parsed is not None else None


def _code_of(journal: Journal | str | bytes) -> str:
    """A suspended execution's program (for the audit event of a resume whose actor is lost)."""
    parsed = _parsed(journal)
    return parsed.cells[0].code if parsed is not None and parsed.cells else ""
