"""Real A2A agents (the official a2a-sdk, JSON-RPC binding, on loopback) as tool backends.

One server process (tests/a2a_agents/agents.py) hosts every test agent, each
under its own path: one that answers at once, one whose tasks stream status
and artifacts, the same task polled, one that asks for input, one that fails,
one that works until cancelled, one that streams forever, and hostile cards.
"""

import ast
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_mcp import free_port, wait_for_port

from ptc import Limits, Policy, ProgrammaticToolExecutor
from ptc.errors import A2AConnectionError, ExecutorClosedError
from ptc.hostcalls.backends.a2a.client import A2AAgentConfig
from ptc.stubgen import render_api_reference, render_stubs

AGENTS = Path(__file__).parent / "a2a_agents" / "agents.py"


def start_agents() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(AGENTS), str(port)], stderr=subprocess.PIPE, text=True)
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def base():
    proc, url = start_agents()
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def stats(base: str) -> dict:
    return httpx.get(f"{base}/stats").json()


async def wait_cancelled(base: str, count: int) -> list[str]:
    """The tasks the agent saw cancelled, once there are `count` (the loop keeps running meanwhile)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        cancelled = (await asyncio.to_thread(stats, base))["cancelled"]
        if len(cancelled) >= count:
            return cancelled
        await asyncio.sleep(0.05)
    raise AssertionError(f"the agent saw {stats(base)['cancelled']} cancelled, not {count}")


@pytest.fixture(scope="module")
async def travel(base):
    """The well-behaved agents, in one executor (its events kept)."""
    events = []
    names = ("quick", "stream", "poll", "ask", "fail")
    executor = ProgrammaticToolExecutor(
        a2a_agents={n: f"{base}/{n}" for n in names}, timeout=20, policy=Policy(timeout=10), on_event=events.append
    )
    async with executor:
        executor.seen = events
        yield executor


async def run(executor, code):
    result = await executor.execute(code)
    assert result.error is None, (result.error, result.error.traceback)
    return result


async def test_skills_become_functions_of_the_agents_domain(travel):
    tools = {(t.domain, t.python_name): t for t in travel.catalog}
    assert {("quick", "echo"), ("quick", "book_hotel"), ("quick", "send_message")} <= set(tools)
    assert {("stream", "plan_trip"), ("ask", "book"), ("fail", "fail"), ("fail", "reject")} <= set(tools)
    assert all(t.type == "a2a" for t in travel.catalog)
    assert (
        tools["quick", "book_hotel"].name == "quick.book_hotel" and tools["quick", "book_hotel"].backend == "a2a:quick"
    )


async def test_stubs_are_typed_and_documented_from_the_card(travel):
    stubs = render_stubs(travel.catalog)
    hotel = stubs["tools.quick.book_hotel"]
    assert (
        "async def book_hotel(text: str, *, context_id: str | None = None, data: dict[str, Any] | None = None, "
        "idempotency_key: str | None = None) -> AgentReply:" in hotel
    )
    assert "class AgentReply(TypedDict" in hotel and "artifacts: Required[list[AgentArtifact]]" in hotel
    assert "state: Required[Literal['completed', 'input-required', 'auth-required', 'canceled']]" in hotel
    assert "Books a hotel room." in hotel and "Tags: travel" in hotel and "Example: 'Lisbon, 2 nights'" in hotel
    assert "(id 'book-hotel')" in hotel
    plan = stubs["tools.stream.plan_trip"]
    assert "Example: '3 days in Portugal'" in plan and "Tags: travel, planning" in plan
    assert "the stream test agent" in stubs["tools.stream.send_message"]
    assert "async def send_message(text: str, *, context_id" in render_api_reference(travel.catalog)


async def test_an_agent_that_answers_at_once(travel):
    r = await run(
        travel,
        "from tools.quick import book_hotel, send_message\n"
        "result = [await book_hotel('Lisbon', data={'nights': 2}), await send_message(text='hello')]",
    )
    hotel, plain = r.result
    assert hotel["text"] == "book-hotel: Lisbon" and hotel["state"] == "completed"
    assert hotel["data"] == [{"skill": "book-hotel", "data": [{"nights": 2.0}]}]  # the skill id reached the agent
    assert hotel["task_id"] is None and hotel["context_id"] and hotel["artifacts"] == []
    assert plain["text"] == "message: hello" and plain["data"] == [{"skill": "", "data": []}]
    assert [(c.tool, c.type, c.domain, c.error) for c in r.tool_calls] == [
        ("quick.book_hotel", "a2a", "quick", None),
        ("quick.send_message", "a2a", "quick", None),
    ]
    assert r.tool_calls[0].parameters == {"text": "Lisbon", "data": {"nights": 2}}


async def test_call_tool_reaches_a_skill_by_server_and_name(travel):
    r = await run(
        travel,
        "from tools import call_tool\n"
        "(await call_tool(server='quick', tool_name='book_hotel', parameters={'text': 'Porto'}))['text']",
    )
    assert r.result == "book-hotel: Porto", r.error
    assert [c.tool for c in r.tool_calls] == ["quick.book_hotel"]


EXPECTED_TRIP = [
    {"name": "itinerary", "text": "Day 1: Lisbon. \nDay 2: Porto.", "data": []},  # two chunks: two parts
    {"name": "quote", "text": "", "data": [{"total": 420.0, "currency": "EUR"}]},
]


@pytest.mark.parametrize("agent", ["stream", "poll"])
async def test_a_task_is_followed_to_its_end(travel, agent):
    """Over streaming when the card allows it (stream), else by polling get_task (poll)."""
    travel.seen.clear()
    r = await run(travel, f"from tools.{agent} import plan_trip\nresult = await plan_trip('3 days')")
    reply = r.result
    assert reply["state"] == "completed" and reply["text"] == "planned: 3 days"
    assert reply["artifacts"] == EXPECTED_TRIP and reply["task_id"] and reply["context_id"]
    statuses = [e for e in travel.seen if e.kind == "a2a_status"]
    assert {e.tool for e in statuses} == {f"{agent}.plan_trip"} and {e.task_id for e in statuses} == {reply["task_id"]}
    assert all(e.execution_id == r.execution_id and e.backend == f"a2a:{agent}" for e in statuses)
    states = [(e.state, e.text) for e in statuses]
    assert states[0] == ("submitted", "") and states[-1] == ("completed", "planned: 3 days")
    if agent == "stream":  # every update is seen; a poll sees the snapshots it happens to catch
        assert states == [
            ("submitted", ""),
            ("working", "searching flights"),
            ("working", "pricing hotels"),
            ("completed", "planned: 3 days"),
        ]
    kinds = [e.kind for e in travel.seen]
    assert kinds.index("start") < kinds.index("a2a_status") and kinds[-1] == "complete"


async def test_input_required_returns_and_the_program_answers(travel):
    r = await run(
        travel,
        "from tools.ask import book, send_message\n"
        "first = await book('a trip to Porto')\n"
        "second = await send_message('2 adults', context_id=first['context_id'])\n"
        "result = first, second",
    )
    first, second = r.result
    assert first["state"] == "input-required" and first["text"] == "How many travellers?"
    assert second["state"] == "completed" and second["text"] == "booked for 2 adults"
    assert second["task_id"] == first["task_id"] and second["context_id"] == first["context_id"]


async def test_failed_and_rejected_tasks_raise_tool_error_with_the_agent_text(travel):
    r = await run(
        travel,
        "from tools.fail import fail, reject\nfrom tools import ToolError\nout = []\n"
        "for f in (fail, reject):\n"
        "    try:\n        await f('Paris')\n    except ToolError as e:\n        out.append([type(e).__name__, str(e)])\n"
        "result = out",
    )
    assert r.result == [
        ["ToolError", "A2A agent 'fail': the task failed: no rooms left in Paris"],
        ["ToolError", "A2A agent 'fail': the task rejected: I do not book trips to the moon"],
    ]
    assert [c.error.type for c in r.tool_calls] == ["ToolError", "ToolError"]


async def sent(executor, base, code):
    """The program's result, and how many messages the quick agent got meanwhile."""
    before = stats(base)["quick_messages"]
    result = await run(executor, code)
    return result, stats(base)["quick_messages"] - before


