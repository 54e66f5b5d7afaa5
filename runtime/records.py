"""The record of one tool call, as the caller sees it in `result.tool_calls`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Subscriptable(BaseModel):
    """Read as objects (`rec.tool`) or as the walkthrough's dicts (`rec["tool"]`, `rec.get("tool")`).

    Only fields (computed ones too: `result["status"]`) are keys, the same keys
    model_dump() gives: `rec["model_dump"]` is a KeyError, as for a dict.
    """

    @classmethod
    def _is_key(cls, name: object) -> bool:
        return name in cls.model_fields or name in cls.model_computed_fields

    def __getitem__(self, name: str) -> Any:
        if not self._is_key(name):
            raise KeyError(name)
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if self._is_key(name) else default

    def __contains__(self, name: object) -> bool:
        return self._is_key(name)

    def keys(self) -> list[str]:
        return [*type(self).model_fields, *type(self).model_computed_fields]


class CallErrorInfo(Subscriptable):
    """How a tool call failed (`record.error`), as the program saw it: data, not an exception."""

    type: str
    message: str


class Caller(Subscriptable):
    type: Literal["stub_import"] = "stub_import"
    execution_id: str
    tenant_id: str = "default"
    tool_id: str = Field(description="the call's id in its execution: tool_call_1, tool_call_2, ... in call order")


class ToolCallRecord(Subscriptable):
    tool: str
    type: str | None = None
    domain: str | None = None
    parameters: Any = None
    timestamp: float = Field(description="unix time the program made the call")
    completed_at: float | None = None
    duration: float | None = Field(None, description="seconds from call to reply")
    result_size: int | None = Field(None, description="bytes of the reply sent to the program")
    error: CallErrorInfo | None = None
    attempts: int = 0
    cache_hit: bool = False
    approval: Literal["approved", "denied", "timed_out"] | None = Field(
        None, description="the decision on a call its policy made wait for one (None: none was needed or made)"
    )
    approved_by: str | None = Field(None, description="who decided, if the callback said (ApprovalDecision.by)")
    caller: Caller


CallError = CallErrorInfo  # the name before 0.2: data about an error, not an exception
