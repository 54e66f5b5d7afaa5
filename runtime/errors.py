"""Every exception ptc raises, under one root.

    PtcError
    ├── MissingExtraError        (also ImportError) an optional feature's packages are not installed
    ├── GuestBuildError          (also RuntimeError) componentize-py could not build the guest
    ├── ExecutorClosedError      the executor was closed; make a new one
    ├── SessionClosedError       the session was closed (by its caller, idle, its executor, a failed restore)
    ├── SessionSuspendedError    the session waits for approvals (`session.resume(decisions)` first)
    ├── JournalError             (also ValueError) a journal is malformed, truncated, too large or from elsewhere
    ├── ReplayDivergedError      a replay asked for something its journal does not hold
    ├── OverCapacityError        the tenant's quota and queue (or its sessions) are full
    ├── StateUnavailableError    the shared state store (Redis) cannot be reached, and no fallback is configured
    ├── StubError                (also ValueError) a rendered stub is not what its template intends
    ├── TypeCheckerError         the type checker (ty) could not check a program: it crashed or timed out
    ├── WorkerStartError         RayExecutor's actors die as they start (their catalog, handlers or options fail there)
    ├── RetryableError           raised by a tool: a transient failure the router may retry
    ├── BackendUnavailable       (also ConnectionError) a tool's backend could not be reached
    │   ├── MCPConnectionError   an MCP server could not be started or reached
    │   └── A2AConnectionError   an A2A agent could not be reached (its card, or a call)
    └── ToolError                a tool call failed (the program-facing family, below)
        ├── ToolValidationError  the parameters did not match the tool's definition
        ├── ToolTimeoutError     the tool did not answer within its timeout
        ├── CircuitOpenError     the backend failed repeatedly; calls fail fast for a while
        ├── ToolNotFoundError    no tool of that name in the catalog
        ├── ToolApprovalDenied   the call needed an approval and was denied or not decided in time
        └── ToolResultTooLarge   the result was larger than the tool's Policy.max_result_bytes

Internal ones, which never reach a caller of the public API, derive from
PtcError too, so an `except PtcError` around ptc catches whatever leaks:
`FrameError` (`FrameTooLarge`, `FrameTimeout`; ptc.hostcalls.wasm.codec),
`Abort` and its `Diverged` (ptc.hostcalls.wasm.state, .tape), `ParameterError`
(ptc.hostcalls.calls.validation), `CallFailed`, `CallAbandoned` and
`DeadlinePassed` (ptc.hostcalls.calls), `A2AReplyTooLarge`
(ptc.hostcalls.backends.a2a: an agent sent more than its limits allow),
`_Down` (ptc.redis_state: the server could not be reached; its caller decides
between a fallback and StateUnavailableError),
`WorkerProtocolError` and `Closed` (ptc.workers.wire: a worker process sent
something malformed or over its cap, or its connection closed), `_Over`
(ptc.budgets: a shortened value is still over its budget).

The ToolError family is also what a program sees (`from tools import
ToolError, ...`): `program_errors_source()` renders it, from the classes
below, into the guest's runtime and the stubs written for outside use, so
the family is defined once. A handler may raise one on purpose and the
program gets that class with that message; anything else a handler raises
reaches the program as a plain ToolError with a fixed message.
"""

from __future__ import annotations

import importlib
from importlib import metadata


class PtcError(Exception):
    """Base of every exception ptc raises."""


class StateUnavailableError(PtcError):
    """The shared state store (`state=`, e.g. Redis) could not be reached and `fallback` is off.

    Raised where shared state is needed: admission (the tenant's fleet-wide
    quota), storing or loading a journal, a resume's claim. A tool call that
    needs it (an idempotency key, its breaker) fails instead, and the program
    sees a plain ToolError with a fixed message. The message names the
    store without its password.
    """


class WorkerStartError(PtcError):
    """A RayExecutor's actors died as they started, several in a row (ptc.ray.fleet): what the driver
    sends them (catalog, handlers, options) fails to load or build on the cluster's nodes, e.g. a handler's
    module is not installed there. The message carries Ray's account of the last death. Make a new
    executor once the cause is fixed."""


