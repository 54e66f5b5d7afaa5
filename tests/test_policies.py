"""Timeouts, retries, circuit breaker, idempotency and events, with real handlers."""

import asyncio
import logging
import time

from ptc import Limits, Policy, ProgrammaticToolExecutor, RetryableError, ToolCatalog, ToolEvent


class Flaky:
    """A tool backend that fails a set number of times, then answers."""

    def __init__(self, failures: int, exc: type[BaseException] = ConnectionError) -> None:
        self.failures = failures
        self.exc = exc
        self.calls = 0

    async def __call__(self, payload: dict) -> dict:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return {"ok": payload["x"], "calls": self.calls}


def make_executor(handler, *, policy=None, tool_policy=None, events=None):
    from ptc import ToolDefinition, ToolParameter

    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(
            name="svc", domain="ops", parameters=[ToolParameter(name="x", type="integer")], policy=tool_policy
        ),
        handler=handler,
    )
    return ProgrammaticToolExecutor(
        catalog, policy=policy or Policy(), on_event=events.append if events is not None else None, timeout=10
    )


CALL = "from tools.ops import svc\nfrom tools import ToolError\ntry:\n    result = await svc(x=1)\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]"


async def test_per_call_timeout():
    async def hang(payload):
        await asyncio.sleep(30)

    ex = make_executor(hang, policy=Policy(timeout=0.2))
    started = time.perf_counter()
    r = await ex.execute(CALL)
    assert r.result[0] == "ToolTimeoutError"
    assert time.perf_counter() - started < 2
    assert r.tool_calls[0].error.type == "ToolTimeoutError"


async def test_sync_handler_timeout_does_not_block_the_loop():
    def slow(payload):
        time.sleep(1)
        return 1

    ex = make_executor(slow, policy=Policy(timeout=0.1))
    r = await ex.execute(CALL)
    assert r.result[0] == "ToolTimeoutError"


async def test_transient_failures_are_retried_with_backoff():
    flaky = Flaky(2)
    events: list[ToolEvent] = []
    ex = make_executor(flaky, policy=Policy(max_retries=3, backoff=0.05), events=events)
    started = time.perf_counter()
    r = await ex.execute(CALL)
    assert r.result == {"ok": 1, "calls": 3}
    assert r.tool_calls[0].attempts == 3 and r.tool_calls[0].error is None
    assert [e.kind for e in events].count("retry") == 2
    assert time.perf_counter() - started >= 0.05 * 0.5 + 0.1 * 0.5  # backoff 0.05, then 0.1, jittered ±50%


async def test_retryable_error_and_timeouts_are_transient():
    flaky = Flaky(1, RetryableError)
    ex = make_executor(flaky, policy=Policy(max_retries=1, backoff=0))
    assert (await ex.execute(CALL)).result == {"ok": 1, "calls": 2}

    attempts = 0

    async def slow_then_fast(payload):
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            await asyncio.sleep(5)
        return "fast"

    ex = make_executor(slow_then_fast, policy=Policy(timeout=0.1, max_retries=1, backoff=0))
    r = await ex.execute(CALL)
    assert r.result == "fast" and r.tool_calls[0].attempts == 2


async def test_ordinary_exceptions_are_not_retried_and_their_message_goes_to_events_only():
    flaky = Flaky(5, ValueError)
    events = []
    ex = make_executor(flaky, policy=Policy(max_retries=3, backoff=0), events=events)
    r = await ex.execute(CALL)
    assert r.result == ["ToolError", "svc failed (ValueError)"]  # the exception's text may hold secrets
    assert flaky.calls == 1 and r.tool_calls[0].attempts == 1
    assert r.tool_calls[0].error.message == "svc failed (ValueError)"
    assert [e.error for e in events if e.kind == "failure"] == ["ToolError: ValueError: failure 1"]


