"""What a program may see of a failed call: a ToolError class name and a fixed or capped message.

A tool's own exception may hold the host's secrets (paths, commands,
passwords, connection strings), so its text goes to events and the `ptc`
logger only (`CallFailed.detail`); the program and the call record get a
whitelisted sentence (`tool_failure`). Every message on its way to the
program is cut once, where the reply is made.
"""

from __future__ import annotations

from ptc.errors import BackendUnavailable, PtcError, ToolError
from ptc.hostcalls.wasm import codec

# The longest failure message a program gets; a tool's error text can be as long as it likes.
MAX_ERROR_MESSAGE = 4000
DEADLINE_MESSAGE = "the execution's deadline passed during this call"


class CallFailed(PtcError):
    """A failed call, as the program will see it: a ToolError subclass name and a message.

    `detail` is what the operator sees (events, the `ptc` logger): for a
    tool's own exception, its type and full text.
    """

    def __init__(self, type_: str, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.message = message
        self.detail = detail if detail is not None else message


class DeadlinePassed(PtcError):
    """The execution's deadline passed while an inline call was still running."""


def text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def clipped(text: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit] + "... (truncated)"


def type_name(exc: BaseException) -> str:
    """The exception's class name, if it is an ordinary one (a class name made of data is not shown)."""
    name = type(exc).__name__
    return name if name.isidentifier() and name.isascii() and len(name) <= 64 else "Exception"


def tool_failure(tool: str, exc: BaseException) -> CallFailed:
    """What a program may see of a tool's exception: only whitelisted, fixed texts.

    * ptc's ToolError family, raised on purpose (a handler's `ToolError("...")`,
      an MCP tool's isError reply): its own class and text, capped;
    * an unavailable backend: a fixed sentence naming it ("MCP server 'crm'
      is unavailable");
    * anything else (ValueError, OSError, CalledProcessError, a client
      library's connection error, RetryableError, SystemExit, ...): the fixed
      "<tool> failed (<type>)".
    """
    detail = f"{type(exc).__name__}: {text_of(exc)}"
    if isinstance(exc, ToolError):
        return CallFailed(type_name(exc), text_of(exc), detail)
    if isinstance(exc, BackendUnavailable):
        return CallFailed("ToolError", exc.public, detail)
    return CallFailed("ToolError", f"{tool} failed ({type_name(exc)})", detail)


CANCELLED_REPLY = codec.error_frame("ToolError", "the call was cancelled")
INTERNAL_REPLY = codec.error_frame("ToolError", "the tool call failed inside ptc")
