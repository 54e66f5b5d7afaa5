"""One discovery surface: functions, MCP tools (and A2A skills) ranked and described together."""

from __future__ import annotations

import pytest
from test_mcp import STDIO

from ptc import ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolParameter
from ptc.stubgen.discovery import search_tools, words


def _catalog() -> ToolCatalog:
    catalog = ToolCatalog()

    @catalog.tool(domain="finance")
    def get_team_budget(team_id: str, fiscal_year: int = 2024) -> dict:
        """Retrieve budget information for a specific team.

        Args:
            team_id: Unique identifier for the team
        """
        return {}

    @catalog.tool(domain="hr")
    def list_people(department: str) -> list:
        """Who works where."""
        return []

    catalog.add_tool(
        ToolDefinition(
            name="convertCurrency",
            type="mcp",
            domain="fx",
            description="Convert an amount between currencies at today's rate",
            parameters=[ToolParameter(name="amount", type="number"), ToolParameter(name="iso_code", type="string")],
        )
    )
    return catalog


def test_words_split_identifiers_and_plurals() -> None:
    assert words("getTeamBudget get_team_budgets HTTPServer") == [
        "get",
        "team",
        "budget",
        "get",
        "team",
        "budget",
        "http",
        "server",
    ]


def test_ranking_uses_descriptions_and_parameter_names_not_only_names() -> None:
    catalog = _catalog()
    assert search_tools(catalog, "exchange rate for currencies")[0]["name"] == "fx.convertCurrency"
    assert search_tools(catalog, "iso code")[0]["name"] == "fx.convertCurrency"  # a parameter's name
    assert search_tools(catalog, "department")[0]["name"] == "hr.list_people"
    assert search_tools(catalog, "budgets of teams")[0]["name"] == "finance.get_team_budget"
    assert search_tools(catalog, "zebra") == []
    assert len(search_tools(catalog, "", limit=2)) == 2  # no words: every tool, in order
    assert len(search_tools(catalog, "a " * 10_000, limit=10**9)) <= 50  # a hostile query and limit are cut


def test_entries_give_kind_signature_and_import() -> None:
    executor = ProgrammaticToolExecutor(_catalog())
    (fx,) = executor.search_tools("convert", limit=1)
    assert fx["kind"] == "mcp" and fx["domain"] == "fx"
    assert fx["import"] == "from tools.fx import convertCurrency"
    assert fx["signature"].startswith("async def convertCurrency(amount: float, iso_code: str")
    (budget,) = executor.search_tools("budget", limit=1)
    assert budget["kind"] == "function" and "team_id: str" in budget["signature"]
    described = executor.describe_tool("finance.get_team_budget")
    assert described is not None and "async def get_team_budget(" in described["stub"]
    assert executor.describe_tool("tools.fx.convertCurrency")["name"] == "fx.convertCurrency"
    assert executor.describe_tool("nope") is None


def test_the_program_searches_its_own_catalog() -> None:
    executor = ProgrammaticToolExecutor(_catalog())
    result = executor.execute_sync(
        "from tools import search_tools, describe_tool\n"
        "found = await search_tools('currency rate', limit=3)\n"
        "first = found[0]\n"
        "full = await describe_tool(first['name'])\n"
        "[first['name'], first['import'], 'async def' in full['stub'], await describe_tool('missing')]"
    )
    assert result.error is None, result.error
    assert result.result == ["fx.convertCurrency", "from tools.fx import convertCurrency", True, None]
    assert result.tool_calls == []  # discovery is not a tool call


def test_another_executors_tools_are_not_found() -> None:
    other = ToolCatalog()
    other.add_tool(ToolDefinition(name="secret_tool", domain="vault", description="currency"))
    ProgrammaticToolExecutor(other)
    result = ProgrammaticToolExecutor(_catalog()).execute_sync(
        "from tools import search_tools\n[t['name'] for t in await search_tools('secret vault currency', limit=50)]"
    )
    assert result.result == ["fx.convertCurrency"]


@pytest.mark.slow
async def test_mcp_tools_and_functions_rank_together() -> None:
    async with ProgrammaticToolExecutor(_catalog(), mcp_servers={"shop": STDIO}) as executor:
        kinds = {entry["kind"] for entry in executor.search_tools("weather orders budget", limit=20)}
        assert kinds == {"mcp", "function"}
        assert executor.search_tools("weather", limit=1)[0]["name"] == "shop.get_weather"


async def test_an_answer_larger_than_the_execution_may_hold_is_a_tool_error():
    # The answer is bounded like a reply: by the frame limit and by what is left of the host budget.
    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(name="huge", domain="big", description="A tool. " + "word " * 40_000, parameters=[])
    )
    program = (
        "from tools import describe_tool, ToolError\n"
        "try:\n    result = len((await describe_tool('huge'))['stub'])\n"
        "except ToolError as exc:\n    result = str(exc)"
    )
    async with ProgrammaticToolExecutor(catalog) as executor:
        roomy = await executor.execute(program)
        assert roomy.error is None and isinstance(roomy.result, int) and roomy.result > 200_000, roomy.result
        for limits in ({"max_frame_bytes": 64 * 1024}, {"max_host_bytes": 256 * 1024}):
            small = await executor.execute(program, limits=executor.limits.model_copy(update=limits))
            assert small.error is None, small.error
            assert small.result == "the answer is larger than this execution may hold", (limits, small.result)
            assert small.tool_calls == []  # discovery is not a tool call