async def test_parameters_are_validated_before_the_agent_is_asked(travel, base):
    r, messages = await sent(
        travel,
        base,
        "from tools.quick import echo\nfrom tools import ToolValidationError\nout = []\n"
        "for call in (lambda: echo(), lambda: echo('x', data='not an object'), lambda: echo(text=3)):\n"
        "    try:\n        await call()\n    except ToolValidationError as e:\n"
        "        out.append(type(e).__name__)\nresult = out",
    )
    assert r.result == ["ToolValidationError"] * 3 and messages == 0


async def test_idempotency_key_sends_one_message(travel, base):
    code = "from tools.quick import echo\nresult = [await echo('once', idempotency_key='k1') for _ in range(2)]"
    r, messages = await sent(travel, base, code)
    assert r.result[0] == r.result[1] and [c.cache_hit for c in r.tool_calls] == [False, True] and messages == 1


async def test_timeout_cancels_the_remote_task(base):
    seen = len(stats(base)["cancelled"])
    agents = {"slow": f"{base}/slow"}
    async with ProgrammaticToolExecutor(a2a_agents=agents, policies={"slow.wait": Policy(timeout=0.3)}) as executor:
        r = await executor.execute(
            "from tools.slow import wait\nfrom tools import ToolTimeoutError\n"
            "try:\n    await wait('forever')\nexcept ToolTimeoutError as e:\n    result = str(e)"
        )
        assert r.result == "slow.wait did not answer within 0.3 s"
        assert len(await wait_cancelled(base, seen + 1)) == seen + 1


