"""A worker process's main: `python -m ptc.workers.child FD PARENT_PID`.

It runs only the sandbox side of executions: the engine, the compiled
guest, the spares, each execution's state and tape. A tool call is the
frame the guest submitted, sent to the parent as it is (the parent decodes
it again, under its own budget: it trusts nothing from here), and its reply
comes back as a frame; a stub's source is asked of the parent the same way.
Limits are applied here exactly as in one process (the same ExecutionState
and run_program), so an execution ends the same way in both.

It must not outlive its parent: the kernel kills it when the parent dies
(PR_SET_PDEATHSIG, Linux), and it exits at once when the connection to the
parent closes (the parent closed the pool, or died on a system without the
signal).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from ptc.engine import get_runtime
from ptc.errors import ReplayDivergedError
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import HostBudget, Oversize
from ptc.hostcalls.wasm.state import Cancel, ExecutionState, Replier, Reply, Request
from ptc.hostcalls.wasm.tape import Recorder, Resumer
from ptc.journal import Journal, JournalCell
from ptc.limits import Limits
from ptc.private.os import exit_now
from ptc.replay import fresh_instance, outcome_of, replay
from ptc.results import ExecutionErrorInfo
from ptc.sandbox import Outcome, instantiate, run_cell, run_program
from ptc.spares import Instance
from ptc.tenancy import EXECUTION_THREADS
from ptc.wasm_threads import WasmThreadPool
from ptc.workers.wire import Closed, Connection, WorkerProtocolError

_PR_SET_PDEATHSIG = 1
USABLE = ("runtime_error", "syntax_error")  # a cell ended by the program's own error leaves its instance usable
MAX_ERROR_TEXT = 1000  # why the guest's frame was refused, as the parent records it
MODULE_WAIT = 60.0  # seconds, at most, for the parent to give a stub's source


def die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it has died already."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the connection's EOF still ends us
            pass
    if os.getppid() != parent:  # it died before the signal was asked for
        exit_now(0)


@dataclass
class _State(ExecutionState):
    """An execution's state that keeps the frame the guest submitted, so that the frame itself is forwarded."""

    frame: str | None = None

    def _request(self, frame: str | Oversize) -> Request:
        self.frame = frame if isinstance(frame, str) else None
        return super()._request(frame)


@dataclass
class _Held:
    """A session's instance, held by this worker between cells (the session itself, its journal, is the parent's)."""

    instance: Instance | None = None
    fuel: bool = True  # which engine's spare pool takes the instance back
    busy: bool = False
    dropped: bool = False


class _Execution:
    """One execution in this worker: its calls in flight and the stub sources it waits for."""

    def __init__(self, worker: Worker, xid: int) -> None:
        self.worker = worker
        self.xid = xid
        self.state: _State | None = None
        self.cancelled = False
        self.live = False  # the caller reads its output as it is written (on_output): forward each part
        self.repliers: dict[int, Replier] = {}
        self.modules: dict[int, Future[str | None]] = {}
        self._ids = itertools.count(1)

    def dispatch(self, request: Request, reply: Reply) -> Cancel | str:
        """On the execution's thread: forward the call; its reply arrives as a message (`Worker._handle`)."""
        state = self.state
        assert state is not None and isinstance(reply, Replier)
        frame, state.frame = state.frame, None
        error: str | None = None
        if isinstance(request, codec.FrameError):
            frame, error = None, str(request)[:MAX_ERROR_TEXT]
        elif frame is None:  # not a frame the guest submitted just now (a resumed call): the request as decoded
            frame = codec.encode(request)
        call_id = reply.call_id
        self.repliers[call_id] = reply
        if not self.worker.conn.send(["call", self.xid, call_id, frame, error, reply.tool_id, state.deadline]):
            self.repliers.pop(call_id, None)
            return codec.error_frame("ToolError", "the worker lost its parent")
        return lambda: self._cancel_call(call_id)

    def _cancel_call(self, call_id: int) -> None:
        self.repliers.pop(call_id, None)
        self.worker.conn.send(["cancel_call", self.xid, call_id])

    def module_source(self, name: str) -> str | None:
        """On the execution's thread: the parent's answer, waited for until the deadline (or a cancel)."""
        state = self.state
        assert state is not None
        req = next(self._ids)
        future: Future[str | None] = Future()
        self.modules[req] = future
        try:
            if not self.worker.conn.send(["module", self.xid, req, name]):
                return None
            # a replay's stub sources are asked outside any deadline of this state's: then a minute at most
            remaining = max(0.0, min(state.deadline - time.monotonic(), MODULE_WAIT))
            return future.result(timeout=remaining)
        except FutureTimeout:
            return None  # the deadline passed: the program's next host call says so
        finally:
            self.modules.pop(req, None)

    def cancel(self) -> None:
        self.cancelled = True  # (before the state is read: `Worker._state` checks it after setting the state)
        if self.state is not None:
            self.state.cancel()
        for future in list(self.modules.values()):
            if not future.done():
                future.set_result(None)


