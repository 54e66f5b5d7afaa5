"""A session pinned to one worker process: its instance lives there, its journal here.

`PinnedSession` is ptc.sessions' Session with the instance's side moved out:
turns, admission, closing, idle reaping and the journal stay in this
process exactly as they are; each cell is sent to the worker that holds the
session's instance (`child.Worker._cell`), and a restore (after a cell that
cannot go on, or `restore_session`) replays the journal this process keeps,
in that worker. So a worker that dies loses nothing a session needs: the
cell it was running ends with `internal_error` ("the worker process died"),
and the session is rebuilt from its journal on another worker, as after a
trap (`session_restored=True`).

A cell that suspends for approvals comes back with its partial journal cell;
`resume` sends it to the worker (`child.Worker._resume`), which runs the cell
again with a Resumer tape. The calls it dispatches at the suspension point
arrive here with the record ids they had; the parent takes a record id from
the worker only for the calls it named in that job (`Job.resumable`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from ptc.errors import ReplayDivergedError
from ptc.hostcalls.wasm.state import ExecutionState
from ptc.journal import Journal, cell_size
from ptc.limits import Limits
from ptc.results import ExecutionErrorInfo
from ptc.sandbox import Outcome
from ptc.sessions import _USABLE, Session, _Cell, _completed, _unrestored
from ptc.workers.pool import WorkerPool, WorkerProcess


class PinnedSession(Session):
    """A Session whose cells run in one worker process of `pool` (see the module docstring)."""

    def __init__(self, pool: WorkerPool, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool = pool
        self._worker: WorkerProcess | None = None
        self._key = uuid.uuid4().hex  # the worker's name for it (a session id may be reused after a close)

    @property
    def worker_pid(self) -> int | None:
        """The process holding the session's instance (None before its first cell)."""
        worker = self._worker
        return worker.pid if worker is not None and not worker.dead else None

    def _run(self, cell: _Cell, code: str, index: int, state: ExecutionState, limits: Limits) -> Outcome:
        """On an execution thread of this process, which waits for the cell to run in the session's worker."""
        worker = self._worker
        if worker is None or worker.dead:  # the first cell, or the worker died since the last one
            worker = self._pool.pick()
            if worker is None:
                why = "no worker process is running" if not self._pool.closed else "the executor is closing"
                return Outcome(error=ExecutionErrorInfo(kind="internal_error", type="WorkerDied", message=why))
            if self._cells:
                failure = self._replay_on(worker, self._journal(), state.execution_id)
                if failure is not None:
                    self._close(f"its restore from the journal failed: {failure}")
                    why = f"session {self.id} could not be restored in a new worker process: {failure}"
                    return Outcome(error=ExecutionErrorInfo(kind="internal_error", type="WorkerDied", message=why))
                cell.restored = True
            self._worker = worker
            self._stale = False  # (replayed just now, or nothing to replay)
        elif self._stale:  # a suspension dropped the instance in the worker: rebuild it to before that cell
            self._stale = False
            if not self._restore(state.execution_id):
                return _unrestored(self)
        room = max(0, self.max_journal_bytes - self._journal_bytes)
        key, offset, limits_json = self._key, self._clock_offset, limits.model_dump_json()
        resuming, resumable = cell.resuming, None
        if resuming is None:

            def message(xid: int) -> list[Any]:
                return ["cell", xid, key, state.execution_id, code, index, limits_json, room, offset]

        else:  # the suspended cell again (ptc.sessions._ResumedCell): replayed to its suspension in the worker
            pending = [[p.index, p.call_id] for p in resuming.pending]
            resumable = {p.index + 1: p.call_id for p in resuming.pending}
            partial, warm = resuming.cells[-1].model_dump_json(), self._warm

            def message(xid: int) -> list[Any]:
                args = [code, index, limits_json, room, offset, partial, pending, warm]
                return ["resume", xid, key, state.execution_id, *args]

        job, future = self._pool.send(state, limits, message, worker, resumable)
        outcome = future.result()
        with self._lock:
            self._current = None  # the program is done: closing from here on has nothing to cancel
        done = job.done if job is not None else {}
        if done.get("no_instance") is True:
            self._close(f"its instance could not start ({outcome.error})")
            return outcome
        if resuming is not None and done.get("diverged") is True:
            self._close(f"its resume departed from the journal in cell {index}: {outcome.error}")
            return outcome
        if done.get("made_warm") is not None and not self._cells:
            self._warm = done.get("made_warm") is True
        if state.suspended:
            partial_cell = job.cell if job is not None else None
            if partial_cell is not None and (partial_cell.index != index or partial_cell.code != code):
                self._close(f"its worker process returned another cell's journal in cell {index}")  # not believed
                return outcome
            kept = self._suspend(partial_cell, index, list(state.deferred_ids.values()))
            cell.journal_lost = not kept
            return outcome
        with self._lock:
            self._suspension = None  # (a resumed cell ran on: it waits no more)
        error = outcome.error
        if not outcome.trapped and (error is None or error.kind in _USABLE):
            journaled = job.cell if job is not None else None
            if journaled is not None and (journaled.index != index or journaled.code != code):
                self._close(f"its worker process returned another cell's journal in cell {index}")  # not believed
            else:
                self._keep(journaled, index, 0 if journaled is None else cell_size(journaled))
            return outcome
        if self._closed is None:
            cell.restored = self._restore(state.execution_id)
        return outcome

    def _restore(self, execution_id: str) -> bool:
        """Rebuild the instance from the journal in the session's worker (another, if it died); failing closes."""
        if not self._cells:
            return True  # nothing to replay: the next cell starts a fresh instance
        worker = self._worker if self._worker is not None and not self._worker.dead else self._pool.pick()
        failure = self._replay_on(worker, self._journal(), execution_id)
        if failure is not None:
            self._close(f"its restore from the journal failed: {failure}")
            return False
        return True

    def _replay_on(
        self, worker: WorkerProcess | None, journal: Journal, execution_id: str
    ) -> ReplayDivergedError | None:
        """Replay `journal` into the session's instance in `worker` (blocking): None, or why it failed."""
        if worker is None:
            return ReplayDivergedError("the replay could not start: no worker process is running", cell=0)
        limits = self.limits
        state = ExecutionState.under(execution_id, limits, module_source=self._runner.module_source)
        key, journal_json, limits_json = self._key, journal.model_dump_json(), limits.model_dump_json()
        job, future = self._pool.send(
            state, limits, lambda xid: ["restore", xid, key, execution_id, journal_json, limits_json], worker
        )
        outcome = future.result()
        done = job.done if job is not None else {}
        last_clock = done.get("last_clock")
        if type(last_clock) is int and last_clock >= 0:
            self._worker = worker
            # never backwards: the guest's clock goes on from the last reading it was given
            self._clock_offset = min(self._clock_offset, time.monotonic_ns() - last_clock - 1)
            return None
        failure = done.get("restore_error")
        if not isinstance(failure, str):
            failure = outcome.error.message if outcome.error is not None else "the worker did not say why"
        where = done.get("diverged")
        where = where if isinstance(where, dict) else {}
        cell, call = where.get("cell"), where.get("call")
        recorded, asked = where.get("recorded"), where.get("asked")
        return ReplayDivergedError(
            failure[:4000],
            cell=cell if type(cell) is int else 0,
            call=call if type(call) is int else None,
            recorded=recorded[:4000] if isinstance(recorded, str) else "",
            asked=asked[:4000] if isinstance(asked, str) else "",
        )

    async def _rebuild(self, journal: Journal) -> None:
        """restore_session: the first turn, through admission, replayed in a worker."""
        self._clock_offset = time.monotonic_ns()  # then min() with the replay's: the clock goes on, never back
        whole, journal = journal, _completed(journal) if journal.pending else journal
        work = await self._first_turn(lambda: self._replay_on(self._pool.pick(), journal, f"restore-{self.id}"))
        failure = await asyncio.shield(asyncio.wrap_future(work))  # cancelled: the instance goes with the session
        if failure is not None:
            raise failure
        self._adopt_journal(journal)
        self._adopt_suspension(whole)
        self._check_journal_size()

    def _close(self, reason: str) -> bool:
        closed = super()._close(reason)
        worker = self._worker
        if closed and worker is not None:
            worker.conn.send(["drop", self._key])  # after its running cell, which the close cancelled
        return closed
