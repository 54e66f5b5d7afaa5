"""The approval step: a call whose policy `requires_approval` waits here for a decision before it runs.

It comes after validation (the request shows the parameters the tool would
get) and before idempotency and attempts (a denied call runs nothing). The
decision is one given to `executor.resume` for this call, else the
executor's `on_approval` callback's, asked on the executor's loop (an async
callback awaited, a sync one on a thread) and bounded by `approval_timeout`
(past it: denied, "timed_out"). While it waits the program's own deadline
stands still (`Waiting.asking` / `decided`, see ExecutionState). No
callback, or DEFER: the call waits until the execution is suspended and
cancels it (`Waiting.defer`): a one-shot execution (`executor.resume`) or a
session's cell (`session.resume`, ptc.sessions). Where nothing can suspend
(a host call, a session made with `suspendable=False`: `ptc serve`, the
REPL) it is denied instead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Protocol

from ptc.approvals import ApprovalCallback, ApprovalDecision, ApprovalRequest, decision_of
from ptc.hostcalls.calls.failures import CallFailed
from ptc.hostcalls.calls.invoke import CallContext
from ptc.hostcalls.calls.tools import Prepared
from ptc.records import ToolCallRecord

logger = logging.getLogger("ptc")
DEFAULT_APPROVAL_TIMEOUT = 300.0


class Waiting(Protocol):
    """What the execution is told about its call's wait (ptc.hostcalls.wasm.state.Replier)."""

    def asking(self) -> None: ...
    def decided(self) -> None: ...
    def defer(self, tool_id: str) -> None: ...


class Approvals:
    """An executor's approver: its callback (None: every decision deferred) and the longest wait for one."""

    def __init__(self, callback: ApprovalCallback | None = None, timeout: float = DEFAULT_APPROVAL_TIMEOUT) -> None:
        if not timeout > 0:
            raise ValueError(f"approval_timeout must be positive, not {timeout!r}")
        self.callback = callback
        self.timeout = timeout

    async def ask(self, request: ApprovalRequest) -> ApprovalDecision | None:
        """The callback's decision (None: deferred), bounded by the timeout (TimeoutError past it)."""
        callback = self.callback
        if callback is None:
            return None
        async with asyncio.timeout(self.timeout):
            try:
                if inspect.iscoroutinefunction(callback):
                    answer = await callback(request)
                else:
                    answer = await asyncio.to_thread(callback, request)
                    if inspect.isawaitable(answer):
                        answer = await answer
            except (TimeoutError, asyncio.CancelledError):
                raise
            except Exception:
                logger.exception("ptc: the approval callback failed for %s (%s)", request.call_id, request.tool)
                return ApprovalDecision(approved=False, reason="the approval callback failed")
        return decision_of(answer)


def request_of(record: ToolCallRecord, call: Prepared, context: CallContext) -> ApprovalRequest:
    return ApprovalRequest(
        call_id=record.caller.tool_id,
        tool=record.tool,
        domain=record.domain,
        parameters=call.params,
        execution_id=context.execution_id,
        session_id=context.session_id,
        tenant_id=record.caller.tenant_id,
        line=call.line,
    )


async def approve(
    approvals: Approvals, record: ToolCallRecord, call: Prepared, context: CallContext, waiting: Waiting | None
) -> None:
    """Return once the call is approved; CallFailed(ToolApprovalDenied) if not; wait to be cancelled if deferred."""
    request = request_of(record, call, context)
    decision = context.decisions.pop(request.call_id, None)
    if decision is None:
        if waiting is not None:
            waiting.asking()
        try:
            decision = await approvals.ask(request)
        except TimeoutError:
            record.approval = "timed_out"
            raise CallFailed(
                "ToolApprovalDenied", f"{record.tool}: no decision within {approvals.timeout:g} s"
            ) from None
        finally:
            if waiting is not None:
                waiting.decided()
    if decision is None:
        if waiting is None or not context.suspendable:
            record.approval = "denied"
            raise CallFailed("ToolApprovalDenied", f"{record.tool}: no decision (this call cannot wait for one)")
        context.deferred[request.call_id] = request
        waiting.defer(request.call_id)
        await context.loop.create_future()  # until the suspension cancels it
    assert decision is not None
    record.approved_by = decision.by
    if not decision.approved:
        record.approval = "denied"
        raise CallFailed("ToolApprovalDenied", f"{record.tool}: denied: {decision.reason or 'denied'}")
    record.approval = "approved"
