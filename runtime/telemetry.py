"""OpenTelemetry for ptc: spans, metrics and trace-context propagation; a cheap no-op without an SDK.

    caller's span (the embedding service's agent loop)
      ptc.execute                  one execution (a session's cell: ptc.session.cell under ptc.session)
        ptc.tool_call              one call of the program (gen_ai.operation.name = execute_tool)
          ptc.tool_call.attempt    one attempt of it (retries are siblings); current while the backend runs,
                                   so an MCP server or A2A agent gets it as its parent (traceparent)

Only `opentelemetry-api` is needed (the `ptc[otel]` extra), and not even
that: without it every hook here is a constant check. With the API but no
SDK configured (the global provider is still the API's proxy), an execution
starts nothing: `Telemetry.execution` returns None after one isinstance
check, and every later hook is `if trace is not None`. So the hot path (an
inline tool call ~150 µs, a session cell ~0.6 ms) pays nanoseconds.

Redaction: what the program wrote and what its tools were given and gave
back is the tenant's data, so none of it goes into a span unless the
executor says `trace_content=True` (then capped at `CONTENT_CHARS`); the
code's SHA-256 always does, which is enough to group executions of one
program.

This module sits in the vocabulary layer and imports nothing else of ptc:
the tool-call pipeline and the backends use it, and they must not know each
other.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

try:
    from opentelemetry import context as _context
    from opentelemetry import metrics as _metrics
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised by a subprocess test without the package
    _AVAILABLE = False
else:
    _AVAILABLE = True

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import Histogram, Meter, MeterProvider, UpDownCounter
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = ["AVAILABLE", "CONTENT_CHARS", "ExecutionTrace", "SessionTrace", "Telemetry", "ToolTrace", "carried"]

AVAILABLE = _AVAILABLE
INSTRUMENTATION = "ptc"
CONTENT_CHARS = 8192  # the most of a program, parameters or a result put in one attribute (trace_content=True)
NAME_CHARS = 128  # an error's type name may be the program's own class: bounded (it is no content, but its text)
_T = TypeVar("_T")
# A W3C traceparent as this module accepts one from a message body (version 00, lowercase hex).
_TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _live_tracer_provider(given: TracerProvider | None) -> TracerProvider | None:
    """The provider to trace with, or None when none is configured (the API's proxy or no-op: nothing records)."""
    provider = given if given is not None else _trace.get_tracer_provider()
    if isinstance(provider, (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)):
        return None
    return provider


def _live_meter_provider(given: MeterProvider | None) -> MeterProvider | None:
    provider = given if given is not None else _metrics.get_meter_provider()
    # The API's own providers (its proxy, which has no public name, and the no-op) record nothing.
    if type(provider).__module__.startswith("opentelemetry.metrics"):
        return None
    return provider


class _Instruments:
    """One meter's instruments (made once per executor, when its meter provider is a real one)."""

    def __init__(self, meter: Meter) -> None:
        self.execution_duration: Histogram = meter.create_histogram(
            "ptc.execution.duration", unit="s", description="Duration of one execution, by outcome"
        )
        self.tool_call_duration: Histogram = meter.create_histogram(
            "ptc.tool_call.duration", unit="s", description="Duration of one tool call, by tool and outcome"
        )
        self.in_flight: UpDownCounter = meter.create_up_down_counter(
            "ptc.executions.in_flight", unit="{execution}", description="Executions running now"
        )
        self.queue_wait: Histogram = meter.create_histogram(
            "ptc.tenant.queue_wait", unit="s", description="Time an execution waited for its tenant's slot"
        )


class Telemetry:
    """One executor's telemetry: its tracer and meter (the given providers, else the global ones).

    The global providers are looked up until they are real ones (an
    application may configure the SDK after making the executor), at most
    once every `RECHECK` seconds: the lookup reads os.environ (~1.5 µs each),
    which the no-SDK path must not pay per execution. `opentelemetry` allows
    setting each provider only once, so a real one found is kept.
    """

    RECHECK = 1.0

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        trace_content: bool = False,
    ) -> None:
        self.trace_content = trace_content
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: Tracer | None = None
        self._instruments: _Instruments | None = None
        self._quiet_until = 0.0  # time.monotonic(): until then, no provider is taken to be configured

    def _look(self) -> None:
        """Look for configured providers (both: one is often configured without the other)."""
        if self._tracer is None:
            tracer_provider = _live_tracer_provider(self._tracer_provider)
            if tracer_provider is not None:
                self._tracer = tracer_provider.get_tracer(INSTRUMENTATION)
        if self._instruments is None:
            meter_provider = _live_meter_provider(self._meter_provider)
            if meter_provider is not None:
                self._instruments = _Instruments(meter_provider.get_meter(INSTRUMENTATION))
        if self._tracer is None or self._instruments is None:
            self._quiet_until = time.monotonic() + self.RECHECK

    def tracer(self) -> Tracer | None:
        if self._tracer is None and _AVAILABLE and time.monotonic() >= self._quiet_until:
            self._look()
        return self._tracer

    def queue_wait(self, tenant_id: str, seconds: float) -> None:
        """How long an execution waited for its tenant's slot and share of the threads."""
        instruments = self._instruments
        if instruments is None:  # the no-SDK path: one clock reading
            if not _AVAILABLE or time.monotonic() < self._quiet_until:
                return
            self._look()
            instruments = self._instruments
            if instruments is None:
                return
        instruments.queue_wait.record(seconds, {"ptc.tenant": tenant_id})

    def session(self, session_id: str, tenant_id: str) -> SessionTrace | None:
        """The `ptc.session` span of a new session, parented on the caller's current span (None: not tracing).

        Its cells are its children (each linked to the caller's span at the
        time): a session outlives the turn of the agent loop that opened it."""
        tracer = self.tracer()
        if tracer is None:
            return None
        span = tracer.start_span("ptc.session", attributes={"ptc.session.id": session_id, "ptc.tenant": tenant_id})
        return SessionTrace(span, _trace.set_span_in_context(span), session_id)

    def execution(
        self,
        code: str,
        *,
        tenant_id: str,
        execution_id: str,
        session: SessionTrace | None = None,
        cell: bool = False,
    ) -> ExecutionTrace | None:
        """Start one execution's span and metrics (None when neither traces nor metrics are configured).

        On the caller's loop, so the caller's current span is the parent; a
        session's cell is parented on its session's span instead and linked to
        the caller's span (the agent-loop turn that ran it).
        """
        if (self._tracer is None or self._instruments is None) and _AVAILABLE:  # no SDK: one clock reading
            if time.monotonic() >= self._quiet_until:
                self._look()
        tracer, instruments = self._tracer, self._instruments
        if tracer is None and instruments is None:
            return None
        span: Span | None = None
        context: Context | None = None
        if tracer is not None:
            data = code.encode("utf-8", "surrogatepass")
            attributes: dict[str, Any] = {
                "ptc.tenant": tenant_id,
                "ptc.execution.id": execution_id,
                "ptc.code.sha256": hashlib.sha256(data).hexdigest(),  # groups runs of one program, shows none of it
                "ptc.code.bytes": len(data),
            }
            if self.trace_content:
                attributes["ptc.code"] = code[:CONTENT_CHARS]
            name = "ptc.execute"
            parent: Context | None = None
            links: list[Any] = []
            if session is not None:
                name, parent = "ptc.session.cell", session.context
                attributes["ptc.session.id"] = session.session_id
                caller = _trace.get_current_span().get_span_context()
                if caller.is_valid:
                    links.append(_trace.Link(caller))
            elif cell:
                name = "ptc.session.cell"
            span = tracer.start_span(name, context=parent, attributes=attributes, links=links)
            context = _trace.set_span_in_context(span, parent)
        if instruments is not None:
            instruments.in_flight.add(1, {"ptc.tenant": tenant_id})
        return ExecutionTrace(self, span, context, instruments, tenant_id)


