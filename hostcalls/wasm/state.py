"""What the host knows about one running execution: the store's data.

Every host function finds its execution here (from the store, never from a
frame), so a guest cannot name a tenant, a catalog or a limit. The methods are
called on the execution's worker thread; tool replies arrive from other
threads through a queue.

Everything the host keeps for the execution is charged to its HostBudget
first (see ptc.hostcalls.wasm.budget): a decoded call (its record keeps the
parameters to the end), a reply from when it is queued until the guest has
it, the output, the report. Host work done for the guest (decoding a frame)
happens here, on the execution's own thread, under its deadline.

Everything nondeterministic the guest is given (random bytes, clock
readings, tool replies and when they come back, stub sources) goes through
the execution's tape (ptc.hostcalls.wasm.tape): recorded for its journal, or,
in a replay, answered from one, in which case no call is dispatched, no
sleep or wait blocks, and each recorded reply is given to the guest under
the same frame and budget checks as a tool's.
"""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ptc.errors import PtcError
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import RECORD_COST, REPORT_RESERVE, HostBudget, Oversize, decoded_cost
from ptc.hostcalls.wasm.output import Output
from ptc.hostcalls.wasm.tape import Recorder, Tape
from ptc.limits import Limits
from ptc.results import ErrorKind, ExecutionErrorInfo

# dispatch(request or the reason it was rejected, reply) -> the reply frame if the
# call finished at once (on this thread), else a cancel. `reply` is called once,
# from any thread, with the encoded reply frame, which its producer has already
# charged to the execution's budget (the host holds it from when it is made);
# it is released when the guest takes it or its call is dropped. `cancel` may
# be called from the sandbox thread when the program stops waiting.
Request = dict[str, Any] | codec.FrameError  # a decoded call frame, or why it was refused
Reply = Callable[[str], None]
Cancel = Callable[[], None]
Dispatch = Callable[[Request, Reply], Cancel | str]
ModuleSource = Callable[[str], str | None]
MAX_RANDOM_BYTES = 1 << 20  # one request for random bytes (wasi-libc asks for at most 256 at a time)


