"""Clients of a set of A2A agents (a2a-sdk), on a private event loop thread.

Each agent's card is read once, at connect, and its client (JSON-RPC, or
HTTP+JSON when the card offers only that) is kept for every call. A call
sends one message and follows what comes back: a Message is the answer; a
Task is followed over streaming when the card allows it, else by polling
`get_task`, until it settles (`ptc.hostcalls.backends.a2a.replies`). A
call that is cancelled or times out, or whose agent sends too much, cancels
the remote task. An interrupted task (input-required) is remembered by its
context, so a message the program sends in that context continues it.

The agent's card is upstream text: the endpoint it names is used only on the
configured URL's origin (else `endpoint=` must say where to send), every
response is bounded (ptc.hostcalls.backends.a2a.http), and what reaches the
program of a failure is a fixed sentence or capped text.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from ptc.errors import A2AConnectionError, ToolError, ToolValidationError, require_a2a
from ptc.hostcalls.backends.a2a.replies import INTERRUPTED, A2AReplyTooLarge, AgentReply, StatusCallback, TaskView
from ptc.limits import MiB
from ptc.loop_thread import LoopThread

CARD_PATH = "/.well-known/agent-card.json"
REMEMBERED = 1024  # interrupted tasks remembered per agent (the oldest forgotten first)
_DETAIL = 300  # characters of an agent's refusal a program sees


class A2AAgentConfig(BaseModel):
    """How to reach one A2A agent; its skills land in `tools.<name>`."""

    name: str = Field("", description="its tools.<name>: the key it is given under (a2a_agents={name: ...})")
    url: str = Field(description="the agent's base URL; its card is read from url + card_path")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every request (the card's too)")
    card_path: str = CARD_PATH
    endpoint: str | None = Field(
        None, description="where to send messages; default: the card's endpoint, if it is on the url's origin"
    )
    connect_timeout: float = Field(30.0, gt=0, description="seconds to read the card")
    streaming: bool = Field(True, description="follow tasks over streaming when the card allows it (else poll)")
    poll_interval: float = Field(0.05, gt=0, description="seconds before the first get_task; doubles up to 1 s")
    max_reply_bytes: int = Field(4 * MiB, gt=0, description="bytes of one response: the card, a reply, a stream")
    max_updates: int = Field(1000, gt=0, description="stream events or polls followed in one call")

    @field_validator("url", "endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"an A2A agent's URL is http:// or https://, got {value!r}")
        return value

    @classmethod
    def parse(cls, name: str, spec: str | Mapping[str, Any] | A2AAgentConfig) -> A2AAgentConfig:
        """A URL, a mapping of fields, or a config; `name` (the key it was given under) is its name."""
        if isinstance(spec, A2AAgentConfig):
            return spec if spec.name == name else spec.model_copy(update={"name": name})
        if isinstance(spec, Mapping):
            return cls(name=name, **spec)
        return cls(name=name, url=spec)

    def describe(self) -> str:
        return self.url


class _Agent:
    """One agent: its card, its HTTP client and SDK client, and its interrupted tasks by context."""

    def __init__(self, config: A2AAgentConfig, card: Any, http: Any, client: Any) -> None:
        self.config = config
        self.card = card
        self.http = http
        self.client = client
        self.streaming = config.streaming and card.capabilities.streaming
        self.interrupted: collections.OrderedDict[str, str] = collections.OrderedDict()

    def remember(self, reply: AgentReply) -> None:
        context, task = reply["context_id"], reply["task_id"]
        if context is None:
            return
        if reply["state"] in INTERRUPTED and task is not None:
            self.interrupted[context] = task
            self.interrupted.move_to_end(context)
            while len(self.interrupted) > REMEMBERED:
                self.interrupted.popitem(last=False)
        else:
            self.interrupted.pop(context, None)


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port spelled out: where a request to `url` goes."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:  # a port that is not a number
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def _unavailable(config: A2AAgentConfig, what: str, exc: BaseException) -> A2AConnectionError:
    """For the operator: the agent, its URL, what failed and why (the why cut: it may quote the agent)."""
    said = str(exc)
    said = said if len(said) <= _DETAIL else said[:_DETAIL] + "..."
    detail = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
    return A2AConnectionError(config.name, f"A2A agent {config.name!r} ({config.url}) {what}: {detail}")


def _card_endpoint(config: A2AAgentConfig, card: Any) -> Any:
    """The card, with only the interfaces a message may go to (the configured origin, or `endpoint`)."""
    from a2a.types import AgentCard, AgentInterface

    interfaces = list(card.supported_interfaces)
    if config.endpoint is not None:  # the card's own entry for it, if it has one; else JSON-RPC 1.0 there
        same = [i for i in interfaces if i.url == config.endpoint]
        interfaces = same or [AgentInterface(url=config.endpoint, protocol_binding="JSONRPC", protocol_version="1.0")]
    else:
        home = origin(config.url)
        foreign = [i.url for i in interfaces if origin(i.url) != home]
        interfaces = [i for i in interfaces if origin(i.url) == home]
        if not interfaces:
            named = ", ".join(repr(u[:200]) for u in foreign[:3]) or "none"
            raise A2AConnectionError(
                config.name,
                f"A2A agent {config.name!r} ({config.url}): its card names no endpoint on {config.url}'s origin "
                f"(it names {named}); to send there, give A2AAgentConfig(endpoint=...)",
            )
    safe = AgentCard()
    safe.CopyFrom(card)
    del safe.supported_interfaces[:]
    safe.supported_interfaces.extend(interfaces)
    return safe


async def _open(config: A2AAgentConfig) -> _Agent:
    """Read the card and make the agent's client; A2AConnectionError naming the agent and URL if it fails."""
    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.utils.constants import TransportProtocol

    from ptc.hostcalls.backends.a2a.http import fetch_json, http_client

    http = http_client(config.headers, config.max_reply_bytes)
    try:
        card_url = config.url.rstrip("/") + "/" + config.card_path.lstrip("/")
        try:
            data = await asyncio.wait_for(fetch_json(http, card_url), config.connect_timeout)
            card = parse_agent_card(data)
        except TimeoutError:
            raise A2AConnectionError(
                config.name,
                f"A2A agent {config.name!r} ({config.url}) sent no card within {config.connect_timeout:g} s",
            ) from None
        except A2AConnectionError:
            raise
        except Exception as exc:  # the agent's fault, or the network's: one error naming it
            raise _unavailable(config, f"has no readable agent card at {card_url}", exc) from None
        factory = ClientFactory(
            ClientConfig(
                httpx_client=http,
                streaming=config.streaming,
                supported_protocol_bindings=[TransportProtocol.JSONRPC, TransportProtocol.HTTP_JSON],
            )
        )
        try:
            client = factory.create(_card_endpoint(config, card))
        except A2AConnectionError:
            raise
        except Exception as exc:
            raise _unavailable(config, "offers no endpoint this client speaks (JSON-RPC or HTTP+JSON)", exc) from None
    except BaseException:
        await http.aclose()
        raise
    return _Agent(config, card, http, client)


