"""The walkthrough's spellings: results read as its dictionaries, its ids, its in-sandbox router call."""

from __future__ import annotations

import re

import pytest

from ptc import ProgrammaticToolExecutor, ToolCatalog


@pytest.fixture(scope="module")
def executor() -> ProgrammaticToolExecutor:
    catalog = ToolCatalog()
    calls: list[dict] = []

    @catalog.tool(domain="finance")
    def get_team_budget(team_id: str, fiscal_year: int = 2024) -> dict:
        calls.append({"team_id": team_id})
        return {"team_id": team_id, "total_budget": 1000}

    @catalog.tool(domain="hr")
    async def slow(seconds: float) -> str:
        import asyncio

        await asyncio.sleep(seconds)
        return "done"

    ex = ProgrammaticToolExecutor(catalog)
    ex.calls = calls  # type: ignore[attr-defined]
    return ex


async def test_result_reads_as_the_walkthroughs_dictionary(executor: ProgrammaticToolExecutor) -> None:
    result = await executor.execute(
        "from tools.finance import get_team_budget\n"
        "b = await get_team_budget(team_id='eng')\nprint(b['total_budget'])\n"
        "await get_team_budget(team_id='ops')"
    )
    assert result["error"] is None and result["output"] == "1000\n"
    assert result["execution_time"] == result.execution_time > 0
    assert result["tool_calls"][0]["caller"]["type"] == "stub_import"
    assert re.fullmatch(r"ptc_[0-9a-f]{32}", result["execution_id"])
    assert [c["caller"]["tool_id"] for c in result["tool_calls"]] == ["tool_call_1", "tool_call_2"]
    assert result.get("nope", 7) == 7 and "output" in result
    with pytest.raises(KeyError):
        result["model_dump"]
    dumped = result.model_dump()
    for key in ("output", "error", "execution_time", "tool_calls", "execution_id", "result"):
        assert key in dumped
    assert result["status"] == dumped["status"] == "completed" and set(dumped) <= set(result.keys())
    failed = await executor.execute("1 / 0")
    assert failed["status"] == failed.model_dump()["status"] == "failed"


async def test_call_ids_are_numbered_per_execution(executor: ProgrammaticToolExecutor) -> None:
    code = "from tools.finance import get_team_budget\nawait get_team_budget(team_id='x')"
    first, second = await executor.execute(code), await executor.execute(code)
    assert first["tool_calls"][0]["caller"]["tool_id"] == second["tool_calls"][0]["caller"]["tool_id"] == "tool_call_1"
    assert first["execution_id"] != second["execution_id"]


async def test_call_tool_by_server_and_name(executor: ProgrammaticToolExecutor) -> None:
    result = await executor.execute(
        "from tools import call_tool\n"
        "b = await call_tool(server='finance', tool_name='get_team_budget', parameters={'team_id': 'eng-1'}, timeout=30)\n"
        "b['team_id']"
    )
    assert result.error is None, result.error
    assert result.result == "eng-1"
    (call,) = result.tool_calls
    assert call.tool == "get_team_budget" and call.parameters == {"team_id": "eng-1"}


async def test_call_tool_checks_the_server_and_validates(executor: ProgrammaticToolExecutor) -> None:
    result = await executor.execute(
        "from tools import call_tool, ToolNotFoundError, ToolValidationError\nseen = []\n"
        "try:\n    await call_tool(server='hr', tool_name='get_team_budget', parameters={'team_id': 'x'})\n"
        "except ToolNotFoundError as exc:\n    seen.append('not found')\n"
        "try:\n    await call_tool(server='finance', tool_name='get_team_budget', parameters={'team_id': 5})\n"
        "except ToolValidationError as exc:\n    seen.append('invalid')\n"
        "try:\n    await call_tool(server='finance', tool_name='get_team_budget', parameters={'team_id': 'x'}, timeout=-1)\n"
        "except ToolValidationError as exc:\n    seen.append('bad timeout')\n"
        "seen"
    )
    assert result.result == ["not found", "invalid", "bad timeout"], result


