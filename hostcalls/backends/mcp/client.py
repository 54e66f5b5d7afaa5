"""Long-lived sessions to MCP servers (stdio subprocesses or streamable HTTP).

The SDK's client is anyio-based: a session must be entered and exited by one
task. Each server therefore gets an owner task that holds the session open;
calls from any task use it concurrently. All sessions of one `MCPServers`
live on a private event loop thread (ptc.loop_thread), so they
outlive any caller's loop and close cleanly in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import shlex
import tempfile
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ptc.errors import MCPConnectionError, MissingExtraError, require_mcp
from ptc.loop_thread import LoopThread
from ptc.private.mcp import http_client
from ptc.telemetry import traceparent_of_message

_T = TypeVar("_T")


class MCPServerConfig(BaseModel):
    """How to reach one MCP server; its tools land in `tools.<name>`."""

    name: str
    command: list[str] | None = Field(None, description="stdio: the command and its arguments")
    url: str | None = Field(None, description="streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp")
    headers: dict[str, str] = Field(default_factory=dict)
    env: dict[str, str] | None = Field(None, description="extra environment for a stdio server")
    cwd: str | None = None
    connect_timeout: float = 30.0

    @classmethod
    def parse(cls, name: str, spec: str | Mapping[str, Any] | MCPServerConfig) -> MCPServerConfig:
        """`http(s)://...` is a URL; anything else is a command line."""
        if isinstance(spec, MCPServerConfig):
            return spec
        if isinstance(spec, Mapping):
            return cls(name=name, **spec)
        if spec.startswith(("http://", "https://")):
            return cls(name=name, url=spec)
        return cls(name=name, command=shlex.split(spec))

    def describe(self) -> str:
        return self.url or shlex.join(self.command or [])


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _connection_lost(exc: BaseException) -> bool:
    import anyio
    from mcp.shared.exceptions import MCPError
    from mcp_types import CONNECTION_CLOSED

    exc = _leaf(exc)
    if isinstance(exc, MCPError):
        return exc.error.code == CONNECTION_CLOSED
    return isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError))


async def _traceparent_header(request: Any) -> None:
    """A tools/call's trace context as the W3C `traceparent` header too (the SDK puts it in `_meta` only), so
    an HTTP server's own instrumentation parents its spans on the calling attempt (ptc.telemetry)."""
    if request.method != "POST":
        return
    try:
        body = request.content
    except Exception:  # noqa: BLE001 - a streamed body (not the SDK's JSON-RPC message): nothing to read
        return
    request.headers.update(traceparent_of_message(body))


class _Connection:
    """One server's session, reopened on the next call after it died."""

    def __init__(self, config: MCPServerConfig) -> None:
        self.config = config
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._errlog: Any = None

    async def client(self) -> Any:
        if self.alive:
            return self._client
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if not self.alive:
                await self._open()
        return self._client

    async def _open(self) -> None:
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        if self._errlog is not None:
            self._errlog.close()
        errlog = self._errlog = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        # A context of its own: the session outlives the call that opened it (and that call's trace context).
        self._owner = asyncio.create_task(
            self._hold(ready, self._stop, errlog), name=f"mcp:{self.config.name}", context=contextvars.Context()
        )
        try:
            self._client = await asyncio.wait_for(asyncio.shield(ready), self.config.connect_timeout)
        except Exception as exc:
            self._stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._owner, 5)
            errlog.seek(0)
            stderr = errlog.read()[-2000:].strip()
            cause = _leaf(exc)
            if isinstance(cause, ImportError):  # not the server's fault: say what to install
                raise MissingExtraError(
                    f"MCP server {self.config.name!r}: the MCP SDK could not be imported ({cause}): "
                    "pip install 'ptc[mcp]'"
                ) from cause
            detail = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
            raise MCPConnectionError(
                self.config.name,
                f"MCP server {self.config.name!r} ({self.config.describe()}) failed to start: {detail}"
                + (f"\nits stderr:\n{stderr}" if stderr else ""),
            ) from None

    async def _hold(self, ready: asyncio.Future[Any], stop: asyncio.Event, errlog: Any) -> None:
        try:  # everything in here reaches the waiting caller through `ready`, an ImportError too
            from mcp import Client
            from mcp.client.stdio import StdioServerParameters, stdio_client
            from mcp.client.streamable_http import streamable_http_client

            async with contextlib.AsyncExitStack() as stack:
                if self.config.url is not None:
                    http = await stack.enter_async_context(http_client(self.config.headers))
                    http.event_hooks["request"].append(_traceparent_header)
                    transport: Any = streamable_http_client(self.config.url, http_client=http)
                else:
                    command = self.config.command or []
                    if not command:
                        raise MCPConnectionError(
                            self.config.name, f"MCP server {self.config.name!r} has neither a command nor a url"
                        )
                    params = StdioServerParameters(
                        command=command[0], args=command[1:], env=self.config.env, cwd=self.config.cwd
                    )
                    transport = stdio_client(params, errlog=errlog)
                client = await stack.enter_async_context(Client(transport))
                ready.set_result(client)
                await stop.wait()
        except BaseException as exc:  # noqa: BLE001 - reported through `ready`, or the session just ended
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))
        finally:
            self._client = None

    @property
    def alive(self) -> bool:
        return self._client is not None and self._owner is not None and not self._owner.done()

    async def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._owner is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._owner, 10)
        self._client = None
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None


class MCPServers:
    """The sessions of a set of MCP servers, on a private event loop thread."""

    def __init__(self, configs: list[MCPServerConfig]) -> None:
        require_mcp("MCP servers")
        self.configs = {c.name: c for c in configs}
        self._connections = {c.name: _Connection(c) for c in configs}
        self._loop = LoopThread("ptc-mcp")
        self._closed = False

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> Awaitable[_T]:
        if self._closed:
            coro.close()
            raise MCPConnectionError("*", "the MCP sessions are closed", public="the MCP sessions are closed")
        return self._loop.submit(coro)

    async def list_tools(self, name: str) -> list[Any]:
        """Every tool the server offers (all pages)."""
        return await self._submit(self._list_tools(name))

    async def _list_tools(self, name: str) -> list[Any]:
        client = await self._connections[name].client()
        timeout = self.configs[name].connect_timeout
        tools: list[Any] = []
        cursor = None
        for _ in range(1000):
            try:  # a server that never answers (or sends a reply its client cannot parse) must not hang discovery
                page = await asyncio.wait_for(client.list_tools(cursor=cursor), timeout)
            except TimeoutError:
                raise MCPConnectionError(
                    name, f"MCP server {name!r} did not list its tools within {timeout:g} s"
                ) from None
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def call_tool(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        return await self._submit(self._call_tool(server, tool, arguments))

    async def _call_tool(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        connection = self._connections[server]
        client = await connection.client()
        try:
            return await client.call_tool(tool, arguments)
        except Exception as exc:
            if _connection_lost(exc) or not connection.alive:
                await connection.close()  # the next call starts a new session (and subprocess)
                message = f"MCP server {server!r} went away during the call"
                raise MCPConnectionError(server, message, public=message) from None
            raise

    def close(self) -> None:
        """Close every session and stop the loop (subprocesses end with their sessions)."""
        if self._closed:
            return
        self._closed = True

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in self._connections.values()), return_exceptions=True)

        self._loop.close(close_all)
