"""An A2A agent's card as catalog tools: one function per skill, and `send_message`.

The agent named `travel` becomes `tools.travel`: each skill of its card an
async function named from the skill's id (`book-hotel` -> `book_hotel`),
plus `send_message` for a message with no skill. All take the same
parameters (`text`, and keyword-only `context_id` and `data`) and return an
AgentReply (`ptc.hostcalls.backends.a2a.replies`); a skill's call carries
the skill's id in the message's metadata (`skillId`).

Everything on the card is upstream text: names pass through `python_name`,
descriptions and examples are cut and reach stubs only as escaped text
(stubgen checks every module it renders), and at most MAX_SKILLS skills
become functions.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from ptc.catalog import Binding, ToolCatalog, ToolDefinition, ToolParameter, python_name, schema_of
from ptc.events import A2A_STATUS_TEXT, call_emitter
from ptc.hostcalls.backends.a2a.client import A2AAgents
from ptc.hostcalls.backends.a2a.replies import AgentReply

MAX_SKILLS = 200
MAX_DESCRIPTION = 2000
MAX_EXAMPLES = 10
MAX_TAGS = 20
MAX_WORD = 200  # a tag, an example, a name
SEND_MESSAGE = "send_message"

_PARAMETERS = [
    ToolParameter(name="text", type="string", description="what to tell the agent"),
    ToolParameter(
        name="context_id",
        type="string",
        description="continue that conversation (a reply's context_id), e.g. to answer an input-required reply",
        required=False,
        keyword_only=True,
    ),
    ToolParameter(
        name="data",
        type="object",
        description="structured data sent with the text (a data part)",
        required=False,
        keyword_only=True,
    ),
]


@functools.cache
def reply_schema() -> dict[str, Any]:
    """The output schema of every A2A function: the AgentReply TypedDict's (stubs render it as one)."""
    return schema_of(AgentReply)


def _cut(text: str, limit: int = MAX_WORD) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _skill_notes(agent: str, card: Any, skill: Any) -> list[str]:
    notes = [f"A2A agent {_cut(card.name)!r} (tools.{agent}), skill {_cut(skill.name)!r} (id {_cut(skill.id)!r})."]
    if skill.tags:
        notes.append("Tags: " + ", ".join(_cut(t) for t in list(skill.tags)[:MAX_TAGS]))
    notes.extend(f"Example: {_cut(e)!r}" for e in list(skill.examples)[:MAX_EXAMPLES])
    return notes


def _definition(agent: str, function: str, description: str, notes: list[str]) -> ToolDefinition:
    return ToolDefinition(
        name=f"{agent}.{function}",
        type="a2a",
        domain=agent,
        description=_cut(description, MAX_DESCRIPTION),
        parameters=_PARAMETERS,
        output_schema=reply_schema(),
        backend=f"a2a:{agent}",
        function=function,
        notes=notes,
    )


def definitions_from_card(agent: str, card: Any) -> list[tuple[ToolDefinition, str | None]]:
    """(definition, skill id or None for send_message) for the agent's functions.

    `send_message` is always there and keeps its name; a skill whose Python
    name is taken gets `_` appended until unique, in the card's sorted skill
    order (so the mapping is stable); a skill id listed twice is one skill.
    """
    skills = sorted({s.id: s for s in reversed(list(card.skills))}.values(), key=lambda s: s.id)
    offered, left = skills[:MAX_SKILLS], skills[MAX_SKILLS:]
    summary = ", ".join(f"{_cut(s.id)!r}" for s in offered[:30]) + (", ..." if len(offered) > 30 else "")
    notes = [f"A2A agent {_cut(card.name)!r} (tools.{agent})." + (f" Its skills: {summary}." if offered else "")]
    if left:
        notes.append(f"The card lists {len(left)} more skills than ptc offers as functions; reach them by message.")
    description = f"Send a message to the A2A agent {_cut(card.name)}, with no particular skill."
    if card.description:
        description += f" The agent: {_cut(card.description, MAX_DESCRIPTION)}"
    definitions: list[tuple[ToolDefinition, str | None]] = [
        (_definition(agent, SEND_MESSAGE, description, notes), None)
    ]
    taken = {SEND_MESSAGE}
    for skill in offered:
        function = python_name(skill.id)
        while function in taken:
            function += "_"
        taken.add(function)
        text = skill.description or skill.name or f"The {skill.id!r} skill."
        definitions.append((_definition(agent, function, text, _skill_notes(agent, card, skill)), skill.id))
    return definitions


def _worker(
    agents: A2AAgents, agent: str, skill: str | None
) -> Callable[[dict[str, Any]], Coroutine[Any, Any, AgentReply]]:
    async def call(payload: dict[str, Any]) -> AgentReply:
        emit = call_emitter()  # here, on the executor's loop, in the call's context
        loop = asyncio.get_running_loop()

        def on_status(state: str, task_id: str, text: str) -> None:  # on the A2A loop's thread: hand it over
            if emit is None:
                return
            event = functools.partial(
                emit, "a2a_status", state=state, task_id=task_id, text=text[:A2A_STATUS_TEXT], backend=f"a2a:{agent}"
            )
            try:
                loop.call_soon_threadsafe(event)
            except RuntimeError:  # the caller's loop is gone (its call with it)
                pass

        return await agents.send(
            agent,
            skill,
            payload["text"],
            context_id=payload.get("context_id"),
            data=payload.get("data"),
            on_status=on_status,
        )

    call.__name__ = f"a2a_{agent}_{python_name(skill or SEND_MESSAGE)}"
    return call


async def add_a2a_tools(catalog: ToolCatalog, agents: A2AAgents) -> dict[str, Binding]:
    """Every agent's functions into the catalog (their cards were read by `agents.open()`); their handlers by name."""
    bindings: dict[str, Binding] = {}
    for agent in agents.configs:
        for definition, skill in definitions_from_card(agent, agents.card(agent)):
            existing = catalog.get(definition.name)
            if existing is not None and existing.domain != agent:
                raise ValueError(f"A2A agent {agent!r}: the catalog already has a tool named {definition.name!r}")
            catalog.add_tool(definition)
            bindings[definition.name] = Binding(_worker(agents, agent, skill), kwargs=False)
    return bindings
