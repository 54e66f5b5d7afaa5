"""One structured audit event per execution, for the service's records."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from ptc.limits import Limits
from ptc.records import ToolCallRecord
from ptc.results import ExecutionResult

audit_logger = logging.getLogger("ptc.audit")
audit_logger.addHandler(logging.NullHandler())


class AuditEvent(BaseModel):
    tenant_id: str
    execution_id: str
    code_sha256: str
    started_at: float = Field(description="unix time")
    duration: float
    limits: dict[str, Any]
    outcome: str = Field(description='"ok", an error kind, "cancelled", or "suspended" (waiting for approvals)')
    error_type: str | None = None
    fuel_used: int | None = None
    memory_used: int | None = Field(None, description="bytes of sandbox memory at the end (its peak), if it finished")
    host_memory_peak: int = Field(0, description="the most bytes the host held for the execution at once")
    output_bytes: int = 0
    output_truncated: bool = False
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)


def code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def audit_event(
    tenant_id: str, code: str, started_at: float, limits: Limits, result: ExecutionResult, outcome: str | None = None
) -> AuditEvent:
    return AuditEvent(
        tenant_id=tenant_id,
        execution_id=result.execution_id,
        code_sha256=code_digest(code),
        started_at=started_at,
        duration=result.execution_time,
        limits=limits.model_dump(),
        outcome=outcome or ("suspended" if result.suspended else result.error.kind if result.error else "ok"),
        error_type=result.error.type if result.error else None,
        fuel_used=result.fuel_used,
        memory_used=result.memory_used,
        host_memory_peak=result.host_memory_peak,
        output_bytes=len(result.output.encode("utf-8", "surrogatepass")),
        output_truncated=result.output_truncated,
        tool_calls=[_call(call) for call in result.tool_calls],
    )


def _call(call: ToolCallRecord) -> dict[str, Any]:
    """One call in the audit event; a call that waited for a decision also says which, and who made it."""
    entry: dict[str, Any] = {
        "tool": call.tool,
        "duration": call.duration,
        "error": call.error.type if call.error else None,
        "attempts": call.attempts,
        "cache_hit": call.cache_hit,
    }
    if call.approval is not None:
        entry.update(approval=call.approval, approved_by=call.approved_by)
    return entry


AuditCallback = Callable[[AuditEvent], None]


class Auditor:
    """Where an executor's audit events go: the `ptc.audit` logger and its callbacks.

    A callback that raises is logged and skipped: auditing never fails an execution.
    """

    def __init__(self, tenant_id: str, callbacks: list[AuditCallback] | None = None) -> None:
        self.tenant_id = tenant_id
        self.callbacks = list(callbacks or [])

    def add(self, callback: AuditCallback) -> AuditCallback:
        self.callbacks.append(callback)
        return callback

    def record(self, code: str, started_at: float, limits: Limits, result: ExecutionResult) -> None:
        if not self.callbacks and not audit_logger.isEnabledFor(logging.INFO):
            return
        event = audit_event(self.tenant_id, code, started_at, limits, result)
        audit_logger.info("%s", event.model_dump_json())
        for callback in list(self.callbacks):
            try:
                callback(event)
            except Exception:
                audit_logger.exception("ptc audit callback %r failed", callback)
