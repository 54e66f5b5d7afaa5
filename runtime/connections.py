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
Bind = Callable[[Mapping[str, Binding]], None]


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
        bind: Bind,
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


def _parse(config: type[MCPServerConfig] | type[A2AAgentConfig], specs: Mapping[str, Any]) -> list[Any]:
    return [config.parse(name, spec) for name, spec in specs.items()]


async def _mcp_tools(catalog: ToolCatalog, servers: MCPServers) -> dict[str, Binding]:
    from ptc.hostcalls.backends.mcp.tools import add_mcp_tools

    return await add_mcp_tools(catalog, servers)


async def _a2a_tools(catalog: ToolCatalog, agents: A2AAgents) -> dict[str, Binding]:
    from ptc.hostcalls.backends.a2a.tools import add_a2a_tools

    await agents.open()  # every card read, or the first failure raised
    return await add_a2a_tools(catalog, agents)


class MCPConnections(Connections[MCPServers]):
    """mcp_servers={name: "command args" | "http://.../mcp" | MCPServerConfig}."""

    def __init__(self, specs: Mapping[str, Any], catalog: ToolCatalog, bind: Bind) -> None:
        configs = _parse(MCPServerConfig, specs)
        if configs:
            require_mcp("MCP servers (mcp_servers=)")  # at once, not after a connect timeout
        _check_names("MCP server", [c.name for c in configs])
        super().__init__("MCP servers", configs, bind, lambda: MCPServers(configs), lambda s: _mcp_tools(catalog, s))


class A2AConnections(Connections[A2AAgents]):
    """a2a_agents={name: "http://host:port" | A2AAgentConfig}; `taken`: other backends' names (an MCP server's)."""

    def __init__(
        self, specs: Mapping[str, Any], catalog: ToolCatalog, bind: Bind, *, taken: Collection[str] = ()
    ) -> None:
        configs = _parse(A2AAgentConfig, specs)
        if configs:
            require_a2a("A2A agents (a2a_agents=)")
        _check_names("A2A agent", [c.name for c in configs], taken)
        super().__init__("A2A agents", configs, bind, lambda: A2AAgents(configs), lambda a: _a2a_tools(catalog, a))
