"""The parent's side of the worker processes: where executions go, what comes back, and a worker that dies.

`ProgrammaticToolExecutor(workers=N)` keeps N workers (`ptc.workers.child`),
each a process with its own engine, compiled guest and spares, so N programs
run on N cores without sharing one GIL. The parent keeps all the rest:
`Runner.run` builds the execution's CallSession and ExecutionState as it does
in one process, and the cell of kind `_Remote` runs the program in a worker
instead of on a thread. The parent's state then holds what the worker
reports (output, suspension) and does what the parent's share of the
boundary needs: each call frame a worker forwards is decoded by the
parent's state under the parent's budget (`ExecutionState._request`, as in
one process) and dispatched to the same CallSession, so policies,
idempotency, breakers, records, events and audit are the parent's, exactly.

A worker is just another untrusted guest: each message's length is capped
before it is read (by the largest execution it holds), each field is checked
for its type, a call frame is decoded within the execution's frame and host
budgets, the report's value must be plain data, a journal cell is validated
by its model, and the parent counts calls against `max_tool_calls` itself.
Anything broken kills that worker.

A worker that dies (killed, out of memory, broken) is noticed at once: its
connection's EOF wakes the worker's reader thread, which ends exactly that
worker's executions with `internal_error` ("the worker process died") and
starts a replacement. An execution is never sent again to another worker
(its tools may have run: a second run could duplicate them).

No worker outlives the pool: `close()` closes every connection (a worker
exits on EOF) and waits for each process; a worker whose parent dies is
killed by the kernel (PR_SET_PDEATHSIG) or exits on the EOF.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import ValidationError

from ptc.execution import Runner
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import RECORD_COST, HostBudget
from ptc.hostcalls.wasm.state import Abort, Cancel, ExecutionState, Replier
from ptc.hostcalls.wasm.tape import Recorder
from ptc.journal import Journal, JournalCell
from ptc.limits import Limits
from ptc.results import ExecutionErrorInfo, ExecutionResult
from ptc.sandbox import Outcome
from ptc.workers.wire import Closed, Connection, WorkerProtocolError

log = logging.getLogger("ptc")

T = TypeVar("T")
WORKERS_ENV = "PTC_WORKERS"
MAX_MODULE_NAME = 1000
_SMALL_MESSAGE = 64 * 1024  # a message about nothing large: ready, cancel_call, module
LARGE_REPLY = 256 * 1024  # sent off the event loop (copying 16 MiB into a socket holds it for milliseconds)
_STOP_WAIT = 5.0  # seconds a closing worker has to exit before it is killed


def workers_from_env(workers: int | None) -> int:
    """`workers`, or PTC_WORKERS (0: run in this process); a bad value is a ValueError, said at construction."""
    if workers is None:
        text = os.environ.get(WORKERS_ENV, "").strip()
        if not text:
            return 0
        try:
            workers = int(text)
        except ValueError:
            raise ValueError(f"{WORKERS_ENV}={text!r} is not a number of worker processes") from None
    if workers < 0:
        raise ValueError(f"workers must be 0 (in this process) or more, not {workers}")
    return workers


def _died(detail: str) -> Outcome:
    message = f"the worker process died ({detail}); the execution was stopped and is not run again"
    return Outcome(error=ExecutionErrorInfo(kind="internal_error", type="WorkerDied", message=message), trapped=True)


class _Spawner:
    """The one thread that starts every worker process, and lives as long as this process.

    PR_SET_PDEATHSIG fires when the *thread* that started the child ends, not
    the process: a worker started from the thread that made the executor (a
    request's thread, `asyncio.to_thread`) or from a dead worker's reader
    would be killed when that thread finished.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, start: Callable[[], T]) -> T:
        """`start()`, called on the spawner thread (started on first use); its result or its exception."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="ptc-worker-spawner", daemon=True)
                self._thread.start()
        if threading.current_thread() is self._thread:
            return start()
        future: Future[T] = Future()
        self._queue.put((start, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            start, future = self._queue.get()
            try:
                future.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)


_spawner = _Spawner()


class _Forward(threading.Event):
    """The parent state's `stop`: setting it (ExecutionState.cancel) also stops the program in its worker."""

    def __init__(self, forward: Callable[[], object]) -> None:
        super().__init__()
        self._forward = forward

    def set(self) -> None:
        first = not self.is_set()
        super().set()
        if first:
            self._forward()


