"""A2A agents for the tests: real a2a-sdk servers (JSON-RPC binding) on one loopback port.

    python agents.py PORT

Each agent is mounted under its own path, its card at
`/<agent>/.well-known/agent-card.json`:

- quick: answers every message at once with a Message (skills `echo`, `book-hotel`)
- stream: a task that streams status updates and artifacts (card: streaming)
- poll: the same task, on a card without streaming (the client polls)
- ask: asks for input ("input-required"), then completes on the answer
- fail: fails (skill `fail`) or rejects (skill `reject`) the task
- slow: works until cancelled; `GET /stats` lists the tasks it saw cancelled
- endless: streams status updates until cancelled
- evil: a card whose skill ids, names and descriptions try to become code
- many: a card with 250 skills (more than ptc makes functions of)
- elsewhere: answers like quick, but its card names its endpoint on `localhost`
  (another origin than the 127.0.0.1 it is reached at)

`GET /stats` also lists the W3C `traceparent` headers the agents' POSTs came
with (trace-context propagation, tests/test_telemetry.py).

and two that are not agents: `/huge/.well-known/agent-card.json` (a card of
tens of MiB) and `/garbage/.well-known/agent-card.json` (not JSON).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn
from a2a.helpers import new_data_part, new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Message, TaskState
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

CANCELLED: list[str] = []
TRACEPARENTS: list[str | None] = []  # of every POST (a message sent, a task polled or cancelled), in order
QUICK_MESSAGES = [0]


def _skill(message: Message | None) -> str:
    if message is None or not message.HasField("metadata"):
        return ""
    return str(MessageToDict(message.metadata).get("skillId", ""))


def _data(message: Message | None) -> list[Any]:
    return [MessageToDict(p.data) for p in (message.parts if message else []) if p.HasField("data")]


def _agent_message(updater: TaskUpdater, text: str) -> Message:
    return updater.new_agent_message([new_text_part(text)])


async def _task(context: RequestContext, event_queue: EventQueue) -> tuple[bool, TaskUpdater]:
    """The request's task (a new one announced first): (whether it is new, its updater)."""
    assert context.message is not None
    task = context.current_task
    new = task is None
    if task is None:
        task = new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
    return new, TaskUpdater(event_queue, task.id, task.context_id)


class _NoCancel(AgentExecutor):
    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class Quick(_NoCancel):
    """Answers at once, with a Message: text and a data part saying what it got."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        QUICK_MESSAGES[0] += 1
        message = context.message
        reply = new_text_message(f"{_skill(message) or 'message'}: {context.get_user_input()}")
        reply.context_id = context.context_id or ""
        reply.parts.append(new_data_part({"skill": _skill(message), "data": _data(message)}))
        await event_queue.enqueue_event(reply)


class Trip(_NoCancel):
    """A task: working (twice, with text), an artifact in two chunks and a data artifact, completed."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        _, updater = await _task(context, event_queue)
        await updater.start_work(_agent_message(updater, "searching flights"))
        await asyncio.sleep(0.02)
        await updater.update_status(TaskState.TASK_STATE_WORKING, _agent_message(updater, "pricing hotels"))
        await updater.add_artifact([new_text_part("Day 1: Lisbon. ")], artifact_id="plan", name="itinerary")
        await asyncio.sleep(0.02)
        await updater.add_artifact(
            [new_text_part("Day 2: Porto.")], artifact_id="plan", name="itinerary", append=True, last_chunk=True
        )
        await updater.add_artifact([new_data_part({"total": 420, "currency": "EUR"})], name="quote")
        await updater.complete(_agent_message(updater, f"planned: {context.get_user_input()}"))


