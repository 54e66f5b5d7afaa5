"""Host-side exceptions.

The ToolError family mirrors the classes a program sees (`from tools import
ToolError, ...`): a handler may raise one on purpose and the program gets
that class with that message. Everything else a handler raises reaches the
program as a plain ToolError carrying the exception's type and message.
"""

from __future__ import annotations

from ptc.hostcalls.policies import RetryableError


class PtcError(Exception):
    """Base of the errors ptc raises to its caller (not to the program)."""


class ToolError(PtcError):
    """A tool call failed."""


class ToolValidationError(ToolError):
    """The parameters did not match the tool's definition."""


class ToolTimeoutError(ToolError):
    """The tool did not answer within its timeout."""


class CircuitOpenError(ToolError):
    """The tool's backend failed repeatedly; calls fail fast until it cools down."""


class ToolNotFoundError(ToolError):
    """No tool of that name in the catalog."""


__all__ = [
    "CircuitOpenError",
    "PtcError",
    "RetryableError",
    "ToolError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "ToolValidationError",
]
