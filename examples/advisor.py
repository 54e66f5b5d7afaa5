"""A budget advisor: a small A2A agent (a2a-sdk, JSON-RPC) that `ptc demo` runs beside the budget tools.

Its one skill, `review-budget`, takes a team's figures as a data part
(`team_id`, `remaining`, `headcount`) and answers as a task: a status update
("reviewing ..."), then completed with a one-line verdict and the verdict as
data. `running()` serves it on a free loopback port, on a thread of its own,
for as long as the block lasts:

    with running() as url:
        executor = ProgrammaticToolExecutor(catalog, a2a_agents={"advisor": url})

It needs the `a2a` extra (a2a-sdk with its HTTP server, and uvicorn).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

LATENCY = 0.1  # seconds a review takes, like a real agent thinking
PER_HEAD_FLOOR = 150_000  # below this much remaining per head, the advisor says hold


def _verdict(data: dict[str, Any]) -> dict[str, Any]:
    per_head = float(data.get("remaining", 0)) / max(int(data.get("headcount", 0)), 1)
    verdict = "approve" if per_head >= PER_HEAD_FLOOR else "hold"
    return {"team_id": str(data.get("team_id", "?")), "verdict": verdict, "per_head": round(per_head)}


def _app(url: str) -> Any:
    from a2a.helpers import new_data_part, new_task_from_user_message, new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
    from google.protobuf.json_format import MessageToDict
    from starlette.applications import Starlette

    class Advisor(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.message is not None
            task = new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            data: Any = next((MessageToDict(p.data) for p in context.message.parts if p.HasField("data")), {})
            review = _verdict(data if isinstance(data, dict) else {})
            say = updater.new_agent_message
            await updater.start_work(say([new_text_part(f"reviewing {review['team_id']}")]))
            await asyncio.sleep(LATENCY)
            line = f"{review['team_id']}: {review['verdict']} ({review['per_head']:,} remaining per head)"
            await updater.complete(say([new_text_part(line), new_data_part(review)]))

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.task_id is not None and context.context_id is not None
            await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()

    card = AgentCard(
        name="advisor",
        description="Reviews a team's remaining budget and says whether to approve new spending.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["application/json", "text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[
            AgentSkill(
                id="review-budget",
                name="Review a budget",
                description="Say whether a team may spend more, from its remaining budget and headcount.",
                tags=["finance", "approval"],
                examples=["review eng-team-1 (data: team_id, remaining, headcount)"],
            )
        ],
    )
    handler = DefaultRequestHandler(agent_executor=Advisor(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/"))


@contextlib.contextmanager
def running(host: str = "127.0.0.1") -> Iterator[str]:
    """Serve the advisor on a free port of `host` until the block ends; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind((host, 0))
    url = f"http://{host}:{sock.getsockname()[1]}/"
    server = uvicorn.Server(uvicorn.Config(_app(url), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="advisor-agent", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the advisor agent did not start")
            time.sleep(0.01)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
