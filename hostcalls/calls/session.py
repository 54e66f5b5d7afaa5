"""One execution's side of its tool calls: their records in call order, and the calls in flight.

The guest's sandbox thread calls `dispatch` for each frame. The call is
prepared there (the work that grows with the frame, under the execution's
deadline and budget) and then runs as a task on the executor's event loop
(async handlers there, sync ones on the shared sync threads), so calls under
`asyncio.gather` run concurrently; the loop runs only the tool and its
reply. A tool whose Policy says `inline` runs on the sandbox thread instead,
to the end, inside `dispatch` (ptc.hostcalls.calls.invoke says why).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable
from typing import Any

from ptc.hostcalls.calls.failures import CANCELLED_REPLY, INTERNAL_REPLY, CallFailed, DeadlinePassed
from ptc.hostcalls.calls.invoke import CallContext, by_deadline, inline_loop, no_deadline
from ptc.hostcalls.calls.router import Router, ended, traced
from ptc.hostcalls.calls.tools import Prepared, Tool
from ptc.hostcalls.wasm import codec
from ptc.hostcalls.wasm.budget import HostBudget
from ptc.hostcalls.wasm.state import Cancel, Replier, Reply, Request
from ptc.records import Caller, CallErrorInfo, ToolCallRecord
from ptc.stubgen.discovery import describe_tool, search_tools


class CallSession:
    """One execution's calls through its executor's router."""

    def __init__(
        self,
        router: Router,
        execution_id: str,
        loop: asyncio.AbstractEventLoop,
        max_frame_bytes: int,
        budget: HostBudget | None = None,
        *,
        deadline: Callable[[], float] = no_deadline,
        first_id: int = 1,
    ) -> None:
        self.router = router
        self.context = CallContext(execution_id, loop, max_frame_bytes, budget or HostBudget(1 << 62), deadline)
        self.records: list[ToolCallRecord] = []
        self._ids = itertools.count(first_id)  # a resumed execution numbers on from its journal
        self._calls: list[_Call] = []

    @property
    def budget(self) -> HostBudget:
        return self.context.budget

    def dispatch(self, request: Request, reply: Reply) -> Cancel | str:
        """On the sandbox thread: record the call and start it on the event loop,
        or run it here and return its reply if the tool is inline."""
        if isinstance(request, dict) and "op" in request:
            return self._discover(request)
        name = request.get("tool") if isinstance(request, dict) else None
        tool = self.router.tools.find(name, request.get("domain") if isinstance(request, dict) else None)
        if tool is not None:
            name = tool.name  # the catalog's name (`call_tool` may name a skill by its domain and function)
        tool_id = reply.tool_id if isinstance(reply, Replier) else None
        record = self._record(name if isinstance(name, str) else "<invalid frame>", request, tool, tool_id)
        try:
            prepared = self.router.tools.prepare(record.tool, request, tool)
            if tool_id is not None and not prepared.policy.requires_approval:  # a journal's word only: no rerun
                raise CallFailed("ToolError", "the call was in flight when the execution suspended")
        except CallFailed as failure:
            return self._refused(record, failure)
        if prepared.policy.inline and not prepared.policy.requires_approval:  # a decision is waited for on the loop
            return self._serve_inline(record, prepared)
        call = _Call(self, record, prepared, reply)
        self._calls.append(call)
        self.context.loop.call_soon_threadsafe(call.start)
        return call.cancel

    def _discover(self, request: dict[str, Any]) -> str:
        """`search_tools` / `describe_tool` from the program, answered here from this executor's catalog.

        Not a tool call (nothing is recorded); its reply is bounded like one.
        """
        op, args = request.get("op"), request.get("args")
        args = args if isinstance(args, dict) else {}
        catalog = self.router.tools.catalog
        if op == "search_tools":
            limit = args.get("limit", 10)
            limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else 10
            value: Any = search_tools(catalog, str(args.get("query", "")), limit)
        elif op == "describe_tool":
            value = describe_tool(catalog, str(args.get("name", "")), self._result_cap)
        else:
            return codec.error_frame("ToolError", "unknown request")
        reply = codec.encode({"ok": value})
        if len(reply) > min(self.context.max_frame_bytes, self.budget.room()):
            return codec.error_frame("ToolError", "the answer is larger than this execution may hold")
        return reply

    def _result_cap(self, name: str) -> int | None:
        """The tool's result cap as the router applies it: the stub it is shown says so, as its served one does."""
        tool = self.router.tools.get(name)
        return tool.policy.max_result_bytes if tool is not None else None

    async def call(self, request: dict[str, Any]) -> str:
        """A call from host code (ptc.hostcalls.calls.shim), on the running loop: its reply frame."""
        name = request.get("tool")
        tool = self.router.tools.find(name)
        record = self._record(name if isinstance(name, str) else "<invalid call>", request, tool)
        try:
            prepared = self.router.tools.prepare(record.tool, request, tool)
        except CallFailed as failure:
            return self._refused(record, failure)
        reply = await self.router.serve(record, prepared, self.context)
        self.budget.release(len(reply))  # it goes straight back to the caller
        return reply

    def _record(self, name: str, request: Request, tool: Tool | None, tool_id: str | None = None) -> ToolCallRecord:
        context = self.context
        record = ToolCallRecord(
            tool=name,
            type=tool.definition.type if tool else None,
            domain=tool.definition.domain if tool else None,
            parameters=request.get("args") if isinstance(request, dict) else None,
            timestamp=time.time(),
            caller=Caller(
                execution_id=context.execution_id,
                tenant_id=self.router.tenant_id,
                tool_id=tool_id or f"tool_call_{next(self._ids)}",  # numbered per execution, in call order
            ),
        )
        self.records.append(record)
        return record

    def _refused(self, record: ToolCallRecord, failure: CallFailed) -> str:
        """A call refused before it started: answered at once, on this thread."""
        reply = self.router.failed(record, failure, self.context)
        record.completed_at = time.time()
        record.duration = 0.0
        record.result_size = len(reply)
        if self.context.trace is not None:
            ended(traced(record, None, self.context), record)
        return reply

    def _serve_inline(self, record: ToolCallRecord, prepared: Prepared) -> str:
        """Run an inline call on this (the sandbox's) thread and return its reply frame.

        A sync handler with no retries and no idempotency key never awaits
        anything, so its coroutine is run by hand (no event loop: ~20 µs less);
        anything else runs on this thread's own loop.
        """
        serving = self.router.serve(record, prepared, self.context)
        binding = prepared.tool.binding
        by_hand = (
            prepared.policy.max_retries == 0
            and prepared.key is None
            and not (binding is not None and inspect.iscoroutinefunction(binding.handler))
        )
        if not by_hand:
            try:
                reply: str = inline_loop().run_until_complete(by_deadline(serving, self.context.deadline()))
            except DeadlinePassed as exc:  # serve() was cancelled (nothing charged): the record says so, and why
                record.error = CallErrorInfo(type="ToolTimeoutError", message=str(exc))
                reply = codec.error_frame("ToolTimeoutError", str(exc))
                record.result_size = len(reply)
                return reply
        else:
            try:
                serving.send(None)
            except StopIteration as done:
                reply = done.value
            else:  # pragma: no cover - serve() awaited nothing by hand above
                serving.close()
                return INTERNAL_REPLY
        self.budget.release(len(reply))  # it goes straight back to the guest
        return reply

    def cancel_all(self) -> None:
        """The execution is gone: stop its calls still in flight (its sync calls still running become orphans)."""
        for call in list(self._calls):
            if not call.done:
                call.cancel()
        self.router.sync_threads.retire(self.context.sync_lane)


