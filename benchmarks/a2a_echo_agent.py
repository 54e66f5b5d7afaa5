"""A trivial A2A agent (a2a-sdk, JSON-RPC, streaming card) for the A2A benchmarks.

    python a2a_echo_agent.py PORT

Skill `echo` answers at once with a Message; skill `task` answers with a
task that goes working, then completed (streamed: three events).
"""

import sys

import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.message is not None
        metadata = MessageToDict(context.message.metadata) if context.message.HasField("metadata") else {}
        if metadata.get("skillId") != "task":
            reply = new_text_message(context.get_user_input())
            reply.context_id = context.context_id or ""
            await event_queue.enqueue_event(reply)
            return
        task = new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        await updater.complete(updater.new_agent_message([new_text_part(context.get_user_input())]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def app(port: int) -> Starlette:
    skills = [
        AgentSkill(id="echo", name="Echo", description="Says back its input, at once.", tags=["bench"]),
        AgentSkill(id="task", name="Task", description="Says it back through a task.", tags=["bench"]),
    ]
    card = AgentCard(
        name="echo",
        description="benchmark agent",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"http://127.0.0.1:{port}/", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=skills,
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    return Starlette(routes=create_agent_card_routes(card) + create_jsonrpc_routes(handler, "/"))


if __name__ == "__main__":
    port = int(sys.argv[1])
    uvicorn.run(app(port), host="127.0.0.1", port=port, log_level="warning")
