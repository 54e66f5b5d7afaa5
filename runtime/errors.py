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


class MissingExtraError(PtcError, ImportError):
    """An optional feature's packages are not installed; the message says which extra to install.

    An ImportError too, so `except ImportError` around optional features keeps working.
    """


def _mcp_requirement() -> str:
    """The `mcp` requirement of the `mcp` extra, as installed (else pyproject's)."""
    from importlib import metadata

    try:
        for requirement in metadata.requires("ptc") or []:
            spec, _, marker = requirement.partition(";")
            if spec.strip().startswith("mcp") and "mcp" in marker:
                return spec.strip()
    except metadata.PackageNotFoundError:
        pass
    return "mcp>=2.3,<3"


def require_mcp(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when the MCP SDK cannot be imported."""
    try:
        import mcp  # noqa: F401
        import mcp_types  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the MCP SDK, which is not installed: pip install 'ptc[mcp]' "
            f"(or pip install '{_mcp_requirement()}')"
        ) from exc


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
    "MissingExtraError",
    "PtcError",
    "RetryableError",
    "ToolError",
    "ToolNotFoundError",
    "ToolTimeoutError",
    "ToolValidationError",
]
