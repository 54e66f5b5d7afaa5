"""The host router: authorize, validate, apply policies, run, record.

`Router` belongs to one executor (its catalog, handlers, policies, breaker and
idempotency state). `CallSession` belongs to one execution: the guest's
worker thread calls `dispatch` for each frame, and the call runs as a
coroutine on the executor's event loop (async handlers there, sync ones in a
bounded thread pool), so calls under `asyncio.gather` run concurrently.
A tool whose Policy says `inline` runs on the sandbox thread instead, to the
end, inside `dispatch`: two thread hops (~60 µs on a 2-vCPU VM, where a woken
thread waits for an IPI) are most of a trivial call's cost.
Every outcome is an encoded reply frame and a record; nothing raises back
into the sandbox thread. A failure's message in both is a fixed, whitelisted
text (`_tool_failure`); what the tool actually raised goes to events and the
`ptc` logger only, since it may hold the host's secrets.

What a call's size decides happens on the sandbox thread, under the
execution's deadline and budget, never on the event loop (which `ptc serve`
shares with every client): the frame is decoded there (ptc.hostcalls.wasm.state)
and validated there (`Router.prepare`); the loop runs only the handler and
encodes its reply, whose size the tool decides, not the program.

The router's state (breakers, the idempotency cache, the sync threads) is
shared by every execution of the executor, so what a program controls
cannot change what the others get from it: only honest backend failures
count against a breaker (`_counts`), the half-open trial is released
whatever happens to its call, a joiner of an idempotent call takes over when
its runner goes away, and each execution has a fair share of the sync
threads (`sync_threads`). An inline call is bounded by its execution's
deadline, which nothing else enforces while the sandbox thread is in it.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import math
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from pydantic import BaseModel

from ptc.catalog import Binding, ToolCatalog, ToolDefinition
from ptc.errors import BackendUnavailable, CircuitOpenError, PtcError, RetryableError, ToolError, ToolTimeoutError
from ptc.events import EventBus, ToolEvent
from ptc.hostcalls.calls.breaker import CircuitBreaker, CircuitState
from ptc.hostcalls.calls.idempotency import CallAbandoned, IdempotencyCache, call_digest
from ptc.hostcalls.calls.sync_threads import SyncLane, SyncThreads
from ptc.hostcalls.calls.validation import ParameterError, Validator
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import OVER_BUDGET_MESSAGE, HostBudget
from ptc.hostcalls.wasm.state import Cancel, Reply
from ptc.policy import Policy
from ptc.records import Caller, CallError, ToolCallRecord

# The longest failure message a program gets; a tool's error text can be as long as it likes.
MAX_ERROR_MESSAGE = 4000
_OFF_LOOP_BYTES = 256 * 1024  # results at least this long are encoded off the event loop
_CANCELLED_REPLY = codec.encode({"error": {"type": "ToolError", "message": "the call was cancelled"}})
_INTERNAL_REPLY = codec.encode({"error": {"type": "ToolError", "message": "the tool call failed inside ptc"}})
_DEADLINE_MESSAGE = "the execution's deadline passed during this call"
Request: TypeAlias = "dict[str, Any] | codec.FrameError"
_thread = threading.local()


def _inline_loop() -> asyncio.AbstractEventLoop:
    """The sandbox thread's own event loop, for inline calls (one per worker thread, kept)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_thread, "loop", None)
    if loop is None:
        loop = _thread.loop = asyncio.new_event_loop()
    return loop


