"""Sessions: cells that share one sandbox instance, and a journal that can rebuild it.

    executor.session() ─ execute(cell 0) ─ execute(cell 1) ─ ... ─ aclose()
                          │ one Instance, this session's alone, across cells
                          └ each cell: its own ExecutionState (deadline, fuel, budget,
                            calls), put in the store's slot; a Recorder tape for the journal

A session owns one instance (from the spare pool or new) for its life. Each
cell is an execution (ptc.execution: admission, state, calls, audit,
result) whose work is `run_cell` in that instance, on an execution thread
(a store is used from one thread at a time, here one after another). The
guest keeps the namespace from cell to cell (guest/app/_ptc_run.py).

Cells run one after another, in call order (`_Turns`): each waits for the
work of the one before to end, including a restore.

A cell that ends with the program's own error (runtime_error, syntax_error,
a ToolError it did not catch) leaves the instance as the error left it, and
is journaled like one that ended well. A cell stopped by a limit, a trap or
a cancellation leaves an instance that cannot go on (a trapped store is
poisoned; a memory_limit leaves no room): it is dropped and the session is
rebuilt from its journal in a fresh instance (ptc.replay), with the state
after the last completed cell; that cell's result says
`session_restored=True`. If the restore fails, the session is closed.

A cell whose call waits for a decision (no `on_approval`, or DEFER)
suspends: the suspension stops the instance in a host call, so it is
dropped like a stopped cell's, but the cell's partial journal is kept
(`_Suspension`); the instance is rebuilt to before the cell when it
resumes (no memory is held while a person decides).
`session.suspended` is True, `execute` raises SessionSuspendedError,
`journal()` is the completed cells plus the suspended one with its pending
calls and resume id. `resume(decisions)` (one per suspension: it claims
the resume id) runs that cell again in its own turn with a Resumer tape
(`_ResumedCell`): everything up to the suspension answered from the
journal, no tool run again, then live with the decisions; it keeps the
cell's index, execution id and call numbering. A resume stopped by a limit
or a cancel ends the suspension as any stopped cell ends (the state before
the cell). A suspended session still holds its quota slot, and its idle
timeout closes it (its journal, kept by the caller, restores it later).

Closing: `aclose()`/`close()`, the executor's closing, `idle_timeout`
seconds without a cell (a reaper thread closes it then, and `execute`
checks too), a journal that grew past `max_journal_bytes` (after the cell
that passed it: its result stands), or a failed restore. Executing on a
closed session raises SessionClosedError saying which. Closing frees the
instance (after the running cell, which is cancelled) and the tenant's
session slot (`Quota.max_sessions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TypeVar

from ptc.approvals import ApprovalDecision, ApprovalRequest
from ptc.closing import ClosedReason, Closing
from ptc.engine import get_runtime
from ptc.errors import JournalError, SessionClosedError, SessionSuspendedError
from ptc.execution import Runner
from ptc.fleet import claim_resume, keep_journal
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.output import OutputCallback
from ptc.hostcalls.wasm.state import ExecutionState, random_clock_offset
from ptc.hostcalls.wasm.tape import Recorder, Resumer
from ptc.journal import CELL_BYTES, Journal, JournalCell, cell_size
from ptc.limits import Limits
from ptc.private.asyncio import running_loop
from ptc.replay import Restored, fresh_instance, outcome_of, replay
from ptc.results import ExecutionErrorInfo, ExecutionResult
from ptc.resume import decisions_for, resumes
from ptc.sandbox import Outcome, instantiate, run_cell
from ptc.spares import Instance
from ptc.state import SharedState

T = TypeVar("T")
Admit = Callable[[Limits], Awaitable[Callable[[], None]]]  # the executor's admission: returns the release
_USABLE = ("runtime_error", "syntax_error")  # errors a program raised itself: its instance goes on


class _Turns:
    """Cells in call order, across event loops and threads: each waits for the one before to end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tail: Future[None] | None = None

    def take(self) -> tuple[Future[None] | None, Future[None]]:
        """(the turn to wait for, this turn: done when its work ends)."""
        mine: Future[None] = Future()
        mine.set_running_or_notify_cancel()  # nobody can cancel a turn: it ends when its work does
        with self._lock:
            before, self.tail = self.tail, mine
        return before, mine