class Abort(PtcError):
    """Ends the execution: raised inside a host function, it becomes a trap."""

    def __init__(self, kind: ErrorKind, type_: str, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.type = type_
        self.message = message


class Replier:
    """The `reply` a dispatched call is given: its reply, and what its approval step tells the state.

    A call waiting for a decision does not hold the program's deadline (only
    running time counts): `asking` / `decided` bracket the wait. A deferred
    call (`defer`: no one will decide now) suspends the execution once the
    program cannot go on without it.
    """

    __slots__ = ("state", "call_id", "tool_id")

    def __init__(self, state: ExecutionState, call_id: int, tool_id: str | None = None) -> None:
        self.state = state
        self.call_id = call_id
        self.tool_id = tool_id  # a resumed call keeps the record id it had

    def __call__(self, reply: str) -> None:
        self.state._deliver(self.call_id, reply)

    def asking(self) -> None:
        self.state._approval(self.call_id, "asking")

    def decided(self) -> None:
        self.state._approval(self.call_id, None)

    def defer(self, tool_id: str) -> None:
        self.state._approval(self.call_id, "deferred", tool_id)


SUSPENDED = "SuspendedForApproval"


def _nothing() -> None:
    """The cancel of a call answered already."""


def _cancelled() -> Abort:
    return Abort("cancelled", "CancelledError", "the execution was cancelled")


def _no_tools(request: Request, reply: Reply) -> Cancel | str:
    if isinstance(request, codec.FrameError):
        return codec.error_frame("ToolError", f"rejected frame: {request}")
    return codec.error_frame("ToolNotFoundError", f"no tool named {str(request.get('tool'))[:100]!r}")


@dataclass
class ExecutionState:
    execution_id: str
    timeout: float
    max_output_bytes: int
    max_tool_calls: int
    max_frame_bytes: int
    max_frame_items: int = codec.DEFAULT_MAX_ITEMS
    budget: HostBudget = field(default_factory=lambda: HostBudget(1 << 62))
    dispatch: Dispatch = _no_tools
    module_source: ModuleSource = lambda name: None  # noqa: E731
    deadline: float = float("inf")
    tool_calls: int = 0
    clock_offset: int = 0
    started: bool = False  # the program compiled and its code is running
    abort: Abort | None = None
    report: str | None = None  # the guest's last report frame (charged to the budget)
    report_refused: int = 0  # the size of a report the host would not take
    closed: bool = False  # the execution is over: late replies are dropped
    stop: threading.Event = field(default_factory=threading.Event)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _inflight: dict[int, Cancel] = field(default_factory=dict)
    _replies: queue.SimpleQueue[tuple[int, str] | None] = field(default_factory=queue.SimpleQueue)
    _early: list[tuple[int, str]] = field(default_factory=list)
    tape: Tape = field(default_factory=Recorder.off)
    output: Output = field(init=False)
    suspended: bool = False  # it stopped waiting for deferred approvals (not an error)
    deferred_ids: dict[int, str] = field(default_factory=dict)  # a deferred call's id -> its record's id
    _approvals: dict[int, str] = field(default_factory=dict)  # call id -> "asking" or "deferred"
    _approvals_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.output = Output(self.max_output_bytes, self.budget)

    @classmethod
    def under(cls, execution_id: str, limits: Limits, **parts: Any) -> ExecutionState:
        """A state with the limits' timeout, output, call and frame bounds, and a budget of its host bytes."""
        parts.setdefault("budget", HostBudget(limits.host_bytes))
        return cls(
            execution_id=execution_id,
            timeout=limits.timeout,
            max_output_bytes=limits.max_output_bytes,
            max_tool_calls=limits.max_tool_calls,
            max_frame_bytes=limits.max_frame_bytes,
            max_frame_items=limits.max_frame_items,
            **parts,
        )

    def start(self, clock_offset: int | None = None) -> None:
        """The clock starts: the deadline from now, and the guest's monotonic clock
        (a session passes its own offset, so its clock runs on from cell to cell)."""
        self.deadline = time.monotonic() + self.timeout
        # The guest's monotonic clock starts at a random point: it must not show host uptime.
        self.clock_offset = random_clock_offset() if clock_offset is None else clock_offset

    def mark_started(self) -> None:
        self.started = True

    # -- what the guest reads: clocks and randomness, through the tape -------
    def now(self) -> int:
        return self.tape.clock(time.monotonic_ns() - self.clock_offset)

    def wall_now(self) -> tuple[int, int]:
        """wasi:clocks/wall-clock `now`: (seconds, nanoseconds) since the epoch."""
        return divmod(self.tape.wall(time.time_ns()), 1_000_000_000)

    def random_bytes(self, count: int) -> bytes:
        """wasi:random/random `get-random-bytes`, drawn from the tape's seed."""
        if count > MAX_RANDOM_BYTES:
            message = f"the program asked for more than {MAX_RANDOM_BYTES} random bytes at once"
            raise Abort("runtime_error", "SandboxError", message)
        return self.tape.random(count)

    def random_u64(self) -> int:
        return int.from_bytes(self.tape.random(8), "little")

    def load_module(self, name: str | Oversize) -> str | None:
        text = self.module_source(name) if isinstance(name, str) else None
        self.tape.module(None if text is None else codec.module_source(text))
        return text

    def cancel(self) -> None:
        """Stop the execution promptly (from any thread): a wait or sleep in the host
        returns at once, and running wasm traps at its next epoch tick (ptc.interrupts)."""
        if self.abort is None:
            self.abort = _cancelled()
        self.stop.set()
        self._replies.put(None)

    def timed_out(self) -> Abort:
        return Abort("timeout", "TimeoutError", f"execution exceeded its {self.timeout:g} s timeout")

    # -- deadline ---------------------------------------------------------
    def _remaining(self) -> float:
        if self.stop.is_set():
            raise _cancelled()
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.timed_out()
        return remaining

    # -- tool calls -------------------------------------------------------
    def frame_cap(self) -> int:
        """The longest frame the host will copy out of the guest now."""
        return min(self.max_frame_bytes, self.budget.room())

    def report_cap(self) -> int:
        """The longest report the host will take now: it always has REPORT_RESERVE of room."""
        return min(self.max_frame_bytes, max(self.budget.room(), REPORT_RESERVE))

    def submit(self, frame: str | Oversize) -> int | str:
        """The call's id, or its reply frame if it finished at once (the WIT `submitted`
        variant: wasmtime-py picks the case by the Python type)."""
        self._remaining()  # no host work for a program past its deadline
        if self.tool_calls >= self.max_tool_calls:
            raise Abort("tool_call_limit", "ToolCallLimitError", f"more than {self.max_tool_calls} tool calls")
        self.tool_calls += 1
        call_id = next(self._ids)
        request = self._request(frame)
        tape = self.tape
        if tape.replays("calls"):  # answered from the journal, once it is the call recorded: nothing is dispatched
            recorded = tape.call(frame, request)
            if recorded.at_once:
                assert recorded.reply is not None  # ptc.journal.load checked
                return self._given(recorded.reply)
            return call_id
        dispatched = self.dispatch(request, Replier(self, call_id))
        if isinstance(dispatched, str):
            tape.submitted(frame, request, dispatched)
            self._remaining()  # an inline call may have run past the deadline
            return dispatched
        tape.submitted(frame, request, None)
        self._inflight[call_id] = dispatched
        return call_id

    def _given(self, reply: str) -> str:
        """A recorded reply, as the guest may take it: within the frame limit and the host budget."""
        if len(reply) > min(self.max_frame_bytes, self.budget.room()):
            return codec.error_frame("ToolError", "the journal's reply is larger than this execution may take")
        return reply

    def _request(self, frame: str | Oversize) -> Request:
        """The decoded call, charged to the budget (its record keeps it), or why it was refused."""
        self.budget.force(RECORD_COST)
        if isinstance(frame, Oversize):
            return codec.FrameError(self._too_large(frame.size))
        max_items = self.budget.items_for(len(frame), self.max_frame_items)
        try:
            request, items = codec.decode_counted(
                frame, self.max_frame_bytes, max_items=max_items, deadline=self.deadline
            )
        except codec.FrameTimeout:
            raise self.timed_out() from None
        except codec.FrameTooLarge as exc:
            return codec.FrameError(self._over_budget()) if max_items < self.max_frame_items else exc
        except codec.FrameError as exc:
            return exc
        if not self.budget.charge(decoded_cost(len(frame), items)):
            return codec.FrameError(self._over_budget())
        if not isinstance(request, dict) or not isinstance(request.get("tool", request.get("op")), str):
            return codec.FrameError("a call frame must be a map with a string 'tool' (or 'op')")
        return request

    def _too_large(self, size: int) -> str:
        if size > self.max_frame_bytes:
            return f"frame of {size} bytes exceeds the {self.max_frame_bytes}-byte limit"
        return self._over_budget()

    def _over_budget(self) -> str:
        return (
            f"the call needs more host memory than this execution has left of its "
            f"{self.budget.limit}-byte budget (Limits.max_host_bytes)"
        )

    def _deliver(self, call_id: int, reply: str) -> None:
        """From any thread: a finished call's reply (already charged); dropped once the execution is over."""
        if self.closed:
            self.budget.release(len(reply))
            return
        self._replies.put((call_id, reply))

    def close(self) -> None:
        """The execution is over (its result is built): let go of what the host still holds for it.

        Replies still queued are dropped, and so is the link to the router
        (dispatch), which closed a cycle (state -> session -> call -> state)
        that only the cyclic GC would have freed, replies and all.
        """
        self.closed = True
        while True:
            try:
                item = self._replies.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.budget.release(len(item[1]))
        self._early.clear()
        self._inflight.clear()
        self.report = None
        self.dispatch = _no_tools

    def go_live(self, waiting: list[tuple[int, object, str | None]]) -> None:
        """A resumed execution reached where it was suspended: dispatch the calls it waits on, live.

        A call waiting for a decision is dispatched again under its record id
        (its approval step applies the decision given to resume); any other
        call with no reply in the journal gets a ToolError, never a second run.
        """
        for call_id, request, tool_id in waiting:
            if tool_id is not None and isinstance(request, dict):
                dispatched = self.dispatch(request, Replier(self, call_id, tool_id))
            else:
                dispatched = codec.error_frame("ToolError", "the call was in flight when the execution suspended")
            if isinstance(dispatched, str):
                self.budget.force(len(dispatched))
                self._inflight[call_id] = _nothing
                self._replies.put((call_id, dispatched))
            else:
                self._inflight[call_id] = dispatched

    def _approval(self, call_id: int, how: str | None, tool_id: str | None = None) -> None:
        """From the loop: a call's approval is being asked, decided (None) or deferred; wakes a blocked wait."""
        with self._approvals_lock:
            if how is None:
                self._approvals.pop(call_id, None)
            else:
                self._approvals[call_id] = how
            if tool_id is not None:
                self.deferred_ids[call_id] = tool_id
        self._replies.put(None)

    def _only_approvals(self) -> bool:
        """The program waits on calls that all wait for a decision (True); raises the suspension if all deferred."""
        inflight = self._inflight
        if not self._approvals or not inflight or not self._replies.empty():  # the common case: no lock taken
            return False
        if self._early:  # replies a sync call set aside, not given yet: a journal could not say so
            return False
        with self._approvals_lock:
            hows = [self._approvals.get(call_id) for call_id in inflight]
        if None in hows:
            return False
        if all(how == "deferred" for how in hows):
            self.suspended = True
            raise Abort("cancelled", SUSPENDED, "the execution suspended: its calls wait for approvals")
        return True

    def cancel_call(self, call_id: int) -> None:
        """The program stopped waiting for this call: it is no longer pending (nor, deferred, to be resumed)."""
        self.tape.cancelled(call_id)
        with self._approvals_lock:
            if self.deferred_ids.pop(call_id, None) is not None:
                self._approvals.pop(call_id, None)
        cancel = self._inflight.pop(call_id, None)
        if cancel is not None:
            cancel()

    def _finished(self, block_for: float | None) -> list[tuple[int, str]]:
        """Calls finished since last asked: block up to block_for s (None: the deadline) for the first.

        While every call the program waits on waits for an approval, the
        deadline stands still (it moves on by the time blocked); when they
        are all deferred, the execution suspends.
        """
        raw: list[tuple[int, str] | None] = []
        if block_for is None or block_for > 0:
            until = None if block_for is None else time.monotonic() + block_for
            while True:
                remaining = self._remaining()
                paused = self._only_approvals()
                begun = time.monotonic()
                left = None if until is None else until - begun
                timeout = left if paused else (remaining if left is None else min(left, remaining))
                try:
                    item = self._replies.get(timeout=None if timeout is None else max(timeout, 0.0))
                except queue.Empty:
                    break
                finally:
                    if paused:
                        self.deadline += time.monotonic() - begun
                if item is not None:
                    raw.append(item)
                    break
                if until is not None and time.monotonic() >= until:
                    break
        while True:
            try:
                raw.append(self._replies.get_nowait())
            except queue.Empty:
                break
        finished = []
        for item in raw:
            if item is not None:
                self.budget.release(len(item[1]))  # to the guest now, or dropped: its call was cancelled
                if self._inflight.pop(item[0], None) is not None:
                    finished.append(item)
        self._remaining()  # raises on deadline or cancellation
        return finished

    def wait(self, timeout_ns: int) -> list[tuple[int, str]]:
        tape = self.tape
        if tape.replays("waits"):
            self._remaining()
            return [(call_id, self._given(reply)) for call_id, reply in tape.wait()]
        early, self._early = self._early, []
        items = early + self._finished(0 if early else (None if timeout_ns < 0 else timeout_ns / 1e9))
        tape.waited(items)
        return items

    def call(self, frame: str | Oversize) -> str:
        call_id = self.submit(frame)
        if isinstance(call_id, str):
            return call_id
        tape = self.tape
        if tape.replays("take", call_id):
            return self._given(tape.take(call_id))
        while True:
            for item in self._finished(None):
                if item[0] == call_id:
                    reply = item[1]
                else:
                    self._early.append(item)
            if call_id not in self._inflight:
                tape.took(call_id, reply)
                return reply

    # -- time and the report ------------------------------------------------
    def sleep(self, ns: int) -> None:
        seconds = ns / 1e9
        remaining = self._remaining()
        if self.tape.replays("sleep"):  # the clock readings after it are the journal's: no need to wait
            return
        if self.stop.wait(min(seconds, remaining)) or seconds >= remaining:
            self._remaining()

    def set_report(self, frame: str | Oversize) -> bool:
        """The guest's report (its last one wins); False if the host will not hold it."""
        if self.report is not None:
            self.budget.release(len(self.report))
            self.report = None
        if isinstance(frame, Oversize) or len(frame) > self.report_cap():
            self.report_refused = frame.size if isinstance(frame, Oversize) else len(frame)
            return False
        self.budget.force(len(frame))  # within the room, or within the reserve
        self.report = frame
        self.report_refused = 0
        return True

    def abort_error(self) -> ExecutionErrorInfo:
        """How this execution was stopped (cancelled unless told otherwise)."""
        abort = self.abort or _cancelled()
        return ExecutionErrorInfo(kind=abort.kind, type=abort.type, message=abort.message)


def random_clock_offset() -> int:
    """An offset for the guest's monotonic clock: it starts at a random point, never at host uptime."""
    return time.monotonic_ns() - secrets.randbelow(1 << 40)


@dataclass
class StoreData:
    """A store's data: the execution it currently serves.

    A spare instance is created (and warmed) before its execution exists,
    so the store holds this slot and the execution is put in it at checkout.
    """

    state: ExecutionState | None = None
