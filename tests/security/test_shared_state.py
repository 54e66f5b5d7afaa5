"""Shared state survives whatever a program controls.

Breakers, the idempotency cache, thread pools and admission are shared by
every execution of an executor (every client of `ptc serve`), and threads
and admission by every tenant of the process. Each case here has one
program do something it fully controls (abandon a call, fail on purpose,
squat a key, flood) and then checks that another execution, or another
tenant, is still served as if nothing happened: only the honest failure of
a backend may change what others get.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog, ToolError
from ptc.hostcalls.policies import CircuitBreaker, CircuitOpen

SHOP = Path(__file__).resolve().parents[1] / "mcp_servers" / "shop.py"
STDIO = f"{sys.executable} {SHOP}"
MiB = 1024 * 1024
TRY = "from tools import ToolError\ntry:\n    result = await {call}\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]"


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait (polling) until predicate() is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        await asyncio.sleep(0.01)


# -- 1. an abandoned half-open trial must not wedge the breaker --------------------------------


class Backend:
    """One backend behind a tool; the host (never the program) decides how it behaves."""

    def __init__(self) -> None:
        self.mode = "up"  # "up", "down" (ConnectionError) or "slow" (answers after 30 s)
        self.calls = 0

    async def __call__(self, payload: dict) -> int:
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "down":
            raise ConnectionError("backend down")
        return payload["x"]


def backend_executor(backend: Backend, tenant: str, **policy) -> ProgrammaticToolExecutor:
    from ptc import ToolDefinition, ToolParameter

    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(name="svc", domain="ops", parameters=[ToolParameter(name="x", type="integer")]), handler=backend
    )
    return ProgrammaticToolExecutor(catalog, policy=Policy(timeout=5, **policy), tenant_id=tenant, timeout=5)


ABANDON = {
    "wait_for": "import asyncio\nfrom tools.ops import svc\ntry:\n    await asyncio.wait_for(svc(x=1), 0.1)\nexcept TimeoutError:\n    result = 'gave up'",
    "program-ends": "import asyncio\nfrom tools.ops import svc\ntask = asyncio.create_task(svc(x=1))\nawait asyncio.sleep(0.1)\nresult = 'left it'",
    "execution-timeout": "from tools.ops import svc\nawait svc(x=1)",
    "caller-cancels": "from tools.ops import svc\nawait svc(x=1)",
}


@pytest.mark.parametrize("how", list(ABANDON))
async def test_an_abandoned_half_open_trial_does_not_wedge_the_breaker(how):
    backend = Backend()
    ex = backend_executor(backend, f"breaker-trial-{how}", circuit_failure_threshold=1, circuit_reset_timeout=0.2)
    backend.mode = "down"
    r = await ex.execute("from tools.ops import svc\n" + TRY.format(call="svc(x=1)"))
    assert r.result[0] == "ToolError"  # an honest failure: the circuit opens
    await asyncio.sleep(0.25)
    backend.mode = "slow"  # the half-open trial will hang, and the program abandons it
    if how == "execution-timeout":
        r = await ex.execute(ABANDON[how], limits=Limits(timeout=0.3))
        assert r.error is not None and r.error.kind == "timeout"
    elif how == "caller-cancels":
        task = asyncio.create_task(ex.execute(ABANDON[how]))
        await until(lambda: backend.calls == 2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        r = await ex.execute(ABANDON[how])
        assert r.error is None, r.error
    assert backend.calls == 2  # the trial did reach the backend
    backend.mode = "up"
    await asyncio.sleep(0.25)  # well past any cool-down
    # Another execution, once the backend is healthy, is served.
    r = await ex.execute("from tools.ops import svc\n" + TRY.format(call="svc(x=7)"))
    assert r.result == 7, r.result


async def test_an_abandoned_trial_does_not_take_out_an_mcp_server():
    """Through one MCP server's breaker: the program abandons the trial on `hang`; `get_weather` still works."""
    policy = Policy(timeout=5, circuit_failure_threshold=1, circuit_reset_timeout=0.2)
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=policy, tenant_id="breaker-mcp") as ex:
        r = await ex.execute("from tools.shop import crash\n" + TRY.format(call="crash()"))
        assert r.result[0] == "ToolError"  # the server died: an honest failure opens the circuit
        await asyncio.sleep(0.25)
        r = await ex.execute(
            "import asyncio\nfrom tools.shop import hang\ntry:\n    await asyncio.wait_for(hang(), 0.2)\nexcept TimeoutError:\n    result = 'gave up'"
        )
        assert r.result == "gave up", r.result
        r = await ex.execute("from tools.shop import get_weather\n" + TRY.format(call="get_weather(city='Oslo')"))
        assert r.result == "sunny in Oslo", r.result