class SessionTrace:
    """A session's span: open from the session's start to its close (from any thread)."""

    __slots__ = ("span", "context", "session_id", "ended")

    def __init__(self, span: Span, context: Context, session_id: str) -> None:
        self.span = span
        self.context = context
        self.session_id = session_id
        self.ended = False

    def end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.span.set_attribute("ptc.session.closed_reason", reason[:200])
        self.span.end()


@dataclass(slots=True, eq=False)
class ExecutionTrace:
    """One execution's span (or only its metrics); its tool calls' spans are its children.

    The sandbox runs on another thread and the calls on the caller's loop in
    tasks of their own, so the parent is passed explicitly (`context`), never
    taken from the current context.
    """

    telemetry: Telemetry
    span: Span | None
    context: Context | None
    instruments: _Instruments | None
    tenant_id: str
    started: float = field(default_factory=time.perf_counter)
    ended: bool = False

    def tool_call(
        self, tool: str, *, domain: str | None, backend: str | None, call_id: str, parameters: Any = None
    ) -> ToolTrace:
        """Start one tool call's span, a child of this execution's (on whichever thread runs the call)."""
        span: Span | None = None
        if self.span is not None:
            tracer = self.telemetry.tracer()
            assert tracer is not None  # the execution's span came from it
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool,
                "gen_ai.tool.call.id": call_id,
            }
            if domain is not None:
                attributes["ptc.tool.domain"] = domain
            if backend is not None:
                attributes["ptc.tool.backend"] = backend
            if self.telemetry.trace_content and parameters is not None:
                attributes["gen_ai.tool.call.arguments"] = _content(parameters)
            span = tracer.start_span("ptc.tool_call", context=self.context, attributes=attributes)
        return ToolTrace(self, span, tool)

    def end(
        self,
        outcome: str,
        *,
        error_type: str | None = None,
        fuel_used: int | None = None,
        memory_used: int | None = None,
        output_bytes: int = 0,
        tool_calls: int = 0,
    ) -> None:
        """The execution is over: its outcome ("ok", "suspended", or the error's kind) and what it used."""
        if self.ended:
            return
        self.ended = True
        if self.instruments is not None:
            attributes = {"ptc.tenant": self.tenant_id, "ptc.outcome": outcome}
            self.instruments.execution_duration.record(time.perf_counter() - self.started, attributes)
            self.instruments.in_flight.add(-1, {"ptc.tenant": self.tenant_id})
        if self.span is not None:
            measured = {
                "ptc.outcome": outcome,
                "ptc.output_bytes": output_bytes,
                "ptc.tool_calls": tool_calls,
                "ptc.fuel_used": fuel_used,
                "ptc.memory_used": memory_used,
            }
            # the error's type may be the program's own class name: cut to NAME_CHARS
            _end_span(self.span, measured, None if error_type is None else error_type[:NAME_CHARS], outcome)