async def test_validation_errors_are_not_retried():
    flaky = Flaky(0)
    ex = make_executor(flaky, policy=Policy(max_retries=3))
    r = await ex.execute(
        "from tools.ops import svc\nfrom tools import ToolValidationError\ntry:\n    await svc(x='one')\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "x" in r.result and flaky.calls == 0


async def test_circuit_breaker_opens_fails_fast_and_recovers():
    flaky = Flaky(3, ValueError)
    events: list[ToolEvent] = []
    ex = make_executor(flaky, policy=Policy(circuit_failure_threshold=3, circuit_reset_timeout=0.3), events=events)
    for _ in range(3):
        assert (await ex.execute(CALL)).result[0] == "ToolError"
    r = await ex.execute(CALL)
    assert r.result[0] == "CircuitOpenError" and flaky.calls == 3  # failed fast: the tool did not run
    assert "circuit_open" in [e.kind for e in events]
    await asyncio.sleep(0.35)
    r = await ex.execute(CALL)  # half-open trial succeeds
    assert r.result == {"ok": 1, "calls": 4}
    kinds = [e.kind for e in events]
    assert kinds.index("circuit_half_open") < kinds.index("circuit_closed")


async def test_failed_half_open_trial_opens_again():
    flaky = Flaky(10, ValueError)
    ex = make_executor(flaky, policy=Policy(circuit_failure_threshold=1, circuit_reset_timeout=0.2))
    assert (await ex.execute(CALL)).result[0] == "ToolError"
    assert (await ex.execute(CALL)).result[0] == "CircuitOpenError"
    await asyncio.sleep(0.25)
    assert (await ex.execute(CALL)).result[0] == "ToolError"  # the trial ran and failed
    assert (await ex.execute(CALL)).result[0] == "CircuitOpenError"
    assert flaky.calls == 2


async def test_per_tool_policy_overrides_only_what_it_sets():
    flaky = Flaky(1)
    ex = make_executor(flaky, policy=Policy(max_retries=0, backoff=0, timeout=5), tool_policy=Policy(max_retries=2))
    r = await ex.execute(CALL)
    assert r.result == {"ok": 1, "calls": 2}
    merged = ex.router.policy.merged(Policy(max_retries=2))
    assert merged.timeout == 5 and merged.backoff == 0 and merged.max_retries == 2


async def test_idempotency_key_returns_the_stored_result():
    flaky = Flaky(0)
    events: list[ToolEvent] = []
    ex = make_executor(flaky, events=events)
    code = "from tools.ops import svc\nresult = [await svc(x=1, idempotency_key='k1'), await svc(x=1, idempotency_key='k1')]"
    r = await ex.execute(code)
    assert r.result == [{"ok": 1, "calls": 1}, {"ok": 1, "calls": 1}]
    assert flaky.calls == 1
    assert [c.cache_hit for c in r.tool_calls] == [False, True]
    assert "cache_hit" in [e.kind for e in events]
    # the key outlives the execution (within its TTL)
    assert (await ex.execute(code)).result == [{"ok": 1, "calls": 1}] * 2 and flaky.calls == 1


async def test_idempotency_with_both_calls_in_flight():
    calls = 0

    async def slow(payload):
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return calls

    ex = make_executor(slow)
    r = await ex.execute(
        "import asyncio\nfrom tools.ops import svc\nawait asyncio.gather(*(svc(x=1, idempotency_key='same') for _ in range(5)))"
    )
    assert r.result == [1] * 5 and calls == 1
    assert sum(c.cache_hit for c in r.tool_calls) == 4


async def test_idempotency_failures_are_not_cached_and_mismatches_are_rejected():
    flaky = Flaky(1, ValueError)
    ex = make_executor(flaky)
    code = "from tools.ops import svc\nfrom tools import ToolError\ntry:\n    await svc(x=1, idempotency_key='k')\nexcept ToolError:\n    pass\nawait svc(x=1, idempotency_key='k')"
    assert (await ex.execute(code)).result == {"ok": 1, "calls": 2}
    # Within one execution, a key reused with other parameters is the program's mistake.
    r = await ex.execute(
        "from tools.ops import svc\nfrom tools import ToolValidationError\nawait svc(x=1, idempotency_key='k')\n"
        "try:\n    await svc(x=2, idempotency_key='k')\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "different parameters" in r.result
    # In another execution it is another call (a key names one exact call): it runs.
    r = await ex.execute("from tools.ops import svc\nawait svc(x=2, idempotency_key='k')")
    assert r.result == {"ok": 2, "calls": 3}


async def test_events_and_logging(caplog):
    events: list[ToolEvent] = []
    ex = make_executor(Flaky(1), policy=Policy(max_retries=1, backoff=0), events=events)
    with caplog.at_level(logging.DEBUG, logger="ptc"):
        r = await ex.execute(CALL)
    assert [e.kind for e in events] == ["start", "retry", "start", "complete"]
    assert all(e.execution_id == r.execution_id and e.tool == "svc" for e in events)
    assert any("svc" in rec.getMessage() and "retry" in rec.getMessage() for rec in caplog.records)
    failing = make_executor(Flaky(5, ValueError), events=events)
    await failing.execute(CALL)
    assert events[-1].kind == "failure" and "ValueError" in events[-1].error


async def test_broken_event_callback_does_not_break_calls():
    def broken(event):
        raise RuntimeError("listener bug")

    ex = make_executor(Flaky(0))
    ex.on_event(broken)
    assert (await ex.execute(CALL)).result == {"ok": 1, "calls": 1}


async def test_tool_call_limit():
    ex = make_executor(Flaky(0))
    r = await ex.execute(
        "from tools.ops import svc\nfor i in range(10):\n    await svc(x=i)", limits=Limits(max_tool_calls=3)
    )
    assert r.error.kind == "tool_call_limit"
    assert len(r.tool_calls) == 3