class MissingExtraError(PtcError, ImportError):
    """An optional feature's packages are not installed; the message says which extra to install.

    An ImportError too, so `except ImportError` around optional features keeps working.
    """


class GuestBuildError(PtcError, RuntimeError):
    """componentize-py could not build the guest; the message carries its output."""


class ExecutorClosedError(PtcError):
    """The executor was closed (`aclose()`); it runs nothing more. Make a new one."""


class SessionClosedError(PtcError):
    """The session is closed; it runs nothing more. The message says why (aclose(), idle, its executor
    closed, its journal grew past max_journal_bytes, a restore that failed). Start or restore another."""


class SessionSuspendedError(PtcError):
    """The session's last cell waits for approvals: no cell runs until `session.resume(decisions)` goes on
    with it. `call_ids` names the calls waiting (the message does too)."""

    def __init__(self, message: str, call_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.call_ids = list(call_ids or [])


class JournalError(PtcError, ValueError):
    """A journal that cannot be replayed: malformed, truncated, too large, of a newer format, or from
    another catalog or guest build. Nothing ran."""


class ReplayDivergedError(PtcError):
    """A replay departed from its journal: another tool, other parameters, more calls (or clock readings,
    waits, modules) than recorded, or a cell that ended otherwise. No real tool ran.

    `cell` and `call` (None when not a call) say where; `recorded` and `asked` what differed.
    """

    def __init__(self, message: str, *, cell: int, call: int | None = None, recorded: str = "", asked: str = ""):
        super().__init__(message)
        self.cell = cell
        self.call = call
        self.recorded = recorded
        self.asked = asked


class OverCapacityError(PtcError):
    """The tenant's concurrent executions and queue (or its open sessions) are full; try again later."""


class StubError(PtcError, ValueError):
    """A rendered module is not what its template intends; it must not be served."""


class TypeCheckerError(PtcError):
    """The type checker could not give a verdict on a program: it crashed, timed out or printed what ptc
    cannot read. Not a finding about the program (those are Diagnostics); the message says what happened."""


class RetryableError(PtcError):
    """Raise from a tool to mark a failure as transient: the router may retry it.

    Its message is for the operator (events, logs); a program whose call
    finally fails sees "<tool> failed (RetryableError)". Raise ToolError for a
    message the program should read.
    """


class BackendUnavailable(PtcError, ConnectionError):
    """A tool's backend could not be reached (transient, retried).

    `str()` is the operator's detail (it may name a command line, a URL or a
    server's stderr); `public` is all a program sees: a fixed sentence naming
    the backend.
    """

    def __init__(self, detail: str, *, backend: str, public: str | None = None) -> None:
        super().__init__(detail)
        self.backend = backend
        self.public = public or f"{backend} is unavailable"


class MCPConnectionError(BackendUnavailable):
    """An MCP server could not be started or reached.

    The message names it and carries its command line or URL and its stderr:
    for the operator (`connect()`, `ptc run --mcp` at startup, events, logs).
    A program's call sees only `public`: "MCP server 'crm' is unavailable".
    """

    def __init__(self, server: str, detail: str, *, public: str | None = None) -> None:
        super().__init__(detail, backend=f"MCP server {server!r}", public=public)
        self.server = server


class A2AConnectionError(BackendUnavailable):
    """An A2A agent could not be reached: its card at start, or a call.

    The message names it and its URL, for the operator (`connect()`, `ptc
    run --a2a` at startup, events, logs). A program's call sees only
    `public`: "A2A agent 'travel' is unavailable".
    """

    def __init__(self, agent: str, detail: str, *, public: str | None = None) -> None:
        super().__init__(detail, backend=f"A2A agent {agent!r}", public=public)
        self.agent = agent


class ToolError(PtcError):
    """A tool call failed."""


class ToolValidationError(ToolError):
    """The parameters did not match the tool's definition."""


class ToolTimeoutError(ToolError):
    """The tool did not answer within its timeout."""


class CircuitOpenError(ToolError):
    """The tool's backend failed repeatedly; calls fail fast until it cools down."""

    @classmethod
    def after(cls, backend: str, retry_in: float) -> CircuitOpenError:
        return cls(f"circuit for {backend!r} is open after repeated failures; retry in {retry_in:.1f} s")


class ToolNotFoundError(ToolError):
    """No tool of that name in the catalog."""


class ToolApprovalDenied(ToolError):
    """The call needed an approval and was denied (or not given in time); the message holds the reason."""


class ToolResultTooLarge(ToolError):
    """The tool's result was larger than its Policy.max_result_bytes; the message names both sizes. Ask for
    less: a filter, a page, fewer fields."""


# The program-facing family, root first: what `from tools import ...` offers inside the sandbox.
PROGRAM_ERRORS: tuple[type[ToolError], ...] = (
    ToolError,
    ToolValidationError,
    ToolTimeoutError,
    CircuitOpenError,
    ToolNotFoundError,
    ToolApprovalDenied,
    ToolResultTooLarge,
)
PROGRAM_ERROR_NAMES: frozenset[str] = frozenset(cls.__name__ for cls in PROGRAM_ERRORS)


def program_errors_source() -> str:
    """The ToolError family as Python source for the program's side (a plain `Exception` at its root)."""
    blocks = []
    for cls in PROGRAM_ERRORS:
        base = "Exception" if cls is ToolError else cls.__mro__[1].__name__
        doc = (cls.__doc__ or "").strip().replace('"""', "'''")
        blocks.append(f'class {cls.__name__}({base}):\n    """{doc}"""\n')
    return "\n\n".join(blocks)


def _requirement(extra: str, package: str, fallback: str) -> str:
    """The `package` requirement of ptc's `extra`, as installed (else pyproject's, `fallback`)."""

    try:
        for requirement in metadata.requires("ptc") or []:
            spec, _, marker = requirement.partition(";")
            if spec.strip().startswith(package) and extra in marker:
                return spec.strip()
    except metadata.PackageNotFoundError:
        pass
    return fallback


def _require(feature: str, extra: str, sdk: str, modules: tuple[str, ...], package: str, fallback: str) -> None:
    """Raise MissingExtraError naming `feature` and the extra to install when a module cannot be imported."""
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{feature} needs the {sdk}, which is not installed: pip install 'ptc[{extra}]' "
            f"(or pip install '{_requirement(extra, package, fallback)}')"
        ) from exc