_TOOL_MEASURES = ("ptc.tool.attempts", "ptc.tool.cache_hit", "ptc.tool.approval", "ptc.tool.result_bytes")


class ToolTrace:
    """One tool call's span; its attempts' spans are its children."""

    __slots__ = ("execution", "span", "tool", "started", "context")

    def __init__(self, execution: ExecutionTrace, span: Span | None, tool: str) -> None:
        self.execution = execution
        self.span = span
        self.tool = tool
        self.started = time.perf_counter()
        self.context: Context | None = _trace.set_span_in_context(span) if span is not None else None

    async def attempt(self, number: int, work: Coroutine[Any, Any, _T]) -> _T:
        """Run one attempt under its own span, current while it runs: a backend's own client (MCP, A2A, httpx
        instrumentation) sees it as the parent and propagates it upstream."""
        if self.span is None:
            return await work
        tracer = self.execution.telemetry.tracer()
        assert tracer is not None
        span = tracer.start_span(
            "ptc.tool_call.attempt",
            context=self.context,
            attributes={"gen_ai.tool.name": self.tool, "ptc.attempt": number},
        )
        token = _context.attach(_trace.set_span_in_context(span, self.context))
        try:
            return await work
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(_trace.Status(_trace.StatusCode.ERROR))
            raise
        finally:
            _context.detach(token)
            span.end()

    def result(self, value: Any) -> None:
        """The call's result, into its span only with trace_content=True."""
        if self.span is not None and self.execution.telemetry.trace_content:
            self.span.set_attribute("gen_ai.tool.call.result", _content(value))

    def end(
        self,
        *,
        error_type: str | None,
        attempts: int,
        cache_hit: bool,
        approval: str | None,
        result_bytes: int | None,
    ) -> None:
        instruments = self.execution.instruments
        outcome = error_type or "ok"
        if instruments is not None:
            instruments.tool_call_duration.record(
                time.perf_counter() - self.started,
                {"gen_ai.tool.name": self.tool, "ptc.outcome": outcome, "ptc.tenant": self.execution.tenant_id},
            )
        if self.span is not None:
            measured = zip(_TOOL_MEASURES, (attempts, cache_hit, approval, result_bytes), strict=True)
            _end_span(self.span, dict(measured), error_type, error_type)


