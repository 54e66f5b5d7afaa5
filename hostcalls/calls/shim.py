"""The walkthrough's MCP client shim: host code calls a tool with every policy a program's call gets.

    shim = MCPClientShim(tool_map={"get_team_budget": worker}, policy=Policy(max_retries=2))
    budget = await shim.call_tool("get_team_budget", {"team_id": "eng-1"}, idempotency_key="q3")

A call goes through the router a sandboxed call goes through (ptc.hostcalls.calls.router):
validation where the catalog defines the tool, the idempotency cache, the
circuit breaker, retries and the timeout; it emits the same events and its
record joins `shim.records`. A failure raises the ToolError subclass the
program would have seen, with the same fixed message. The executor is built
on one (`executor.shim`; its router is `executor.router`): one
implementation, not two.

A tool of `tool_map` the catalog does not define is *open*: its payload is
passed on unchecked (host code is trusted; a program can reach only tools the
catalog defines, with their parameters validated).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ptc.catalog import Binding, ToolCatalog, ToolDefinition
from ptc.errors import PROGRAM_ERRORS, ToolError
from ptc.events import EventBus
from ptc.hostcalls.calls.idempotency import IdempotencyCache
from ptc.hostcalls.calls.router import Router
from ptc.hostcalls.calls.session import CallSession
from ptc.hostcalls.calls.tools import ToolTable
from ptc.hostcalls.wasm import codec
from ptc.limits import Limits
from ptc.policy import Policy
from ptc.records import ToolCallRecord

_ERRORS: dict[str, type[ToolError]] = {cls.__name__: cls for cls in PROGRAM_ERRORS}
MAX_RECORDS = 1024  # the shim keeps the latest calls' records, not every call it ever made


class MCPClientShim:
    def __init__(
        self,
        tool_map: Mapping[str, Callable[..., Any]] | None = None,
        *,
        policy: Policy | None = None,
        policies: Mapping[str, Policy] | None = None,
        catalog: ToolCatalog | None = None,
        events: EventBus | None = None,
        tenant_id: str = "default",
        idempotency: IdempotencyCache | None = None,
        max_result_bytes: int | None = None,
    ) -> None:
        """`tool_map`: tool name -> a worker, called with one dict of parameters (sync or async)."""
        self.catalog = catalog if catalog is not None else ToolCatalog()
        workers = {name: Binding(fn, kwargs=False) for name, fn in (tool_map or {}).items()}
        open_tools = frozenset(name for name in workers if self.catalog.get(name) is None)
        if catalog is None:  # a shim of its own: its tools are the tool_map's
            for name in sorted(open_tools):
                self.catalog.add_tool(ToolDefinition(name=name, type="mcp", description=f"{name} (tool_map)"))
        else:
            open_tools = frozenset()  # an executor's shim: only what its catalog defines is callable
        tools = ToolTable(self.catalog, handlers=workers, policy=policy, policies=policies, open_tools=open_tools)
        self.router = Router(tools, events=events, tenant_id=tenant_id, idempotency=idempotency)
        self.max_result_bytes = max_result_bytes or Limits().max_frame_bytes
        self.records: deque[ToolCallRecord] = deque(maxlen=MAX_RECORDS)

    @property
    def events(self) -> EventBus:
        return self.router.events

    async def call_tool(self, tool_name: str, payload: Mapping[str, Any], idempotency_key: str | None = None) -> Any:
        """Call `tool_name` with `payload` under its policy; its result, or the ToolError a program would get."""
        session = CallSession(
            self.router, f"host_{uuid.uuid4().hex}", asyncio.get_running_loop(), self.max_result_bytes
        )
        try:
            reply = await session.call({"tool": tool_name, "args": dict(payload), "key": idempotency_key})
        finally:
            session.cancel_all()
            self.records.extend(session.records)
        message = codec.decode(reply, len(reply), max_items=len(reply) + 1)  # ptc's own encoding
        if "error" in message:
            error = message["error"]
            raise _ERRORS.get(error["type"], ToolError)(error["message"])
        return message["ok"]

    def close(self) -> None:
        """Stop the sync tools' threads."""
        self.router.close()
