"""An executor's MCP servers: connected once (single-flight), their tools bound, closed once.

Single-flight: concurrent callers (say two first executions) await one
discovery, so one set of sessions and subprocesses is started. A discovery
that fails closes what it opened, its callers get its error, and the next
call tries again; when the caller running it is cancelled, what it opened is
closed and a waiting caller runs it anew. Once closed, it stays closed: a
connect after close is an error, never a silent reconnect.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Mapping
from typing import Any

from ptc.catalog import Binding, ToolCatalog
from ptc.errors import ExecutorClosedError, PtcError, require_mcp
from ptc.hostcalls.backends.mcp.client import MCPServerConfig, MCPServers


class _ConnectAbandoned(PtcError):
    """The caller running the MCP discovery was cancelled: a waiting caller runs it anew."""


class MCPConnections:
    def __init__(
        self,
        specs: Mapping[str, str | MCPServerConfig | Mapping[str, Any]],
        catalog: ToolCatalog,
        bind: Callable[[Mapping[str, Binding]], None],
    ) -> None:
        self.configs = [MCPServerConfig.parse(name, spec) for name, spec in specs.items()]
        if self.configs:
            require_mcp("MCP servers (mcp_servers=)")  # at once, not after a connect timeout
        for config in self.configs:
            if not config.name.isidentifier() or config.name.startswith("_"):
                raise ValueError(
                    f"MCP server name {config.name!r} must be a Python identifier (it becomes tools.<name>)"
                )
        self._catalog = catalog
        self._bind = bind
        self._servers: MCPServers | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._connecting: concurrent.futures.Future[None] | None = None  # the discovery in flight

    @property
    def connected(self) -> bool:
        return not self.configs or self._servers is not None

    async def connect(self) -> None:
        """Start the sessions and discover their tools, once; ExecutorClosedError after close()."""
        while not self.connected:
            with self._lock:
                if self._closed:
                    raise ExecutorClosedError("the executor is closed: its MCP servers are not reconnected")
                if self._servers is not None:
                    return
                flight = self._connecting
                leading = flight is None
                if flight is None:
                    flight = self._connecting = concurrent.futures.Future()
                    flight.set_running_or_notify_cancel()  # a waiter that gives up cannot cancel it for the others
            if leading:
                await self._discover(flight)
                return
            try:
                await asyncio.wrap_future(flight)
            except _ConnectAbandoned:
                continue
            return

    async def _discover(self, flight: concurrent.futures.Future[None]) -> None:
        from ptc.hostcalls.backends.mcp.tools import add_mcp_tools

        servers = MCPServers(self.configs)
        try:
            handlers = await add_mcp_tools(self._catalog, servers)
        except Exception as exc:
            self._landed(flight, exc)
            await asyncio.to_thread(servers.close)
            raise
        except BaseException:
            self._landed(flight, _ConnectAbandoned())
            # not awaited: this task is being cancelled, and the sessions must close anyway
            threading.Thread(target=servers.close, name="ptc-mcp-close", daemon=True).start()
            raise
        with self._lock:
            closed, self._connecting = self._closed, None
            if not closed:
                self._bind(handlers)
                self._servers = servers
        if closed:  # close() ran while this discovery was in flight: what it opened goes too
            await asyncio.to_thread(servers.close)
            flight.set_exception(ExecutorClosedError("the executor was closed while connecting"))
            raise ExecutorClosedError("the executor was closed while connecting")
        flight.set_result(None)

    def _landed(self, flight: concurrent.futures.Future[None], exc: BaseException) -> None:
        with self._lock:
            self._connecting = None
        flight.set_exception(exc)

    def close(self) -> None:
        """Close the sessions (and their subprocesses); blocks while they stop."""
        with self._lock:
            self._closed = True
            servers, self._servers = self._servers, None
        if servers is not None:
            servers.close()