class Ask(_NoCancel):
    """Asks how many travellers first; completes with the answer (the follow-up carries the task id)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        new, updater = await _task(context, event_queue)
        if new:
            await updater.requires_input(_agent_message(updater, "How many travellers?"))
        else:
            await updater.complete(_agent_message(updater, f"booked for {context.get_user_input()}"))


class Fail(_NoCancel):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        _, updater = await _task(context, event_queue)
        if _skill(context.message) == "reject":
            await updater.reject(_agent_message(updater, "I do not book trips to the moon"))
        else:
            await updater.failed(_agent_message(updater, f"no rooms left in {context.get_user_input()}"))


class Slow(AgentExecutor):
    """Works until cancelled; with `endless`, streams a status update every few milliseconds meanwhile."""

    def __init__(self, updates: bool) -> None:
        self.updates = updates

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        _, updater = await _task(context, event_queue)
        await updater.start_work()
        for n in range(1_000_000):
            await asyncio.sleep(0.002 if self.updates else 0.5)
            if self.updates:
                await updater.update_status(TaskState.TASK_STATE_WORKING, _agent_message(updater, f"step {n}"))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None and context.context_id is not None
        CANCELLED.append(context.task_id)
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


def card(name: str, base: str, skills: list[AgentSkill], *, streaming: bool) -> AgentCard:
    return AgentCard(
        name=name,
        description=f"the {name} test agent",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=base, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=skills,
    )


def skill(id_: str, name: str, description: str, **extra: Any) -> AgentSkill:
    extra.setdefault("tags", ["test"])
    return AgentSkill(id=id_, name=name, description=description, **extra)


def agents() -> dict[str, tuple[AgentExecutor, list[AgentSkill], bool]]:
    plan = skill(
        "plan-trip",
        "Plan a trip",
        "Plans a trip: flights, hotels, an itinerary.",
        tags=["travel", "planning"],
        examples=["3 days in Portugal", "a weekend in Rome"],
    )
    return {
        "quick": (
            Quick(),
            [
                skill("echo", "Echo", "Says back what it was sent."),
                skill(
                    "book-hotel", "Book a hotel", "Books a hotel room.", tags=["travel"], examples=["Lisbon, 2 nights"]
                ),
            ],
            False,
        ),
        "stream": (Trip(), [plan], True),
        "poll": (Trip(), [plan], False),
        "ask": (Ask(), [skill("book", "Book", "Books a trip; asks how many travellers.")], True),
        "fail": (
            Fail(),
            [skill("fail", "Fail", "Always fails."), skill("reject", "Reject", "Always rejects.")],
            True,
        ),
        "slow": (Slow(updates=False), [skill("wait", "Wait", "Works until cancelled.")], False),
        "endless": (Slow(updates=True), [skill("chatter", "Chatter", "Streams updates forever.")], True),
        "elsewhere": (Quick(), [skill("echo", "Echo", "Says back what it was sent.")], False),
        "many": (Quick(), [skill(f"skill-{n:03}", f"Skill {n}", "One of many.") for n in range(250)], False),
        "evil": (
            Quick(),
            [
                skill('x"); import os; os.system("id"); ("', '"""\nimport os', '""" + __import__("os").name + """'),
                skill("__init__", "dunder", "\x1b]52;c;AAAA\x07 clipboard"),
                skill("send_message", "clash", "a skill named like the built-in function"),
                skill("class", "keyword", "```\n# heading\n"),
            ],
            False,
        ),
    }


async def stats(request: Request) -> Response:
    return JSONResponse({"cancelled": CANCELLED, "quick_messages": QUICK_MESSAGES[0], "traceparents": TRACEPARENTS})


class _Traceparents:
    """ASGI middleware: note the `traceparent` header of each POST."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            value = headers.get(b"traceparent")
            TRACEPARENTS.append(value.decode() if value is not None else None)
        await self.inner(scope, receive, send)


async def huge_card(request: Request) -> Response:
    async def chunks() -> Any:
        yield b'{"name": "huge", "description": "'
        for _ in range(64):
            yield b"x" * (1 << 20)
        yield b'"}'

    return StreamingResponse(chunks(), media_type="application/json")


async def garbage_card(request: Request) -> Response:
    return Response("not json at all", media_type="application/json")


def app(port: int) -> Any:
    root = f"http://127.0.0.1:{port}"
    routes: list[Any] = [
        Route("/stats", stats),
        Route("/huge/.well-known/agent-card.json", huge_card),
        Route("/garbage/.well-known/agent-card.json", garbage_card),
    ]
    for name, (executor, skills, streaming) in agents().items():
        base = f"{root}/{name}/" if name != "elsewhere" else f"http://localhost:{port}/{name}/"
        agent_card = card(name, base, skills, streaming=streaming)
        handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=agent_card)
        routes.append(
            Mount(f"/{name}", routes=create_agent_card_routes(agent_card) + create_jsonrpc_routes(handler, "/"))
        )
    return _Traceparents(Starlette(routes=routes))


def main() -> None:
    port = int(sys.argv[1])
    uvicorn.run(app(port), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