class _Call:
    """One call in flight on the event loop (lighter than run_coroutine_threadsafe)."""

    __slots__ = ("session", "record", "prepared", "reply", "task", "cancelled", "done")

    def __init__(self, session: CallSession, record: ToolCallRecord, prepared: Prepared, reply: Reply) -> None:
        self.session = session
        self.record = record
        self.reply = reply
        self.prepared: Prepared | None = prepared
        self.task: asyncio.Task[str] | None = None
        self.cancelled = False
        self.done = False

    def start(self) -> None:
        if self.cancelled or self.prepared is None:
            return
        session = self.session
        waiting = self.reply if isinstance(self.reply, Replier) else None
        serving = session.router.serve(self.record, self.prepared, session.context, waiting)
        self.prepared = None  # the coroutine has it; nothing here outlives the call
        self.task = session.context.loop.create_task(serving)
        self.task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[str]) -> None:
        # The task (and the reply it holds as its result) is dropped here: the
        # reply's bytes are the guest's once delivered, not the host's.
        self.task = None
        self.done = True
        if task.cancelled():
            reply = CANCELLED_REPLY
        elif task.exception() is not None:  # serve() answers every failure itself; this is a bug guard
            reply = INTERNAL_REPLY
        else:
            self.reply(task.result())  # serve() charged it
            return
        self.session.budget.force(len(reply))
        self.reply(reply)

    def cancel(self) -> None:
        """From the sandbox thread: the program stopped waiting for this call."""
        self.cancelled = True
        self.session.context.loop.call_soon_threadsafe(lambda: self.task is not None and self.task.cancel())