class _Reply(Replier):
    """The Replier the parent's CallSession is given for a forwarded call: everything it says goes to the worker."""

    __slots__ = ("job",)

    def __init__(self, job: Job, call_id: int, tool_id: str | None = None) -> None:
        super().__init__(job.state, call_id, tool_id)
        self.job = job

    def __call__(self, reply: str) -> None:
        """On the event loop (or a reader thread): a large reply is sent from a thread, as it was encoded."""
        job = self.job
        job.state.budget.release(len(reply))  # the worker's budget holds it from now on
        job.pending.pop(self.call_id, None)
        message = ["reply", job.xid, self.call_id, reply]
        if len(reply) >= LARGE_REPLY:
            try:
                job.worker.pool.sender.submit(job.worker.conn.send, message)
            except RuntimeError:  # the pool is closed: its workers are gone, and so is the execution
                pass
        else:
            job.worker.conn.send(message)

    def asking(self) -> None:
        self.job.worker.conn.send(["approval", self.job.xid, self.call_id, "asking", None])

    def decided(self) -> None:
        self.job.worker.conn.send(["approval", self.job.xid, self.call_id, "decided", None])

    def defer(self, tool_id: str) -> None:
        self.job.worker.conn.send(["approval", self.job.xid, self.call_id, "deferred", tool_id])


@dataclass(eq=False)
class Job:
    """One execution sent to a worker, as the parent tracks it."""

    xid: int
    worker: WorkerProcess
    state: ExecutionState
    limits: Limits
    future: Future[Outcome] = field(default_factory=Future)
    pending: dict[int, Cancel] = field(default_factory=dict)  # forwarded calls in flight: their cancels
    calls: int = 0
    cell: JournalCell | None = None
    warm: bool = False
    done: dict[str, Any] = field(default_factory=dict)  # the worker's whole report (a session reads its own fields)
    resumable: dict[int, str] = field(default_factory=dict)  # a resumed cell's waiting calls: call id -> record id


