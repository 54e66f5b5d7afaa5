"""An executor's remote backends (MCP servers, A2A agents): connected once (single-flight), closed once.

Single-flight: concurrent callers (say two first executions) await one
discovery, so one set of sessions, subprocesses or clients is started. A
discovery that fails closes what it opened, its callers get its error, and
the next call tries again; when the caller running it is cancelled, what it
opened is closed and a waiting caller runs it anew. Once closed, it stays
closed: a connect after close is an error, never a silent reconnect.

`Connections` is that lifecycle for one kind of backend; `MCPConnections`
and `A2AConnections` say how their kind is opened and discovered.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Generic, Protocol, TypeVar

from ptc.catalog import Binding, ToolCatalog
from ptc.errors import ExecutorClosedError, PtcError, require_a2a, require_mcp
from ptc.hostcalls.backends.a2a.client import A2AAgentConfig, A2AAgents
from ptc.hostcalls.backends.mcp.client import MCPServerConfig, MCPServers


class _ConnectAbandoned(PtcError):
    """The caller running the discovery was cancelled: a waiting caller runs it anew."""


class _Closable(Protocol):
    def close(self) -> None: ...


_Opened = TypeVar("_Opened", bound=_Closable)


def _check_names(what: str, names: Collection[str], taken: Collection[str] = ()) -> None:
    for name in names:
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"{what} name {name!r} must be a Python identifier (it becomes tools.<name>)")
        if name in taken:
            raise ValueError(f"{what} name {name!r} is taken by another backend (each becomes tools.<name>)")


class Connections(Generic[_Opened]):
    """One kind of backend's lifecycle: `open()` makes its clients, `discover(them)` binds their tools."""

    def __init__(
        self,
        what: str,
        configs: list[Any],
        bind: Callable[[Mapping[str, Binding]], None],
        open_: Callable[[], _Opened],
        discover: Callable[[_Opened], Awaitable[dict[str, Binding]]],
    ) -> None:
        self.configs = configs
        self._what = what
        self._bind = bind
        self._open = open_
        self._discover_tools = discover
        self._opened: _Opened | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._connecting: concurrent.futures.Future[None] | None = None  # the discovery in flight

    @property
    def connected(self) -> bool:
        return not self.configs or self._opened is not None

    async def connect(self) -> None:
        """Open the backends and discover their tools, once; ExecutorClosedError after close()."""
        while not self.connected:
            with self._lock:
                if self._closed:
                    raise ExecutorClosedError(f"the executor is closed: its {self._what} are not reconnected")
                if self._opened is not None:
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
        opened = self._open()
        try:
            handlers = await self._discover_tools(opened)
        except Exception as exc:
            self._landed(flight, exc)
            await asyncio.to_thread(opened.close)
            raise
        except BaseException:
            self._landed(flight, _ConnectAbandoned())
            # not awaited: this task is being cancelled, and the clients must close anyway
            threading.Thread(target=opened.close, name="ptc-backend-close", daemon=True).start()
            raise
        with self._lock:
            closed, self._connecting = self._closed, None
            if not closed:
                self._bind(handlers)
                self._opened = opened
        if closed:  # close() ran while this discovery was in flight: what it opened goes too
            await asyncio.to_thread(opened.close)
            flight.set_exception(ExecutorClosedError("the executor was closed while connecting"))
            raise ExecutorClosedError("the executor was closed while connecting")
        flight.set_result(None)

    def _landed(self, flight: concurrent.futures.Future[None], exc: BaseException) -> None:
        with self._lock:
            self._connecting = None
        flight.set_exception(exc)

    def close(self) -> None:
        """Close the clients (and their subprocesses); blocks while they stop."""
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, None
        if opened is not None:
            opened.close()


class MCPConnections(Connections[MCPServers]):
    def __init__(
        self,
        specs: Mapping[str, str | MCPServerConfig | Mapping[str, Any]],
        catalog: ToolCatalog,
        bind: Callable[[Mapping[str, Binding]], None],
    ) -> None:
        configs = [MCPServerConfig.parse(name, spec) for name, spec in specs.items()]
        if configs:
            require_mcp("MCP servers (mcp_servers=)")  # at once, not after a connect timeout
        _check_names("MCP server", [c.name for c in configs])

        async def discover(servers: MCPServers) -> dict[str, Binding]:
            from ptc.hostcalls.backends.mcp.tools import add_mcp_tools

            return await add_mcp_tools(catalog, servers)

        super().__init__("MCP servers", configs, bind, lambda: MCPServers(configs), discover)


class A2AConnections(Connections[A2AAgents]):
    def __init__(
        self,
        specs: Mapping[str, str | A2AAgentConfig | Mapping[str, Any]],
        catalog: ToolCatalog,
        bind: Callable[[Mapping[str, Binding]], None],
        *,
        taken: Collection[str] = (),
    ) -> None:
        """`taken`: the names other backends use (an MCP server's): an agent may not share one."""
        configs = [A2AAgentConfig.parse(name, spec) for name, spec in specs.items()]
        if configs:
            require_a2a("A2A agents (a2a_agents=)")
        _check_names("A2A agent", [c.name for c in configs], taken)

        async def discover(agents: A2AAgents) -> dict[str, Binding]:
            from ptc.hostcalls.backends.a2a.tools import add_a2a_tools

            await agents.open()
            return await add_a2a_tools(catalog, agents)

        super().__init__("A2A agents", configs, bind, lambda: A2AAgents(configs), discover)