def _translated(config: A2AAgentConfig, exc: Exception) -> Exception:
    """An SDK or HTTP failure as the router should judge it.

    Unreachable (network, timeout, HTTP 5xx or 429): A2AConnectionError, retried and counted
    against the agent's breaker. A refusal of the request itself (HTTP 4xx, a JSON-RPC error
    such as invalid params or an unsupported content type): ToolError, the agent answering.
    Anything else stays what it is: the program sees "<tool> failed (<type>)".
    """
    import httpx
    from a2a.client import A2AClientError, A2AClientTimeoutError
    from a2a.utils.errors import A2A_ERROR_MAPPING, A2AError, InternalError

    cause = exc.__cause__ if isinstance(exc, A2AClientError) and exc.__cause__ is not None else exc
    public = f"A2A agent {config.name!r} is unavailable"
    if isinstance(cause, httpx.HTTPStatusError):
        status = cause.response.status_code
        if status >= 500 or status == 429:
            return A2AConnectionError(config.name, f"{public}: HTTP {status} from {config.url}", public=public)
        return ToolError(f"A2A agent {config.name!r} refused the request (HTTP {status})")
    if isinstance(cause, (httpx.RequestError, A2AClientTimeoutError, OSError)):
        return _unavailable(config, "could not be reached", cause)
    if isinstance(exc, A2AError) and not isinstance(exc, (A2AClientError, InternalError)):
        mapping = A2A_ERROR_MAPPING.get(type(exc))
        if mapping is not None and 400 <= mapping.http_code < 500:
            said = str(exc)[:_DETAIL]
            return ToolError(f"A2A agent {config.name!r} refused the message ({mapping.reason}): {said}")
    return exc


def _message(text: str, context_id: str | None, data: Any, skill: str | None, task_id: str | None) -> Any:
    from a2a.types import Message, Part, Role
    from google.protobuf import struct_pb2
    from google.protobuf.json_format import ParseDict

    parts = [Part(text=text)] if text else []
    if data is not None:
        try:
            parts.append(Part(data=ParseDict(data, struct_pb2.Value())))
        except Exception:  # a value JSON cannot carry (the schema let it through as an object)
            raise ToolValidationError("data: not a JSON object") from None
    if not parts:
        raise ToolValidationError("give the agent some text or data")
    message = Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=parts)
    if context_id:
        message.context_id = context_id
    if task_id:
        message.task_id = task_id
    if skill is not None:
        message.metadata.update({"skillId": skill})
    return message


