"""One execution, from an admitted program to its result: the threads, the state, the calls, the audit.

Each running program holds one thread (wasm calls block). The pool is only a
cache of threads: it is sized far above what 2 cores run at once so that one
execution never waits for another's thread to start. Who gets a thread is
decided before it is asked for: the tenant's quota, then the fair share of
`tenancy.admission` (so the pool itself never queues).

A session's cell is an execution too: the same admission, state, calls,
audit and result, with the session's `Cell` deciding what runs on the
thread (its own instance, and a restore from its journal when the cell
cannot leave that instance usable), the tape that records it and what the
result says of the session. A one-shot execution's journal is its one cell.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ptc.approvals import ApprovalDecision
from ptc.audit import Auditor
from ptc.budgets import apply_budgets
from ptc.engine import get_runtime
from ptc.hostcalls.calls.router import Router
from ptc.hostcalls.calls.session import CallSession
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.output import LiveOutput, OutputCallback
from ptc.hostcalls.wasm.state import ExecutionState, ModuleSource
from ptc.hostcalls.wasm.tape import Recorder, Resumer
from ptc.journal import DEFAULT_MAX_JOURNAL_BYTES, JOURNAL_VERSION, Fingerprints, Journal, JournalCell, JournalPending
from ptc.limits import Limits
from ptc.replay import fresh, outcome_of
from ptc.results import ExecutionErrorInfo, ExecutionResult
from ptc.sandbox import Outcome, run_program
from ptc.telemetry import ExecutionTrace, Telemetry
from ptc.tenancy import EXECUTION_THREADS
from ptc.wasm_threads import WasmThreadPool

T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = WasmThreadPool(max_workers=EXECUTION_THREADS, thread_name_prefix="ptc-exec")
    return _pool


class Cell(Protocol):
    """What one kind of execution decides (a one-shot program, a session's cell: ptc.sessions)."""

    session_id: str | None  # the session it is a cell of (None: a one-shot execution)
    suspendable: bool  # a call without a decision may wait for one (the execution then suspends), or is denied
    resuming: Journal | None  # the suspended journal it goes on with: its execution id and call numbering

    def tape(self, budget: HostBudget) -> Recorder:
        """The recorder of this execution's journal (`budget`: the execution's; a one-shot journal is charged to it)."""
        ...

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        """Start it on an execution thread (`Runner.work`)."""
        ...

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        """Say in the result what this kind of execution adds (its journal, its session)."""
        ...

    def suspended(self, result: ExecutionResult) -> None:
        """The execution suspended (`result.journal`: the one to resume, with its pending calls and resume id)."""
        ...


@dataclass(frozen=True)
class Runner:
    """What every execution of one executor shares."""

    tenant_id: str
    router: Router
    module_source: ModuleSource
    auditor: Auditor
    fingerprints: Fingerprints
    max_journal_bytes: int = DEFAULT_MAX_JOURNAL_BYTES  # a one-shot execution's journal (past it: none)
    telemetry: Telemetry = field(default_factory=Telemetry)  # spans and metrics (ptc.telemetry)

    def journal(
        self, cells: list[JournalCell], *, session_id: str | None, warm: bool, cells_run: int, fuel: bool
    ) -> Journal:
        """A journal of these cells, against this executor's catalog and the running guest (ours: not validated).
        Without a session id, one execution's."""
        return Journal.model_construct(
            version=JOURNAL_VERSION,
            kind="session" if session_id is not None else "execution",
            catalog=self.fingerprints.current(),
            guest=get_runtime(fuel).guest,
            session_id=session_id,
            warm=warm,
            cells_run=cells_run,
            cells=cells,
            # every field given: a default pydantic fills in here inspects its factory's signature (~40 µs a result)
            records=0,
            pending=[],
            resume_id=None,
            execution_id=None,
            approvals=[],
        )

    def work(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` on an execution thread."""
        return _threads().submit(fn)

    async def run(
        self,
        code: str,
        limits: Limits,
        release: Callable[[], None],
        cell: Cell | None = None,
        decisions: dict[str, ApprovalDecision] | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Run on a worker thread; `release` the tenant's slot once the instance is gone.

        `on_output(stream, text)` gets the output as the program writes it, on
        this loop (ptc.hostcalls.wasm.output.LiveOutput); all of it before the
        result is returned.

        When the caller is cancelled, the program is stopped and the slot is
        released by the worker thread itself when it ends: the caller's loop
        may be gone by then (`asyncio.run(wait_for(execute(...), t))`), and a
        release waiting on it would leak the slot for good.
        """
        release_later = False
        try:
            kind = cell if cell is not None else _OneShot(self, code)
            resumed = kind.resuming
            execution_id = (resumed.execution_id if resumed else None) or f"ptc_{uuid.uuid4().hex}"
            loop = asyncio.get_running_loop()
            budget = HostBudget(limits.host_bytes)
            session = CallSession(
                self.router,
                execution_id,
                loop,
                limits.max_frame_bytes,
                budget,
                deadline=lambda: state.deadline,
                first_id=resumed.records + 1 if resumed else 1,
            )
            session.context.session_id = kind.session_id
            session.context.suspendable = kind.suspendable
            session.context.decisions = dict(decisions or {})
            state = ExecutionState.under(
                execution_id,
                limits,
                budget=budget,
                dispatch=session.dispatch,
                module_source=self.module_source,
                tape=kind.tape(budget),
            )
            # telemetry: None unless traces or metrics are configured (a session's cell: under its session's span)
            trace = self.telemetry.execution(
                code,
                tenant_id=self.tenant_id,
                execution_id=execution_id,
                session=getattr(kind, "trace_parent", None),
                cell=kind.session_id is not None,
            )
            session.context.trace = trace
            live = state.output.live = LiveOutput(loop, on_output) if on_output is not None else None
            started_at, started = time.time(), time.perf_counter()
            work = kind.start(code, state, limits)
            try:
                outcome = await _finished(work, loop)
            except asyncio.CancelledError:
                state.cancel()
                session.cancel_all()
                release_later = True
                if trace is not None:
                    trace.end("cancelled", error_type="CancelledError")

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
            session.context.suspended = state.suspended
            session.cancel_all()  # a call still running belongs to no one now
            result = self._result(execution_id, state, session, outcome, started)
            kind.finish(result, limits)
            if state.suspended:
                suspend(result, state, session)
                kind.suspended(result)
            state.close()
            if trace is not None:
                _traced(trace, result, state.output.bytes)
        finally:
            if not release_later:
                release()
        await apply_budgets(result, limits)  # ptc.budgets: a value past Limits.max_result_bytes is dropped, and said so
        self.auditor.record(code, started_at, limits, result)
        if live is not None:  # the rest of the output, before the result (a cancel here: all is recorded already)
            await live.finish()
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


def _traced(trace: ExecutionTrace, result: ExecutionResult, output_bytes: int) -> None:
    """The execution's span and metrics end with what its result says."""
    error = result.error
    trace.end(
        "suspended" if result.suspended else (error.kind if error is not None else "ok"),
        error_type=error.type if error is not None else None,
        fuel_used=result.fuel_used,
        memory_used=result.memory_used,
        output_bytes=output_bytes,
        tool_calls=len(result.tool_calls),
    )


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():  # (cancelled: its awaiter was, and has moved on)
        done.set_result(None)


async def _finished(work: Future[T], loop: asyncio.AbstractEventLoop) -> T:
    """The work's result, once it is done; cancelling the awaiter leaves the work running.

    As `asyncio.shield(asyncio.wrap_future(work))`, with one loop future and one
    callback instead of three futures and four callbacks: measured 15-20 us less
    per execution, most of what ptc itself adds to a session cell's thread hop.
    """
    done = loop.create_future()

    def tell(_: Future[T]) -> None:  # on the worker thread
        try:
            loop.call_soon_threadsafe(_wake, done)
        except RuntimeError:  # the loop is closed: no one is waiting
            pass

    work.add_done_callback(tell)
    await done
    return work.result()


def suspend(result: ExecutionResult, state: ExecutionState, session: CallSession) -> None:
    """A result that waits for approvals: not an error; its journal names the calls and can be resumed once.

    The deferred calls' records have no error (the suspension cancelled them; resume decides them)."""
    result.error = None
    result.suspended = True
    waiting = set(state.deferred_ids.values())  # deferred, and not given up on by the program since
    result.pending_approvals = [r for call_id, r in session.context.deferred.items() if call_id in waiting]
    if result.journal is not None:
        pending = [
            JournalPending(call_id=tool_id, index=call_id - 1) for call_id, tool_id in state.deferred_ids.items()
        ]
        records = max((int(r.caller.tool_id.rpartition("_")[2]) for r in result.tool_calls), default=0)
        result.journal = result.journal.model_copy(
            update={
                "pending": pending,
                "resume_id": uuid.uuid4().hex,
                "records": max(records, result.journal.records),
                "execution_id": result.execution_id,
                "approvals": list(result.pending_approvals),
            }
        )


@dataclass
class _OneShot:
    """A program in a fresh instance of its own; its journal is one cell (none past max_journal_bytes)."""

    runner: Runner
    code: str
    recorder: Recorder = field(init=False)
    warm: bool = False
    session_id: str | None = None
    suspendable: bool = True
    resuming: Journal | None = None

    def tape(self, budget: HostBudget) -> Recorder:
        self.recorder = Recorder(self.runner.max_journal_bytes, budget=budget)
        return self.recorder

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        return self.runner.work(lambda: self._run(code, state, limits))

    def _run(self, code: str, state: ExecutionState, limits: Limits) -> Outcome:
        outcome = run_program(code, state, limits)
        self.warm = outcome.warm
        return outcome

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        cell = self.recorder.cell(0, self.code, outcome_of(result.error))
        if cell is not None:
            fuel = limits.fuel is not None
            result.journal = self.runner.journal([cell], session_id=None, warm=self.warm, cells_run=1, fuel=fuel)

    def suspended(self, result: ExecutionResult) -> None:
        pass  # its journal says it all: executor.resume goes on with it


@dataclass
class _Resumed(_OneShot):
    """A suspended execution's program again: replayed to where it stopped, in an instance like the original's,
    then live (ptc.hostcalls.wasm.tape.Resumer), the decisions applied by the calls' approval step."""

    journal: Journal | None = None  # given by `resumed` (a dataclass field after _OneShot's defaults)
    resumer: Resumer = field(init=False)

    def tape(self, budget: HostBudget) -> Recorder:
        assert self.journal is not None
        cell = self.journal.cells[0]
        pending = {p.index: p.call_id for p in self.journal.pending}
        self.recorder = self.resumer = Resumer(cell, self.runner.max_journal_bytes, pending, budget)
        return self.recorder

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        self.resumer.on_live = state.go_live
        return self.runner.work(lambda: self._resume(code, state, limits))

    def _resume(self, code: str, state: ExecutionState, limits: Limits) -> Outcome:
        assert self.journal is not None
        clocks = self.journal.cells[0].clocks
        offset = time.monotonic_ns() - (max(clocks) if clocks else 0)  # the guest's clock goes on, never back
        outcome = run_program(code, state, limits, fresh(self.journal, limits), clock_offset=offset)
        self.warm = self.journal.warm
        diverged = self.resumer.player.diverged
        if diverged is not None:
            outcome.error = ExecutionErrorInfo(kind="internal_error", type="ReplayDivergedError", message=str(diverged))
        return outcome

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        if self.resumer.player.diverged is None:  # a run that left its journal has none worth keeping
            super().finish(result, limits)


def resumed(runner: Runner, journal: Journal) -> Cell:
    """The kind of execution that goes on with a suspended one (its journal checked by ptc.journal.load)."""
    return _Resumed(runner, journal.cells[0].code, resuming=journal, journal=journal)
