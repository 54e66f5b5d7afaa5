"""The router: one executor's tool-call pipeline, the steps in order.

    prepare (tools.py: authorize by this catalog, validate; on the sandbox thread)
      -> approve (approval.py: a decision first, if the policy requires one)
      -> once (idempotency.py: one run per key and exact parameters)
        -> attempts (attempts.py: retries with backoff, each judged by the backend's breaker)
          -> invoke (invoke.py: the handler, one way of four)
      -> encode_reply (reply.py: the reply frame, charged to the execution's budget)
    and every outcome a record (records) and events (events).

Each step owns its state: the tool table its lookups, the breakers their
counts, the cache its results, the sync threads their books. The router
holds the steps for one executor and runs one call through them; the
execution's side (its records, its calls in flight) is `CallSession`'s
(session.py), which hands the router only a `CallContext`.

Every outcome is a reply frame and a record; nothing raises back into the
sandbox thread. A failure's message in both is a fixed, whitelisted text
(failures.py); what the tool actually raised goes to events and the `ptc`
logger only, since it may hold the host's secrets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from ptc.events import EventBus, EventKind, ToolEvent, emitting
from ptc.hostcalls.calls.approval import Approvals, Waiting, approve
from ptc.hostcalls.calls.attempts import Breakers, attempts
from ptc.hostcalls.calls.failures import CallFailed, clipped
from ptc.hostcalls.calls.idempotency import IdempotencyCache, call_digest, once
from ptc.hostcalls.calls.invoke import CallContext, invoke
from ptc.hostcalls.calls.reply import encode_reply, json_data, shared_reply
from ptc.hostcalls.calls.shared_once import shared_once
from ptc.hostcalls.calls.sync_threads import SyncThreads
from ptc.hostcalls.calls.tools import Prepared, ToolTable
from ptc.hostcalls.wasm import codec
from ptc.policy import Policy
from ptc.records import CallErrorInfo, ToolCallRecord
from ptc.state import SharedState
from ptc.telemetry import ToolTrace

# Backends whose results are text by nature: a JSON object or array in it is data (Policy.parse_json_text).
_TEXT_BACKENDS = frozenset({"mcp", "a2a"})


class Router:
    def __init__(
        self,
        tools: ToolTable,
        *,
        events: EventBus | None = None,
        tenant_id: str = "default",
        idempotency: IdempotencyCache | None = None,
    ) -> None:
        self.tools = tools
        self.events = events or EventBus()
        self.tenant_id = tenant_id
        self.breakers = Breakers(tenant_id, self.events)
        self.idempotency = idempotency if idempotency is not None else IdempotencyCache()
        self.sync_threads = SyncThreads()
        self.approvals = Approvals()
        self.state: SharedState | None = None  # a shared store (ptc.state): idempotency and breakers fleet-wide

    @property
    def policy(self) -> Policy:
        """The executor-wide policy (each tool's own merged over it: `tools.get(name).policy`)."""
        return self.tools.policy

    def close(self) -> None:
        """Stop the sync tools' threads (the executor is closed for good)."""
        self.sync_threads.shutdown()

    async def serve(
        self, record: ToolCallRecord, call: Prepared, context: CallContext, waiting: Waiting | None = None
    ) -> str:
        """Run a prepared call and return its reply frame, charged to the execution's budget."""
        started = time.perf_counter()
        trace = None if context.trace is None else traced(record, call, context)
        try:
            if call.policy.requires_approval:
                try:
                    await approve(self.approvals, record, call, context, waiting)
                finally:
                    if record.approval is not None:
                        self.emit("approval", record, context, state=record.approval, text=record.approved_by)
            with emitting(lambda kind, **extra: self.emit(kind, record, context, **extra)):  # a backend's own events
                reply = await self._run(record, call, context, trace)
            self.emit("complete", record, context, duration=time.perf_counter() - started)
        except CallFailed as failure:
            reply = self.failed(record, failure, context)
            context.budget.force(len(reply))
        except asyncio.CancelledError:
            if not (context.suspended and record.caller.tool_id in context.deferred):  # resume decides it
                record.error = CallErrorInfo(type="CancelledError", message="the program stopped waiting for this call")
            if trace is not None:
                ended(trace, record)
            raise
        finally:
            record.completed_at = time.time()
            record.duration = time.perf_counter() - started
        record.result_size = len(reply)
        if trace is not None:
            ended(trace, record)
        return reply

    def failed(self, record: ToolCallRecord, failure: CallFailed, context: CallContext) -> str:
        """The reply frame of a failure, with the record and the event saying what happened."""
        message = clipped(failure.message)
        record.error = CallErrorInfo(type=failure.type, message=message)
        self.emit("failure", record, context, error=f"{failure.type}: {failure.detail}")
        return codec.error_frame(failure.type, message)

    async def _run(self, record: ToolCallRecord, call: Prepared, context: CallContext, trace: ToolTrace | None) -> str:
        tool = call.tool
        assert tool.binding is not None  # prepare() refused a tool without one
        binding, policy = tool.binding, call.policy

        def attempt_once() -> Awaitable[Any]:
            if trace is not None:
                return trace.attempt(record.attempts, invoke(binding, call.params, policy, context, self.sync_threads))
            return invoke(binding, call.params, policy, context, self.sync_threads)

        def on_attempt(attempt: int) -> None:
            record.attempts = attempt
            self.emit("start", record, context)

        def on_retry(failure: CallFailed) -> None:
            self.emit("retry", record, context, error=f"{failure.type}: {failure.detail}")

        def attempt() -> Awaitable[Any]:
            breaker = self.breakers[tool.definition.backend_key]
            return attempts(tool.name, breaker, policy, attempt_once, on_attempt, on_retry)

        def encode(value: Any) -> Awaitable[str]:
            if trace is not None:
                trace.result(value)
            if isinstance(value, str) and policy.parse_json_text and tool.definition.type in _TEXT_BACKENDS:
                value = json_data(value, context)
            return encode_reply(tool.name, value, context, policy.max_result_bytes)

        if call.key is None:
            return await encode(await attempt())
        digest = call_digest(call.key, call.params)
        if context.idempotency_keys.setdefault((tool.name, call.key), digest) != digest:
            # only within one execution: across executions the same key with other parameters is another call
            raise CallFailed("ToolValidationError", f"idempotency key {call.key!r} was used with different parameters")

        def joined(hit: bool) -> None:
            record.cache_hit = hit
            if hit:
                self.emit("cache_hit", record, context)

        def join(reply: str) -> str:
            return shared_reply(tool.name, reply, context, policy.max_result_bytes)

        key, ttl = (self.tenant_id, tool.name, digest), policy.idempotency_ttl
        if self.state is not None:  # one run per key fleet-wide (ptc.state), this process's callers first
            return await shared_once(
                self.idempotency,
                self.state,
                key,
                ttl,
                policy.timeout,
                attempt=attempt,
                encode=encode,
                join=join,
                joined=joined,
            )
        return await once(self.idempotency, key, ttl, attempt=attempt, encode=encode, join=join, joined=joined)

    def emit(self, kind: EventKind, record: ToolCallRecord, context: CallContext, **extra: Any) -> None:
        if not self.events.listening(kind):
            return
        self.events.emit(
            ToolEvent(
                kind=kind,
                tool=record.tool,
                execution_id=context.execution_id,
                tenant_id=self.tenant_id,
                attempt=record.attempts,
                **extra,
            )
        )


# -- telemetry (ptc.telemetry): only when the execution is traced ---------------------

UNKNOWN_TOOL = "<unknown tool>"


def traced(record: ToolCallRecord, call: Prepared | None, context: CallContext) -> ToolTrace:
    """Start the span of one call (a child of its execution's); `call` None: refused before it was prepared."""
    assert context.trace is not None
    return context.trace.tool_call(
        record.tool if record.type is not None else UNKNOWN_TOOL,  # a name not in the catalog is the program's text
        domain=record.domain,
        backend=record.type,
        call_id=record.caller.tool_id,
        parameters=call.params if call is not None else record.parameters,
    )


def ended(trace: ToolTrace, record: ToolCallRecord) -> None:
    error = record.error.type if record.error is not None else None
    trace.end(
        error_type=error,
        attempts=record.attempts,
        cache_hit=record.cache_hit,
        approval=record.approval,
        result_bytes=record.result_size,
    )
