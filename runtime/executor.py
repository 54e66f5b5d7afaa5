"""ProgrammaticToolExecutor: the public entry point, and its lifecycle.

    unopened --(connect(), async with, with, the first execute())--> open --(aclose(), close())--> closed

Closed is final: execute(), connect(), warm_up(), session() and
restore_session() on a closed executor raise ExecutorClosedError (nothing
reconnects behind the caller's back); closing twice is fine, and closing
closes the executor's open sessions. The jobs it holds are each in a module
of their own: the tools' pipeline (ptc.hostcalls.calls), MCP connections
(ptc.connections), tenancy (ptc.tenancy), one execution (ptc.execution),
sessions (ptc.sessions, ptc.replay, ptc.journal) and audit (ptc.audit).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ptc.approvals import APPROVAL_TOOLS, ApprovalCallback, ApprovalDecision
from ptc.audit import AuditCallback, Auditor
from ptc.catalog import ToolCatalog
from ptc.closing import Closing
from ptc.connections import A2AConnections, MCPConnections
from ptc.engine import get_runtime, prepare_runtime, runtime_ready
from ptc.errors import ExecutorClosedError, JournalError, TypeCheckerError
from ptc.events import EventBus, EventCallback
from ptc.execution import Runner, resumed
from ptc.fleet import SharedGate, by_id, claim_resume, keep_journal, shared_state, state_warning
from ptc.hostcalls.backends.a2a.client import A2AAgentConfig
from ptc.hostcalls.backends.mcp.client import MCPServerConfig
from ptc.hostcalls.calls.approval import DEFAULT_APPROVAL_TIMEOUT, Approvals
from ptc.hostcalls.calls.idempotency import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, IdempotencyCache
from ptc.hostcalls.calls.shim import MCPClientShim
from ptc.hostcalls.wasm.output import OutputCallback
from ptc.journal import DEFAULT_MAX_JOURNAL_BYTES, Fingerprints, Journal, load
from ptc.limits import Limits
from ptc.policy import Policy
from ptc.results import Diagnostic, ExecutionErrorInfo, ExecutionResult
from ptc.resume import decisions_for, resumes
from ptc.sessions import Session
from ptc.state import SharedState
from ptc.stub_code import StubCode
from ptc.stubgen import StubCache, render_api_reference, write_stubs
from ptc.stubgen.discovery import describe_tool, search_tools
from ptc.telemetry import Telemetry
from ptc.tenancy import Quota, admission, tenants
from ptc.typecheck import TypeChecker, describe, refusing
from ptc.workers.pool import WorkerPool, workers_from_env
from ptc.workers.sessions import PinnedSession

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

Lifecycle = Literal["unopened", "open", "closed"]
_EXECUTOR_CLOSED = "its executor was closed"


class ProgrammaticToolExecutor(Closing):
    """Runs programs in the sandbox against one tool catalog.

    Many executions may run at once, from one event loop or several threads;
    each gets a fresh sandbox instance, so no state survives between them.

    handlers: tool name -> a worker, called with one dict of validated
        parameters (sync or async). Tools added with `@catalog.tool` carry
        their own handler.
    limits: fuel, memory, deadline, output and tool-call limits of each execution.
    stub_dir: also write the generated stub package there (kept in sync
        with the catalog). The sandbox always imports the stubs from memory.
    policy / policies: the default Policy and per-tool overrides.
    on_event: a callback for tool-call events (also `executor.on_event`).
    tenant_id / quota: executions of one tenant share its Quota (concurrent
        executions and a bounded queue) across executors; ids label records,
        events, audit events and the policy state. Every tenant has one:
        without a quota, the tenant's (the default `Quota()` until one is
        given). The first quota given for a tenant holds; another executor
        giving a different one for the same tenant is a ValueError (change
        it for all with `ptc.tenancy.tenants.set_quota`). Running executions
        also share the process's threads fairly between tenants
        (`ptc.tenancy.admission`).
    idempotency_max_bytes / idempotency_max_entries: bounds of this
        executor's idempotency cache (64 MiB of reply frames, 4096 keys);
        least recently used results go first, and a result bigger than a
        quarter of the bytes is not kept (its call still succeeds).
    on_audit: a callback for the one AuditEvent of every execution.
    state: where policy state lives. None (the default): in this process,
        per executor (idempotency, breakers) and per process (quotas). A
        `ptc.RedisState` (or its URL, "redis://host:6379/0", which this
        executor then owns and closes) shares idempotency keys, breakers,
        tenant quotas and journals with every executor naming the same
        store, on any machine (ptc.fleet; the `ptc[redis]` extra).
    mcp_servers: domain -> MCP server ("python server.py" runs over stdio,
        "http://host:port/mcp" is streamable HTTP, or an MCPServerConfig).
        Their tools are discovered into `tools.<domain>` on first use (or on
        `async with executor`); sessions are shared by all executions and
        closed by `aclose()` / leaving the `async with`. They need the `mcp`
        extra: without it the constructor raises MissingExtraError (an
        ImportError) saying `pip install 'ptc[mcp]'`.
    a2a_agents: domain -> A2A agent ("http://host:port", or an
        A2AAgentConfig). Each agent's card is read on first use, like MCP
        servers; its skills become `tools.<domain>.<skill>(text, *,
        context_id=None, data=None)` plus `send_message`, returning an
        AgentReply. They need the `a2a` extra (`pip install 'ptc[a2a]'`).

    on_approval / approval_timeout: who decides the calls of tools whose
        Policy says `requires_approval` (ptc.hostcalls.calls.approval), and
        the longest wait for a decision (then the call is denied,
        "timed_out"); the wait does not count against the program's timeout.
        Without a callback (or when it returns ptc.DEFER) the execution
        suspends: `result.status == "suspended"`, then `executor.resume()`.

    tracer_provider / meter_provider / trace_content: OpenTelemetry
        (ptc.telemetry, the `ptc[otel]` extra). Spans and metrics go to these
        providers, else to the global ones; without a configured SDK nothing
        is recorded and it costs nothing noticeable. The program's code, tool
        parameters and results go into spans only with `trace_content=True`
        (the code's SHA-256 always does).

    Aliases, the walkthrough's spellings: `timeout=S` is `limits.timeout`
    (giving both, different, is a ValueError); `enable_stubs=False` writes
    no stub_dir.
    """

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        *,
        limits: Limits | None = None,
        stub_dir: str | Path | None = None,
        policy: Policy | None = None,
        policies: Mapping[str, Policy] | None = None,
        tenant_id: str = "default",
        quota: Quota | None = None,
        mcp_servers: Mapping[str, str | MCPServerConfig | Mapping[str, Any]] | None = None,
        a2a_agents: Mapping[str, str | A2AAgentConfig | Mapping[str, Any]] | None = None,
        on_event: EventCallback | None = None,
        on_audit: AuditCallback | None = None,
        idempotency_max_bytes: int = DEFAULT_CACHE_BYTES,
        idempotency_max_entries: int = DEFAULT_CACHE_ENTRIES,
        timeout: float | None = None,
        enable_stubs: bool = True,
        on_approval: ApprovalCallback | None = None,
        approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT,
        workers: int | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        trace_content: bool = False,
        state: str | SharedState | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else ToolCatalog()
        self.limits = _limits(limits, timeout)
        self.tenant_id = tenant_id
        tenants.gate(tenant_id, quota)  # the tenant's quota, for every executor of it (a different one: ValueError)
        self.events = EventBus()
        if on_event is not None:
            self.events.subscribe(on_event)
        self.shim = MCPClientShim(
            handlers,
            policy=policy,
            policies=policies,
            catalog=self.catalog,
            events=self.events,
            tenant_id=tenant_id,
            idempotency=IdempotencyCache(max_bytes=idempotency_max_bytes, max_entries=idempotency_max_entries),
        )
        self.router = self.shim.router
        self.state, self._owns_state = shared_state(state)  # None: in-process policy state, as always
        self._unsubscribe: Callable[[], None] = lambda: None
        self._fleet = None if self.state is None else SharedGate(self.state, tenant_id)  # quotas fleet-wide
        if self.state is not None:
            self.router.state = self.router.breakers.state = self.state
            self._unsubscribe = self.state.on_warning(partial(state_warning, self.events, tenant_id))
        self.router.approvals = Approvals(on_approval, approval_timeout)
        self._mcp = MCPConnections(mcp_servers or {}, self.catalog, self.router.tools.bind)
        self._a2a = A2AConnections(a2a_agents or {}, self.catalog, self.router.tools.bind, taken=mcp_servers or {})
        self.stubs = StubCache(self.catalog, self._result_cap)
        self.typechecker = TypeChecker(self.stubs)  # nothing runs or is written until a first check
        self._stub_code = StubCode()  # the stubs compiled once, served as code (ptc.stub_code)
        self._compiled_revision = -1  # the catalog revision whose stubs warm_up() queued for compiling
        self.stub_dir = Path(stub_dir) if (stub_dir is not None and enable_stubs) else None
        self._written_revision = -1
        self._sync_stub_dir()
        self._auditor = Auditor(tenant_id, [on_audit] if on_audit else [])
        self.telemetry = Telemetry(tracer_provider, meter_provider, trace_content=trace_content)
        self._runner = Runner(
            tenant_id,
            self.router,
            self._module_source,
            self._auditor,
            Fingerprints(self.catalog),
            telemetry=self.telemetry,
        )
        self._lifecycle: Lifecycle = "unopened"
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._slots: dict[str, str] = {}  # session id -> its slot token in the shared state's session count
        # workers > 0: one-shot executions run in worker processes (ptc.workers); None reads PTC_WORKERS
        size = workers_from_env(workers)
        self._pool = WorkerPool(size, self._runner.max_journal_bytes) if size else None
        if self._pool is not None:  # an executor dropped without close() still ends its workers
            weakref.finalize(self, self._pool.close)

    @property
    def mcp_configs(self) -> list[MCPServerConfig]:
        return self._mcp.configs

    # -- lifecycle ------------------------------------------------------------
    @property
    def lifecycle(self) -> Lifecycle:
        """ "unopened", "open" or "closed" (see the module docstring)."""
        return self._lifecycle

    @property
    def closed(self) -> bool:
        return self._lifecycle == "closed"

    def _open(self) -> None:
        with self._lock:
            if self._lifecycle == "closed":
                raise ExecutorClosedError("this executor is closed (aclose() was called); make a new one")
            self._lifecycle = "open"

    async def connect(self) -> None:
        """Open the executor: start the MCP sessions and discover their tools (execute() does this on first use).

        Single-flight (ptc.connections): concurrent first callers await one discovery.
        """
        self._open()
        await self._mcp.connect()
        await self._a2a.connect()

    async def aclose(self) -> None:
        """Close the executor: its sessions, its MCP sessions (and their subprocesses) and its tool threads. Final."""
        if self._close():
            for session in self._open_sessions():
                await session.aclose(_EXECUTOR_CLOSED)
            await asyncio.to_thread(self._mcp.close)
            await asyncio.to_thread(self._a2a.close)
            if self._pool is not None:
                await asyncio.to_thread(self._pool.close)
            self.router.close()
            if self._owns_state and self.state is not None:
                await asyncio.to_thread(self.state.close)

    def close(self) -> None:
        """aclose() for callers without an event loop (a session's running cell is cancelled, not waited for)."""
        if self._close():
            for session in self._open_sessions():
                session.close(_EXECUTOR_CLOSED)
            self._mcp.close()
            self._a2a.close()
            if self._pool is not None:
                self._pool.close()
            self.router.close()
            if self._owns_state and self.state is not None:
                self.state.close()

    def _close(self) -> bool:
        with self._lock:
            was, self._lifecycle = self._lifecycle, "closed"
        self.typechecker.close()
        self._unsubscribe()  # a store shared with other executors stops telling this one
        return was != "closed"

    def _open_sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def _enter(self) -> None:  # `with executor:` (ptc.closing)
        self._open()

    async def _aenter(self) -> None:  # `async with executor:`
        await self.connect()

    async def warm_up(self, *, limits: Limits | None = None) -> None:
        """Make the sandbox runtime ready now, so no execution waits for it.

        The first execution in a process loads the compiled guest (~10 ms),
        and on a machine that has never run ptc builds it and compiles it for
        wasmtime first (about 20-90 s on 2 cores, once, cached in
        `$PTC_CACHE_DIR`). execute() waits for this itself, before its clock
        starts (`execution_time` never counts it); call warm_up() to pay it
        up front (a server before it accepts requests, a benchmark before it
        measures). It also starts compiling the catalog's stub modules in the
        background, so early executions load them as code (ptc.stub_code),
        and waits (up to 2 s) until the spare instances are made, so the first
        executions and sessions start in one (a session begun in a cold
        instance also restores in one: ~2 ms slower).
        Waits on a thread of its own: the event loop keeps running. `limits`
        picks the engine (fuel on or off); the default is the executor's.
        """
        await self._warm(limits)
        # and its spare instances, made in the background once the runtime is up: the first
        # executions (and sessions, whose journals say which kind of instance they began in) get one
        await asyncio.to_thread(get_runtime((limits or self.limits).fuel is not None).spares.filled, 2.0)

    async def _warm(self, limits: Limits | None) -> None:
        """The runtime loaded (built first, if need be) and the catalog's stubs queued for compiling."""
        if self.closed:
            raise ExecutorClosedError("this executor is closed (aclose() was called); make a new one")
        fuel = (limits or self.limits).fuel is not None
        if not runtime_ready(fuel):
            await asyncio.wrap_future(prepare_runtime(fuel))
        if self._compiled_revision != self.catalog.revision:  # once per revision: execute() comes here each time
            self._compiled_revision = self.catalog.revision
            for name, source in self.stubs.modules().items():  # compiled in the background (ptc.stub_code)
                self._stub_code.served(name, source)
        if self._pool is not None and not self._pool.ready(fuel):
            await asyncio.to_thread(self._pool.wait_ready, fuel=fuel)  # the workers' runtimes too

    # -- configuration ----------------------------------------------------------
    def on_event(self, callback: EventCallback) -> EventCallback:
        """Register a tool-event callback (usable as a decorator)."""
        self.events.subscribe(callback)
        return callback

    def on_audit(self, callback: AuditCallback) -> AuditCallback:
        """Register a callback for the one audit event of every execution (usable as a decorator)."""
        return self._auditor.add(callback)

    def api_reference(self) -> str:
        """The catalog as a prompt-ready API reference."""
        return render_api_reference(self.catalog, self._result_cap)

    def search_tools(self, query: str, limit: int = 10) -> list[dict[str, Any]]:
        """Functions, MCP tools and A2A skills ranked together for `query` (ptc.stubgen.discovery), best first.

        Each entry: name (`domain.tool`), domain, kind ("function", "mcp" or
        "a2a"), signature, summary and the import line.
        """
        return search_tools(self.catalog, query, limit)

    def describe_tool(self, name: str) -> dict[str, Any] | None:
        """One tool's search entry and its full stub (`stub`), by name, `domain.tool` or `tools.domain.tool`."""
        return describe_tool(self.catalog, name, self._result_cap)

    def _module_source(self, name: str) -> str | None:
        """A stub module's source for the guest; or, under APPROVAL_TOOLS, the tools that need an approval
        (JSON), which the guest asks once, so that only their calls carry the program's source line."""
        if name == APPROVAL_TOOLS:
            return json.dumps(self.router.tools.approval_tools())
        source = self.stubs.source(name)
        return None if source is None else self._stub_code.served(name, source)

    def _result_cap(self, name: str) -> int | None:
        """The tool's Policy.max_result_bytes as the router applies it: its stub's docstring states it."""
        tool = self.router.tools.get(name)
        return tool.policy.max_result_bytes if tool is not None else None

    def _sync_stub_dir(self) -> None:
        if self.stub_dir is not None and self._written_revision != self.catalog.revision:
            revision = self.catalog.revision
            write_stubs(self.catalog, self.stub_dir, self._result_cap)
            self._written_revision = revision

    # -- running ------------------------------------------------------------------
    async def execute(
        self,
        code: str,
        *,
        limits: Limits | None = None,
        typecheck: bool | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run one program; never raises for anything the program does.

        `on_output(stream, text)` ("stdout" or "stderr"; sync or async) gets
        the output while the program runs, in batches, on this loop; what it
        gets in all is what the result keeps (bounded by max_output_bytes),
        all of it before this returns. A callback that raises is logged and
        does not stop the program.

        Raises OverCapacityError (at once) when the tenant's quota and queue
        are full, ExecutorClosedError after aclose(). Cancelling the awaiting
        task (or a caller's timeout) stops the program promptly: its instance
        is freed and its audit event says "cancelled". The first execution of
        a process first waits for the runtime (see warm_up());
        `execution_time` starts after that.

        `typecheck` (default: `limits.typecheck`) type-checks the program
        first (`check()`): one with type errors comes back at once with
        `error.kind == "type_error"` and the diagnostics, and nothing ran.
        """
        limits = limits or self.limits
        release = await self._admit(limits)  # a check runs in the tenant's slot too: checks cannot flood the host
        if typecheck if typecheck is not None else limits.typecheck:
            try:
                refused = await self._typecheck(code, limits)
            except BaseException:
                release()
                raise
            if refused is not None:
                release()
                return refused
        cell = self._pool.cell(self._runner, code) if self._pool is not None else None  # workers: ptc.workers
        return await self._kept(await self._runner.run(code, limits, release, cell, on_output=on_output))

    async def _kept(self, result: ExecutionResult) -> ExecutionResult:
        """`result`, its journal stored first if it suspended and there is a store: resume(id) from anywhere."""
        if self.state is not None and result.suspended and result.journal is not None:
            await keep_journal(self.state, "execution", result.execution_id, result.journal)
        return result

    # -- type checking (ptc.typecheck) ---------------------------------------------
    def check(self, code: str) -> list[Diagnostic]:
        """Type-check `code` against this executor's stubs on the host (ty; `ptc[typecheck]`); runs nothing.

        The diagnostics (errors and warnings) are at the program's own lines
        and columns; [] when it type-checks. Raises MissingExtraError without
        ty, TypeCheckerError when the checker cannot give a verdict. With MCP
        servers or A2A agents, connect first (`connect()`, `async with`): their
        tools are in the catalog, and so in the stubs, from then on.
        """
        if self._lifecycle == "closed":
            raise ExecutorClosedError("the executor is closed")
        return self.typechecker.check(code)

    async def _typecheck(self, code: str, limits: Limits) -> ExecutionResult | None:
        """The refusal of a program with type errors (no tool called, no sandbox used), or None to run it.

        Called once admitted, so MCP and A2A tools are connected: their stubs
        are part of what the program is checked against. A checker that
        cannot give a verdict refuses the program too (fail closed), with the
        reason.
        """
        started = time.time()
        clock = time.perf_counter()
        try:
            found = refusing(await asyncio.to_thread(self.check, code))
        except TypeCheckerError as exc:
            error = ExecutionErrorInfo(kind="type_error", type="TypeCheckerError", message=str(exc), diagnostics=[])
        else:
            if not found:
                return None
            error = ExecutionErrorInfo(kind="type_error", type="TypeError", message=describe(found), diagnostics=found)
        result = ExecutionResult(
            execution_id=f"ptc_{uuid.uuid4().hex}",
            tenant_id=self.tenant_id,
            error=error,
            execution_time=time.perf_counter() - clock,
        )
        self._auditor.record(code, started, limits, result)
        return result

    async def _ready(self, limits: Limits) -> None:
        if not self._mcp.connected or not self._a2a.connected or self._lifecycle != "open":
            await self.connect()
        await self._warm(limits)  # before the slot and the clock: the build is not the program's

    async def _admit(self, limits: Limits) -> Callable[[], None]:
        """Wait for the tenant's slot and share of the threads; returns what releases them."""
        await self._ready(limits)
        queued = time.perf_counter()
        if self._fleet is None:
            gate = tenants.gate(self.tenant_id)
            await gate.acquire()
            free = gate.release
        else:
            free = await self._fleet.acquire()  # the tenant's slot across every process sharing the state
        try:
            await admission.acquire(self.tenant_id)  # the tenant's fair share of the execution threads
        except BaseException:
            free()
            raise
        tenant_id = self.tenant_id
        self.telemetry.queue_wait(tenant_id, time.perf_counter() - queued)

        def release() -> None:
            admission.release(tenant_id)
            free()

        try:
            self._sync_stub_dir()
        except BaseException:
            release()
            raise
        return release

    async def resume(
        self,
        journal: Journal | str | bytes,
        decisions: Mapping[str, bool | str | ApprovalDecision] | None = None,
        *,
        limits: Limits | None = None,
    ) -> ExecutionResult:
        """Go on with a suspended execution (`result.journal`, in this or another process with the same catalog).

        The program runs again from its start in a fresh instance, every tool
        reply, clock reading and random byte up to the suspension answered from
        the journal (no earlier tool runs again); then the calls it waited on
        get their decisions (`call_id -> True | False | "reason"` or an
        ApprovalDecision: approved runs the tool now, denied raises
        ToolApprovalDenied in the program) and it runs on, live. A call given
        no decision is asked again (on_approval, or another suspension).
        Raises JournalError for a journal that is malformed, another
        catalog's or guest's, not a suspended execution's, or resumed before;
        ValueError naming a call id that is not waiting for a decision.

        With a shared state (`state=`), `journal` may be the suspended
        execution's id (`result.execution_id`): its journal was stored when
        it suspended, and any process sharing the state resumes it; one
        resume per journal holds across all of them (a second: JournalError).
        """
        limits = limits or self.limits
        journal = await by_id(self.state, "execution", journal)  # an execution id: its journal from the store
        checked = await self._load(journal, limits, self._runner.max_journal_bytes, "execution")
        if not checked.pending or len(checked.cells) != 1:
            raise JournalError("the journal is not a suspended execution's: it has no calls waiting for a decision")
        given = decisions_for(checked, decisions)
        release = await self._admit(limits)
        try:
            if self.state is None:
                resumes.claim(checked)
            else:
                await self._claim_resume(checked)
        except BaseException:
            release()
            raise
        return await self._kept(
            await self._runner.run(
                checked.cells[0].code, limits, release, resumed(self._runner, checked), decisions=given
            )
        )

    async def _claim_resume(self, journal: Journal) -> None:
        """One resume per journal across every process sharing the state (JournalError for a second)."""
        assert self.state is not None
        if journal.resume_id is None:
            raise JournalError("the journal is not a suspended execution's: it has no resume id")
        first = await claim_resume(self.state, journal.resume_id)
        if first is False:
            raise JournalError(f"the journal was already resumed (resume id {journal.resume_id})")
        resumes.claim(journal)  # this process's record too (and the whole claim while the store falls back)

    def execute_sync(
        self, code: str, *, limits: Limits | None = None, typecheck: bool | None = None
    ) -> ExecutionResult:
        """execute() for callers without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.execute(code, limits=limits, typecheck=typecheck))
        raise RuntimeError("execute_sync() called from a running event loop; use `await executor.execute(code)`")

    # -- sessions -----------------------------------------------------------------
    def session(
        self,
        session_id: str | None = None,
        limits: Limits | None = None,
        idle_timeout: float = 300.0,
        max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES,
        *,
        suspendable: bool = True,
    ) -> Session:
        """A session: cells that run one after another in one sandbox instance of their own (ptc.sessions).

        `async with executor.session() as session: await session.execute(code)`.
        Variables, functions, imports and stubs persist from cell to cell;
        `limits` apply per cell (the executor's by default), but memory is
        the instance's over the session's life. The session closes after
        `idle_timeout` seconds without a cell, when its journal grows past
        `max_journal_bytes`, and when the executor closes. A cell whose call
        waits for a decision suspends the session (`session.resume`); with
        `suspendable=False` (a front end that cannot resume: `ptc serve`, the
        REPL) such a call is denied instead. Raises
        OverCapacityError at once past the tenant's `Quota.max_sessions`,
        ExecutorClosedError after aclose(), ValueError for an id already open here.
        """
        return self._new_session(session_id, limits, idle_timeout, max_journal_bytes, suspendable)

    async def restore_session(
        self,
        journal: Journal | str | bytes,
        *,
        session_id: str | None = None,
        limits: Limits | None = None,
        idle_timeout: float = 300.0,
        max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES,
    ) -> Session:
        """A session rebuilt from a journal (a Journal or its JSON), in this or any process with the same catalog.

        Its cells run again in a fresh instance, every tool call, clock reading
        and random byte answered from the journal: no tool runs. The session id
        is the journal's unless `session_id` is given. Raises JournalError (and
        runs nothing) for a journal that is malformed, truncated, larger than
        `max_journal_bytes`, of a newer format, or from another catalog or guest
        build; ReplayDivergedError if the replay departs from it.

        With a shared state (`state=`), `journal` may be a session id: the
        session's journal is stored after every cell, so any process sharing
        the state restores it by id (JournalError when none is stored).
        """
        limits = limits or self.limits
        journal = await by_id(self.state, "session", journal)  # a session id: its journal, stored after every cell
        checked = await self._load(journal, limits, max_journal_bytes, "session")
        session = self._new_session(
            session_id if session_id is not None else checked.session_id, limits, idle_timeout, max_journal_bytes
        )
        try:
            await session._rebuild(checked)
        except BaseException:
            session.close("its restore failed")
            raise
        return session

    async def _load(
        self, journal: Journal | str | bytes, limits: Limits, max_bytes: int, kind: Literal["session", "execution"]
    ) -> Journal:
        """The journal, checked against this executor's catalog and the guest `limits` run (JournalError if not)."""
        await self._ready(limits)
        guest = get_runtime(limits.fuel is not None).guest
        return load(journal, catalog=self._runner.fingerprints.current(), guest=guest, max_bytes=max_bytes, kind=kind)

    def _new_session(
        self,
        session_id: str | None,
        limits: Limits | None,
        idle_timeout: float,
        max_journal_bytes: int,
        suspendable: bool = True,
    ) -> Session:
        if self.closed:
            raise ExecutorClosedError("this executor is closed (aclose() was called); make a new one")
        with self._lock:
            if session_id is not None and session_id in self._sessions:
                raise ValueError(f"a session {session_id!r} is already open in this executor")
            slot = uuid.uuid4().hex  # the session's slot in the fleet's count (with a shared state)
            self._session_slot(slot, taken=True)
            try:
                # workers: a session lives on one worker process (ptc.workers.sessions)
                make: Callable[..., Session] = Session if self._pool is None else partial(PinnedSession, self._pool)
                session = make(
                    self._runner,
                    self._admit,
                    self._forget_session,
                    session_id=session_id,
                    limits=limits or self.limits,
                    idle_timeout=idle_timeout,
                    max_journal_bytes=max_journal_bytes,
                    suspendable=suspendable,
                )
            except BaseException:
                self._session_slot(slot, taken=False)
                raise
            session.store = self.state
            self._sessions[session.id] = session
            self._slots[session.id] = slot
        return session

    def _forget_session(self, session: Session) -> None:
        """A session closed (from any thread): its id and its tenant slot are free again."""
        with self._lock:
            if self._sessions.get(session.id) is session:
                del self._sessions[session.id]
            slot = self._slots.pop(session.id, "")
        self._session_slot(slot, taken=False)

    def _session_slot(self, slot: str, *, taken: bool) -> None:
        """Take (OverCapacityError past `max_sessions`) or give back a session's place in the tenant's count:
        this process's gate, or the fleet's with a shared state."""
        if self._fleet is None:
            gate = tenants.gate(self.tenant_id)
            if taken:
                gate.open_session()
            else:
                gate.close_session()
        elif taken:
            self._fleet.open_session(slot)
        else:
            self._fleet.close_session(slot)


def _limits(limits: Limits | None, timeout: float | None) -> Limits:
    """`limits`, with the `timeout=` alias applied (a conflict between the two is the caller's to fix)."""
    if timeout is None:
        return limits or Limits()
    if limits is not None and "timeout" in limits.model_fields_set and limits.timeout != float(timeout):
        raise ValueError(f"timeout={timeout!r} contradicts limits.timeout={limits.timeout!r}: give one of them")
    return (limits or Limits()).model_copy(update={"timeout": float(timeout)})
