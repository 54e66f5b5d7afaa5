"""One execution, from an admitted program to its result: the threads, the state, the calls, the audit.

Each running program holds one thread (wasm calls block). The pool is only a
cache of threads: it is sized far above what 2 cores run at once so that one
execution never waits for another's thread to start. Who gets a thread is
decided before it is asked for: the tenant's quota, then the fair share of
`tenancy.admission` (so the pool itself never queues).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ptc.audit import Auditor
from ptc.hostcalls.calls.router import Router
from ptc.hostcalls.calls.session import CallSession
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.state import ExecutionState, ModuleSource
from ptc.limits import Limits
from ptc.results import ExecutionResult
from ptc.sandbox import Outcome, run_program
from ptc.tenancy import EXECUTION_THREADS
from ptc.wasm_threads import WasmThreadPool

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WasmThreadPool(max_workers=EXECUTION_THREADS, thread_name_prefix="ptc-exec")
    return _pool


@dataclass(frozen=True)
class Runner:
    """What every execution of one executor shares."""

    tenant_id: str
    router: Router
    module_source: ModuleSource
    auditor: Auditor

    async def run(self, code: str, limits: Limits, release: Callable[[], None]) -> ExecutionResult:
        """Run on a worker thread; `release` the tenant's slot once the instance is gone.

        When the caller is cancelled, the program is stopped and the slot is
        released by the worker thread itself when it ends: the caller's loop
        may be gone by then (`asyncio.run(wait_for(execute(...), t))`), and a
        release waiting on it would leak the slot for good.
        """
        release_later = False
        try:
            execution_id = f"ptc_{uuid.uuid4().hex}"
            loop = asyncio.get_running_loop()
            budget = HostBudget(limits.host_bytes)
            session = CallSession(
                self.router, execution_id, loop, limits.max_frame_bytes, budget, deadline=lambda: state.deadline
            )
            state = ExecutionState(
                execution_id=execution_id,
                timeout=limits.timeout,
                max_output_bytes=limits.max_output_bytes,
                max_tool_calls=limits.max_tool_calls,
                max_frame_bytes=limits.max_frame_bytes,
                max_frame_items=limits.max_frame_items,
                budget=budget,
                dispatch=session.dispatch,
                module_source=self.module_source,
            )
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
                    self.auditor.record(code, started_at, limits, result)

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
        self.auditor.record(code, started_at, limits, result)
        return result

    def _result(
        self, execution_id: str, state: ExecutionState, session: CallSession, outcome: Outcome, started: float
    ) -> ExecutionResult:
        both, out, err = state.output.joined()
        return ExecutionResult(
            execution_id=execution_id,
            tenant_id=self.tenant_id,
            output=both,
            stdout=out,
            stderr=err,
            output_truncated=state.output.truncated,
            result=outcome.value,
            result_is_repr=outcome.value_is_repr,
            error=outcome.error,
            execution_time=time.perf_counter() - started,
            fuel_used=outcome.fuel_used,
            memory_used=outcome.memory_used,
            host_memory_peak=state.budget.peak,
            tool_calls=session.records,
        )