def require_redis(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when the Redis client (redis-py) cannot be imported."""
    _require(feature, "redis", "Redis client redis-py", ("redis.asyncio",), "redis", "redis>=5")


def require_typecheck(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when the type checker (ty) is not installed."""
    _require(feature, "typecheck", "type checker ty", ("ty",), "ty", "ty>=0.0.100")


def require_mcp(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when the MCP SDK cannot be imported."""
    _require(feature, "mcp", "MCP SDK", ("mcp", "mcp_types"), "mcp", "mcp>=2.3,<3")


def require_ray(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when Ray cannot be imported."""
    _require(feature, "ray", "Ray", ("ray",), "ray", "ray>=2.60,<3")


def require_a2a(feature: str) -> None:
    """Raise MissingExtraError naming `feature` when the A2A SDK (a2a-sdk, with httpx) cannot be imported."""
    _require(feature, "a2a", "A2A SDK", ("a2a.client", "httpx"), "a2a-sdk", "a2a-sdk[http-server]>=1.3,<2")


__all__ = [
    "A2AConnectionError",
    "BackendUnavailable",
    "CircuitOpenError",
    "ExecutorClosedError",
    "GuestBuildError",
    "JournalError",
    "MCPConnectionError",
    "MissingExtraError",
    "WorkerStartError",
    "OverCapacityError",
    "PROGRAM_ERRORS",
    "PtcError",
    "ReplayDivergedError",
    "RetryableError",
    "SessionClosedError",
    "StateUnavailableError",
    "StubError",
    "ToolError",
    "ToolApprovalDenied",
    "ToolNotFoundError",
    "ToolResultTooLarge",
    "ToolTimeoutError",
    "ToolValidationError",
    "TypeCheckerError",
    "program_errors_source",
]