def _end_turn(turn: Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


@dataclass
class _Suspension:
    """A cell waiting for decisions: its partial journal cell, the record ids it waits on, and (once its
    result is built) the session's journal to resume and the requests."""

    cell: JournalCell
    call_ids: list[str]
    journal: Journal | None = None
    requests: list[ApprovalRequest] = field(default_factory=list)


def _unrestored(session: Session) -> Outcome:
    """The outcome of a cell that could not run: its session could not be rebuilt from its journal (now closed)."""
    message = f"session {session.id} could not be rebuilt from its journal: {session.closed_reason}"
    return Outcome(error=ExecutionErrorInfo(kind="internal_error", type="ReplayDivergedError", message=message))


def _completed(journal: Journal) -> Journal:
    """A suspended session's journal without its suspended cell: what a restore replays."""
    update = {"cells": journal.cells[:-1], "pending": [], "resume_id": None, "records": 0}
    return journal.model_copy(update=update | {"execution_id": None, "approvals": []})


class _Reaper:
    """One thread for the process: closes each session that has been idle for its idle_timeout."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Session]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, session: Session, at: float) -> None:
        with self._wake:
            heapq.heappush(self._heap, (at, next(self._order), session))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ptc-sessions", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                _, _, session = heapq.heappop(self._heap)
            session._reap()


_reaper = _Reaper()


class Session(ClosedReason, Closing):
    """A sequence of cells in one sandbox instance of its own (see the module docstring).

    Made by `executor.session()` or `executor.restore_session(journal)`; use it
    as `async with executor.session() as session:` or close it with
    `await session.aclose()`.
    """

    def __init__(
        self,
        runner: Runner,
        admit: Admit,
        forget: Callable[[Session], None],
        *,
        session_id: str | None,
        limits: Limits,
        idle_timeout: float,
        max_journal_bytes: int,
        suspendable: bool = True,
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (seconds)")
        self.id = session_id if session_id is not None else uuid.uuid4().hex
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.max_journal_bytes = max_journal_bytes
        self.suspendable = suspendable  # False: a call without a decision is denied, the cell goes on
        self._runner = runner
        self._admit = admit
        self._forget = forget
        self._turns = _Turns()
        self._lock = threading.Lock()
        self._closed: str | None = None  # why, once closed
        self._busy = False  # a cell's work is on a thread (it owns the instance until it ends)
        self._queued = 0  # cells sent and not yet returned to their callers
        self._returned: Future[None] | None = None  # done when the last of them has returned (for aclose)
        self._current: ExecutionState | None = None
        self._instance: Instance | None = None
        self._warm = False
        self._cells: list[JournalCell] = []
        self._journal_bytes = CELL_BYTES
        self._cells_run = 0
        self._suspension: _Suspension | None = None  # the last cell waits for decisions (session.resume)
        self._resumes_sent = 0  # resumes whose turn has not ended: a cell sent after one waits for it
        self._stale = False  # the instance must be rebuilt from the journal before the next cell (a suspension)
        self._clock_offset = random_clock_offset()  # one clock for the session: it runs on from cell to cell
        self._idle_since = time.monotonic()
        _reaper.watch(self, self._idle_since + idle_timeout)
        self.trace = runner.telemetry.session(self.id, runner.tenant_id)  # ptc.telemetry: its cells' parent span
        self.store: SharedState | None = None  # set by the executor with a shared state (ptc.state)

    # -- state ------------------------------------------------------------------
    @property
    def cells(self) -> int:
        """How many cells have run (also those a limit stopped)."""
        return self._cells_run

    @property
    def suspended(self) -> bool:
        """The last cell waits for approvals: `resume(decisions)` goes on with it; no cell runs until then."""
        return self._suspension is not None and self._closed is None

    @property
    def pending_approvals(self) -> list[ApprovalRequest]:
        """The requests the suspended cell waits on (empty unless suspended)."""
        suspension = self._suspension
        return list(suspension.requests) if suspension is not None and self._closed is None else []

    def journal(self) -> Journal:
        """The session's journal: its completed cells and what they were given (`model_dump_json()` to keep it).

        While suspended: those and the suspended cell, partial, with its pending calls and resume id
        (`executor.restore_session` of it gives a suspended session)."""
        suspension = self._suspension
        if suspension is not None and suspension.journal is not None:
            return suspension.journal
        return self._journal(suspension.cell if suspension is not None else None)

    def _journal(self, suspended: JournalCell | None = None) -> Journal:
        """The completed cells' journal (and the suspended cell, partial, last)."""
        with self._lock:
            cells, warm, cells_run = list(self._cells), self._warm, self._cells_run
        if suspended is not None:
            cells.append(suspended)
        return self._runner.journal(
            cells, session_id=self.id, warm=warm, cells_run=cells_run, fuel=self.limits.fuel is not None
        )

    def _check_not_suspended(self) -> None:
        suspension = self._suspension
        if suspension is not None:
            ids = ", ".join(suspension.call_ids)
            raise SessionSuspendedError(
                f"session {self.id} is suspended: cell {suspension.cell.index} waits for decisions on {ids}; "
                "session.resume(decisions) goes on with it",
                suspension.call_ids,
            )

    def _check_open(self) -> None:
        if self._closed is None and self._queued == 0 and not self._busy:
            if time.monotonic() - self._idle_since >= self.idle_timeout:
                self._close(f"it was idle for {self.idle_timeout:g} s (idle_timeout)")
        if self._closed is not None:
            raise SessionClosedError(f"session {self.id} is closed: {self._closed}")

    # -- running ----------------------------------------------------------------
    async def execute(self, code: str, *, on_output: OutputCallback | None = None) -> ExecutionResult:
        """Run one cell; it sees what the cells before it left. Never raises for what the program does.

        Raises SessionClosedError on a closed session, SessionSuspendedError while
        a cell waits for approvals (`resume` first), OverCapacityError when the
        tenant's quota and queue are full, ExecutorClosedError after the
        executor closed. Cells sent at once run one after another, in call order.
        """
        self._check_open()
        if self._resumes_sent == 0:  # (a resume sent before it goes first: its turn decides)
            self._check_not_suspended()
        return await self._in_turn(lambda turn: _Cell(self, turn), code, on_output)

    async def resume(
        self,
        decisions: Mapping[str, bool | str | ApprovalDecision] | None = None,
        *,
        on_output: OutputCallback | None = None,
    ) -> ExecutionResult:
        """Go on with the suspended cell: its result ("completed", "failed", or "suspended" again), same `cell`.

        Decisions as for `executor.resume` (`call_id -> True | False | "reason"`
        or an ApprovalDecision; a pending call left out is asked again). The
        cell runs again from its start in an instance holding the state after
        the cells before it, everything up to the suspension answered from the
        journal (no tool runs again), then live. Raises ValueError naming a
        call id that is not waiting (nothing consumed), JournalError when the
        session is not suspended (a suspension is resumed once: a second
        resume of it, here or of a restored copy of its journal in this
        process, is refused), SessionClosedError on a closed session.
        """
        self._check_open()
        suspension = self._suspension
        if suspension is None or suspension.journal is None:
            raise JournalError(f"session {self.id} is not suspended: there is nothing to resume (or it was already)")
        given = decisions_for(suspension.journal, decisions)
        with self._lock:
            self._resumes_sent += 1

        def make(turn: Future[None]) -> _Cell:
            turn.add_done_callback(self._resume_ended)  # its work's end, not its caller's (who may be cancelled)
            return _ResumedCell(self, turn, suspension, given)

        return await self._in_turn(make, "", on_output)

    def _resume_ended(self, _: object) -> None:
        with self._lock:
            self._resumes_sent -= 1

    async def _in_turn(
        self, make: Callable[[Future[None]], _Cell], code: str, on_output: OutputCallback | None
    ) -> ExecutionResult:
        """A cell's run in its turn: after the cells sent before it, through admission."""
        before, mine = self._turns.take()
        cell = make(mine)
        with self._lock:
            self._queued += 1
            if self._returned is None or self._returned.done():
                self._returned = Future()
        try:
            if before is not None and not before.done():  # (awaiting a done one still costs a loop wake-up)
                await asyncio.shield(asyncio.wrap_future(before))
            self._check_open()
            cell.ready()
            release = await self._admit(self.limits)
            try:
                await cell.claim(self.store)
            except BaseException:
                release()
                raise
            code = code or cell.code
            result = await self._runner.run(
                code, self.limits, release, cell, decisions=cell.decisions, on_output=on_output
            )
            if self.store is not None:  # a shared state: the journal after every cell, for any machine to restore
                journal = result.journal if result.journal is not None else self.journal()  # (built once per cell)
                await keep_journal(self.store, "session", self.id, journal)
            return result
        finally:
            with self._lock:
                self._queued -= 1
                returned = self._returned if self._queued == 0 else None
            if returned is not None:
                _end_turn(returned)
            if not cell.started:  # its work never started: the turn passes on once the one before ends
                if before is None:
                    _end_turn(mine)
                else:
                    before.add_done_callback(lambda _: _end_turn(mine))

    def execute_sync(self, code: str) -> ExecutionResult:
        """execute() for callers without an event loop."""
        if running_loop() is not None:
            raise RuntimeError("execute_sync() called from a running event loop; use `await session.execute(code)`")
        return asyncio.run(self.execute(code))

    def resume_sync(self, decisions: Mapping[str, bool | str | ApprovalDecision] | None = None) -> ExecutionResult:
        """resume() for callers without an event loop."""
        if running_loop() is not None:
            raise RuntimeError("resume_sync() called from a running event loop; use `await session.resume(...)`")
        return asyncio.run(self.resume(decisions))

    def _work(self, cell: _Cell, code: str, state: ExecutionState, limits: Limits) -> Outcome:
        """A cell on its execution thread: run it in the session's instance, and restore if it cannot go on."""
        with self._lock:
            closed = self._closed
            if closed is None:
                self._current = state
                if cell.index is None:  # a new cell (a resumed one keeps the suspended cell's index)
                    cell.index = self._cells_run
                    self._cells_run += 1
                index = cell.index
        try:
            if closed is not None:  # closed after the cell was sent: it does not run
                message = f"session {self.id} was closed before this cell ran: {closed}"
                return Outcome(error=ExecutionErrorInfo(kind="cancelled", type="SessionClosedError", message=message))
            return self._run(cell, code, index, state, limits)
        finally:
            with self._lock:
                self._current = None
                self._busy = False
                self._idle_since = time.monotonic()
                dropped = self._drop_if_closed()
            self._retire(dropped)

    def _run(self, cell: _Cell, code: str, index: int, state: ExecutionState, limits: Limits) -> Outcome:
        if self._stale:  # a suspension dropped the instance: rebuild it to before the suspended cell, now
            self._stale = False
            if not self._restore(state.execution_id):
                return _unrestored(self)
        instance = self._instance
        if instance is None:
            runtime = get_runtime(fuel=limits.fuel is not None)
            # a resumed first cell: an instance like the original's (warmed or not), as its replay needs
            made = fresh_instance(self._warm, limits) if cell.resuming is not None else instantiate(runtime, limits)
            if isinstance(made, Outcome):
                self._close(f"its instance could not start ({made.error})")
                return made
            instance = self._instance = made
            if not self._cells:
                self._warm = made.warm
        outcome = run_cell(instance, code, index, state, limits, self._clock_offset)
        with self._lock:
            self._current = None  # the program is done: closing from here on has nothing to cancel
        if cell.diverged(outcome):
            self._instance = None
            self._retire(instance)
            self._close(f"its resume departed from the journal in cell {index}: {outcome.error}")
            return outcome
        if state.suspended:
            self._instance = None
            self._retire(instance)
            partial = cell.recorder.cell(index, code, None)
            cell.journal_lost = not self._suspend(partial, index, list(state.deferred_ids.values()))
            return outcome
        with self._lock:
            self._suspension = None  # (a resumed cell ran on: it waits no more)
        error = outcome.error
        if not outcome.trapped and (error is None or error.kind in _USABLE):
            journaled = cell.recorder.cell(index, code, outcome_of(error))
            self._keep(journaled, index, cell.recorder.size)  # (the size as ptc.journal.cell_size counts it)
            return outcome
        self._instance = None
        self._retire(instance)
        if self._closed is None:
            cell.restored = self._restore(state.execution_id)
        return outcome

    def _suspend(self, partial: JournalCell | None, index: int, call_ids: list[str]) -> bool:
        """The cell waits for decisions: keep its partial journal; the instance is rebuilt when it resumes.

        The instance is stuck in the middle of the cell (the suspension stopped
        it in a host call), so it is dropped (its memory is free while a person
        decides); `resume` replays the cells before it into a fresh one and runs
        the cell again from its start, its recorded part replayed. Measured:
        the suspended result of a cell after 10 others comes back in ~3 ms
        instead of the ~22 ms a restore there took; the resume pays it.
        False: its journal outgrew max_journal_bytes, so it cannot be resumed (the session closes).
        """
        with self._lock:
            self._suspension = None if partial is None else _Suspension(partial, call_ids)
        if partial is None:
            self._close(
                f"its journal grew past max_journal_bytes ({self.max_journal_bytes} bytes) in cell {index}, "
                "which suspended: it cannot be resumed"
            )
            return False
        self._stale = True
        return True

    def _keep(self, journaled: JournalCell | None, index: int, size: int) -> None:
        """A completed cell into the session's journal; None (it outgrew its room) closes the session."""
        if journaled is None:
            self._close(f"its journal grew past max_journal_bytes ({self.max_journal_bytes} bytes) in cell {index}")
            return
        with self._lock:
            self._cells.append(journaled)
            self._journal_bytes += size

    def _restore(self, execution_id: str) -> bool:
        """Rebuild the instance from the journal (on this thread); a failure closes the session."""
        if not self._cells:
            return True  # nothing to replay: the next cell starts a fresh instance
        try:
            restored = replay(self._journal(), self.limits, self._runner.module_source, execution_id)
        except Exception as exc:  # noqa: BLE001 - any failure to restore ends the session, saying why
            self._close(f"its restore from the journal failed: {exc}")
            return False
        self._adopt(restored)
        return True

    def _adopt(self, restored: Restored) -> None:
        self._instance = restored.instance
        # never backwards: the guest's clock goes on from the last reading it was given
        self._clock_offset = min(self._clock_offset, time.monotonic_ns() - restored.last_clock - 1)

    async def _rebuild(self, journal: Journal) -> None:
        """Restore from a journal (executor.restore_session): the first turn, through admission.

        A suspended session's journal: the cells before the suspended one are
        replayed, and the session is suspended on that one (`resume` goes on)."""
        whole, journal = journal, _completed(journal) if journal.pending else journal
        work = await self._first_turn(
            lambda: replay(journal, self.limits, self._runner.module_source, f"restore-{self.id}")
        )
        try:
            restored = await asyncio.shield(asyncio.wrap_future(work))
        except asyncio.CancelledError:
            work.add_done_callback(self._orphaned)
            raise
        self._adopt_journal(journal)
        self._clock_offset = time.monotonic_ns() - restored.last_clock - 1
        self._instance = restored.instance
        self._adopt_suspension(whole)
        self._check_journal_size()

    def _adopt_suspension(self, journal: Journal) -> None:
        """A suspended session's journal: its last cell is the session's suspended one."""
        if not journal.pending:
            return
        cell = journal.cells[-1]
        call_ids = [p.call_id for p in journal.pending]
        if journal.session_id != self.id:  # restored under another id: its journal says so from now on
            journal = journal.model_copy(update={"session_id": self.id})
        with self._lock:
            self._suspension = _Suspension(cell, call_ids, journal, list(journal.approvals))
        if cell.clocks:  # never backwards: the resumed cell's clock goes on from its last reading
            self._clock_offset = min(self._clock_offset, time.monotonic_ns() - max(cell.clocks) - 1)

    async def _first_turn(self, restore: Callable[[], T]) -> Future[T]:
        """A restore's work, started as the session's first turn once the tenant admits it: the slot
        is released and the turn ends when the work does, not when its awaiter does."""
        before, mine = self._turns.take()
        assert before is None
        try:
            release = await self._admit(self.limits)
        except BaseException:
            _end_turn(mine)
            raise
        try:
            work = self._runner.work(restore)
        except BaseException:
            release()
            _end_turn(mine)
            raise

        def ended(_: object) -> None:
            release()
            _end_turn(mine)

        work.add_done_callback(ended)
        return work

    def _adopt_journal(self, journal: Journal) -> None:
        """The restored cells are the session's own journal from here on."""
        with self._lock:
            self._cells = list(journal.cells)
            self._journal_bytes = CELL_BYTES + sum(cell_size(c) for c in journal.cells)
            self._cells_run = journal.cells_run
            self._warm = journal.warm

    def _check_journal_size(self) -> None:
        if self._journal_bytes > self.max_journal_bytes:
            self._close(f"its journal is past max_journal_bytes ({self.max_journal_bytes} bytes)")

    def _orphaned(self, work: Future[Restored]) -> None:
        """A restore whose caller went away: its instance is nobody's."""
        if not work.cancelled() and work.exception() is None:
            self._retire(work.result().instance)

    # -- closing ----------------------------------------------------------------
    def _close(self, reason: str) -> bool:
        """Close (from any thread): the running cell is cancelled, the instance freed once it is not in use."""
        with self._lock:
            if self._closed is not None:
                return False
            self._closed = reason
            current = self._current
            dropped = self._drop_if_closed()
        if current is not None:
            current.cancel()
        self._retire(dropped)
        self._forget(self)
        if self.trace is not None:
            self.trace.end(reason)
        return True

    def _drop_if_closed(self) -> Instance | None:
        """(Under the lock.) The instance to free, if the session is closed and no cell's work holds it."""
        if self._closed is None or self._busy:
            return None
        instance, self._instance = self._instance, None
        return instance

    def _retire(self, instance: Instance | None) -> None:
        if instance is not None:
            get_runtime(fuel=self.limits.fuel is not None).spares.retire(instance)

    def _reap(self) -> None:
        """The reaper's check: close if idle for idle_timeout (no cell running or waiting), else look again later."""
        now = time.monotonic()
        with self._lock:
            if self._closed is not None:
                return
            idle = not self._busy and self._queued == 0
            due = self._idle_since + self.idle_timeout
        if idle and now >= due:
            self._close(f"it was idle for {self.idle_timeout:g} s (idle_timeout)")
        else:
            _reaper.watch(self, due if idle and due > now else now + self.idle_timeout)

    def close(self, reason: str = "it was closed") -> None:
        """Close now (a running cell is cancelled; its instance is freed when it stops). Final; twice is fine."""
        self._close(reason)

    async def aclose(self, reason: str = "it was closed") -> None:
        """Close, and wait until a running cell has stopped and the instance is freed."""
        self._close(reason)
        tail = self._turns.tail
        if tail is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(tail))
        # and until the cells sent have returned to their callers (their tasks hand back
        # the result after the instance is free: a caller that then looks finds them done)
        returned = self._returned
        if returned is not None and not returned.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wrap_future(returned))

    def __repr__(self) -> str:
        state = f"closed: {self._closed}" if self._closed is not None else "suspended" if self.suspended else "open"
        return f"<Session {self.id} cells={self._cells_run} {state}>"


