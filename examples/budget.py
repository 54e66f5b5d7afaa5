"""The budget walkthrough: a finance and an HR tool with realistic latency.

`catalog` is a ToolCatalog with bound handlers, so it also works with the CLI:
`ptc run script.py --tools ptc.examples.budget:catalog`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from ptc import ToolCatalog, ToolDefinition, ToolParameter

LATENCY = 0.25  # seconds per call, like a real backend

_BUDGETS = {
    "eng-team-1": 1_250_000,
    "sales-team-2": 640_000,
    "ops-team-3": 410_000,
    "design-team-4": 285_000,
}
_MEMBERS = {
    "eng-team-1": ["ada", "linus", "grace", "guido"],
    "sales-team-2": ["zig", "mary"],
    "ops-team-3": ["kelsey", "brendan", "jessie"],
    "design-team-4": ["dieter"],
}
TEAMS = list(_BUDGETS)


async def get_team_budget_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """A worker: one dict of validated parameters in, plain data out."""
    await asyncio.sleep(LATENCY)
    team_id = payload["team_id"]
    if team_id not in _BUDGETS:
        raise KeyError(f"unknown team {team_id!r}")
    total = _BUDGETS[team_id]
    budget = {"team_id": team_id, "fiscal_year": payload["fiscal_year"], "total_budget": total}
    if payload["include_spent"]:
        spent = round(total * 0.37 + len(team_id) * 1000, 2)
        budget.update(spent=spent, remaining=round(total - spent, 2))
    return budget


catalog = ToolCatalog(source="financial_app", version="1.0")
catalog.add_tool(
    ToolDefinition(
        name="get_team_budget",
        type="mcp",
        domain="finance",
        description="Retrieve budget information for a specific team",
        parameters=[
            ToolParameter(name="team_id", type="string", description="Unique identifier for the team", required=True),
            ToolParameter(
                name="fiscal_year", type="integer", description="Fiscal year (e.g., 2024)", required=False, default=2024
            ),
            ToolParameter(
                name="include_spent",
                type="boolean",
                description="Include spent amount and remaining budget",
                required=False,
                default=False,
            ),
        ],
        output_schema={
            "type": "object",
            "description": "the team's budget",
            "properties": {
                "team_id": {"type": "string"},
                "fiscal_year": {"type": "integer"},
                "total_budget": {"type": "number"},
                "spent": {"type": "number"},
                "remaining": {"type": "number"},
            },
            "required": ["team_id", "fiscal_year", "total_budget"],
        },
    ),
    handler=get_team_budget_worker,
)


class Member(TypedDict):
    name: str
    role: str


@catalog.tool(domain="hr")
async def get_team_members(team_id: str, include_roles: bool = True) -> list[Member]:
    """List the members of a team.

    Args:
        team_id: Unique identifier for the team
        include_roles: Whether to include each member's role
    """
    await asyncio.sleep(LATENCY)
    return [{"name": name, "role": "engineer" if include_roles else ""} for name in _MEMBERS.get(team_id, [])]


# Both programs end alike: the same report, so the demo can compare them.
_REPORT = """
for b, m in zip(budgets, members):
    print(f"{b['team_id']:<14} budget {b['total_budget']:>12,.0f}  remaining {b['remaining']:>12,.0f}  "
          f"per head {b['remaining'] / max(len(m), 1):>10,.0f}")
print(f"total budget: {sum(b['total_budget'] for b in budgets):,.0f}")
result = {"total_budget": sum(b["total_budget"] for b in budgets), "teams": len(teams)}
"""

SEQUENTIAL = (
    f"""
from tools.finance import get_team_budget
from tools.hr import get_team_members

teams = {TEAMS!r}
budgets = [await get_team_budget(team_id=t, fiscal_year=2024, include_spent=True) for t in teams]
members = [await get_team_members(team_id=t) for t in teams]
"""
    + _REPORT
)

GATHER = (
    f"""
import asyncio
from tools.finance import get_team_budget
from tools.hr import get_team_members

teams = {TEAMS!r}
budgets, members = await asyncio.gather(
    asyncio.gather(*(get_team_budget(team_id=t, fiscal_year=2024, include_spent=True) for t in teams)),
    asyncio.gather(*(get_team_members(team_id=t) for t in teams)),
)
"""
    + _REPORT
)

# `ptc demo`'s third run: the budget tools, then an A2A agent (examples/advisor.py) as `tools.advisor`.
WITH_AGENT = f"""
import asyncio
from tools.finance import get_team_budget
from tools.hr import get_team_members
from tools.advisor import review_budget

teams = {TEAMS!r}
budgets, members = await asyncio.gather(
    asyncio.gather(*(get_team_budget(team_id=t, fiscal_year=2024, include_spent=True) for t in teams)),
    asyncio.gather(*(get_team_members(team_id=t) for t in teams)),
)
reviews = await asyncio.gather(*(
    review_budget(f"review {{b['team_id']}}", data={{"team_id": b["team_id"], "remaining": b["remaining"],
                                                   "headcount": len(m)}})
    for b, m in zip(budgets, members)
))
for review in reviews:
    print(review["text"])
result = {{r["data"][0]["team_id"]: r["data"][0]["verdict"] for r in reviews}}
"""
