"""Policy(inline=True): the call runs on the sandbox's own thread, with the same router."""

import asyncio
import threading

import pytest

from ptc import Policy, ProgrammaticToolExecutor, RetryableError, ToolCatalog

INLINE = Policy(inline=True)


@pytest.fixture
def fast() -> tuple[ProgrammaticToolExecutor, dict]:
    """An executor over inline tools of domain "fast", and what their handlers saw."""
    seen: dict = {"threads": set(), "calls": 0}
    catalog = ToolCatalog()

    @catalog.tool(domain="fast", policy=INLINE)
    def lookup(key: str) -> dict:
        """A sync lookup."""
        seen["threads"].add(threading.current_thread().name)
        return {"key": key, "value": len(key)}

    @catalog.tool(domain="fast", policy=INLINE)
    async def pause(seconds: float) -> float:
        """An async tool that really suspends (on the sandbox thread's own loop)."""
        seen["threads"].add(threading.current_thread().name)
        await asyncio.sleep(seconds)
        return seconds

    @catalog.tool(domain="fast", policy=Policy(inline=True, max_retries=2, backoff=0))
    def flaky(x: int) -> int:
        """Fails twice, then answers."""
        seen["calls"] += 1
        if seen["calls"] < 3:
            raise RetryableError("not yet")
        return x

    return ProgrammaticToolExecutor(catalog, timeout=10), seen


async def test_inline_sync_tool_runs_on_the_sandbox_thread_and_is_recorded(fast):
    ex, seen = fast
    r = await ex.execute(
        "import asyncio\nfrom tools.fast import lookup\n"
        "one = await lookup(key='abc')\n"
        "many = await asyncio.gather(*(lookup(key='x' * n) for n in range(5)))\n"
        "result = [one, [m['value'] for m in many]]"
    )
    assert r.ok, r.error
    assert r.result == [{"key": "abc", "value": 3}, [0, 1, 2, 3, 4]]
    assert len(r.tool_calls) == 6 and all(c.error is None and c.result_size for c in r.tool_calls)
    assert seen["threads"] and all(name.startswith("ptc-exec") for name in seen["threads"])


async def test_inline_async_tool_may_await(fast):
    ex, seen = fast
    r = await ex.execute("from tools.fast import pause\nawait pause(seconds=0.05)")
    assert r.ok and r.result == 0.05, r.error
    assert all(name.startswith("ptc-exec") for name in seen["threads"])


async def test_inline_calls_keep_validation_retries_and_idempotency(fast):
    ex, seen = fast
    r = await ex.execute(
        "from tools.fast import flaky, lookup\nfrom tools import ToolValidationError\n"
        "try:\n    await lookup(key=5)\nexcept ToolValidationError as e:\n    bad = str(e)\n"
        "a = await flaky(x=7)\n"
        "b = await lookup(key='k', idempotency_key='same')\nc = await lookup(key='k', idempotency_key='same')\n"
        "result = [bad, a, b == c]"
    )
    assert r.ok, r.error
    bad, a, same = r.result
    assert "key" in bad and a == 7 and same
    assert r.tool_calls[1].attempts == 3 and seen["calls"] == 3
    assert r.tool_calls[3].cache_hit


async def test_executor_wide_inline_policy_and_a_sync_handler_returning_a_coroutine():
    async def later(payload: dict) -> int:
        await asyncio.sleep(0)
        return payload["x"] * 2

    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def twice(x: int) -> int:
        """Doubles x."""
        return 0  # replaced by the handler below

    ex = ProgrammaticToolExecutor(catalog, handlers={"twice": lambda p: later(p)}, policy=INLINE, timeout=10)
    r = await ex.execute("from tools.d import twice\nawait twice(x=21)")
    assert r.ok and r.result == 42, r.error


async def test_inline_tool_failure_is_the_programs_tool_error():
    catalog = ToolCatalog()

    @catalog.tool(domain="d", policy=INLINE)
    def broken() -> int:
        """Always fails."""
        raise KeyError("missing")

    ex = ProgrammaticToolExecutor(catalog, timeout=10)
    r = await ex.execute(
        "from tools.d import broken\ntry:\n    await broken()\nexcept Exception as e:\n    result = str(e)"
    )
    assert r.ok and r.result == "broken failed (KeyError)"  # the exception's own text stays on the host
    assert r.tool_calls[0].error.type == "ToolError"