class WorkerProcess:
    """One worker process, its connection and the executions it holds."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        parent, child = socket.socketpair()
        try:
            self.process = _spawner.run(
                lambda: subprocess.Popen(
                    [sys.executable, "-m", "ptc.workers.child", str(child.fileno()), str(os.getpid())],
                    pass_fds=(child.fileno(),),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    close_fds=True,
                )
            )
        finally:
            child.close()
        self.conn = Connection(parent)
        self.jobs: dict[int, Job] = {}
        self.lock = threading.Lock()
        self.dead = False
        self.ready = {True: threading.Event(), False: threading.Event()}  # its runtime with fuel / without
        self.cap = _SMALL_MESSAGE
        self.reader = threading.Thread(target=self._read, name=f"ptc-worker-{index}", daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def add(self, job: Job) -> bool:
        """Hold `job` (False if this worker is dead already: its reader will not see it)."""
        with self.lock:
            if self.dead:
                return False
            self.jobs[job.xid] = job
            # The largest message about it: output (twice: parts of both streams), the report, the journal.
            limits = job.limits
            need = 2 * limits.max_output_bytes + 2 * limits.max_frame_bytes + self.pool.max_journal_bytes
            self.cap = max(self.cap, need + _SMALL_MESSAGE)
        return True

    # -- the reader thread ---------------------------------------------------------
    def _read(self) -> None:
        detail = "its connection closed"
        try:
            while True:
                message = self.conn.receive(lambda: self.cap)
                self._handle(message)
        except Closed:
            pass
        except (WorkerProtocolError, ValueError, TypeError, KeyError, IndexError) as exc:
            detail = "it sent a malformed message"
            log.warning("ptc worker %d (pid %d) is killed: %s", self.index, self.pid, exc)
            self.process.kill()
        self._end(detail)

    def _end(self, detail: str) -> None:
        with self.lock:
            self.dead = True
            jobs, self.jobs = list(self.jobs.values()), {}
        self.conn.close()
        try:
            code = self.process.wait(timeout=_STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if code is not None and code < 0:
            detail = f"killed by signal {-code}"
        elif code:
            detail = f"exit status {code}"
        for job in jobs:
            job.future.set_result(_died(detail) if not self.pool.closed else _closed())
        self.pool._replace(self)

    def _handle(self, message: list[Any]) -> None:
        kind = message[0]
        if kind == "ready":
            if type(message[1]) is not bool:
                raise WorkerProtocolError("a ready message that does not say which runtime")
            self.ready[message[1]].set()
            return
        xid = message[1]
        job = self.jobs.get(xid) if type(xid) is int else None
        if job is None:
            if kind not in ("call", "cancel_call", "module", "output", "done"):
                raise WorkerProtocolError(f"an unknown message {kind[:40]!r}")
            return  # about an execution that ended: late
        if kind == "call":
            self._call(job, message)
        elif kind == "cancel_call":
            cancel = job.pending.pop(_int(message[2]), None)
            if cancel is not None:
                cancel()
        elif kind == "module":
            req, name = _int(message[2]), message[3]
            if not isinstance(name, str) or len(name) > MAX_MODULE_NAME:
                raise WorkerProtocolError("a module name that is not a short string")
            self.conn.send(["module", xid, req, job.state.module_source(name)])
        elif kind == "output":
            _take_part(job, [message[2], message[3]])
        elif kind == "done":
            outcome = _outcome(job, message[2])  # a broken report kills the worker, which ends this job as died
            with self.lock:
                self.jobs.pop(xid, None)
            job.future.set_result(outcome)
        else:
            raise WorkerProtocolError(f"an unknown message {kind[:40]!r}")

    def _call(self, job: Job, message: list[Any]) -> None:
        """A forwarded call: decoded and dispatched here as the sandbox thread does in one process."""
        _, xid, call_id, frame, error, tool_id, deadline = message
        call_id = _int(call_id)
        state = job.state
        if isinstance(deadline, float) and deadline <= time.monotonic() + job.limits.timeout:
            state.deadline = deadline  # a deadline paused by approvals moves on; never beyond a fresh timeout
        job.calls += 1
        if job.calls > job.limits.max_tool_calls:  # the worker should have stopped it: it is not believed
            raise WorkerProtocolError("more calls than max_tool_calls")
        try:
            if isinstance(frame, str):
                request = state._request(frame)
            elif isinstance(error, str):  # the worker refused the frame: the record says why, as in one process
                state.budget.force(RECORD_COST)
                request = codec.FrameError(error[:1000])
            else:
                raise WorkerProtocolError("a call with neither a frame nor an error")
        except Abort:  # its deadline passed while decoding: the worker's own deadline ends it
            self.conn.send(["reply", xid, call_id, codec.error_frame("ToolTimeoutError", "the deadline passed")])
            return
        # a resumed cell's call that waited for a decision keeps its record id (the decision is keyed by it);
        # the worker's word counts only for the calls the parent said it would resume, once each
        resumed = job.resumable.pop(call_id, None)
        dispatched = state.dispatch(request, _Reply(job, call_id, resumed if tool_id == resumed else None))
        if isinstance(dispatched, str):
            self.conn.send(["reply", xid, call_id, dispatched])
        else:
            job.pending[call_id] = dispatched

    def stop(self) -> None:
        """Close the connection (the worker exits on EOF); the reader ends its executions and waits for it."""
        self.conn.close()


def _closed() -> Outcome:
    message = "the executor was closed while the execution ran in a worker process"
    return Outcome(error=ExecutionErrorInfo(kind="cancelled", type="CancelledError", message=message), trapped=True)


def _int(value: object) -> int:
    if type(value) is not int:
        raise WorkerProtocolError("an id that is not an integer")
    return value


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    return _int(value)


def _take_part(job: Job, part: object) -> None:
    """One part of a worker's output into the parent's state (and to on_output): checked, capped, charged.

    A live job's parts come one by one as the program writes them ("output"
    messages); the others' with the report."""
    if not (isinstance(part, list) and len(part) == 2 and part[0] in (1, 2) and isinstance(part[1], str)):
        raise WorkerProtocolError("an output part that is not (1 | 2, text)")
    output = job.state.output
    size = len(part[1].encode("utf-8", "surrogatepass"))
    if output.bytes + size > job.limits.max_output_bytes:
        raise WorkerProtocolError("more output than max_output_bytes")
    job.state.budget.force(size)
    output.parts.append((part[0], part[1]))
    output.bytes += size
    if output.live is not None:
        output.live.push(part[0], part[1])