def test_a_trial_that_never_reports_is_a_lease_that_expires():
    """The backstop: a trial whose call never reports back (a lost task) frees the breaker after its timeout."""
    breaker = CircuitBreaker("lease")
    policy = Policy(timeout=0.1, circuit_failure_threshold=1, circuit_reset_timeout=0.05)
    breaker.before_call(policy)
    breaker.record(False, policy)
    time.sleep(0.06)
    breaker.before_call(policy)  # the trial: it never records anything
    with pytest.raises(CircuitOpen):
        breaker.before_call(policy)  # while it runs, no other call
    time.sleep(0.12)
    breaker.before_call(policy)  # the lease lapsed: a new trial may go


# -- 2. failures a program chooses must not open the breaker ------------------------------------


async def test_deliberate_tool_errors_and_rejected_calls_do_not_open_the_breaker():
    known = {"c-1": {"name": "Ada"}}
    health = {"down": False}
    catalog = ToolCatalog()

    @catalog.tool(domain="crm")
    def get_customer(customer_id: str) -> dict:
        """A lookup that fails on purpose for an unknown id."""
        if health["down"]:
            raise ConnectionError("database unreachable")
        if customer_id not in known:
            raise ToolError(f"no such customer {customer_id!r}")
        return known[customer_id]

    ex = ProgrammaticToolExecutor(
        catalog, policy=Policy(circuit_failure_threshold=3, circuit_reset_timeout=60), tenant_id="breaker-deliberate"
    )
    hostile = (
        "from tools.crm import get_customer\nfrom tools import ToolError\nout = []\n"
        "for i in range(10):\n"
        "    for args in ({'customer_id': f'nope-{i}'}, {'customer_id': i}, {'id': 'c-1'}):\n"
        "        try:\n            await get_customer(**args)\n        except ToolError as e:\n            out.append(type(e).__name__)\n"
        "sorted(set(out))"
    )
    r = await ex.execute(hostile)
    assert r.result == ["ToolError", "ToolValidationError"], r.result
    # Another execution (another client of the same server) is still served.
    r = await ex.execute("from tools.crm import get_customer\n" + TRY.format(call="get_customer(customer_id='c-1')"))
    assert r.result == {"name": "Ada"}, r.result
    # An honest backend failure still counts: three of them open the circuit.
    health["down"] = True
    code = "from tools.crm import get_customer\n" + TRY.format(call="get_customer(customer_id='c-1')")
    kinds = [(await ex.execute(code)).result[0] for _ in range(4)]
    assert kinds == ["ToolError", "ToolError", "ToolError", "CircuitOpenError"]


async def test_mcp_error_replies_do_not_open_the_server_breaker():
    """isError results and JSON-RPC refusals are the server answering; five of them deny nobody the server."""
    policy = Policy(timeout=5, circuit_failure_threshold=2, circuit_reset_timeout=60)
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=policy, tenant_id="breaker-iserror") as ex:
        r = await ex.execute(
            "from tools.shop import fail, reject\nfrom tools import ToolError\nout = []\nfor i in range(5):\n"
            "    for call in (fail(message=f'no such order {i}'), reject(order_id=i)):\n"
            "        try:\n            await call\n        except ToolError as e:\n            out.append(type(e).__name__)\nout"
        )
        assert r.result == ["ToolError"] * 10
        r = await ex.execute("from tools.shop import get_weather\n" + TRY.format(call="get_weather(city='Oslo')"))
        assert r.result == "sunny in Oslo", r.result