async def test_a_cancelled_execution_cancels_the_remote_task(base):
    seen = len(stats(base)["cancelled"])
    async with ProgrammaticToolExecutor(a2a_agents={"slow": f"{base}/slow"}, limits=Limits(timeout=0.5)) as executor:
        r = await executor.execute("from tools.slow import wait\nawait wait('forever')")
        assert r.error is not None and r.error.kind == "timeout"
        assert len(await wait_cancelled(base, seen + 1)) == seen + 1


async def test_closing_the_executor_stops_a_call_in_flight_and_cancels_its_task(base):
    seen = len(stats(base)["cancelled"])
    executor = ProgrammaticToolExecutor(a2a_agents={"slow": f"{base}/slow"}, timeout=20)
    await executor.connect()
    running = asyncio.ensure_future(
        executor.execute(
            "from tools.slow import wait\nfrom tools import ToolError\n"
            "try:\n    await wait('forever')\nexcept ToolError as e:\n    result = str(e)"
        )
    )
    await asyncio.sleep(0.5)
    await executor.aclose()
    r = await asyncio.wait_for(running, 10)  # not a wait for a loop that is gone
    assert r.result == "the call was cancelled"
    assert len(await wait_cancelled(base, seen + 1)) == seen + 1


async def test_an_endless_stream_stops_at_max_updates_and_is_cancelled(base):
    seen = len(stats(base)["cancelled"])
    config = A2AAgentConfig(url=f"{base}/endless", max_updates=40)
    async with ProgrammaticToolExecutor(a2a_agents={"endless": config}) as executor:
        r = await executor.execute(
            "from tools.endless import chatter\nfrom tools import ToolError\n"
            "try:\n    await chatter('go')\nexcept ToolError as e:\n    result = str(e)"
        )
        assert r.result == "endless.chatter failed (A2AReplyTooLarge)"  # a fixed text: nothing of the agent's
        assert len(await wait_cancelled(base, seen + 1)) == seen + 1


