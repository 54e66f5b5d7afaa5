"""`ptc serve`: code mode for any MCP client.

An MCP server fronting the upstream tools (`--mcp`, `--tools`): one tool runs
a Python program in the sandbox against them, two more let a client discover
a large catalog progressively.

Failures are MCP tool errors (`isError: true`) with their text for the
model, and no traceback in the server's log (stdio clients show its stderr
to their users): a program that failed returns an error result whose first
text block is `kind: Type: message` and then its traceback and output, with
the whole result still in `structuredContent`; an unknown tool, a full
queue and the like raise the SDK's `ToolError`.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import pydantic_core
from pydantic import Field

from ptc.budgets import MIN_JSON_BUDGET, bounded_calls, json_size, shorten_json
from ptc.errors import BackendUnavailable, PtcError, require_mcp
from ptc.executor import ProgrammaticToolExecutor
from ptc.results import ExecutionResult
from ptc.serve_sessions import MAX_PER_CONNECTION, ServeSessions

if TYPE_CHECKING:
    from mcp.types import CallToolResult

EXECUTE_DESCRIPTION = """Run a Python 3.14 program in a sandbox where the tools below are importable.

Use it to call many tools in one step: loop, filter, join and sum in the program and print (or set `result` to)
only what you need. Top-level `await` works; run independent calls concurrently with `asyncio.gather`.
Returns the program's output, its value, its error (kind, type, message, traceback) and a trace of the tool calls.
No network, files or processes inside the sandbox: only the tools.

"""

_log = logging.getLogger("ptc.serve")
_LARGE_CATALOG = 40  # past this many tools the description lists domains only; use search_tools


def _jsonable(value: Any) -> Any:
    """`value` with every bytes object in it shown as its repr (`b'\\xff'`): JSON has no bytes."""
    if isinstance(value, bytes | bytearray):
        return repr(bytes(value))
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {(_jsonable(k) if isinstance(k, bytes) else k): _jsonable(v) for k, v in value.items()}
    return value


# Parameters echoed back per call: the model wrote them, and a program can make
# them as large as its host budget, which the server would then serialize, on
# the loop every client shares, into every reply.
_MAX_ECHOED_PARAMETERS = 2048


def _fits(value: Any, budget: int) -> int:
    """What is left of `budget` after `value` (roughly its JSON size), or -1 once it is spent: stops early."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            budget -= len(item) + 2
        elif isinstance(item, dict):
            budget -= 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            budget -= len(item) + 2
            stack.extend(item)
        else:
            budget -= 8
        if budget < 0:
            return -1
    return budget


def _echoed(parameters: Any) -> Any:
    if _fits(parameters, _MAX_ECHOED_PARAMETERS) < 0:
        return f"<not shown: more than {_MAX_ECHOED_PARAMETERS} bytes>"
    return _jsonable(parameters)


RESULT_JSON_BYTES = 100_000  # the value's JSON in a reply, by default (~25k tokens): past it, shortened


def _call_entry(call: Any) -> dict[str, Any]:
    return {
        "tool": call.tool,
        "parameters": _echoed(call.parameters),
        "duration": round(call.duration or 0.0, 4),
        "error": f"{call.error.type}: {call.error.message}" if call.error else None,
        **({"cache_hit": True} if call.cache_hit else {}),
        **({"attempts": call.attempts} if call.attempts > 1 else {}),
    }


def compact(result: ExecutionResult, *, max_result_bytes: int = RESULT_JSON_BYTES) -> dict[str, Any]:
    """The result as an MCP client's model should see it (JSON: bytes in the value come as their repr).

    Bounded, and saying so (ptc.budgets): a value whose JSON is over
    `max_result_bytes` is shortened structurally (`result_truncated` states
    the size and the cap); a long call log shows its first and last calls,
    counts by tool and keeps the failed ones; what the executor's own limits
    dropped is listed in `dropped`.
    """
    value, shortened = shorten_json(_jsonable(result.result), max_result_bytes)
    payload: dict[str, Any] = {
        "output": result.output,
        "output_truncated": result.output_truncated,
        "result": value,
        **({"result_is_repr": True} if result.result_is_repr else {}),
        "error": result.error.model_dump(exclude_none=True) if result.error else None,
        "execution_time": round(result.execution_time, 4),
        **bounded_calls(result.tool_calls, _call_entry, lambda call: str(call.tool)),
    }
    if shortened:
        payload["result_truncated"] = {
            "limit_bytes": max(max_result_bytes, MIN_JSON_BUDGET),
            "note": (
                f"the value was {json_size(result.result)} bytes as JSON, more than this server's "
                f"{max(max_result_bytes, MIN_JSON_BUDGET)}-byte budget: lists, objects and strings were shortened, "
                "each ending with a marker saying how much it lost; print or return less (a summary, a page)"
            ),
        }
    if result.dropped:
        payload["dropped"] = [str(d) for d in result.dropped]
    return payload


