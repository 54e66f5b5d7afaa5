"""ProgrammaticToolExecutor: the public entry point for running programs."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ptc.catalog import ToolCatalog
from ptc.hostcalls.state import ExecutionState
from ptc.limits import Limits
from ptc.results import ExecutionResult
from ptc.sandbox import run_program

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
    """

    def __init__(
        self,
        catalog: ToolCatalog | None = None,
        *,
        timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.catalog = catalog if catalog is not None else ToolCatalog()
        limits = limits or Limits()
        if timeout is not None:
            limits = limits.model_copy(update={"timeout": float(timeout)})
        self.limits = limits

    def _state(self, execution_id: str, limits: Limits) -> ExecutionState:
        return ExecutionState(
            execution_id=execution_id,
            timeout=limits.timeout,
            max_output_bytes=limits.max_output_bytes,
            max_tool_calls=limits.max_tool_calls,
            max_frame_bytes=limits.max_frame_bytes,
        )

    async def execute(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """Run one program; never raises for anything the program does."""
        limits = limits or self.limits
        execution_id = uuid.uuid4().hex
        state = self._state(execution_id, limits)
        started = time.perf_counter()
        future = asyncio.get_running_loop().run_in_executor(_threads(), run_program, code, state, limits)
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
        )

    def execute_sync(self, code: str, *, limits: Limits | None = None) -> ExecutionResult:
        """execute() for callers without an event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.execute(code, limits=limits))
        raise RuntimeError("execute_sync() called from a running event loop; use `await executor.execute(code)`")