class _Cell:
    """One cell of a session as ptc.execution's Runner runs it (its `Cell`)."""

    resuming: Journal | None = None
    decisions: dict[str, ApprovalDecision] | None = None
    code = ""

    def __init__(self, session: Session, turn: Future[None]) -> None:
        self.session = session
        self.turn = turn
        self.started = False
        self.restored = False
        self.journal_lost = False  # it suspended with a journal past max_journal_bytes: none to resume
        self.index: int | None = None
        self.recorder = Recorder(-1)
        self.session_id: str | None = session.id  # its calls' approval requests name it
        self.suspendable = session.suspendable  # a call without a decision waits: the cell suspends (`resume`)
        self.trace_parent = session.trace  # ptc.telemetry: the cell's span is a child of the session's

    def ready(self) -> None:
        """Its turn has come: may it run? (Not while the session is suspended.)"""
        self.session._check_not_suspended()

    async def claim(self, store: SharedState | None) -> None:
        """Admitted: take what only one run may have (nothing, for a new cell)."""

    def diverged(self, outcome: Outcome) -> bool:
        """It left its journal (only a resumed cell can): the outcome says so."""
        return False

    def tape(self, budget: HostBudget) -> Recorder:
        """A cell's part of the session's journal, bounded by the session's own `max_journal_bytes`
        (it outlives the cell, so not charged to the cell's budget)."""
        session = self.session
        self.recorder = Recorder(max(0, session.max_journal_bytes - session._journal_bytes))
        return self.recorder

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        session = self.session
        with session._lock:
            if session._closed is not None:
                raise SessionClosedError(f"session {session.id} is closed: {session._closed}")
            self.ready()
            session._busy = True
        self.started = True
        work = session._runner.work(lambda: session._work(self, code, state, limits))
        work.add_done_callback(lambda _: _end_turn(self.turn))
        return work

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        session = self.session
        result.session_id = session.id
        result.cell = self.index
        result.session_restored = self.restored
        suspension = session._suspension
        journal = None if self.journal_lost else session._journal(suspension.cell if suspension is not None else None)
        result.journal = journal

    def suspended(self, result: ExecutionResult) -> None:
        """The session keeps the journal to resume (with its pending calls and resume id) and the requests."""
        suspension = self.session._suspension
        if suspension is not None and result.journal is not None:
            suspension.journal = result.journal
            suspension.requests = list(result.pending_approvals)