async def test_call_tool_timeout_only_shortens(executor: ProgrammaticToolExecutor) -> None:
    result = await executor.execute(
        "from tools import call_tool, ToolTimeoutError\n"
        "try:\n    await call_tool(server='hr', tool_name='slow', parameters={'seconds': 5}, timeout=0.2)\n"
        "except ToolTimeoutError as exc:\n    result = str(exc)\n"
    )
    assert result.error is None and "0.2 s" in result.result
    assert result.execution_time < 3


async def test_json_text_from_an_mcp_tool_arrives_as_data() -> None:
    from test_mcp import STDIO

    from ptc import Policy

    program = (
        "from tools.shop import report_json\n[await report_json(kind=k) for k in ('object', 'array', 'scalar', 'deep')]"
    )
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}) as ex:
        result = await ex.execute(program)
    assert result.error is None, result.error
    obj, arr, scalar, deep = result.result
    assert obj == {"open": 3, "tags": ["a", "b"]} and arr == [1, 2, 3]
    assert scalar == '"just a string"'  # JSON, but not an object or array: text
    assert deep == "[" * 200 + "]" * 200  # deeper than plain data may be: stays text
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=Policy(parse_json_text=False)) as ex:
        kept = await ex.execute(program)
    assert kept.result[0] == '{"open": 3, "tags": ["a", "b"]}'


def test_json_text_from_a_function_tool_stays_text() -> None:
    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def text() -> str:
        return '{"a": 1}'

    result = ProgrammaticToolExecutor(catalog).execute_sync("from tools.d import text\nawait text()")
    assert result.result == '{"a": 1}'


def test_catalog_tools_is_a_read_only_mapping() -> None:
    from ptc import ToolDefinition

    catalog = ToolCatalog()
    catalog.add_tool(ToolDefinition(name="get_team_budget", domain="finance"))
    assert list(catalog.tools.keys()) == ["get_team_budget"]
    assert catalog.tools["get_team_budget"].domain == "finance"
    with pytest.raises(TypeError):
        catalog.tools["x"] = catalog.tools["get_team_budget"]  # type: ignore[index]
    catalog.add_tool(ToolDefinition(name="other", domain="finance"))
    assert sorted(catalog.tools) == ["get_team_budget", "other"]  # a live view


@pytest.mark.parametrize("domain", ["call_tool", "ToolError", "DOMAINS", "search_tools"])
def test_a_domain_cannot_hide_the_packages_own_names(domain: str) -> None:
    from ptc import ToolDefinition

    with pytest.raises(ValueError, match="tools"):
        ToolDefinition(name="x", domain=domain)


def test_json_text_is_parsed_only_within_the_execution_budget() -> None:
    """Parsing builds an object per element, which the text's length does not bound: an upper bound of the
    elements is held against the budget while it parses, and text that would not fit stays text."""
    from ptc import Limits, ToolDefinition

    catalog = ToolCatalog()
    catalog.add_tool(ToolDefinition(name="dump", type="mcp", domain="d"))
    text = "[" + ",".join(["0"] * 200_000) + "]"  # ~400 KB of text, 200,000 elements (~14 MB as charged)
    handlers = {"dump": lambda payload: text}
    code = "from tools.d import dump\nr = await dump()\n[type(r).__name__, len(r)]"
    tight = ProgrammaticToolExecutor(catalog, handlers, limits=Limits(max_host_bytes=4 << 20)).execute_sync(code)
    assert tight.error is None and tight.result == ["str", len(text)]
    roomy = ProgrammaticToolExecutor(catalog, handlers, limits=Limits(max_host_bytes=64 << 20)).execute_sync(code)
    assert roomy.error is None and roomy.result == ["list", 200_000]