async def test_a_reply_over_max_reply_bytes_stops_the_read(base):
    events = []
    config = A2AAgentConfig(url=f"{base}/stream", max_reply_bytes=2000)  # the card fits; the whole stream does not
    async with ProgrammaticToolExecutor(a2a_agents={"stream": config}, on_event=events.append) as executor:
        r = await executor.execute(
            "from tools.stream import plan_trip\nfrom tools import ToolError\n"
            "try:\n    await plan_trip('3 days')\nexcept ToolError as e:\n    result = str(e)"
        )
    assert r.result == "stream.plan_trip failed (A2AReplyTooLarge)"
    (failure,) = [e for e in events if e.kind == "failure"]
    assert "more than 2000 bytes in one response" in failure.error


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("huge", "sent more than 4194304 bytes in one response"),  # a 64 MiB card is not read whole
        ("garbage", "JSONDecodeError"),
        ("nothing-here", "HTTP"),
    ],
)
async def test_an_agent_without_a_readable_card_fails_at_start(base, path, said):
    executor = ProgrammaticToolExecutor(a2a_agents={"x": f"{base}/{path}"})
    with pytest.raises(A2AConnectionError) as info:
        await executor.connect()
    message = str(info.value)
    assert message.startswith(f"A2A agent 'x' ({base}/{path}) has no readable agent card") and said in message
    assert info.value.public == "A2A agent 'x' is unavailable" and isinstance(info.value, ConnectionError)
    await executor.aclose()


async def test_an_unreachable_agent_fails_at_start_naming_it_and_its_url():
    url = f"http://127.0.0.1:{free_port()}"
    executor = ProgrammaticToolExecutor(a2a_agents={"gone": url})
    with pytest.raises(A2AConnectionError, match=f"A2A agent 'gone' \\({url}\\) .*ConnectError"):
        await executor.execute("x = 1")
    await executor.aclose()
    with pytest.raises(ExecutorClosedError):
        await executor.connect()


async def test_a_card_naming_another_origin_needs_endpoint(base):
    executor = ProgrammaticToolExecutor(a2a_agents={"elsewhere": f"{base}/elsewhere"})
    with pytest.raises(A2AConnectionError, match="names no endpoint on .* origin .*localhost.*endpoint="):
        await executor.connect()
    await executor.aclose()
    config = A2AAgentConfig(url=f"{base}/elsewhere", endpoint=f"{base}/elsewhere/")
    async with ProgrammaticToolExecutor(a2a_agents={"elsewhere": config}) as executor:
        r = await run(executor, "from tools.elsewhere import echo\nresult = (await echo('hi'))['text']")
        assert r.result == "echo: hi"


async def test_an_agent_that_goes_away_is_unavailable_retried_and_breaks_its_circuit():
    proc, base = start_agents()
    events = []
    policy = Policy(timeout=5, max_retries=1, backoff=0.01, circuit_failure_threshold=2)
    executor = ProgrammaticToolExecutor(a2a_agents={"quick": f"{base}/quick"}, policy=policy, on_event=events.append)
    try:
        async with executor:
            await run(executor, "from tools.quick import echo\nawait echo('up')")
            proc.terminate()
            proc.wait(10)
            r = await executor.execute(
                "from tools.quick import echo, send_message\nfrom tools import ToolError\nout = []\n"
                "for f in (echo, send_message):\n"
                "    try:\n        await f('down')\n    except ToolError as e:\n"
                "        out.append([type(e).__name__, str(e)])\nresult = out"
            )
    finally:
        if proc.poll() is None:
            proc.terminate()
    assert r.result[0] == ["ToolError", "A2A agent 'quick' is unavailable"]  # the URL is the operator's
    assert r.result[1][0] == "CircuitOpenError"  # one breaker for the agent: both of its functions
    assert r.tool_calls[0].attempts == 2
    failure = next(e for e in events if e.kind == "failure")
    assert base in failure.error and "could not be reached" in failure.error