class _Failure(PtcError):
    """A failed call, as the program will see it: a ToolError subclass name and a message.

    `detail` is what the operator sees (events, the `ptc` logger): for a
    tool's own exception, its type and full text, which may hold secrets
    that must never reach the program or the call record.
    """

    def __init__(self, type_: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.detail = detail if detail is not None else message


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _clipped(text: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """Every failure message on its way to the program (and the record) is cut here, once."""
    return text if len(text) <= limit else text[:limit] + "... (truncated)"


@dataclass(frozen=True)
class Prepared:
    """A call that passed authorization and validation (on the sandbox thread)."""

    tool: ToolDefinition
    binding: Binding
    params: dict[str, Any]


def _type_name(exc: BaseException) -> str:
    """The exception's class name, if it is an ordinary one (a class name made of data is not shown)."""
    name = type(exc).__name__
    return name if name.isidentifier() and name.isascii() and len(name) <= 64 else "Exception"


def _tool_failure(tool: str, exc: BaseException) -> _Failure:
    """What a program may see of a tool's exception: only whitelisted, fixed texts.

    * ptc's ToolError family, raised on purpose (a handler's `ToolError("...")`,
      an MCP tool's isError reply): its own class and text, capped;
    * an unavailable backend: a fixed sentence naming it ("MCP server 'crm'
      is unavailable");
    * anything else (ValueError, OSError, CalledProcessError, a client
      library's connection error, RetryableError, SystemExit, ...): the fixed
      "<tool> failed (<type>)": their text may hold paths, commands,
      passwords or connection strings.

    The full text always goes to the failure's `detail` (events and logs).
    """
    detail = f"{type(exc).__name__}: {_text(exc)}"
    if isinstance(exc, ToolError):
        return _Failure(_type_name(exc), _text(exc), detail)  # cut to MAX_ERROR_MESSAGE when answered
    if isinstance(exc, BackendUnavailable):
        return _Failure("ToolError", exc.public, detail)
    return _Failure("ToolError", f"{tool} failed ({_type_name(exc)})", detail)


def _encode_result(value: Any) -> str:
    codec.check_plain(value, tuples=True)
    return codec.encode({"ok": value})


def _plain_result(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _counts(exc: BaseException) -> bool:
    """Whether a failed attempt counts against its backend's breaker: only an honest backend failure does.

    Counted: a timeout, a ConnectionError (an MCP server that died or cannot
    be reached), a RetryableError, and any other Exception the handler did
    not mean (a crash of the tool or its client library). Not counted: the
    ToolError family, which a tool raises on purpose ("no such customer"; an
    MCP `isError` reply arrives as one), and what is no failure of the
    backend at all (cancellation, an abandoned call, SystemExit from a
    command-line parser). Calls rejected before the backend is reached
    (validation, authorization, idempotency) never get here.
    """
    if isinstance(exc, (TimeoutError, ConnectionError, RetryableError)):
        return True
    return isinstance(exc, Exception) and not isinstance(exc, ToolError)


class _DeadlinePassed(PtcError):
    """The execution's deadline passed while an inline call was still running."""


async def _by_deadline(awaitable: Coroutine[Any, Any, Any], deadline: float) -> Any:
    """Await on this thread's loop, but not past `deadline` (a time.monotonic() value): then _DeadlinePassed."""
    if deadline == math.inf:
        return await awaitable
    bound = asyncio.timeout(deadline - time.monotonic())
    try:
        async with bound:
            return await awaitable
    except TimeoutError:
        if bound.expired():
            raise _DeadlinePassed(_DEADLINE_MESSAGE) from None
        raise


def _no_deadline() -> float:
    return math.inf


class Router:
    def __init__(
        self,
        catalog: ToolCatalog,
        *,
        handlers: Mapping[str, Binding] | None = None,
        policy: Policy | None = None,
        policies: Mapping[str, Policy] | None = None,
        events: EventBus | None = None,
        tenant_id: str = "default",
        idempotency: IdempotencyCache | None = None,
    ) -> None:
        self.catalog = catalog
        self.handlers = dict(handlers or {})
        self.policy = policy or Policy()
        self.policies = dict(policies or {})
        self.events = events or EventBus()
        self.tenant_id = tenant_id
        self._breakers: dict[str, CircuitBreaker] = {}
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self._validators: dict[str, tuple[int, Validator]] = {}
        self._policies: dict[str, tuple[int, Policy]] = {}
        self.sync_threads = SyncThreads()

    def session(
        self,
        execution_id: str,
        loop: asyncio.AbstractEventLoop,
        max_frame_bytes: int,
        budget: HostBudget | None = None,
        *,
        deadline: Callable[[], float] = _no_deadline,
    ) -> CallSession:
        """`deadline()`: the execution's deadline (a time.monotonic() value), which bounds its inline calls."""
        return CallSession(self, execution_id, loop, max_frame_bytes, budget or HostBudget(1 << 62), deadline=deadline)

    def close(self) -> None:
        """Stop the sync tools' threads. The executor stays usable (a closed one still
        runs programs), so a fresh pool replaces them: its threads start only when used."""
        self.sync_threads.shutdown()
        self.sync_threads = SyncThreads()

    # -- lookups --------------------------------------------------------------
    def binding(self, name: str) -> Binding | None:
        return self.handlers.get(name) or self.catalog.binding(name)

    def breaker(self, backend: str) -> CircuitBreaker:
        breaker = self._breakers.get(backend)
        if breaker is None:
            # labelled by tenant: a breaker never trips for another tenant's failures
            breaker = self._breakers.setdefault(
                backend, CircuitBreaker(f"{self.tenant_id}:{backend}", on_change=self._circuit_changed)
            )
        return breaker

    def _circuit_changed(self, backend: str, state: CircuitState) -> None:
        kind = {"open": "circuit_open", "half_open": "circuit_half_open", "closed": "circuit_closed"}[state]
        self.events.emit(ToolEvent(kind=kind, tool=backend, backend=backend, tenant_id=self.tenant_id))  # type: ignore[arg-type]

    def _validator(self, tool: ToolDefinition, binding: Binding) -> Validator:
        cached = self._validators.get(tool.name)
        if cached is None or cached[0] != self.catalog.revision or cached[1].kwargs != binding.kwargs:
            cached = (self.catalog.revision, Validator(tool, binding))
            self._validators[tool.name] = cached
        return cached[1]

    def policy_for(self, tool: ToolDefinition) -> Policy:
        cached = self._policies.get(tool.name)
        if cached is None or cached[0] != self.catalog.revision:
            cached = (self.catalog.revision, self.policy.merged(tool.policy).merged(self.policies.get(tool.name)))
            self._policies[tool.name] = cached
        return cached[1]

    # -- one call ---------------------------------------------------------------
    async def serve(
        self, record: ToolCallRecord, request: Request, session: CallSession, prepared: Prepared | None = None
    ) -> str:
        """Run the call and return its reply frame, charged to the execution's budget
        (prepared: already validated on the sandbox thread)."""
        started = time.perf_counter()
        try:
            if prepared is None:
                prepared = self.prepare(record, request)
            value = _plain_result(await self._call(record, request, session, prepared))
            reply = await self._encoded(record, value, session)  # charged to the budget from here
            self._emit("complete", record, session, duration=time.perf_counter() - started)
        except _Failure as failure:
            message = _clipped(failure.message)
            record.error = CallError(type=failure.type, message=message)
            reply = codec.encode({"error": {"type": failure.type, "message": message}})
            session.budget.force(len(reply))
            self._emit("failure", record, session, error=f"{failure.type}: {failure.detail}")
        except asyncio.CancelledError:
            record.error = CallError(type="CancelledError", message="the program stopped waiting for this call")
            raise
        finally:
            record.completed_at = time.time()
            record.duration = time.perf_counter() - started
        record.result_size = len(reply)
        return reply

    async def _encoded(self, record: ToolCallRecord, value: Any, session: CallSession) -> str:
        """The reply frame of a result, charged to the execution's budget, or _Failure.

        What cannot fit is refused before it is encoded (an encoding is two
        more copies): the result's length is a lower bound of its encoded
        size, and is held from the start, so concurrent replies cannot all
        pass the check before any is charged. A large result is encoded on a
        worker thread: on the caller's loop, a burst of 8 MiB replies held it
        for ~10 ms each.
        """
        least = len(value) if isinstance(value, (str, bytes, list, dict, tuple)) else 0  # >= 1 byte each
        if least > session.max_frame_bytes:
            raise _Failure(
                "ToolError",
                f"{record.tool} returned at least {least} bytes, more than the {session.max_frame_bytes}-byte limit",
            )
        if not session.budget.charge(least):
            raise _Failure("ToolError", OVER_BUDGET_MESSAGE)
        try:
            try:
                if least >= _OFF_LOOP_BYTES and asyncio._get_running_loop() is session.loop:
                    reply = await asyncio.to_thread(_encode_result, value)
                else:
                    reply = _encode_result(value)
            except (TypeError, ValueError, OverflowError) as exc:
                raise _Failure("ToolError", f"{record.tool} returned a value that is not plain data ({exc})") from None
            if len(reply) > session.max_frame_bytes:
                raise _Failure(
                    "ToolError",
                    f"{record.tool} returned {len(reply)} bytes, more than the {session.max_frame_bytes}-byte limit",
                )
            if not session.budget.charge(len(reply) - least):  # held from here until the guest has it
                raise _Failure("ToolError", OVER_BUDGET_MESSAGE)
        except BaseException:
            session.budget.release(least)
            raise
        return reply

    def prepare(self, record: ToolCallRecord, request: Request) -> Prepared:
        """Authorize and validate a call, or raise _Failure; the work grows with the frame,
        so it runs on the execution's own thread."""
        if isinstance(request, codec.FrameError):
            raise _Failure("ToolError", f"rejected call: {request}")
        tool = self.catalog.get(record.tool)
        if tool is None:  # authorization: only this executor's catalog, whatever the frame says
            raise _Failure("ToolNotFoundError", f"no tool named {_clipped(record.tool, 100)!r} in this catalog")
        binding = self.binding(tool.name)
        if binding is None:
            raise _Failure("ToolError", f"tool {tool.name!r} has no handler bound")
        try:
            validator = self._validator(tool, binding)
        except Exception as exc:  # a schema pydantic cannot build a model from: the tool's fault, said plainly
            message = f"{tool.name} cannot be called: ptc could not build a validator from its schema"
            raise _Failure("ToolError", message, f"{message} ({type(exc).__name__}: {_text(exc)})") from None
        try:
            params = validator(request.get("args", {}))
        except ParameterError as exc:
            raise _Failure("ToolValidationError", str(exc)) from None
        return Prepared(tool, binding, params)

    async def _call(self, record: ToolCallRecord, request: Request, session: CallSession, prepared: Prepared) -> Any:
        assert isinstance(request, dict)  # prepare() refused anything else
        tool, binding, params = prepared.tool, prepared.binding, prepared.params
        policy = self.policy_for(tool)
        key = request.get("key")
        if key is None:
            return await self._attempts(record, tool, binding, params, policy, session)
        if not isinstance(key, str):
            raise _Failure("ToolValidationError", "idempotency_key must be a string")
        digest = call_digest(key, params)
        if session.idempotency_keys.setdefault((tool.name, key), digest) != digest:
            # only within one execution: across executions the same key with other parameters is another call
            raise _Failure("ToolValidationError", f"idempotency key {key!r} was used with different parameters")
        cache_key = (self.tenant_id, tool.name, digest)
        while True:
            first, shared = self.idempotency.claim(cache_key, policy.idempotency_ttl)
            if first:
                break
            record.cache_hit = True
            self._emit("cache_hit", record, session)
            try:
                payload = await asyncio.wrap_future(shared)
            except CallAbandoned:  # its runner was cancelled or went away: claim the key again
                record.cache_hit = False
                continue
            except _Failure as failure:
                raise _Failure(failure.type, failure.message) from None
            return codec.decode(payload, len(payload), max_items=len(payload) + 1)  # ptc's own encoding
        try:
            value = await self._attempts(record, tool, binding, params, policy, session)
        except _Failure as failure:
            self.idempotency.fail(cache_key, shared, failure)
            raise
        except BaseException:
            self.idempotency.abandon(cache_key, shared)
            raise
        try:
            plain = _plain_result(value)
            codec.check_plain(plain, tuples=True)
            payload = codec.encode(plain)
        except (TypeError, ValueError, OverflowError):  # not plain data: serve() reports it; nothing to share
            self.idempotency.abandon(cache_key, shared)
        else:
            self.idempotency.complete(cache_key, shared, payload)
        return value

    async def _attempts(
        self,
        record: ToolCallRecord,
        tool: ToolDefinition,
        binding: Binding,
        params: dict[str, Any],
        policy: Policy,
        session: CallSession,
    ) -> Any:
        breaker = self.breaker(tool.backend_key)
        attempt = 0
        while True:
            attempt += 1
            try:
                trial = breaker.before_call(policy)
            except CircuitOpenError as exc:
                raise _Failure("CircuitOpenError", str(exc)) from None
            record.attempts = attempt
            self._emit("start", record, session)
            transient = False
            try:
                value = await self._judged(breaker, trial, binding, params, policy, session)
            except TimeoutError:
                failure = _Failure("ToolTimeoutError", f"{tool.name} did not answer within {policy.timeout:g} s")
                transient = True
            except (ConnectionError, RetryableError) as exc:
                failure = _tool_failure(tool.name, exc)
                transient = True
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - the tool's own failure, even SystemExit
                failure = _tool_failure(tool.name, exc)
            else:
                return value
            if not transient or attempt > policy.max_retries:
                raise failure
            self._emit("retry", record, session, error=f"{failure.type}: {failure.detail}")
            await asyncio.sleep(policy.delay(attempt))

    async def _judged(
        self,
        breaker: CircuitBreaker,
        trial: int,
        binding: Binding,
        params: dict[str, Any],
        policy: Policy,
        session: CallSession,
    ) -> Any:
        """One attempt, and the breaker's verdict on it: only an honest backend failure counts (`_counts`).

        The half-open trial is released in the `finally` whatever happens to
        the call (cancelled, abandoned, a failure that does not count), so
        no program can keep every execution off the backend by walking away.
        """
        try:
            value = await self._invoke(binding, params, policy, session)
        except BaseException as exc:
            if _counts(exc):
                breaker.record(False, policy, trial)
            raise
        else:
            breaker.record(True, policy, trial)
            return value
        finally:
            breaker.release(trial)

    async def _invoke(self, binding: Binding, params: dict[str, Any], policy: Policy, session: CallSession) -> Any:
        handler = binding.handler
        is_async = inspect.iscoroutinefunction(handler)
        if is_async or policy.inline:
            pending: Any = handler(**params) if binding.kwargs else handler(params)
            if not is_async:  # inline: a sync handler ran here, to the end; no timeout can stop it
                if not inspect.isawaitable(pending):
                    return pending
                if asyncio._get_running_loop() is None:  # run by hand: finish it on this thread's loop
                    bounded = _by_deadline(asyncio.wait_for(pending, policy.timeout), session.deadline())
                    try:
                        return _inline_loop().run_until_complete(bounded)
                    except _DeadlinePassed as exc:
                        raise ToolTimeoutError(str(exc)) from None
        else:
            call = functools.partial(handler, **params) if binding.kwargs else functools.partial(handler, params)
            # waits for this execution's share of the sync threads; the timeout below starts once it runs
            pending = await self.sync_threads.run(session.sync_lane, call)
        async with asyncio.timeout(policy.timeout):
            value = await pending
            if inspect.isawaitable(value):
                value = await value
        return value

    def _emit(self, kind: str, record: ToolCallRecord, session: CallSession, **extra: Any) -> None:
        if not self.events.listening(kind):
            return
        self.events.emit(
            ToolEvent(
                kind=kind,  # type: ignore[arg-type]
                tool=record.tool,
                execution_id=session.execution_id,
                tenant_id=self.tenant_id,
                attempt=record.attempts,
                **extra,
            )
        )


class CallSession:
    """One execution's view of the router: its records, in call order."""

    def __init__(
        self,
        router: Router,
        execution_id: str,
        loop: asyncio.AbstractEventLoop,
        max_frame_bytes: int,
        budget: HostBudget,
        *,
        deadline: Callable[[], float] = _no_deadline,
    ) -> None:
        self.router = router
        self.execution_id = execution_id
        self.loop = loop
        self.max_frame_bytes = max_frame_bytes
        self.budget = budget
        self.deadline = deadline
        self.records: list[ToolCallRecord] = []
        self.idempotency_keys: dict[tuple[str, str], str] = {}  # (tool, key) -> digest of its parameters
        self.sync_lane = SyncLane()
        self._ids = itertools.count(1)
        self._calls: list[_Call] = []

    def dispatch(self, request: Request, reply: Reply) -> Cancel | str:
        """Called on the sandbox thread: record the call and start it on the event loop,
        or run it here and return its reply if the tool is inline."""
        name = request.get("tool") if isinstance(request, dict) else None
        tool = self.router.catalog.get(name) if isinstance(name, str) else None
        record = ToolCallRecord(
            tool=name if isinstance(name, str) else "<invalid frame>",
            type=tool.type if tool else None,
            domain=tool.domain if tool else None,
            parameters=request.get("args") if isinstance(request, dict) else None,
            timestamp=time.time(),
            caller=Caller(
                execution_id=self.execution_id,
                tenant_id=self.router.tenant_id,
                tool_id=f"call_{self.execution_id[:12]}_{next(self._ids)}",
            ),
        )
        self.records.append(record)
        if tool is not None:
            policy = self.router.policy_for(tool)
            if policy.inline:
                return self._serve_inline(record, request, tool, policy)
        try:
            prepared = self.router.prepare(record, request)
        except _Failure as failure:
            return self._refused(record, failure)
        call = _Call(self, record, request, reply, prepared)
        self._calls.append(call)
        self.loop.call_soon_threadsafe(call.start)
        return call.cancel

    def _refused(self, record: ToolCallRecord, failure: _Failure) -> str:
        """A call refused before it started: answered at once, on this thread."""
        message = _clipped(failure.message)
        record.error = CallError(type=failure.type, message=message)
        record.completed_at = time.time()
        record.duration = 0.0
        self.router._emit("failure", record, self, error=f"{failure.type}: {failure.detail}")
        reply = codec.encode({"error": {"type": failure.type, "message": message}})
        record.result_size = len(reply)
        return reply

    def _serve_inline(self, record: ToolCallRecord, request: Request, tool: ToolDefinition, policy: Policy) -> str:
        """Run an inline call on this (the sandbox's) thread and return its reply frame.

        A sync handler with no retries and no idempotency key never awaits
        anything, so its coroutine is run by hand (no event loop: ~20 µs less);
        anything else runs on this thread's own loop.
        """
        serving = self.router.serve(record, request, self)
        binding = self.router.binding(tool.name)
        by_hand = (
            policy.max_retries == 0
            and isinstance(request, dict)
            and request.get("key") is None
            and not (binding is not None and inspect.iscoroutinefunction(binding.handler))
        )
        if not by_hand:
            try:
                reply = _inline_loop().run_until_complete(_by_deadline(serving, self.deadline()))
            except _DeadlinePassed as exc:  # serve() was cancelled (nothing charged): the record says so, and why
                record.error = CallError(type="ToolTimeoutError", message=str(exc))
                reply = codec.encode({"error": {"type": "ToolTimeoutError", "message": str(exc)}})
                record.result_size = len(reply)
                return reply
        else:
            try:
                serving.send(None)
            except StopIteration as done:
                reply = done.value
            else:  # pragma: no cover - serve() awaited nothing by hand above
                serving.close()
                return _INTERNAL_REPLY
        self.budget.release(len(reply))  # it goes straight back to the guest
        return reply  # type: ignore[no-any-return]

    def cancel_all(self) -> None:
        """The execution is gone: stop its calls still in flight (its sync calls still running become orphans)."""
        for call in list(self._calls):
            if not call.done:
                call.cancel()
        self.router.sync_threads.retire(self.sync_lane)


class _Call:
    """One call in flight on the event loop (lighter than run_coroutine_threadsafe)."""

    __slots__ = ("session", "record", "request", "reply", "prepared", "task", "cancelled", "done")

    def __init__(
        self, session: CallSession, record: ToolCallRecord, request: Request, reply: Reply, prepared: Prepared
    ) -> None:
        self.session = session
        self.record = record
        self.request: Request | None = request
        self.reply = reply
        self.prepared: Prepared | None = prepared
        self.task: asyncio.Task[str] | None = None
        self.cancelled = False
        self.done = False

    def start(self) -> None:
        if self.cancelled or self.request is None or self.prepared is None:
            return
        serving = self.session.router.serve(self.record, self.request, self.session, self.prepared)
        self.request = self.prepared = None  # the coroutine has them; nothing here outlives the call
        self.task = self.session.loop.create_task(serving)
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[str]) -> None:
        # The task (and the reply it holds as its result) is dropped here: the
        # reply's bytes are the guest's once delivered, not the host's.
        self.task = None
        self.done = True
        if task.cancelled():
            reply = _CANCELLED_REPLY
        elif task.exception() is not None:  # serve() answers every failure itself; this is a bug guard
            reply = _INTERNAL_REPLY
        else:
            self.reply(task.result())  # serve() charged it
            return
        self.session.budget.force(len(reply))
        self.reply(reply)

    def cancel(self) -> None:
        """From the sandbox thread: the program stopped waiting for this call."""
        self.cancelled = True
        self.session.loop.call_soon_threadsafe(lambda: self.task is not None and self.task.cancel())