def _outcome(job: Job, done: object) -> Outcome:
    """The worker's report of a finished execution, checked, into the parent's state and an Outcome."""
    if not isinstance(done, dict):
        raise WorkerProtocolError("a done message without its fields")
    state, limits = job.state, job.limits
    parts = done.get("parts", [])
    if not isinstance(parts, list):
        raise WorkerProtocolError("output that is not a list of parts")
    for part in parts:
        _take_part(job, part)
    state.output.truncated = done.get("truncated") is True
    value = done.get("value")
    try:
        codec.check_plain(value)
    except codec.FrameError as exc:
        raise WorkerProtocolError(f"a report value that is not plain data ({exc})") from None
    error = done.get("error")
    try:
        info = ExecutionErrorInfo.model_validate(error) if error is not None else None
        cell = done.get("cell")
        job.cell = JournalCell.model_validate_json(cell) if isinstance(cell, str) else None
    except ValidationError as exc:
        raise WorkerProtocolError(f"a result that does not validate ({exc.error_count()} errors)") from None
    deferred = done.get("deferred", [])
    if not isinstance(deferred, list):
        raise WorkerProtocolError("deferred calls that are not a list")
    for item in deferred:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)):
            raise WorkerProtocolError("a deferred call that is not (id, record id)")
        state.deferred_ids[_int(item[0])] = item[1][:64]
    state.suspended = done.get("suspended") is True
    peak = _optional_int(done.get("peak"))
    if peak is not None:
        state.budget.peak = max(state.budget.peak, min(peak, limits.host_bytes))
    job.warm = done.get("warm") is True
    job.done = done
    fuel = _optional_int(done.get("fuel"))
    memory = _optional_int(done.get("memory"))
    return Outcome(
        value=value,
        value_is_repr=done.get("repr") is True,
        error=info,
        fuel_used=fuel,
        memory_used=memory if memory is None or memory <= limits.memory_bytes else None,
        warm=job.warm,
        trapped=done.get("trapped") is True,
    )