SESSION_NOTE = """Pass `session="NAME"` to keep state between calls: variables, functions and imports persist from
one call to the next in that session (made on first use, private to this connection); close it with close_session.

"""

SESSION_DESCRIPTION = (
    "Optional: a session name (1-64 letters, digits, _ . -) to run in; its variables persist between calls. "
    "Omit it for a fresh sandbox."
)

CODE_DESCRIPTION = (
    "The Python 3.14 program to run. Import the tools from `tools.<domain>` and `await` them (top-level await "
    "works); print what you need, or set `result` (else the last expression is the value)."
)


def error_text(result: ExecutionResult) -> str:
    """A failed program as a model reads it first: `kind: Type: message`, its traceback, then its output."""
    error = result.error
    assert error is not None
    parts = [f"{error.kind}: {error.type}: {error.message}"]
    if error.traceback:
        parts.append(error.traceback.rstrip("\n"))
    if result.output:
        parts.append("output:\n" + result.output.rstrip("\n") + (" [truncated]" if result.output_truncated else ""))
    return "\n\n".join(parts)


def tool_result(
    result: ExecutionResult, session: dict[str, Any] | None = None, *, max_result_bytes: int = RESULT_JSON_BYTES
) -> "CallToolResult":
    """The MCP CallToolResult for one execution: an error result when the program failed.

    The first text block is the error (see error_text) or, on success, the
    JSON of `compact(result)`; structuredContent is `compact(result)` either
    way, with `session` (the session's name, cell number, ...) added for a cell.
    """
    from mcp.types import CallToolResult, TextContent

    payload = {**compact(result, max_result_bytes=max_result_bytes), **(session or {})}
    text = pydantic_core.to_json(payload, indent=2, fallback=repr, inf_nan_mode="null").decode()
    data = TextContent(type="text", text=text)
    if result.error is None:
        return CallToolResult(content=[data], structured_content=payload)
    first = TextContent(type="text", text=error_text(result))
    return CallToolResult(content=[first, data], structured_content=payload, is_error=True)