def _content(value: Any) -> str:
    """Parameters or a result as one capped attribute (JSON where it is plain data)."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError, RecursionError):
            text = f"<{type(value).__name__}>"
    return text[:CONTENT_CHARS]


# -- propagation to backends -------------------------------------------------------


def _end_span(span: Span, measured: dict[str, Any], error_type: str | None, status: str | None) -> None:
    """End a span with what is known only at its end: each measured value there is, and the error."""
    for key, value in measured.items():
        if value is not None:
            span.set_attribute(key, value)
    if error_type is not None:
        span.set_attribute("error.type", error_type)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, status))
    span.end()


def carried(coro: Coroutine[Any, Any, _T]) -> Coroutine[Any, Any, _T]:
    """`coro`, to run on another loop's thread under the caller's current trace context.

    A backend keeps its clients on a private loop thread; a coroutine handed
    there starts in that loop's context, not the caller's. With no span
    current (not tracing), `coro` itself: nothing is wrapped.
    """
    if not _AVAILABLE:
        return coro
    ctx = _context.get_current()
    if not _trace.get_current_span(ctx).get_span_context().is_valid:
        return coro
    return _attached(ctx, coro)


async def _attached(ctx: Context, coro: Coroutine[Any, Any, _T]) -> _T:
    token = _context.attach(ctx)
    try:
        return await coro
    finally:
        _context.detach(token)


def inject(headers: Any) -> None:
    """The current trace context into HTTP `headers` (W3C `traceparent`), if a span is current."""
    if _AVAILABLE and _trace.get_current_span().get_span_context().is_valid:
        _propagate.inject(headers)


def traceparent_of_message(body: bytes) -> dict[str, str]:
    """The `traceparent` (and `tracestate`) in a JSON-RPC request's `params._meta`, for its HTTP headers.

    The MCP SDK puts the caller's trace context in `_meta` from the task that
    calls the tool, but sends the HTTP request from a transport task that
    does not have it; the header is taken back from the message the SDK
    wrote. Only `params._meta` counts (the program's arguments are in
    `params.arguments`), and only a well-formed value.
    """
    if b'"traceparent"' not in body:  # not tracing: no parse
        return {}
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    params = message.get("params") if isinstance(message, dict) else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, Mapping):
        return {}
    parent = meta.get("traceparent")
    if not isinstance(parent, str) or not _TRACEPARENT.fullmatch(parent):
        return {}
    headers = {"traceparent": parent}
    state = meta.get("tracestate")
    if isinstance(state, str) and len(state) <= 512 and state.isprintable():
        headers["tracestate"] = state
    return headers
