"""The budget walkthrough of the tools issue, as written, end to end."""

import asyncio
import time

import pytest

from ptc import ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolParameter

BUDGETS = {"eng-team-1": 1000, "sales-team-2": 500}


async def get_team_budget_worker(payload: dict) -> dict:
    await asyncio.sleep(0.05)
    total = BUDGETS[payload["team_id"]]
    out = {"team_id": payload["team_id"], "fiscal_year": payload["fiscal_year"], "total_budget": total}
    if payload["include_spent"]:
        out.update(spent=total / 4, remaining=total * 3 / 4)
    return out


def budget_catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="financial_app", version="1.0")
    catalog.add_tool(
        ToolDefinition(
            name="get_team_budget",
            type="mcp",
            domain="finance",
            description="Retrieve budget information for a specific team",
            parameters=[
                ToolParameter(
                    name="team_id", type="string", description="Unique identifier for the team", required=True
                ),
                ToolParameter(
                    name="fiscal_year",
                    type="integer",
                    description="Fiscal year (e.g., 2024)",
                    required=False,
                    default=2024,
                ),
                ToolParameter(
                    name="include_spent",
                    type="boolean",
                    description="Include spent amount and remaining budget",
                    required=False,
                    default=False,
                ),
            ],
        )
    )
    return catalog


@pytest.fixture
def walkthrough(tmp_path):
    catalog = budget_catalog()
    executor = ProgrammaticToolExecutor(
        catalog,
        handlers={"get_team_budget": get_team_budget_worker},
        enable_stubs=True,
        stub_dir=tmp_path / "stubs",
        timeout=30,
    )
    return catalog, executor, tmp_path / "stubs"


PROGRAM = """
from tools.finance import get_team_budget
budgets = [await get_team_budget(team_id=t, fiscal_year=2024, include_spent=True) for t in ["eng-team-1", "sales-team-2"]]
print(sum(b["total_budget"] for b in budgets))
"""


async def test_walkthrough_as_written(walkthrough):
    _, executor, _ = walkthrough
    result = await executor.execute(PROGRAM)
    assert result.error is None, result.error
    assert result.output == "1500\n"
    assert [c.tool for c in result.tool_calls] == ["get_team_budget", "get_team_budget"]
    first = result.tool_calls[0]
    assert first.parameters == {"team_id": "eng-team-1", "fiscal_year": 2024, "include_spent": True}
    assert first.type == "mcp" and first.domain == "finance"
    assert first.error is None and first.attempts == 1 and first.cache_hit is False
    assert first.caller.type == "stub_import" and first.caller.execution_id == result.execution_id
    assert first.caller.tool_id and first.caller.tool_id != result.tool_calls[1].caller.tool_id
    assert first.duration >= 0.05 and first.completed_at >= first.timestamp
    assert first.result_size > 0
    assert first["tool"] == "get_team_budget"  # records read as dicts too


async def test_stub_files_one_per_tool_grouped_by_domain(walkthrough):
    _, _, stub_dir = walkthrough
    assert (stub_dir / "tools" / "__init__.py").exists()
    assert (stub_dir / "tools" / "finance" / "__init__.py").exists()
    source = (stub_dir / "tools" / "finance" / "get_team_budget.py").read_text()
    assert (
        "async def get_team_budget(team_id: str, fiscal_year: int = 2024, include_spent: bool = False, *, idempotency_key: str | None = None)"
        in source
    )
    assert "Retrieve budget information for a specific team" in source
    for section in ("Args:", "Returns:", "Example:", "team_id (str): Unique identifier for the team"):
        assert section in source
    assert "class GetTeamBudgetInput(TypedDict" in source
    compile(source, "get_team_budget.py", "exec")


async def test_the_sandbox_imports_the_same_sources(walkthrough):
    _, executor, stub_dir = walkthrough
    on_disk = (stub_dir / "tools" / "finance" / "get_team_budget.py").read_text()
    result = await executor.execute("import inspect, tools.finance.get_team_budget as m\ninspect.getsource(m)")
    assert result.result == on_disk


@pytest.mark.parametrize(
    "imports, call",
    [
        ("from tools.finance import get_team_budget", "get_team_budget"),
        ("import tools.finance", "tools.finance.get_team_budget"),
        ("from tools import finance", "finance.get_team_budget"),
    ],
)
async def test_import_styles(walkthrough, imports, call):
    _, executor, _ = walkthrough
    result = await executor.execute(f"{imports}\n(await {call}(team_id='sales-team-2'))['total_budget']")
    assert result.error is None, result.error
    assert result.result == 500


async def test_only_what_is_imported_is_loaded(walkthrough):
    catalog, executor, _ = walkthrough

    @catalog.tool(domain="finance")
    def get_exchange_rate(currency: str) -> float:
        return 1.1

    @catalog.tool(domain="hr")
    def count_people(team_id: str) -> int:
        return 3

    result = await executor.execute(
        "import sys\nfrom tools.finance import get_team_budget\nsorted(m for m in sys.modules if m.startswith('tools'))"
    )
    assert result.result == ["tools", "tools.finance", "tools.finance.get_team_budget"]


async def test_new_domain_needs_no_executor_change(walkthrough):
    catalog, executor, stub_dir = walkthrough
    assert (await executor.execute("import tools.hr")).error.type == "ModuleNotFoundError"

    async def members_worker(payload: dict) -> list:
        return [f"{payload['team_id']}-member-{i}" for i in range(2)]

    catalog.add_tool(
        ToolDefinition(
            name="get_team_members",
            type="mcp",
            domain="hr",
            description="List a team's members",
            parameters=[ToolParameter(name="team_id", type="string", required=True)],
        ),
        handler=members_worker,
    )
    result = await executor.execute(
        "from tools.hr import get_team_members\nawait get_team_members(team_id='eng-team-1')"
    )
    assert result.result == ["eng-team-1-member-0", "eng-team-1-member-1"]
    assert (stub_dir / "tools" / "hr" / "get_team_members.py").exists()


async def test_gather_runs_tool_calls_concurrently(walkthrough):
    _, executor, _ = walkthrough
    started = time.perf_counter()
    result = await executor.execute(
        "import asyncio\nfrom tools.finance import get_team_budget\n"
        "bs = await asyncio.gather(*(get_team_budget(team_id=t) for t in ['eng-team-1', 'sales-team-2'] * 5))\n"
        "sum(b['total_budget'] for b in bs)"
    )
    assert result.result == 7500
    assert len(result.tool_calls) == 10
    assert time.perf_counter() - started < 0.4  # 10 x 50 ms one after another would be 0.5 s


def test_stub_dir_is_not_needed(tmp_path):
    executor = ProgrammaticToolExecutor(budget_catalog(), handlers={"get_team_budget": get_team_budget_worker})
    result = executor.execute_sync(
        "from tools.finance import get_team_budget\n(await get_team_budget(team_id='eng-team-1'))['total_budget']"
    )
    assert result.result == 1000
    assert executor.stub_dir is None
