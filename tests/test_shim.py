"""MCPClientShim: host code calls a tool with the policies, events and records a program's call gets."""

from __future__ import annotations

import pytest

from ptc import (
    CircuitOpenError,
    MCPClientShim,
    Policy,
    ProgrammaticToolExecutor,
    RetryableError,
    ToolCatalog,
    ToolDefinition,
    ToolError,
    ToolParameter,
    ToolValidationError,
)


async def test_the_walkthroughs_shim_applies_retries_and_idempotency() -> None:
    calls: list[dict] = []

    async def get_team_budget(payload: dict) -> dict:
        calls.append(payload)
        if len(calls) == 1:
            raise RetryableError("a transient failure")
        return {"team_id": payload["team_id"], "total_budget": 1000}

    events = []
    shim = MCPClientShim(tool_map={"get_team_budget": get_team_budget}, policy=Policy(max_retries=2, backoff=0))
    shim.events.subscribe(events.append)
    first = await shim.call_tool("get_team_budget", {"team_id": "eng-1"}, idempotency_key="q3")
    again = await shim.call_tool("get_team_budget", {"team_id": "eng-1"}, idempotency_key="q3")
    assert first == again == {"team_id": "eng-1", "total_budget": 1000}
    assert len(calls) == 2  # one retry, then the cached result: the tool ran once more, never a third time
    assert [r.attempts for r in shim.records] == [2, 0] and [r.cache_hit for r in shim.records] == [False, True]
    assert {e.kind for e in events} >= {"start", "retry", "complete", "cache_hit"}


async def test_failures_raise_what_a_program_would_see() -> None:
    def broken(payload: dict) -> None:
        raise ValueError("password=hunter2")

    shim = MCPClientShim(tool_map={"broken": broken}, policy=Policy(circuit_failure_threshold=2))
    for _ in range(2):
        with pytest.raises(ToolError, match=r"^broken failed \(ValueError\)$"):
            await shim.call_tool("broken", {})
    with pytest.raises(CircuitOpenError):
        await shim.call_tool("broken", {})
    with pytest.raises(ToolError):
        await shim.call_tool("nope", {})
    assert "hunter2" not in repr(list(shim.records))


async def test_a_catalog_tool_is_validated() -> None:
    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(name="get", type="mcp", domain="d", parameters=[ToolParameter(name="n", type="integer")])
    )
    shim = MCPClientShim(tool_map={"get": lambda p: p["n"] * 2}, catalog=catalog)
    assert await shim.call_tool("get", {"n": 21}) == 42
    with pytest.raises(ToolValidationError, match="n"):
        await shim.call_tool("get", {"n": "21"})


async def test_the_executor_is_built_on_its_shim() -> None:
    """One implementation: a key used by host code is a cache hit for the program, and the reverse."""
    catalog = ToolCatalog()
    ran: list[str] = []

    @catalog.tool(domain="finance")
    def quote(team_id: str) -> dict:
        ran.append(team_id)
        return {"team_id": team_id, "quote": len(ran)}

    executor = ProgrammaticToolExecutor(catalog)
    assert executor.router is executor.shim.router
    host = await executor.shim.call_tool("quote", {"team_id": "eng"}, idempotency_key="k")
    result = await executor.execute("from tools.finance import quote\nawait quote(team_id='eng', idempotency_key='k')")
    assert result.result == host == {"team_id": "eng", "quote": 1}
    assert ran == ["eng"] and result.tool_calls[0].cache_hit
