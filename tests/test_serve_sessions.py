"""`ptc serve` sessions: execute_python(code, session=NAME) and close_session, per MCP connection."""

import gc
from types import SimpleNamespace

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from test_serve import SERVE, http_serve, payload  # noqa: F401 - http_serve is a fixture

from ptc import ProgrammaticToolExecutor
from ptc.serve import build_server
from ptc.serve_sessions import ServeSessions, SessionRefused, check_name

STDIO = StdioServerParameters(command=SERVE[0], args=[*SERVE[1:], "--timeout", "2"])


async def cell(client, code, session="s"):
    return await client.call_tool("execute_python", {"code": code, "session": session})


async def test_a_session_keeps_state_between_calls_over_stdio():
    async with Client(stdio_client(STDIO)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"execute_python", "close_session", "search_tools", "describe_tool"}
        schema = tools["execute_python"].input_schema["properties"]
        assert set(schema) == {"code", "session"} and "persist" in schema["session"]["description"]
        first = payload(await cell(client, "from tools.finance import get_team_budget\nx = 41"))
        assert first["session"] == "s" and first["cell"] == 0 and first["new_session"] is True
        second = payload(await cell(client, "x + 1"))
        assert second["result"] == 42 and second["cell"] == 1 and "new_session" not in second
        other = payload(await cell(client, "x = 'other'", session="t"))  # another name: another session
        assert other["new_session"] is True
        assert payload(await cell(client, "x"))["result"] == 41
        # without a session: a fresh sandbox, as before
        plain = await client.call_tool("execute_python", {"code": "x"})
        assert plain.is_error and "NameError" in plain.content[0].text and "session" not in payload(plain)
        # a cell a limit stops: the session goes on from the cells before it
        stopped = payload(await cell(client, "x = 0\nwhile True: pass"))
        assert stopped["error"]["kind"] in ("timeout", "out_of_fuel") and stopped["session_restored"] is True
        assert payload(await cell(client, "x"))["result"] == 41
        closed = await client.call_tool("close_session", {"session": "s"})
        assert payload(closed) is True
        assert payload(await client.call_tool("close_session", {"session": "s"})) is False
        again = payload(await cell(client, "'x' in globals()"))
        assert again["new_session"] is True and again["result"] is False


async def test_hostile_session_names_are_refused():
    async with Client(stdio_client(STDIO)) as client:
        for name in ("", "../x", "a" * 65, "-x", "a b", "x\x1b"):
            refused = await cell(client, "1", session=name)
            assert refused.is_error and "session names are 1-64" in refused.content[0].text, name
        refused = await client.call_tool("close_session", {"session": "a/b"})
        assert refused.is_error


async def test_sessions_are_private_to_their_http_connection(http_serve):  # noqa: F811
    async with Client(http_serve, mode="legacy") as a, Client(http_serve, mode="legacy") as b:
        assert payload(await cell(a, "secret = 'a'"))["new_session"] is True
        theirs = await cell(b, "secret")  # the same name on another connection: a fresh session
        assert theirs.is_error and "NameError" in theirs.content[0].text
        assert payload(theirs)["new_session"] is True
        assert payload(await cell(a, "secret"))["result"] == "a"
        assert payload(await b.call_tool("close_session", {"session": "s"})) is True
        assert payload(await cell(a, "secret"))["result"] == "a"  # b closed its own, not a's


async def test_stateless_http_has_no_connection_to_keep_a_session(http_serve):  # noqa: F811
    async with Client(http_serve) as client:  # the 2026-07-28 protocol: every request stands alone
        refused = await cell(client, "1")
        assert refused.is_error and "call execute_python without `session`" in refused.content[0].text
        assert payload(await client.call_tool("execute_python", {"code": "6 * 7"}))["result"] == 42


class _Channel:
    """A connection's channel back to its client (weakly referenceable, as the SDK's are)."""


async def test_the_end_of_a_connection_closes_its_sessions():
    """In process, over the SDK's handshake transport: its teardown closes the connection's sessions."""
    async with ProgrammaticToolExecutor() as executor:
        server = build_server(executor)
        async with Client(server, mode="legacy") as a, Client(server, mode="legacy") as b:
            assert payload(await cell(a, "x = 1"))["new_session"] is True
            assert payload(await cell(b, "x = 2"))["new_session"] is True  # a's name, b's own session
            assert payload(await cell(a, "x"))["result"] == 1
            assert len(executor._sessions) == 2
        assert executor._sessions == {}  # both connections ended: their sessions are closed
        async with Client(server) as modern:  # the 2026-07-28 path in process: no connection to keep
            assert (await cell(modern, "1")).is_error


def _context(channel=True):
    """A stand-in for an MCPServer Context: its session's connection, with its own channel."""
    connection = SimpleNamespace(
        has_standalone_channel=channel, outbound=_Channel(), protocol_version="2026-07-28", state={}
    )
    return SimpleNamespace(session=SimpleNamespace(_connection=connection))


async def test_a_connection_may_hold_only_so_many_sessions():
    async with ProgrammaticToolExecutor() as executor:
        sessions = ServeSessions(executor, max_per_connection=2)
        mine, theirs = _context(), _context()
        first, _ = sessions.get(mine, "a")
        assert sessions.get(mine, "a")[0] is first
        sessions.get(mine, "b")
        with pytest.raises(SessionRefused, match="at most 2"):
            sessions.get(mine, "c")
        sessions.get(theirs, "c")  # another connection's count is its own
        assert await sessions.close(mine, "a") is True and await sessions.close(mine, "a") is False
        sessions.get(mine, "c")
        first.close()
        with pytest.raises(SessionRefused, match="cannot keep a session private"):
            sessions.get(_context(channel=False), "a")


async def test_a_closed_session_is_replaced_and_says_why():
    async with ProgrammaticToolExecutor() as executor:
        sessions = ServeSessions(executor)
        context = _context()
        first, _ = sessions.get(context, "a")
        first.close("it was idle for 300 s (idle_timeout)")
        second, why = sessions.get(context, "a")
        assert second is not first and why == "it was idle for 300 s (idle_timeout)"
        second.close("its journal grew past max_journal_bytes")
        sessions.get(context, "b")
        held = sessions._by_connection[context.session._connection.outbound]
        assert list(held) == ["b"] and held.ended == {"a": "its journal grew past max_journal_bytes"}  # no journal kept
        assert sessions.get(context, "a")[1] == "its journal grew past max_journal_bytes"


async def test_a_connection_that_goes_away_closes_its_sessions():
    async with ProgrammaticToolExecutor() as executor:
        sessions = ServeSessions(executor)
        context = _context()
        session, _ = sessions.get(context, "a")
        del context  # its channel is collected with it
        gc.collect()
        assert session.closed and session.closed_reason == "its MCP connection closed"


def test_names():
    assert check_name("cell-1.a_b") == "cell-1.a_b"
    with pytest.raises(SessionRefused):
        check_name("é")
