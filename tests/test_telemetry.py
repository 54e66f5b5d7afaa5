"""OpenTelemetry (ptc.telemetry): the span tree of real executions, redaction, metrics, propagation to MCP.

The SDK's in-memory exporter and metric reader, given to each executor (the
global providers stay unset: the rest of the suite runs untraced, and so
do the no-SDK checks here).
"""

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_mcp import http_server

from ptc import Policy, ProgrammaticToolExecutor, RetryableError, ToolCatalog
from ptc.telemetry import Telemetry, traceparent_of_message

TRACED = Path(__file__).parent / "mcp_servers" / "traced.py"
SECRET_CODE = "SECRET_IN_CODE_7731"
SECRET_PARAM = "SECRET_PARAM_4410"
SECRET_RESULT = "SECRET_RESULT_9902"

PROGRAM = f"""
from tools.crm import lookup, flaky, quick
from tools import ToolError
marker = "{SECRET_CODE}"
a = await lookup(name="{SECRET_PARAM}")
b = await flaky(x=2)
c = await quick(key="k")
try:
    await lookup(name=3)
except ToolError as e:
    bad = type(e).__name__
print("done")
[a, b, c, bad]
"""


def catalog() -> ToolCatalog:
    cat = ToolCatalog()
    state = {"flaky": 0}

    @cat.tool(domain="crm")
    async def lookup(name: str) -> dict:
        """Find a customer."""
        return {"name": name, "note": SECRET_RESULT}

    @cat.tool(domain="crm", policy=Policy(max_retries=2, backoff=0))
    async def flaky(x: int) -> int:
        """Fails once, then answers."""
        state["flaky"] += 1
        if state["flaky"] == 1:
            raise RetryableError("not yet")
        return x * 10

    @cat.tool(domain="crm", policy=Policy(inline=True))
    def quick(key: str) -> str:
        """An inline tool."""
        return key.upper()

    return cat