def build_server(
    executor: ProgrammaticToolExecutor,
    name: str = "ptc",
    *,
    max_sessions_per_connection: int = MAX_PER_CONNECTION,
    session_idle_timeout: float = 300.0,
    max_result_bytes: int = RESULT_JSON_BYTES,
) -> Any:
    """An MCPServer (official SDK) whose tools run programs against the executor's catalog.

    `execute_python(code, session=NAME)` runs a cell in the connection's
    session NAME (ptc.serve_sessions); `close_session(NAME)` closes it.
    `max_result_bytes` is the JSON budget of a reply's value (`compact`).
    Raises MissingExtraError (an ImportError) without the `mcp` extra.
    """
    require_mcp("ptc serve")
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import CallToolResult

    if len(executor.catalog) <= _LARGE_CATALOG:
        reference = executor.api_reference()
    else:
        domains = ", ".join(f"tools.{d} ({len(t)} tools)" for d, t in executor.catalog.domains().items())
        reference = (
            f"{len(executor.catalog)} tools in: {domains}. Find them with search_tools, read one with describe_tool."
        )
    server = MCPServer(
        name, instructions="Programmatic tool calling: write one program that calls many tools.", log_level="WARNING"
    )

    sessions = ServeSessions(
        executor, max_per_connection=max_sessions_per_connection, idle_timeout=session_idle_timeout
    )

    @server.tool(name="execute_python", description=EXECUTE_DESCRIPTION + SESSION_NOTE + reference)
    async def execute_python(
        code: Annotated[str, Field(description=CODE_DESCRIPTION)],
        ctx: Context,
        session: Annotated[str | None, Field(description=SESSION_DESCRIPTION)] = None,
    ) -> Annotated[CallToolResult, dict[str, Any]]:
        try:
            if session is None:
                result = await executor.execute(code, on_output=_progress(ctx))
                return tool_result(result, max_result_bytes=max_result_bytes)
            return await _run_cell(sessions, ctx, session, code, max_result_bytes)
        except BackendUnavailable as exc:  # an upstream that cannot be (re)discovered: its public sentence only
            _log.warning("execute_python: %r", str(exc))  # the operator's detail (command line, stderr), on one line
            raise ToolError(exc.public) from None
        except PtcError as exc:  # OverCapacityError, SessionRefused and the like: the client's to know, not a crash
            raise ToolError(str(exc)) from None

    @server.tool(name="close_session")
    async def close_session(
        session: Annotated[str, Field(description="the session's name, as given to execute_python")],
        ctx: Context,
    ) -> bool:
        """Close one of this connection's sessions (its variables are gone); true if it was open."""
        try:
            return await sessions.close(ctx, session)
        except PtcError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(name="search_tools")
    def search_tools(
        query: Annotated[str, Field(description='words to look for, e.g. "order status"')],
        limit: Annotated[int, Field(description="at most this many tools")] = 10,
    ) -> list[dict[str, Any]]:
        """Find tools by words of their names, descriptions and parameters (best first): how to import and call each."""
        return executor.search_tools(query, limit)

    @server.tool(name="describe_tool")
    def describe_tool(
        name: Annotated[str, Field(description="the tool, as `domain.tool` (from search_tools) or its plain name")],
    ) -> str:
        """The full stub of one tool: its signature, types, docstring and an example."""
        described = executor.describe_tool(name)
        if described is None:
            raise ToolError(f"no tool named {name[:100]!r}; use search_tools to find one")
        return str(described["stub"])

    return server


def _progress(ctx: Any) -> Callable[[str, str], Awaitable[None]] | None:
    """The program's output as MCP progress notifications, while it runs, if the client asked for progress.

    Each notification's message is the new output (stderr marked), its
    progress the characters sent so far (it must grow); the total is unknown.
    Without a progress token in the request: None, and no live output at all.
    """
    try:
        meta = ctx.request_context.meta
    except (AttributeError, ValueError):
        return None
    if isinstance(meta, Mapping):
        token = meta.get("progressToken", meta.get("progress_token"))
    else:
        token = getattr(meta, "progress_token", None)
    if token is None:
        return None
    sent = 0

    async def progress(stream: str, text: str) -> None:
        nonlocal sent
        sent += len(text)
        await ctx.report_progress(sent, None, text if stream == "stdout" else "[stderr] " + text)

    return progress


async def _run_cell(
    sessions: ServeSessions, ctx: Any, name: str, code: str, max_result_bytes: int = RESULT_JSON_BYTES
) -> "CallToolResult":
    """One cell in the connection's session `name` (made on first use), rendered with the session's name and cell."""
    session, replaced = sessions.get(ctx, name)
    result = await session.execute(code, on_output=_progress(ctx))
    about: dict[str, Any] = {"session": name, "cell": result.cell}
    if result.cell == 0:  # (not `session.cells` before it: two first calls at once would both say new)
        about["new_session"] = True
    if replaced is not None:
        about["previous_session_closed"] = replaced
    if result.session_restored:
        about["session_restored"] = True  # the cell was stopped; the session goes on from the cells before it
    return tool_result(result, about, max_result_bytes=max_result_bytes)


def run_http(server: Any, host: str, port: int, *, on_listening: Callable[[str], None] | None = None) -> None:
    """Serve streamable HTTP on host:port (port 0: a free one) until stopped; `on_listening(url)` once bound.

    What `server.run("streamable-http")` does, but with a word once the
    socket is listening (the URL carries the port actually bound).
    """
    import anyio
    import uvicorn

    app = server.streamable_http_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level=server.settings.log_level.lower())

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_listening is not None:
                address = self.servers[0].sockets[0].getsockname()
                shown = f"[{address[0]}]" if ":" in address[0] else address[0]
                on_listening(f"http://{shown}:{address[1]}/mcp")

    anyio.run(_Server(config).serve)