async def test_a_hostile_card_reaches_stubs_only_as_text(base):
    async with ProgrammaticToolExecutor(a2a_agents={"evil": f"{base}/evil"}) as executor:
        names = sorted(t.python_name for t in executor.catalog)
        assert names == ["__init_", "class_", "send_message", "send_message_", "x____import_os__os_system__id______"]
        stubs = render_stubs(executor.catalog)  # each module verified against its template
        for module, source in stubs.items():
            if module.startswith("tools.evil."):
                tree = ast.parse(source)
                assert not any(isinstance(n, (ast.Import)) for n in ast.walk(tree)), module
                assert [type(n).__name__ for n in tree.body][-1] == "AsyncFunctionDef"
        r = await run(
            executor,
            "from tools.evil import x____import_os__os_system__id______ as odd, class_\n"
            'result = [(await odd("hi"))["data"][0]["skill"], (await class_("x"))["data"][0]["skill"]]',
        )
        assert r.result == ['x"); import os; os.system("id"); ("', "class"]  # the skill id, as the card wrote it


async def test_at_most_max_skills_become_functions(base):
    async with ProgrammaticToolExecutor(a2a_agents={"many": f"{base}/many"}) as executor:
        names = sorted(t.python_name for t in executor.catalog)
        assert len(names) == 201 and names[0] == "send_message" and names[-1] == "skill_199"
        note = executor.catalog.get("many.send_message").notes
        assert "The card lists 50 more skills than ptc offers as functions; reach them by message." in note


def test_execute_sync_with_a2a(base):
    with ProgrammaticToolExecutor(a2a_agents={"quick": f"{base}/quick"}) as executor:
        for _ in range(2):  # each execute_sync runs on a loop of its own; the agent's client outlives them
            r = executor.execute_sync("from tools.quick import echo\nresult = (await echo('sync'))['text']")
            assert r.result == "echo: sync", r.error


def test_a2a_and_mcp_names_must_differ():
    with pytest.raises(ValueError, match="taken by another backend"):
        ProgrammaticToolExecutor(mcp_servers={"x": "python server.py"}, a2a_agents={"x": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="must be a Python identifier"):
        ProgrammaticToolExecutor(a2a_agents={"not-a-name": "http://127.0.0.1:1"})
    with pytest.raises(ValueError, match="http:// or https://"):
        ProgrammaticToolExecutor(a2a_agents={"x": "ftp://127.0.0.1:1"})


# -- the command line ------------------------------------------------------------------


def ptc(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "ptc.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_run_stubs_and_api_with_a2a(base, tmp_path):
    (tmp_path / "prog.py").write_text(
        "from tools.ask import book, send_message\n"
        "first = await book('a trip')\n"
        "print(first['text'])\n"
        "print((await send_message('3 adults', context_id=first['context_id']))['text'])\n"
    )
    proc = ptc("run", "prog.py", "--a2a", f"ask={base}/ask", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "How many travellers?\nbooked for 3 adults\n"
    proc = ptc("stubs", "--a2a", f"ask={base}/ask", "--a2a", f"quick={base}/quick", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "async def book_hotel(text: str, *" in (tmp_path / "out/tools/quick/book_hotel.py").read_text()
    proc = ptc("api", "--a2a", f"quick={base}/quick", cwd=tmp_path)
    assert proc.returncode == 0 and "## tools.quick" in proc.stdout and "async def echo(text: str, *" in proc.stdout


def test_serve_print_config_carries_the_agents(tmp_path):
    proc = ptc("serve", "--a2a", "travel=http://127.0.0.1:9999", "--print-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert ["--a2a", "travel=http://127.0.0.1:9999"] == json.loads(proc.stdout)["mcpServers"]["ptc"]["args"][-2:]


def test_cli_a2a_failures_are_one_line(base, tmp_path):
    (tmp_path / "x.py").write_text("x = 1\n")
    proc = ptc("run", "x.py", "--a2a", "nourl", cwd=tmp_path)
    assert proc.returncode != 0 and "--a2a takes NAME=http://HOST:PORT" in proc.stderr
    proc = ptc("run", "x.py", "--a2a", f"gone=http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("ptc: A2A agent 'gone' (http://127.0.0.1:")
    assert "Traceback" not in proc.stderr
