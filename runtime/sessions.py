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
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TypeVar

from ptc.engine import get_runtime
from ptc.errors import SessionClosedError
from ptc.execution import Runner
from ptc.fleet import keep_journal
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.output import OutputCallback
from ptc.hostcalls.wasm.state import ExecutionState, random_clock_offset
from ptc.hostcalls.wasm.tape import Recorder
from ptc.journal import CELL_BYTES, Journal, JournalCell, cell_size
from ptc.limits import Limits
from ptc.private.asyncio import running_loop
from ptc.replay import Restored, outcome_of, replay
from ptc.results import ExecutionErrorInfo, ExecutionResult
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


class Session:
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
    ) -> None:
        if idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive (seconds)")
        self.id = session_id if session_id is not None else uuid.uuid4().hex
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.max_journal_bytes = max_journal_bytes
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
        self._clock_offset = random_clock_offset()  # one clock for the session: it runs on from cell to cell
        self._idle_since = time.monotonic()
        _reaper.watch(self, self._idle_since + idle_timeout)
        self.trace = runner.telemetry.session(self.id, runner.tenant_id)  # ptc.telemetry: its cells' parent span
        self.store: SharedState | None = None  # set by the executor with a shared state (ptc.state)

    # -- state ------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def closed_reason(self) -> str | None:
        """Why the session was closed (None while open)."""
        return self._closed

    @property
    def cells(self) -> int:
        """How many cells have run (also those a limit stopped)."""
        return self._cells_run

    def journal(self) -> Journal:
        """The session's journal: its completed cells and what they were given (`model_dump_json()` to keep it)."""
        with self._lock:
            cells, warm, cells_run = list(self._cells), self._warm, self._cells_run
        return self._runner.journal(
            cells, session_id=self.id, warm=warm, cells_run=cells_run, fuel=self.limits.fuel is not None
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

        Raises SessionClosedError on a closed session, OverCapacityError when the
        tenant's quota and queue are full, ExecutorClosedError after the
        executor closed. Cells sent at once run one after another, in call order.
        """
        self._check_open()
        before, mine = self._turns.take()
        cell = _Cell(self, mine)
        with self._lock:
            self._queued += 1
            if self._returned is None or self._returned.done():
                self._returned = Future()
        try:
            if before is not None and not before.done():  # (awaiting a done one still costs a loop wake-up)
                await asyncio.shield(asyncio.wrap_future(before))
            self._check_open()
            release = await self._admit(self.limits)
            result = await self._runner.run(code, self.limits, release, cell, on_output=on_output)
            if self.store is not None:  # a shared state: the journal after every cell, for any machine to restore
                await keep_journal(self.store, "session", self.id, self.journal())
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

    def _work(self, cell: _Cell, code: str, state: ExecutionState, limits: Limits) -> Outcome:
        """A cell on its execution thread: run it in the session's instance, and restore if it cannot go on."""
        with self._lock:
            closed = self._closed
            if closed is None:
                self._current = state
                index = self._cells_run
                self._cells_run += 1
        try:
            if closed is not None:  # closed after the cell was sent: it does not run
                message = f"session {self.id} was closed before this cell ran: {closed}"
                return Outcome(error=ExecutionErrorInfo(kind="cancelled", type="SessionClosedError", message=message))
            cell.index = index
            return self._run(cell, code, index, state, limits)
        finally:
            with self._lock:
                self._current = None
                self._busy = False
                self._idle_since = time.monotonic()
                dropped = self._drop_if_closed()
            self._retire(dropped)

    def _run(self, cell: _Cell, code: str, index: int, state: ExecutionState, limits: Limits) -> Outcome:
        instance = self._instance
        if instance is None:
            made = instantiate(get_runtime(fuel=limits.fuel is not None), limits)
            if isinstance(made, Outcome):
                self._close(f"its instance could not start ({made.error})")
                return made
            instance = self._instance = made
            if not self._cells:
                self._warm = made.warm
        outcome = run_cell(instance, code, index, state, limits, self._clock_offset)
        with self._lock:
            self._current = None  # the program is done: closing from here on has nothing to cancel
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
            restored = replay(self.journal(), self.limits, self._runner.module_source, execution_id)
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
        """Restore from a journal (executor.restore_session): the first turn, through admission."""
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
        self._check_journal_size()

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

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = f"closed: {self._closed}" if self._closed is not None else "open"
        return f"<Session {self.id} cells={self._cells_run} {state}>"


class _Cell:
    """One cell of a session as ptc.execution's Runner runs it (its `Cell`)."""

    def __init__(self, session: Session, turn: Future[None]) -> None:
        self.session = session
        self.turn = turn
        self.started = False
        self.restored = False
        self.index: int | None = None
        self.recorder = Recorder(-1)
        self.session_id: str | None = session.id  # its calls' approval requests name it
        self.trace_parent = session.trace  # ptc.telemetry: the cell's span is a child of the session's

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
            session._busy = True
        self.started = True
        work = session._runner.work(lambda: session._work(self, code, state, limits))
        work.add_done_callback(lambda _: _end_turn(self.turn))
        return work

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        result.session_id = self.session.id
        result.cell = self.index
        result.session_restored = self.restored
        result.journal = self.session.journal()
