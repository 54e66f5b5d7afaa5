"""ProgrammaticToolExecutor: the public entry point for running programs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ptc.catalog import Binding, ToolCatalog
from ptc.hostcalls.events import EventBus, EventCallback
from ptc.hostcalls.policies import Policy
from ptc.hostcalls.router import Router
from ptc.hostcalls.state import ExecutionState
from ptc.limits import Limits
from ptc.results import ExecutionResult
from ptc.sandbox import run_program
from ptc.stubgen import StubCache, render_api_reference, write_stubs

# Each running program holds one thread (wasm calls block). The pool is only
# a cache of threads: it is sized far above what 2 cores run at once so that
# one execution never waits for another's thread to start.
_MAX_THREADS = 256
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=_MAX_THREADS, thread_name_prefix="ptc-exec")
    return _pool


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
    ) -> None:
        self.catalog = catalog if catalog is not None else ToolCatalog()
        limits = limits or Limits()
        if timeout is not None:
            limits = limits.model_copy(update={"timeout": float(timeout)})
        self.limits = limits
        self.tenant_id = tenant_id
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
        )
        self.stubs = StubCache(self.catalog)
        self.stub_dir = Path(stub_dir) if (stub_dir is not None and enable_stubs) else None
        self._written_revision = -1
        self._sync_stub_dir()

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

    def _state(self, execution_id: str, limits: Limits, dispatch: Any) -> ExecutionState:
        return ExecutionState(
            execution_id=execution_id,
            timeout=limits.timeout,
            max_output_bytes=limits.max_output_bytes,
            max_tool_calls=limits.max_tool_calls,
            max_frame_bytes=limits.max_frame_bytes,
            dispatch=dispatch,
            module_source=self.stubs.source,
        )

    async def execute(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """Run one program; never raises for anything the program does."""
        limits = limits or self.limits
        execution_id = uuid.uuid4().hex
        self._sync_stub_dir()
        loop = asyncio.get_running_loop()
        session = self.router.session(execution_id, loop, limits.max_frame_bytes)
        state = self._state(execution_id, limits, session.dispatch)
        started = time.perf_counter()
        future = loop.run_in_executor(_threads(), run_program, code, state, limits)
        try:
            outcome = await asyncio.shield(future)
        except asyncio.CancelledError:
            state.cancel()
            raise
        both, out, err = state.joined_output()
        return ExecutionResult(
            execution_id=execution_id,
            output=both,
            stdout=out,
            stderr=err,
            output_truncated=state.output_truncated,
            result=outcome.value,
            error=outcome.error,
            execution_time=time.perf_counter() - started,
            fuel_used=outcome.fuel_used,
            tool_calls=session.records,
        )

    def execute_sync(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """execute() for callers without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.execute(code, limits=limits))
        raise RuntimeError("execute_sync() called from a running event loop; use `await executor.execute(code)`")