class A2AAgents:
    """The clients of a set of A2A agents, on a private event loop thread."""

    def __init__(self, configs: list[A2AAgentConfig]) -> None:
        require_a2a("A2A agents")
        self.configs = {c.name: c for c in configs}
        self._agents: dict[str, _Agent] = {}
        self._loop = LoopThread("ptc-a2a")
        self._cancels: set[asyncio.Task[Any]] = set()  # remote cancellations still in flight
        self._closed = False

    def card(self, name: str) -> Any:
        """The agent's card as read at open() (a2a.types.AgentCard)."""
        return self._agents[name].card

    async def open(self) -> None:
        """Read every card and make the clients (concurrently); the first failure is raised."""
        await self._loop.submit(self._open_all())

    async def _open_all(self) -> None:
        opened = await asyncio.gather(*(_open(c) for c in self.configs.values()), return_exceptions=True)
        for result in opened:
            if isinstance(result, _Agent):
                self._agents[result.config.name] = result
        for result in opened:
            if isinstance(result, BaseException):
                raise result

    async def send(
        self,
        name: str,
        skill: str | None,
        text: str,
        *,
        context_id: str | None = None,
        data: Any = None,
        on_status: StatusCallback,
    ) -> AgentReply:
        """Send one message and follow the reply until it settles (see the module docstring)."""
        if self._closed:
            message = "the A2A clients are closed"
            raise A2AConnectionError(name, message, public=message)
        return await self._loop.submit(self._send(name, skill, text, context_id, data, on_status))

    async def _send(
        self, name: str, skill: str | None, text: str, context_id: str | None, data: Any, on_status: StatusCallback
    ) -> AgentReply:
        agent = self._agents[name]
        task_id = agent.interrupted.get(context_id) if context_id else None
        message = _message(text, context_id, data, skill, task_id)
        view = TaskView(name, agent.config.max_updates, on_status)
        try:
            try:
                await self._follow(agent, message, view)
            except Exception as exc:
                raise _translated(agent.config, exc) from None
            reply = view.reply()
        except (asyncio.CancelledError, A2AReplyTooLarge):
            self._cancel(agent, view)
            raise
        agent.remember(reply)
        return reply

    async def _follow(self, agent: _Agent, message: Any, view: TaskView) -> None:
        from a2a.types import GetTaskRequest, SendMessageRequest

        request = SendMessageRequest(message=message)
        if not agent.streaming:
            request.configuration.return_immediately = True  # a task comes back at once, to be polled
        async with contextlib.aclosing(agent.client.send_message(request)) as events:  # its response closed at once
            async for event in events:
                if view.take(event):
                    return
        if view.task_id is None:  # neither a message nor a task
            from a2a.utils.errors import InvalidAgentResponseError

            raise InvalidAgentResponseError("the agent answered with neither a message nor a task")
        interval = agent.config.poll_interval
        while not view.settled:  # polling, or a stream that ended before its task settled
            await asyncio.sleep(interval)
            interval = min(interval * 2, 1.0)
            view.take_task(await agent.client.get_task(GetTaskRequest(id=view.task_id)))

    def _cancel(self, agent: _Agent, view: TaskView) -> None:
        """Cancel the call's remote task, if it has one still running (in the background, bounded)."""
        if view.task_id is None or view.message is not None or view.settled:
            return
        from a2a.types import CancelTaskRequest

        async def cancel(task_id: str) -> None:
            try:
                await asyncio.wait_for(agent.client.cancel_task(CancelTaskRequest(id=task_id)), 10)
            except Exception:  # noqa: BLE001 - best effort: the agent may be gone, or the task done
                pass

        task = asyncio.get_running_loop().create_task(cancel(view.task_id), name=f"a2a-cancel:{agent.config.name}")
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    def close(self) -> None:
        """Stop the calls in flight (their tasks cancelled), close the clients and stop the loop; bounded."""
        if self._closed:
            return
        self._closed = True

        async def close_all() -> None:
            calls = asyncio.all_tasks() - {asyncio.current_task()} - self._cancels
            for call in calls:  # its caller gets CancelledError, not a wait for a loop that is gone
                call.cancel()
            if calls:
                await asyncio.wait(calls, timeout=5)
            if self._cancels:  # the remote cancellations those calls started
                await asyncio.wait(set(self._cancels), timeout=10)
            await asyncio.gather(*(a.client.close() for a in self._agents.values()), return_exceptions=True)
            await asyncio.gather(*(a.http.aclose() for a in self._agents.values()), return_exceptions=True)

        self._loop.close(close_all)


__all__ = ["A2AAgentConfig", "A2AAgents", "A2AReplyTooLarge"]
