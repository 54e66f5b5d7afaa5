"""The record of one tool call, as the caller sees it in `result.tool_calls`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class _Subscriptable(BaseModel):
    """Records read as objects (`rec.tool`) or as dicts (`rec["tool"]`)."""

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)


class CallErrorInfo(_Subscriptable):
    """How a tool call failed (`record.error`), as the program saw it: data, not an exception."""

    type: str
    message: str


class Caller(_Subscriptable):
    type: Literal["stub_import"] = "stub_import"
    execution_id: str
    tenant_id: str = "default"
    tool_id: str = Field(description="unique id of this call")


class ToolCallRecord(_Subscriptable):
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
    caller: Caller


CallError = CallErrorInfo  # the name before 0.2: data about an error, not an exception
