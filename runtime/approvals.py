"""Approvals: the vocabulary of a call that needs a person's (or a policy engine's) yes before it runs.

A tool whose Policy says `requires_approval` is not run until the
executor's `on_approval` callback answers its ApprovalRequest: True (or
`ApprovalDecision(True, by=...)`) runs it, False or a string (the reason)
denies it, and DEFER (or no callback at all) leaves it to a later
`executor.resume(journal, decisions)`. The pipeline step that asks is
ptc.hostcalls.calls.approval; this module is data only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from ptc.records import Subscriptable

ApprovalOutcome = Literal["approved", "denied", "timed_out"]
# The name under which the guest asks (through load-module, once) which tools need an approval;
# rendered into the guest's `_ptc_generated` (ptc.guest.build), so it is written once.
APPROVAL_TOOLS: Final = "ptc:approval-tools"
MAX_REASON = 1000  # a denial's reason reaches the program as a ToolApprovalDenied message


class ApprovalRequest(Subscriptable):
    """One call waiting for a decision. `line` is the program's own text (hostile): show it, never run it."""

    model_config = ConfigDict(frozen=True)

    call_id: str = Field(description="the call's record id (`caller.tool_id`, tool_call_<n>), stable across resume")
    tool: str
    domain: str | None = None
    parameters: Any = Field(None, description="the validated parameters the tool would be called with")
    execution_id: str
    session_id: str | None = None
    tenant_id: str = "default"
    line: str | None = Field(None, max_length=500, description="the program's source line of the call, if known")


class ApprovalDecision(BaseModel):
    """A decision with who made it (`approved_by` in the call record)."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    reason: str | None = Field(None, max_length=MAX_REASON)
    by: str | None = Field(None, max_length=256)


class _Defer:
    """The type of DEFER: the callback's "not now" (the execution suspends)."""

    _instance: _Defer | None = None

    def __new__(cls) -> _Defer:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ptc.DEFER"


DEFER: Final = _Defer()

Answer = bool | str | ApprovalDecision | _Defer
ApprovalCallback = Callable[[ApprovalRequest], Answer | Awaitable[Answer]]


def decision_of(answer: object) -> ApprovalDecision | None:
    """The decision an answer means (None: deferred). Anything else a callback returns denies the call."""
    if answer is DEFER:
        return None
    if isinstance(answer, ApprovalDecision):
        return answer
    if answer is True:
        return ApprovalDecision(approved=True)
    if answer is False:
        return ApprovalDecision(approved=False, reason="denied")
    if isinstance(answer, str):
        return ApprovalDecision(approved=False, reason=answer[:MAX_REASON] or "denied")
    return ApprovalDecision(approved=False, reason=f"the approval callback returned a {type(answer).__name__}")
