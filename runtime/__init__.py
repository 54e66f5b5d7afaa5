"""ptc: run an LLM's Python program against a tool catalog in a WebAssembly sandbox."""

from ptc.audit import AuditEvent
from ptc.catalog import ToolCatalog, ToolDefinition, ToolParameter
from ptc.errors import (
    CircuitOpenError,
    ExecutorClosedError,
    GuestBuildError,
    MCPConnectionError,
    MissingExtraError,
    OverCapacityError,
    PtcError,
    RetryableError,
    ToolError,
    ToolNotFoundError,
    ToolTimeoutError,
    ToolValidationError,
)
from ptc.events import ToolEvent
from ptc.executor import ProgrammaticToolExecutor
from ptc.hostcalls.calls.shim import MCPClientShim
from ptc.limits import Limits
from ptc.policy import Policy
from ptc.records import CallErrorInfo, ToolCallRecord
from ptc.results import ExecutionError, ExecutionErrorInfo, ExecutionResult
from ptc.tenancy import Quota

__all__ = [
    "AuditEvent",
    "OverCapacityError",
    "Quota",
    "CircuitOpenError",
    "CallErrorInfo",
    "ExecutionError",
    "ExecutionErrorInfo",
    "ExecutorClosedError",
    "GuestBuildError",
    "MCPConnectionError",
    "ExecutionResult",
    "Limits",
    "MCPClientShim",
    "MissingExtraError",
    "Policy",
    "ProgrammaticToolExecutor",
    "PtcError",
    "RetryableError",
    "ToolCallRecord",
    "ToolCatalog",
    "ToolDefinition",
    "ToolError",
    "ToolEvent",
    "ToolNotFoundError",
    "ToolParameter",
    "ToolTimeoutError",
    "ToolValidationError",
]