class WorkerPool:
    """An executor's N worker processes (`workers=N`), started at construction, ended by `close()`."""

    def __init__(self, size: int, max_journal_bytes: int) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.max_journal_bytes = max_journal_bytes
        self.closed = False
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.sender = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ptc-worker-send")
        self._workers: list[WorkerProcess] = [WorkerProcess(self, i) for i in range(size)]

    @property
    def pids(self) -> list[int]:
        """The live workers' process ids (for tests and operators)."""
        with self._lock:
            return [w.pid for w in self._workers if not w.dead]

    def ready(self, fuel: bool = True) -> bool:
        """Whether every live worker has that runtime (the compiled guest loaded, its spares started)."""
        with self._lock:
            workers = list(self._workers)
        return all(w.ready[fuel].is_set() for w in workers if not w.dead)

    def wait_ready(self, timeout: float = 120.0, fuel: bool = True) -> bool:
        """Block until every worker has that runtime (asking those that do not load it); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            if not worker.ready[fuel].is_set():
                worker.conn.send(["warm", fuel])  # (a worker warms the fuel runtime on its own at start)
        return all(w.ready[fuel].wait(max(0.0, deadline - time.monotonic())) for w in workers)

    def cell(self, runner: Runner, code: str) -> _Remote:
        """The kind of execution that runs `code` in a worker (handed to `Runner.run`)."""
        return _Remote(self, runner, code)

    def _pick(self) -> WorkerProcess | None:
        with self._lock:
            live = [w for w in self._workers if not w.dead]
        if not live:
            return None
        return min(live, key=lambda w: len(w.jobs))

    def start(self, code: str, state: ExecutionState, limits: Limits) -> tuple[Job | None, Future[Outcome]]:
        """Send the execution to the least busy worker; the future is its outcome."""

        def run(xid: int) -> list[Any]:
            return ["run", xid, state.execution_id, code, limits.model_dump_json(), self.max_journal_bytes]

        return self.send(state, limits, run)

    def send(
        self,
        state: ExecutionState,
        limits: Limits,
        message: Callable[[int], list[Any]],
        worker: WorkerProcess | None = None,
        resumable: dict[int, str] | None = None,
    ) -> tuple[Job | None, Future[Outcome]]:
        """Send the job `message(xid)` to `worker` (a session's), or to the least busy; the future is its outcome.

        The state's `stop` is the parent's cancel: setting it tells the worker to stop the program."""
        while not self.closed:
            chosen = worker if worker is not None else self._pick()
            if chosen is None:
                break
            job = Job(next(self._ids), chosen, state, limits, resumable=dict(resumable or {}))
            if not chosen.add(job):
                if worker is not None:
                    break  # the session's worker is dead: the session decides what now
                continue  # it died just now: the next one
            state.stop = _Forward(functools.partial(chosen.conn.send, ["cancel", job.xid]))
            if state.output.live is not None:  # on_output: the worker sends each part as it is written
                chosen.conn.send(["live", job.xid])
            chosen.conn.send(message(job.xid))  # if it fails, the worker is dead and its reader ends the job
            return job, job.future
        future: Future[Outcome] = Future()
        future.set_result(_closed() if self.closed else _died("no worker process is running"))
        return None, future

    def pick(self) -> WorkerProcess | None:
        """The least busy live worker (a new session's), or None."""
        return self._pick()

    def _replace(self, dead: WorkerProcess) -> None:
        """On the dead worker's reader thread: a new process in its place, unless the pool is closing."""
        with self._lock:
            if self.closed or dead not in self._workers:
                return
            try:
                fresh = WorkerProcess(self, dead.index)
            except OSError as exc:  # pragma: no cover - out of processes: the pool runs on with fewer
                log.error("ptc could not start a worker process in place of a dead one: %s", exc)
                self._workers.remove(dead)
                return
            self._workers[self._workers.index(dead)] = fresh

    def close(self) -> None:
        """End every worker and wait for it (their executions end as closed). Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            workers = list(self._workers)
        for worker in workers:
            worker.stop()
        for worker in workers:
            if worker.reader is not threading.current_thread():
                worker.reader.join(_STOP_WAIT + 1.0)
        self.sender.shutdown(wait=False)


@dataclass
class _Remote:
    """A one-shot execution run in a worker (Runner.run's Cell): its journal is recorded there."""

    pool: WorkerPool
    runner: Runner
    code: str
    session_id: str | None = None
    job: Job | None = None
    suspendable: bool = True
    resuming: Journal | None = None

    def tape(self, budget: HostBudget) -> Recorder:
        return Recorder.off()  # the worker's tape records the journal; the parent's sees nothing to record

    def start(self, code: str, state: ExecutionState, limits: Limits) -> Future[Outcome]:
        self.job, future = self.pool.start(code, state, limits)
        return future

    def finish(self, result: ExecutionResult, limits: Limits) -> None:
        job = self.job
        if job is not None and job.cell is not None:
            fuel = limits.fuel is not None
            result.journal = self.runner.journal([job.cell], session_id=None, warm=job.warm, cells_run=1, fuel=fuel)

    def suspended(self, result: ExecutionResult) -> None:
        pass  # its journal says it all: executor.resume goes on with it (in this process)
