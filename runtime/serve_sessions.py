"""Sessions for `ptc serve`: `execute_python(code, session=NAME)`, keyed by (MCP connection, name).

A named session is created on first use and is private to the connection
that created it: another connection naming it gets a fresh one of its own.
A connection is what the MCP SDK keeps per client: the stdio stream, or a
streamable HTTP session of the 2025 handshake (`Mcp-Session-Id`). The
2026-07-28 protocol over HTTP keeps nothing between requests, so there is no
connection to keep a session private to: a session name on such a request is
refused (a ToolError saying so) rather than shared with whoever guesses it.

Everything a client sends is hostile: names are bounded (NAME_PATTERN) and
so is the number of sessions one connection may hold open
(`max_per_connection`; the tenant's `Quota.max_sessions` bounds them all).
Sessions close on `close_session`, when their connection goes away (the
SDK's per-connection teardown, or the connection being collected), after
`idle_timeout` seconds without a cell, and when the executor closes.
"""

from __future__ import annotations

import re
import weakref
from typing import Any

from ptc.errors import PtcError
from ptc.executor import ProgrammaticToolExecutor
from ptc.sessions import Session

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_PER_CONNECTION = 8
_HOOKED = "ptc.sessions.hooked"  # a connection whose teardown closes its sessions already


class SessionRefused(PtcError):
    """A session the client cannot have: a bad name, too many open, or no connection to keep it private to."""


def connection_key(context: Any) -> object | None:
    """The object that stands for this request's MCP connection, or None when it has none.

    The SDK makes a `Connection` per connection on the handshake path but per
    request on the 2026-07-28 path; on both, its `outbound` (the channel back
    to the client) is the connection's own, except on stateless HTTP, where it
    is one shared "no channel" sentinel. The SDK has no public accessor for
    the connection in an MCPServer tool (mcp 2.3: `ctx.session._connection`).
    """
    connection = getattr(context.session, "_connection", None)
    if connection is None or not getattr(connection, "has_standalone_channel", False):
        return None
    channel: object = connection.outbound
    return channel


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise SessionRefused(
            f"session names are 1-64 letters, digits, '_', '.' or '-' (starting with a letter or digit), "
            f"got {name[:80]!r}"
        )
    return name


class ServeSessions:
    """The open sessions of one server, per connection and name."""

    def __init__(
        self,
        executor: ProgrammaticToolExecutor,
        *,
        max_per_connection: int = MAX_PER_CONNECTION,
        idle_timeout: float = 300.0,
    ) -> None:
        self.executor = executor
        self.max_per_connection = max_per_connection
        self.idle_timeout = idle_timeout
        self._by_connection: weakref.WeakKeyDictionary[object, _Open] = weakref.WeakKeyDictionary()

    def get(self, context: Any, name: str) -> tuple[Session, str | None]:
        """This connection's session `name`, made if new: (session, why an earlier one of that name closed).

        Synchronous from lookup to insert: two calls naming a new session at
        once (one event loop) get one session.
        """
        check_name(name)
        key = connection_key(context)
        if key is None:
            raise SessionRefused(
                "sessions need a connection the server keeps (stdio, or streamable HTTP with the 2025 handshake "
                "and its Mcp-Session-Id); this request came without one, so it cannot keep a session private: "
                "call execute_python without `session`"
            )
        sessions = self._sessions_of(context, key)
        replaced = _sweep(sessions).pop(name, None)
        if name in sessions:
            return sessions[name], None
        if len(sessions) >= self.max_per_connection:
            raise SessionRefused(
                f"this connection has {len(sessions)} sessions open (at most {self.max_per_connection}); "
                "close one with close_session first"
            )
        sessions[name] = self.executor.session(idle_timeout=self.idle_timeout, suspendable=False)  # no resume tool
        return sessions[name], replaced

    async def close(self, context: Any, name: str) -> bool:
        """Close this connection's session `name`; whether it was open."""
        check_name(name)
        key = connection_key(context)
        sessions = self._by_connection.get(key) if key is not None else None
        session = sessions.pop(name, None) if sessions is not None else None
        if session is None or session.closed:
            return False
        await session.aclose("close_session was called")
        return True

    def _sessions_of(self, context: Any, key: object) -> _Open:
        sessions = self._by_connection.get(key)
        if sessions is None:
            sessions = self._by_connection[key] = _Open()
            # The connection's end closes its sessions: collected (every transport), or torn down
            # (the handshake path's Connection lives as long as the connection, and unwinds its exit stack).
            weakref.finalize(key, _close_all, sessions, "its MCP connection closed")
            _hook_teardown(context.session._connection, sessions)
        return sessions


class _Open(dict[str, Session]):
    """One connection's sessions by name; `ended` keeps, for a while, why the ones that closed by themselves did."""

    def __init__(self) -> None:
        super().__init__()
        self.ended: dict[str, str] = {}


_MAX_ENDED = 64


def _sweep(sessions: _Open) -> dict[str, str]:
    """Drop the sessions that closed by themselves (idle, journal full, ...), keeping only why: a closed
    session still holds its journal. Returns `ended`, the newest _MAX_ENDED reasons by name."""
    for name, session in list(sessions.items()):
        if session.closed:
            del sessions[name]
            sessions.ended.pop(name, None)
            sessions.ended[name] = session.closed_reason or "it was closed"
    while len(sessions.ended) > _MAX_ENDED:
        del sessions.ended[next(iter(sessions.ended))]
    return sessions.ended


def _hook_teardown(connection: Any, sessions: dict[str, Session]) -> None:
    """On the handshake path, close the sessions when the SDK tears the connection down.

    (On the 2026-07-28 path the `Connection` is the request's and its exit
    stack unwinds after each request: there the collection of the stream's
    channel is the hook.)
    """
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS

    if connection.protocol_version not in MODERN_PROTOCOL_VERSIONS and _HOOKED not in connection.state:
        connection.state[_HOOKED] = True
        connection.exit_stack.callback(_close_all, sessions, "its MCP connection closed")


def _close_all(sessions: dict[str, Session], reason: str) -> None:
    for session in list(sessions.values()):
        session.close(reason)
    sessions.clear()