@dataclass
class _CellJob:
    """A session's cell (or its resume) as the parent sent it: what both ways of running one need."""

    execution: _Execution
    held: _Held
    execution_id: str
    code: str
    index: int
    limits: Limits
    journal_room: int
    clock_offset: int


def _no_instance(made: Outcome) -> dict[str, Any]:
    """The report of a cell whose session could not get an instance (its memory limit, say)."""
    failed = made.error.model_dump() if made.error is not None else None
    return {"error": failed, "trapped": True, "no_instance": True}


class Worker:
    """The worker's loop: messages from the parent in, executions on threads of their own."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.executions: dict[int, _Execution] = {}
        self.threads = WasmThreadPool(max_workers=EXECUTION_THREADS, thread_name_prefix="ptc-exec")
        self.sessions: dict[str, _Held] = {}
        self.sessions_lock = threading.Lock()
        self.live: set[int] = set()  # jobs announced as live ("live" comes just before the job's own message)

    def serve(self) -> None:
        threading.Thread(target=self._warm, args=(True,), name="ptc-worker-warm", daemon=True).start()
        while True:
            try:
                message = self.conn.receive()
            except (Closed, WorkerProtocolError):
                exit_now(0)  # the parent closed the pool, or is gone: nothing here is anyone's any more
            self._handle(message)

    def _started(self, xid: int) -> _Execution:
        started = _Execution(self, xid)
        if xid in self.live:
            self.live.discard(xid)
            started.live = True
        self.executions[xid] = started
        return started

    def _warm(self, fuel: bool) -> None:
        get_runtime(fuel=fuel)
        self.conn.send(["ready", fuel])

    def _handle(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "live":
            self.live.add(message[1])
            return
        if kind == "run":
            _, xid, execution_id, code, limits_json, max_journal_bytes = message
            started = self._started(xid)
            self.threads.submit(self._run, started, execution_id, code, limits_json, max_journal_bytes)
            return
        if kind in ("cell", "restore", "resume"):
            started = self._started(message[1])
            self.threads.submit(self._session_job, started, message)
            return
        if kind == "drop":
            self._drop(message[1])
            return
        if kind == "warm":
            threading.Thread(target=self._warm, args=(message[1],), name="ptc-worker-warm", daemon=True).start()
            return
        execution = self.executions.get(message[1])
        if execution is None:  # it ended already: a late reply or cancel
            return
        if kind == "reply":
            replier = execution.repliers.pop(message[2], None)
            if replier is not None and execution.state is not None:
                reply: str = message[3]
                execution.state.budget.force(len(reply))  # the guest's from now on, as a tool's reply is
                replier(reply)
        elif kind == "approval":
            replier = execution.repliers.get(message[2])
            if replier is not None:
                how, tool_id = message[3], message[4]
                if how == "asking":
                    replier.asking()
                elif how == "decided":
                    replier.decided()
                else:
                    replier.defer(tool_id)
        elif kind == "module":
            future = execution.modules.get(message[2])
            if future is not None and not future.done():
                future.set_result(message[3])
        elif kind == "cancel":
            execution.cancel()

    def _run(self, execution: _Execution, execution_id: str, code: str, limits_json: str, max_journal: int) -> None:
        limits = Limits.model_validate_json(limits_json)
        budget = HostBudget(limits.host_bytes)
        recorder = Recorder(max_journal, budget=budget)
        state = self._state(execution, execution_id, limits, recorder, budget)
        try:
            self.conn.send(["done", execution.xid, self._outcome(code, state, limits, recorder)])
        except Exception:  # noqa: BLE001 - a bug here must still end the execution in the parent
            traceback.print_exc()
            error = {"kind": "internal_error", "type": "WorkerError", "message": "the worker failed"}
            self.conn.send(["done", execution.xid, {"error": error}])
        finally:
            self.executions.pop(execution.xid, None)
            state.close()

    def _outcome(self, code: str, state: _State, limits: Limits, recorder: Recorder) -> dict[str, Any]:
        """What the parent needs of the finished execution to build its result."""
        outcome = run_program(code, state, limits)
        cell = recorder.cell(0, code, outcome_of(outcome.error))
        return _report(outcome, state, cell.model_dump_json() if cell is not None else None)

    # -- sessions: the instance stays here from cell to cell ---------------------------
    def _session_job(self, execution: _Execution, message: list[Any]) -> None:
        kind, xid, key, execution_id = message[:4]
        with self.sessions_lock:
            held = self.sessions.setdefault(key, _Held())
            held.busy = True
        try:
            if kind in ("cell", "resume"):  # [..., code, index, limits_json, journal_room, clock_offset, *more]
                code, index, limits_json, journal_room, clock_offset = message[4:9]
                limits = Limits.model_validate_json(limits_json)
                job = _CellJob(execution, held, execution_id, code, index, limits, journal_room, clock_offset)
                done = self._cell(job) if kind == "cell" else self._resume(job, *message[9:])
            else:
                done = self._restore(execution, held, execution_id, *message[4:])
            self.conn.send(["done", xid, done])
        except Exception:  # noqa: BLE001 - a bug here must still end the cell in the parent
            traceback.print_exc()
            error = {"kind": "internal_error", "type": "WorkerError", "message": "the worker failed"}
            self.conn.send(["done", xid, {"error": error, "trapped": True}])
        finally:
            self.executions.pop(xid, None)
            with self.sessions_lock:
                held.busy = False
                retire = held.dropped
                if retire:
                    self.sessions.pop(key, None)
            if retire:
                self._retire(held)

    def _cell(self, job: _CellJob) -> dict[str, Any]:
        """One cell in the session's instance (made now if it has none); a cell that cannot go on drops it."""
        held, limits, code, index = job.held, job.limits, job.code, job.index
        made_warm: bool | None = None
        if held.instance is None:
            made = instantiate(get_runtime(fuel=limits.fuel is not None), limits)
            if isinstance(made, Outcome):
                return _no_instance(made)
            held.instance, held.fuel, made_warm = made, limits.fuel is not None, made.warm
        recorder = Recorder(job.journal_room)
        state = self._state(job.execution, job.execution_id, limits, recorder)
        try:
            outcome = run_cell(held.instance, code, index, state, limits, job.clock_offset)
            done = self._ended(held, outcome, state, recorder, code, index)
            done["made_warm"] = made_warm
            return done
        finally:
            state.close()

    def _ended(
        self, held: _Held, outcome: Outcome, state: ExecutionState, recorder: Recorder, code: str, index: int
    ) -> dict[str, Any]:
        """A cell's report: its journal cell if it left the instance usable, or, suspended, its partial one."""
        error = outcome.error
        usable = not outcome.trapped and (error is None or error.kind in USABLE)
        journaled = None
        if usable or state.suspended:
            journaled = recorder.cell(index, code, None if state.suspended else outcome_of(error))
        if not usable:
            self._retire(held)
        done = _report(outcome, state, journaled.model_dump_json() if journaled is not None else None)
        done.update(trapped=outcome.trapped, usable=usable, size=recorder.size)
        return done

    def _resume(self, job: _CellJob, cell_json: str, pending: list[list[Any]], warm: bool) -> dict[str, Any]:
        """A suspended cell again, in the session's instance (the state before it): its recorded part
        replayed (ptc.hostcalls.wasm.tape.Resumer), then live; the parent applies the decisions."""
        held, limits, code, index = job.held, job.limits, job.code, job.index
        suspended = JournalCell.model_validate_json(cell_json)
        if held.instance is None:  # a first cell: an instance like the original's
            made = fresh_instance(warm, limits)
            if isinstance(made, Outcome):
                return _no_instance(made)
            held.instance, held.fuel = made, limits.fuel is not None
        resumer = Resumer(suspended, job.journal_room, {int(i): str(call_id) for i, call_id in pending})
        state = self._state(job.execution, job.execution_id, limits, resumer)
        resumer.on_live = state.go_live
        try:
            outcome = run_cell(held.instance, code, index, state, limits, job.clock_offset)
            diverged = resumer.player.diverged
            if diverged is not None:
                self._retire(held)
                error = ExecutionErrorInfo(kind="internal_error", type="ReplayDivergedError", message=str(diverged))
                return {"error": error.model_dump(), "trapped": True, "diverged": True}
            return self._ended(held, outcome, state, resumer, code, index)
        finally:
            state.close()

    def _restore(
        self, execution: _Execution, held: _Held, execution_id: str, journal_json: str, limits_json: str
    ) -> dict[str, Any]:
        """The session's instance rebuilt from the journal the parent keeps (after a trap, a dead worker, a restore)."""
        limits = Limits.model_validate_json(limits_json)
        self._retire(held)
        state = self._state(execution, execution_id, limits, Recorder.off())  # only its stub sources are used
        try:
            restored = replay(Journal.model_validate_json(journal_json), limits, execution.module_source, execution_id)
        except ReplayDivergedError as exc:  # the parent raises it again, saying where, as in one process
            where = {"cell": exc.cell, "call": exc.call, "recorded": exc.recorded, "asked": exc.asked}
            return {"restore_error": str(exc)[:4000], "diverged": where}
        except Exception as exc:  # noqa: BLE001 - the parent says it: restore_session raises, a session closes
            return {"restore_error": str(exc)[:4000]}
        finally:
            state.close()
        held.instance, held.fuel = restored.instance, limits.fuel is not None
        return {"last_clock": restored.last_clock}

    def _state(
        self, execution: _Execution, execution_id: str, limits: Limits, tape: Recorder, budget: HostBudget | None = None
    ) -> _State:
        """The execution's state; a cancel that came before it existed applies to it now."""
        state = _State.under(
            execution_id,
            limits,
            budget=budget or HostBudget(limits.host_bytes),
            dispatch=execution.dispatch,
            module_source=execution.module_source,
            tape=tape,
        )
        assert isinstance(state, _State)
        if execution.live:  # each part as the guest sends it (before it blocks, and in 8 KiB chunks)
            state.output.live = _LiveParts(self.conn, execution.xid)
        execution.state = state
        if execution.cancelled:
            state.cancel()
        return state

    def _drop(self, key: str) -> None:
        """The session closed: its instance goes (after its running cell, if one is)."""
        with self.sessions_lock:
            held = self.sessions.get(key)
            if held is None:
                return
            held.dropped = True
            if held.busy:
                return
            del self.sessions[key]
        self._retire(held)

    def _retire(self, held: _Held) -> None:
        instance, held.instance = held.instance, None
        if instance is not None:
            get_runtime(fuel=held.fuel).spares.retire(instance)