class _ResumedCell(_Cell):
    """The suspended cell again: replayed up to where it stopped (ptc.hostcalls.wasm.tape.Resumer), then live,
    in the session's instance (the state after the cells before it), the decisions applied by the calls'
    approval step. It keeps its index and execution id; its calls go on numbering from the suspended run's."""

    def __init__(
        self, session: Session, turn: Future[None], suspension: _Suspension, decisions: dict[str, ApprovalDecision]
    ) -> None:
        super().__init__(session, turn)
        assert suspension.journal is not None
        self.suspension = suspension
        self.resuming = suspension.journal
        self.decisions = decisions
        self.index = suspension.cell.index
        self.code = suspension.cell.code
        self.resumer: Resumer | None = None

    def ready(self) -> None:
        if self.session._suspension is not self.suspension:
            raise JournalError(f"session {self.session.id}'s suspension in cell {self.index} was already resumed")

    async def claim(self, store: SharedState | None) -> None:
        journal = self.resuming
        assert journal is not None
        if store is not None and journal.resume_id is not None:  # one resume fleet-wide (None: fallback, local)
            if await claim_resume(store, journal.resume_id) is False:
                raise JournalError(f"session {self.session.id}'s suspension was already resumed (elsewhere)")
        resumes.claim(journal)  # one resume per suspension (and per copy of its journal, in this process)

    def diverged(self, outcome: Outcome) -> bool:
        diverged = self.resumer.player.diverged if self.resumer is not None else None
        if diverged is None:
            return False
        outcome.error = ExecutionErrorInfo(kind="internal_error", type="ReplayDivergedError", message=str(diverged))
        return True

    def tape(self, budget: HostBudget) -> Recorder:
        session, journal = self.session, self.resuming
        assert journal is not None
        pending = {p.index: p.call_id for p in journal.pending}
        room = max(0, session.max_journal_bytes - session._journal_bytes)
        self.recorder = self.resumer = Resumer(self.suspension.cell, room, pending)
        return self.recorder

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        assert self.resumer is not None
        self.resumer.on_live = state.go_live
        return super().start(code, state, limits)
