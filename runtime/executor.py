"""ProgrammaticToolExecutor: the public entry point for running programs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ptc.audit import AuditEvent, audit_event, audit_logger
from ptc.catalog import Binding, ToolCatalog
from ptc.engine import prepare_runtime, runtime_ready
from ptc.errors import PtcError, require_mcp
from ptc.events import EventBus, EventCallback
from ptc.hostcalls.backends.mcp.client import MCPServerConfig, MCPServers
from ptc.hostcalls.calls.idempotency import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, IdempotencyCache
from ptc.hostcalls.calls.router import CallSession, Router
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.state import ExecutionState
from ptc.limits import Limits
from ptc.policy import Policy
from ptc.results import ExecutionResult
from ptc.sandbox import Outcome, run_program
from ptc.stubgen import StubCache, render_api_reference, write_stubs
from ptc.tenancy import EXECUTION_THREADS, Quota, admission, gate_for
from ptc.wasm_threads import WasmThreadPool

# Each running program holds one thread (wasm calls block). The pool is only
# a cache of threads: it is sized far above what 2 cores run at once so that
# one execution never waits for another's thread to start. Who gets a thread
# is decided before it is asked for: the tenant's quota, then the fair share
# of `tenancy.admission` (so the pool itself never queues).
_MAX_THREADS = EXECUTION_THREADS
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WasmThreadPool(max_workers=_MAX_THREADS, thread_name_prefix="ptc-exec")
    return _pool


class _ConnectAbandoned(PtcError):
    """The caller running the MCP discovery was cancelled: a waiting caller runs it anew."""


class ProgrammaticToolExecutor:
    """Runs programs in the sandbox against one tool catalog.

    Many executions may run at once, from one event loop or several threads;
    each gets a fresh sandbox instance, so no state survives between them.

    handlers: tool name -> a worker, called with one dict of validated
        parameters (sync or async). Tools added with `@catalog.tool` carry
        their own handler.
    enable_stubs / stub_dir: also write the generated stub package to
        stub_dir (kept in sync with the catalog). The sandbox always imports
        the stubs from memory, whatever these say.
    policy / policies: the default Policy and per-tool overrides.
    on_event: a callback for tool-call events (also `executor.on_event`).
    tenant_id / quota: executions of one tenant share its Quota (concurrent
        executions and a bounded queue) across executors; ids label records,
        events, audit events and the policy state. Every tenant has one:
        without a quota, the tenant's (the default `Quota()` until one is
        given). The first quota given for a tenant holds; another executor
        giving a different one for the same tenant is a ValueError.
        Running executions also share the process's threads fairly between
        tenants (`ptc.tenancy.admission`).
    idempotency_max_bytes / idempotency_max_entries: bounds of this
        executor's idempotency cache (64 MiB of encoded results, 4096 keys);
        least recently used results go first, and a result bigger than a
        quarter of the bytes is not kept (its call still succeeds).
    on_audit: a callback for the one AuditEvent of every execution.
    mcp_servers: domain -> MCP server ("python server.py" runs over stdio,
        "http://host:port/mcp" is streamable HTTP, or an MCPServerConfig).
        Their tools are discovered into `tools.<domain>` on first use (or on
        `async with executor`); sessions are shared by all executions and
        closed by `aclose()` / leaving the `async with`. They need the `mcp`
        extra: without it the constructor raises MissingExtraError (an
        ImportError) saying `pip install 'ptc[mcp]'`.
    """

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        handlers: Mapping[str, Callable[..., Any]] | None = None,
        *,
        enable_stubs: bool = True,
        stub_dir: str | Path | None = None,
        timeout: float | None = None,
        limits: Limits | None = None,
        policy: Policy | None = None,
        policies: Mapping[str, Policy] | None = None,
        on_event: EventCallback | None = None,
        tenant_id: str = "default",
        mcp_servers: Mapping[str, str | MCPServerConfig | Mapping[str, Any]] | None = None,
        quota: Quota | None = None,
        on_audit: Callable[[AuditEvent], None] | None = None,
        idempotency_max_bytes: int = DEFAULT_CACHE_BYTES,
        idempotency_max_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self.catalog = catalog if catalog is not None else ToolCatalog()
        limits = limits or Limits()
        if timeout is not None:
            limits = limits.model_copy(update={"timeout": float(timeout)})
        self.limits = limits
        self.tenant_id = tenant_id
        gate_for(tenant_id, quota)  # the tenant's quota, for every executor of it (a different one: ValueError)
        self._audit_callbacks: list[Callable[[AuditEvent], None]] = [on_audit] if on_audit else []
        self.events = EventBus()
        if on_event is not None:
            self.events.subscribe(on_event)
        self.router = Router(
            self.catalog,
            handlers={name: Binding(fn, kwargs=False) for name, fn in (handlers or {}).items()},
            policy=policy,
            policies=policies,
            events=self.events,
            tenant_id=tenant_id,
            idempotency=IdempotencyCache(max_bytes=idempotency_max_bytes, max_entries=idempotency_max_entries),
        )
        self.mcp_configs = [MCPServerConfig.parse(name, spec) for name, spec in (mcp_servers or {}).items()]
        if self.mcp_configs:
            require_mcp("MCP servers (mcp_servers=)")  # at once, not after a connect timeout
        for config in self.mcp_configs:
            if not config.name.isidentifier() or config.name.startswith("_"):
                raise ValueError(
                    f"MCP server name {config.name!r} must be a Python identifier (it becomes tools.<name>)"
                )
        self._mcp: MCPServers | None = None
        self._mcp_lock = threading.Lock()
        self._connecting: concurrent.futures.Future[None] | None = None  # the discovery in flight
        self.stubs = StubCache(self.catalog)
        self.stub_dir = Path(stub_dir) if (stub_dir is not None and enable_stubs) else None
        self._written_revision = -1
        self._sync_stub_dir()

    # -- lifecycle ------------------------------------------------------------
    async def connect(self) -> None:
        """Start the MCP sessions and discover their tools (execute() does this on first use).

        Single-flight: concurrent callers (say two first executions) await one
        discovery, so one set of sessions and subprocesses is started. A
        discovery that fails closes what it opened, its callers get its
        error, and the next call tries again; when the caller running it is
        cancelled, what it opened is closed and a waiting caller runs it anew.
        """
        while self.mcp_configs and self._mcp is None:
            with self._mcp_lock:
                if self._mcp is not None:
                    return
                flight = self._connecting
                leading = flight is None
                if flight is None:
                    flight = self._connecting = concurrent.futures.Future()
                    flight.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it for the others
            if leading:
                await self._discover(flight)
                return
            try:
                await asyncio.wrap_future(flight)
            except _ConnectAbandoned:
                continue
            return

    async def _discover(self, flight: concurrent.futures.Future[None]) -> None:
        from ptc.hostcalls.backends.mcp.tools import add_mcp_tools

        servers = MCPServers(self.mcp_configs)
        try:
            handlers = await add_mcp_tools(self.catalog, servers)
        except Exception as exc:
            self._landed(flight, exc)
            await asyncio.to_thread(servers.close)
            raise
        except BaseException:
            self._landed(flight, _ConnectAbandoned())
            # not awaited: this task is being cancelled, and the sessions must close anyway
            threading.Thread(target=servers.close, name="ptc-mcp-close", daemon=True).start()
            raise
        self.router.handlers.update(handlers)
        with self._mcp_lock:
            self._mcp, self._connecting = servers, None
        flight.set_result(None)

    def _landed(self, flight: concurrent.futures.Future[None], exc: BaseException) -> None:
        with self._mcp_lock:
            self._connecting = None
        flight.set_exception(exc)

    async def aclose(self) -> None:
        """Close MCP sessions (and their subprocesses) and the tool thread pool."""
        servers, self._mcp = self._mcp, None
        if servers is not None:
            await asyncio.to_thread(servers.close)
        self.router.close()

    def close(self) -> None:
        """aclose() for callers without an event loop."""
        servers, self._mcp = self._mcp, None
        if servers is not None:
            servers.close()
        self.router.close()

    def __enter__(self) -> ProgrammaticToolExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ProgrammaticToolExecutor:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def warm_up(self, *, limits: Limits | None = None) -> None:
        """Make the sandbox runtime ready now, so no execution waits for it.

        The first execution in a process loads the compiled guest (~10 ms),
        and on a machine that has never run ptc builds it and compiles it for
        wasmtime first (about 20-90 s on 2 cores, once, cached in
        `$PTC_CACHE_DIR`). execute() waits for this itself, before its clock
        starts (`execution_time` never counts it); call warm_up() to pay it
        up front (a server before it accepts requests, a benchmark before it
        measures).
        Waits on a thread of its own: the event loop keeps running. `limits`
        picks the engine (fuel on or off); the default is the executor's.
        """
        fuel = (limits or self.limits).fuel is not None
        if not runtime_ready(fuel):
            await asyncio.wrap_future(prepare_runtime(fuel))

    def on_event(self, callback: EventCallback) -> EventCallback:
        """Register a tool-event callback (usable as a decorator)."""
        self.events.subscribe(callback)
        return callback

    def api_reference(self) -> str:
        """The catalog as a prompt-ready API reference."""
        return render_api_reference(self.catalog)

    def _sync_stub_dir(self) -> None:
        if self.stub_dir is not None and self._written_revision != self.catalog.revision:
            revision = self.catalog.revision
            write_stubs(self.catalog, self.stub_dir)
            self._written_revision = revision

    def _state(self, execution_id: str, limits: Limits, dispatch: Any, budget: HostBudget) -> ExecutionState:
        return ExecutionState(
            execution_id=execution_id,
            timeout=limits.timeout,
            max_output_bytes=limits.max_output_bytes,
            max_tool_calls=limits.max_tool_calls,
            max_frame_bytes=limits.max_frame_bytes,
            max_frame_items=limits.max_frame_items,
            budget=budget,
            dispatch=dispatch,
            module_source=self.stubs.source,
        )

    async def execute(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """Run one program; never raises for anything the program does.

        Raises OverCapacityError (at once) when the tenant's quota and queue
        are full. Cancelling the awaiting task (or a caller's timeout) stops
        the program promptly: its instance is freed and its audit event says
        "cancelled". The first execution of a process first waits for the
        runtime (see warm_up()); `execution_time` starts after that.
        """
        limits = limits or self.limits
        if self.mcp_configs and self._mcp is None:
            await self.connect()
        await self.warm_up(limits=limits)  # before the slot and the clock: the build is not the program's
        gate = gate_for(self.tenant_id, None)
        await gate.acquire()
        try:
            await admission.acquire(self.tenant_id)  # the tenant's fair share of the execution threads
        except BaseException:
            gate.release()
            raise
        tenant_id = self.tenant_id

        def release() -> None:
            admission.release(tenant_id)
            gate.release()

        return await self._execute(code, limits, release)

    async def _execute(self, code: str, limits: Limits, release: Callable[[], None]) -> ExecutionResult:
        """Run on a worker thread; `release` the tenant's slot once the instance is gone.

        When the caller is cancelled, the program is stopped and the slot is
        released by the worker thread itself when it ends: the caller's loop
        may be gone by then (`asyncio.run(wait_for(execute(...), t))`), and a
        release waiting on it would leak the slot for good.
        """
        release_later = False
        try:
            execution_id = uuid.uuid4().hex
            self._sync_stub_dir()
            loop = asyncio.get_running_loop()
            budget = HostBudget(limits.host_bytes)
            session = self.router.session(
                execution_id, loop, limits.max_frame_bytes, budget, deadline=lambda: state.deadline
            )
            state = self._state(execution_id, limits, session.dispatch, budget)
            started_at, started = time.time(), time.perf_counter()
            work = _threads().submit(run_program, code, state, limits)
            try:
                outcome = await asyncio.shield(asyncio.wrap_future(work))
            except asyncio.CancelledError:
                state.cancel()
                session.cancel_all()
                release_later = True

                def audit() -> None:
                    result = self._result(execution_id, state, session, Outcome(error=state.abort_error()), started)
                    state.close()
                    self._audit(code, started_at, limits, result)

                def finished(_: object) -> None:  # on the worker thread (or here, if it is already done)
                    release()
                    try:
                        loop.call_soon_threadsafe(audit)
                    except RuntimeError:  # the caller's loop is closed: audit from here
                        audit()

                work.add_done_callback(finished)
                raise
            session.cancel_all()  # a call still running belongs to no one now
            result = self._result(execution_id, state, session, outcome, started)
            state.close()
        finally:
            if not release_later:
                release()
        self._audit(code, started_at, limits, result)
        return result

    def _result(
        self, execution_id: str, state: ExecutionState, session: CallSession, outcome: Outcome, started: float
    ) -> ExecutionResult:
        both, out, err = state.joined_output()
        return ExecutionResult(
            execution_id=execution_id,
            tenant_id=self.tenant_id,
            output=both,
            stdout=out,
            stderr=err,
            output_truncated=state.output_truncated,
            result=outcome.value,
            result_is_repr=outcome.value_is_repr,
            error=outcome.error,
            execution_time=time.perf_counter() - started,
            fuel_used=outcome.fuel_used,
            memory_used=outcome.memory_used,
            host_memory_peak=state.budget.peak,
            tool_calls=session.records,
        )

    def _audit(self, code: str, started_at: float, limits: Limits, result: ExecutionResult) -> None:
        if not self._audit_callbacks and not audit_logger.isEnabledFor(logging.INFO):
            return
        event = audit_event(self.tenant_id, code, started_at, limits, result)
        audit_logger.info("%s", event.model_dump_json())
        for callback in list(self._audit_callbacks):
            try:
                callback(event)
            except Exception:
                audit_logger.exception("ptc audit callback %r failed", callback)

    def on_audit(self, callback: Callable[[AuditEvent], None]) -> Callable[[AuditEvent], None]:
        """Register a callback for the one audit event of every execution (usable as a decorator)."""
        self._audit_callbacks.append(callback)
        return callback

    def execute_sync(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """execute() for callers without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.execute(code, limits=limits))
        raise RuntimeError("execute_sync() called from a running event loop; use `await executor.execute(code)`")