def providers() -> tuple[TracerProvider, InMemorySpanExporter, MeterProvider, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    return tracer_provider, exporter, MeterProvider(metric_readers=[reader]), reader


def by_name(spans, name):
    return [s for s in spans if s.name == name]


def every_value(spans) -> str:
    """Everything the spans carry, as one text to search."""
    return json.dumps([[s.name, dict(s.attributes or {}), [dict(e.attributes or {}) for e in s.events]] for s in spans])


async def test_the_span_tree_of_one_execution():
    tracer_provider, exporter, meter_provider, _ = providers()
    ex = ProgrammaticToolExecutor(catalog(), timeout=10, tracer_provider=tracer_provider, meter_provider=meter_provider)
    caller = tracer_provider.get_tracer("agent")
    with caller.start_as_current_span("agent.turn") as turn:
        r = await ex.execute(PROGRAM)
    assert r.error is None, r.error
    assert r.result == [{"name": SECRET_PARAM, "note": SECRET_RESULT}, 20, "K", "ToolValidationError"]
    spans = exporter.get_finished_spans()
    (execute,) = by_name(spans, "ptc.execute")
    assert execute.parent.span_id == turn.get_span_context().span_id  # the caller's span is the parent
    assert execute.context.trace_id == turn.get_span_context().trace_id
    attrs = execute.attributes
    assert attrs["ptc.execution.id"] == r.execution_id and attrs["ptc.tenant"] == "default"
    assert attrs["ptc.outcome"] == "ok" and "error.type" not in attrs
    import hashlib

    assert attrs["ptc.code.sha256"] == hashlib.sha256(PROGRAM.encode()).hexdigest()
    assert attrs.get("ptc.fuel_used") == r.fuel_used
    assert attrs["ptc.memory_used"] == r.memory_used and attrs["ptc.memory_used"] > 0
    assert attrs["ptc.output_bytes"] == len("done\n") and attrs["ptc.tool_calls"] == 4

    calls = by_name(spans, "ptc.tool_call")
    assert len(calls) == 4 and all(c.parent.span_id == execute.context.span_id for c in calls)
    by_id = {c.attributes["gen_ai.tool.call.id"]: c for c in calls}
    assert [by_id[rec.caller.tool_id].attributes["gen_ai.tool.name"] for rec in r.tool_calls] == [
        "lookup",
        "flaky",
        "quick",
        "lookup",
    ]
    for c in calls:
        assert c.attributes["gen_ai.operation.name"] == "execute_tool"
        assert c.attributes["ptc.tool.domain"] == "crm" and c.attributes["ptc.tool.backend"] == "function"
    first, retried, inline, refused = (by_id[rec.caller.tool_id] for rec in r.tool_calls)
    assert first.attributes["ptc.tool.attempts"] == 1 and first.attributes["ptc.tool.cache_hit"] is False
    assert retried.attributes["ptc.tool.attempts"] == 2
    assert inline.attributes["ptc.tool.attempts"] == 1
    assert refused.attributes["error.type"] == "ToolValidationError"
    assert refused.status.status_code == trace.StatusCode.ERROR

    attempts = by_name(spans, "ptc.tool_call.attempt")
    of_retried = sorted(
        (a for a in attempts if a.parent.span_id == retried.context.span_id), key=lambda a: a.attributes["ptc.attempt"]
    )
    assert [a.attributes["ptc.attempt"] for a in of_retried] == [1, 2]
    assert of_retried[0].attributes["error.type"] == "RetryableError" and "error.type" not in of_retried[1].attributes
    assert all(a.parent.span_id in {c.context.span_id for c in calls} for a in attempts)
    assert not [a for a in attempts if a.parent.span_id == refused.context.span_id]  # refused: never attempted

    # redaction by default: no code, parameters or results anywhere in the spans
    text = every_value(spans)
    assert SECRET_CODE not in text and SECRET_PARAM not in text and SECRET_RESULT not in text
    assert "ptc.code" not in attrs and not any("gen_ai.tool.call.arguments" in c.attributes for c in calls)


async def test_trace_content_puts_code_parameters_and_results_in_spans():
    tracer_provider, exporter, _, _ = providers()
    ex = ProgrammaticToolExecutor(catalog(), timeout=10, tracer_provider=tracer_provider, trace_content=True)
    r = await ex.execute(PROGRAM)
    assert r.error is None
    spans = exporter.get_finished_spans()
    (execute,) = by_name(spans, "ptc.execute")
    assert execute.attributes["ptc.code"] == PROGRAM
    lookup = next(
        c
        for c in by_name(spans, "ptc.tool_call")
        if c.attributes["gen_ai.tool.name"] == "lookup" and "error.type" not in c.attributes
    )
    assert json.loads(lookup.attributes["gen_ai.tool.call.arguments"]) == {"name": SECRET_PARAM}
    assert SECRET_RESULT in lookup.attributes["gen_ai.tool.call.result"]


async def test_a_failed_execution_says_its_kind_and_type():
    tracer_provider, exporter, _, _ = providers()
    ex = ProgrammaticToolExecutor(timeout=10, tracer_provider=tracer_provider)
    r = await ex.execute("1 / 0")
    assert r.error is not None
    (execute,) = by_name(exporter.get_finished_spans(), "ptc.execute")
    assert execute.attributes["ptc.outcome"] == "runtime_error"
    assert execute.attributes["error.type"] == "ZeroDivisionError"
    assert execute.status.status_code == trace.StatusCode.ERROR


async def test_session_cells_are_children_of_the_session_span():
    tracer_provider, exporter, _, _ = providers()
    ex = ProgrammaticToolExecutor(catalog(), timeout=10, tracer_provider=tracer_provider)
    caller = tracer_provider.get_tracer("agent")
    with caller.start_as_current_span("agent.conversation") as conversation:
        session = ex.session()
        async with session:
            with caller.start_as_current_span("agent.turn") as turn:
                await session.execute("from tools.crm import quick\nx = await quick(key='a')")
            await session.execute("x")
    spans = exporter.get_finished_spans()
    (span,) = by_name(spans, "ptc.session")
    assert span.parent.span_id == conversation.get_span_context().span_id
    assert span.attributes["ptc.session.id"] == session.id and "ptc.session.closed_reason" in span.attributes
    cells = by_name(spans, "ptc.session.cell")
    assert len(cells) == 2 and all(c.parent.span_id == span.context.span_id for c in cells)
    assert not by_name(spans, "ptc.execute")
    first = min(cells, key=lambda c: c.start_time)
    assert [link.context.span_id for link in first.links] == [turn.get_span_context().span_id]
    (call,) = by_name(spans, "ptc.tool_call")
    assert call.parent.span_id == first.context.span_id


async def test_metrics():
    tracer_provider, _, meter_provider, reader = providers()
    ex = ProgrammaticToolExecutor(catalog(), timeout=10, meter_provider=meter_provider)  # metrics without traces
    await ex.execute(PROGRAM)
    await ex.execute("1 / 0")
    points: dict[str, list] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    outcomes = {p.attributes["ptc.outcome"]: p.count for p in points["ptc.execution.duration"]}
    assert outcomes == {"ok": 1, "runtime_error": 1}
    tools = {
        (p.attributes["gen_ai.tool.name"], p.attributes["ptc.outcome"]): p.count
        for p in points["ptc.tool_call.duration"]
    }
    assert (
        tools[("lookup", "ok")] == 1 and tools[("lookup", "ToolValidationError")] == 1 and tools[("quick", "ok")] == 1
    )
    assert [p.value for p in points["ptc.executions.in_flight"]] == [0]
    (wait,) = points["ptc.tenant.queue_wait"]
    assert wait.attributes == {"ptc.tenant": "default"} and wait.count == 2


@pytest.fixture(scope="module")
def traced_http():
    with http_server(TRACED) as url:
        yield url


def _parent_of(traceparent: str) -> tuple[int, int]:
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_the_trace_context_reaches_a_real_mcp_server(transport, traced_http):
    tracer_provider, exporter, _, _ = providers()
    server = {"url": traced_http} if transport == "http" else f"{sys.executable} {TRACED}"
    async with ProgrammaticToolExecutor(mcp_servers={"up": server}, timeout=20, tracer_provider=tracer_provider) as ex:
        r = await ex.execute("from tools.up import seen\nawait seen(text='hi')")
        assert r.error is None, r.error
        untraced = await ProgrammaticToolExecutor(mcp_servers={"up": server}, timeout=20).execute(
            "from tools.up import seen\nawait seen(text='hi')"
        )
    spans = exporter.get_finished_spans()
    (attempt,) = by_name(spans, "ptc.tool_call.attempt")
    (call,) = by_name(spans, "ptc.tool_call")
    assert call.attributes["ptc.tool.backend"] == "mcp" and attempt.parent.span_id == call.context.span_id
    expected = (attempt.context.trace_id, attempt.context.span_id)  # the attempt is the server's parent
    assert _parent_of(r.result["meta"]) == expected
    if transport == "http":
        assert _parent_of(r.result["header"]) == expected
    else:
        assert r.result["header"] is None
    assert untraced.error is None and untraced.result["meta"] is None and untraced.result["header"] is None


def test_traceparent_is_taken_only_from_the_messages_meta():
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    body = json.dumps({"method": "tools/call", "params": {"name": "t", "arguments": {"traceparent": "00-forged"}}})
    assert traceparent_of_message(body.encode()) == {}  # a program's argument named traceparent is not a header
    body = json.dumps({"method": "tools/call", "params": {"arguments": {}, "_meta": {"traceparent": good}}})
    assert traceparent_of_message(body.encode()) == {"traceparent": good}
    bad = {"params": {"_meta": {"traceparent": good + "\r\nX-Injected: 1"}}}
    assert traceparent_of_message(json.dumps(bad).encode()) == {}
    assert traceparent_of_message(b'{"traceparent": ') == {}


async def test_without_an_sdk_nothing_is_started():
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # this suite sets no global SDK
    telemetry = Telemetry()
    assert telemetry.execution("x = 1", tenant_id="t", execution_id="e") is None
    assert telemetry.session("s", "t") is None
    ex = ProgrammaticToolExecutor(catalog(), timeout=10)
    r = await ex.execute(PROGRAM)
    assert r.error is None and r.result[2] == "K"


def test_ptc_runs_without_opentelemetry_installed():
    """`opentelemetry` not importable at all: ptc imports and runs programs and tools (every hook a no-op)."""
    script = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from ptc import ProgrammaticToolExecutor, ToolCatalog, Policy\n"
        "import ptc.telemetry as t; assert not t.AVAILABLE\n"
        "cat = ToolCatalog()\n"
        "@cat.tool(domain='d', policy=Policy(inline=True))\n"
        "def f(x: int) -> int:\n"
        "    '''x'''\n"
        "    return x + 1\n"
        "ex = ProgrammaticToolExecutor(cat, timeout=10)\n"
        "r = ex.execute_sync('from tools.d import f\\nprint(await f(x=1))')\n"
        "assert r.error is None and r.output == '2\\n', r\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


def test_no_sdk_hooks_cost_nanoseconds():
    """What an execution and a call pay without an SDK: one provider check, then `is None` checks."""
    telemetry = Telemetry()
    n = 20000
    started = time.perf_counter()
    for _ in range(n):
        telemetry.execution("x = 1", tenant_id="t", execution_id="e")
    per_execution = (time.perf_counter() - started) / n
    assert per_execution < 20e-6, per_execution  # generous: a 2-core VM shared with other test runs


async def test_slow_tool_call_span_times_the_call():
    tracer_provider, exporter, _, _ = providers()
    cat = ToolCatalog()

    @cat.tool(domain="d")
    async def nap(seconds: float) -> float:
        """Sleeps."""
        await asyncio.sleep(seconds)
        return seconds

    ex = ProgrammaticToolExecutor(cat, timeout=10, tracer_provider=tracer_provider)
    await ex.execute("from tools.d import nap\nawait nap(seconds=0.2)")
    (call,) = by_name(exporter.get_finished_spans(), "ptc.tool_call")
    assert (call.end_time - call.start_time) / 1e9 >= 0.19


async def test_the_trace_context_reaches_a_real_a2a_agent():
    from test_a2a import start_agents, stats

    proc, base = start_agents()
    try:
        tracer_provider, exporter, _, _ = providers()
        async with ProgrammaticToolExecutor(
            a2a_agents={"quick": f"{base}/quick"}, timeout=20, tracer_provider=tracer_provider
        ) as ex:
            before = len(stats(base)["traceparents"])
            r = await ex.execute("from tools.quick import send_message\nawait send_message(text='hi')")
            assert r.error is None, r.error
        sent = stats(base)["traceparents"][before:]
    finally:
        proc.terminate()
        proc.wait(10)
    (attempt,) = by_name(exporter.get_finished_spans(), "ptc.tool_call.attempt")
    assert sent and all(_parent_of(p) == (attempt.context.trace_id, attempt.context.span_id) for p in sent), sent


async def test_approval_cache_hit_and_unknown_tools():
    from ptc import ApprovalDecision

    tracer_provider, exporter, _, _ = providers()
    cat = ToolCatalog()

    @cat.tool(domain="bank", policy=Policy(requires_approval=True))
    async def transfer(amount: int) -> str:
        """Needs a decision."""
        return f"sent {amount}"

    @cat.tool(domain="bank")
    async def rate() -> float:
        """Cacheable with a key."""
        return 1.5

    ex = ProgrammaticToolExecutor(
        cat,
        timeout=10,
        tracer_provider=tracer_provider,
        on_approval=lambda request: ApprovalDecision(approved=True, by="alice"),
    )
    program = (
        "from tools.bank import transfer, rate\nfrom tools import call_tool, ToolError\n"
        "await transfer(amount=5)\nawait rate(idempotency_key='k')\nawait rate(idempotency_key='k')\n"
        "try:\n    await call_tool('bank', 'SECRET_NAME_' + 'x' * 5000, {})\nexcept ToolError:\n    pass"
    )
    r = await ex.execute(program)
    assert r.error is None, r.error
    calls = sorted(by_name(exporter.get_finished_spans(), "ptc.tool_call"), key=lambda s: s.start_time)
    assert [c.attributes["gen_ai.tool.name"] for c in calls] == ["transfer", "rate", "rate", "<unknown tool>"]
    assert calls[0].attributes["ptc.tool.approval"] == "approved"
    assert [c.attributes["ptc.tool.cache_hit"] for c in calls[1:3]] == [False, True]
    assert calls[3].attributes["error.type"] == "ToolNotFoundError"
    assert "SECRET_NAME_" not in every_value(exporter.get_finished_spans())


async def test_with_worker_processes_the_tree_is_the_same():
    tracer_provider, exporter, _, _ = providers()
    ex = ProgrammaticToolExecutor(catalog(), workers=1, timeout=20, tracer_provider=tracer_provider)
    try:
        r = await ex.execute(PROGRAM)
        assert r.error is None, r.error
    finally:
        await ex.aclose()
    spans = exporter.get_finished_spans()
    (execute,) = by_name(spans, "ptc.execute")
    calls = by_name(spans, "ptc.tool_call")
    assert len(calls) == 4 and all(c.parent.span_id == execute.context.span_id for c in calls)
    assert execute.attributes["ptc.outcome"] == "ok" and execute.attributes["ptc.output_bytes"] == len("done\n")