class _LiveParts:
    """The output of a live job (on_output), sent to the parent part by part as the program writes it."""

    def __init__(self, conn: Connection, xid: int) -> None:
        self.conn = conn
        self.xid = xid

    def push(self, fd: int, text: str) -> None:
        self.conn.send(["output", self.xid, fd, text])


def _report(outcome: Outcome, state: ExecutionState, cell: str | None) -> dict[str, Any]:
    """What the parent needs of a finished execution or cell to build its result (a live job's output went already)."""
    forwarded = state.output.live is not None
    return {
        "parts": [] if forwarded else [[fd, text] for fd, text in state.output.parts],
        "truncated": state.output.truncated,
        "value": outcome.value,  # decoded msgpack: it packs again
        "repr": outcome.value_is_repr,
        "error": outcome.error.model_dump() if outcome.error is not None else None,
        "fuel": outcome.fuel_used,
        "memory": outcome.memory_used,
        "peak": state.budget.peak,
        "warm": outcome.warm,
        "suspended": state.suspended,
        "deferred": [[call_id, tool_id] for call_id, tool_id in state.deferred_ids.items()],
        "cell": cell,
        "deadline": state.deadline,
    }


def main(argv: list[str]) -> None:
    fd, parent = int(argv[1]), int(argv[2])
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a ^C at a terminal is the parent's to handle
    Worker(Connection(socket.socket(fileno=fd))).serve()


if __name__ == "__main__":
    main(sys.argv)
