"""ptc: run an LLM's Python program against a tool catalog in a WebAssembly sandbox."""

from ptc.approvals import DEFER, ApprovalDecision, ApprovalRequest
from ptc.audit import AuditEvent
from ptc.catalog import ToolCatalog, ToolDefinition, ToolParameter
from ptc.errors import (
    CircuitOpenError,
    ExecutorClosedError,
    GuestBuildError,
    JournalError,
    MCPConnectionError,
    MissingExtraError,
    OverCapacityError,
    PtcError,
    ReplayDivergedError,
    RetryableError,
    SessionClosedError,
    SessionSuspendedError,
    StateUnavailableError,
    ToolApprovalDenied,
    ToolError,
    ToolNotFoundError,
    ToolResultTooLarge,
    ToolTimeoutError,
    ToolValidationError,
    TypeCheckerError,
    WorkerStartError,
)
from ptc.events import ToolEvent
from ptc.executor import ProgrammaticToolExecutor
from ptc.hostcalls.calls.shim import MCPClientShim
from ptc.journal import Journal, JournalCall, JournalCell
from ptc.limits import Limits
from ptc.policy import Policy
from ptc.ray import RayExecutor, RaySession
from ptc.records import CallErrorInfo, ToolCallRecord
from ptc.redis_state import RedisState
from ptc.results import Diagnostic, Dropped, ExecutionError, ExecutionErrorInfo, ExecutionResult
from ptc.sessions import Session
from ptc.tenancy import Quota

__all__ = [
    "DEFER",
    "ApprovalDecision",
    "ApprovalRequest",
    "AuditEvent",
    "OverCapacityError",
    "Quota",
    "CircuitOpenError",
    "CallErrorInfo",
    "Diagnostic",
    "Dropped",
    "ExecutionError",
    "ExecutionErrorInfo",
    "ExecutorClosedError",
    "GuestBuildError",
    "Journal",
    "JournalCall",
    "JournalCell",
    "JournalError",
    "MCPConnectionError",
    "ExecutionResult",
    "Limits",
    "MCPClientShim",
    "MissingExtraError",
    "Policy",
    "ProgrammaticToolExecutor",
    "PtcError",
    "RayExecutor",
    "RaySession",
    "ReplayDivergedError",
    "RetryableError",
    "RedisState",
    "Session",
    "SessionClosedError",
    "SessionSuspendedError",
    "StateUnavailableError",
    "ToolCallRecord",
    "ToolCatalog",
    "ToolDefinition",
    "ToolApprovalDenied",
    "ToolError",
    "ToolEvent",
    "ToolNotFoundError",
    "ToolResultTooLarge",
    "ToolParameter",
    "ToolTimeoutError",
    "ToolValidationError",
    "TypeCheckerError",
    "WorkerStartError",
]
