"""Result budgets a model can see: per-tool result caps, the program's value and output, `ptc serve`'s reply."""

import json

import pytest
from mcp import Client
from test_serve import payload

from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog, ToolResultTooLarge
from ptc.budgets import FIRST_CALLS, LAST_CALLS, MAX_ERRORS, bounded_calls, json_size, shorten_json
from ptc.errors import PROGRAM_ERRORS
from ptc.serve import build_server

CALLS: list[int] = []
catalog = ToolCatalog(source="budgets_test", version="1")


@catalog.tool(domain="data")
def rows(n: int) -> list[dict]:
    """n rows of data."""
    CALLS.append(n)
    return [{"id": i, "name": f"row {i}"} for i in range(n)]


@catalog.tool(domain="data")
def flaky(i: int) -> int:
    """i, or a failure for multiples of 7."""
    if i % 7 == 0:
        from ptc import ToolError

        raise ToolError(f"no {i}")
    return i


POLICIES = {"rows": Policy(max_result_bytes=2000, inline=True), "flaky": Policy(inline=True)}


@pytest.fixture(scope="module")
def executor():
    with ProgrammaticToolExecutor(catalog, policies=POLICIES, limits=Limits(timeout=10)) as executor:
        yield executor


def test_tool_result_too_large_is_a_tool_error_the_program_catches(executor):
    assert ToolResultTooLarge in PROGRAM_ERRORS
    result = executor.execute_sync(
        "from tools.data import rows\nfrom tools import ToolResultTooLarge, ToolError\n"
        "small = await rows(5)\n"
        "try:\n    await rows(1000)\nexcept ToolResultTooLarge as e:\n"
        "    caught = (str(e), isinstance(e, ToolError))\n"
        "# the program asks for less\n"
        "fewer = await rows(20)\n"
        "result = [len(small), caught, len(fewer)]\n"
    )
    assert result.ok, result.error
    count, (message, is_tool_error), fewer = result.result
    assert count == 5 and fewer == 20 and is_tool_error
    size = int(message.split(" returned ")[1].split(" bytes")[0])
    assert size > 2000 and "more than its 2000-byte result limit" in message and "ask for less" in message
    assert result.tool_calls[1].error.type == "ToolResultTooLarge" and result.tool_calls[1].error.message == message


def test_the_cap_is_in_the_stub_docstring(executor):
    stub = executor.stubs.source("tools.data.rows")
    assert "A result larger than 2000 bytes raises ToolResultTooLarge: ask for less." in stub
    assert "ToolResultTooLarge" not in executor.stubs.source("tools.data.flaky")
    assert "ToolResultTooLarge" in executor.stubs.source("tools")  # importable: `from tools import ...`
    assert executor.describe_tool("rows")["stub"] == stub  # what describe_tool (and ptc serve's) shows
    assert "results over 2000 bytes raise `ToolResultTooLarge`" in executor.api_reference()
    # and what the program's own `describe_tool` shows, answered by the host from the same catalog
    inside = executor.execute_sync("from tools import describe_tool\n(await describe_tool('rows'))['stub']")
    assert inside.error is None and inside.result == stub, inside.error


def test_the_cap_holds_for_idempotent_calls_too(executor):
    result = executor.execute_sync(
        "from tools.data import rows\nfrom tools import ToolResultTooLarge\nseen = []\n"
        "for _ in range(2):\n"
        "    try:\n        await rows(500, idempotency_key='k')\n"
        "    except ToolResultTooLarge:\n        seen.append('capped')\n"
        "seen"
    )
    assert result.result == ["capped", "capped"]


def test_the_programs_value_past_max_result_bytes_is_dropped_and_said_so(executor):
    limits = executor.limits.model_copy(update={"max_result_bytes": 1000})
    result = executor.execute_sync("print('done')\nresult = 'x' * 5000", limits=limits)
    assert result.ok and result.result is None and result.output == "done\n"
    (dropped,) = result.dropped
    assert (dropped.what, dropped.limit, dropped.setting) == ("result", 1000, "Limits.max_result_bytes")
    assert 5000 < dropped.size < 5010
    assert str(dropped) == f"the result ({dropped.size} bytes) was dropped: more than Limits.max_result_bytes = 1000"
    small = executor.execute_sync("'x' * 500", limits=limits)
    assert small.result == "x" * 500 and small.dropped == []
    large = executor.execute_sync("list(range(100_000))", limits=limits)  # measured off the event loop
    assert large.result is None and large.dropped[0].size > 100_000


def test_truncated_output_says_where_it_was_cut(executor):
    limits = executor.limits.model_copy(update={"max_output_bytes": 100})
    result = executor.execute_sync("for i in range(100):\n    print('line', i)\n", limits=limits)
    assert result.output_truncated and len(result.output.encode()) == 100
    (dropped,) = result.dropped
    assert (dropped.what, dropped.size, dropped.limit) == ("output", 100, 100)
    assert "cut after 100 bytes (Limits.max_output_bytes = 100)" in str(dropped)


def test_shorten_json_keeps_structure_and_states_what_it_lost():
    value = {"rows": [{"id": i, "text": "y" * 50} for i in range(1000)], "note": "z" * 10_000, "n": 3}
    short, cut = shorten_json(value, 4000)
    assert cut and json_size(short) <= 4000
    text = json.dumps(short)
    assert json.loads(text) == short  # valid JSON, not a cut string
    assert short["n"] == 3
    assert short["rows"][-1].endswith("more items") and isinstance(short["rows"][0], dict)
    kept = len(short["rows"]) - 1
    assert short["rows"][-1] == f"... {1000 - kept} more items"
    assert "more characters]" in short["note"]
    assert shorten_json(value, 10**7) == (value, False)
    wide, _ = shorten_json({f"k{i}": i for i in range(5000)}, 1000)
    assert wide["..."].endswith("more keys") and json_size(wide) <= 1000


def test_bounded_call_log_keeps_first_last_counts_and_errors():
    calls = [{"tool": "a" if i % 2 else "b", "error": "boom" if i % 7 == 0 else None, "i": i} for i in range(500)]
    shown = bounded_calls(calls, dict, lambda c: c["tool"])
    log = shown["tool_calls"]
    assert len(log) == FIRST_CALLS + LAST_CALLS + 1
    assert log[0]["i"] == 0 and log[FIRST_CALLS - 1]["i"] == FIRST_CALLS - 1 and log[-1]["i"] == 499
    assert log[FIRST_CALLS] == f"... {500 - FIRST_CALLS - LAST_CALLS} calls omitted (see tool_call_summary)"
    summary = shown["tool_call_summary"]
    assert summary["total"] == 500 and summary["by_tool"] == {"a": 250, "b": 250}
    middle_errors = [i for i in range(FIRST_CALLS, 500 - LAST_CALLS) if i % 7 == 0]
    assert summary["omitted_errors"] == len(middle_errors)
    assert [e["index"] for e in shown["tool_call_errors"]] == middle_errors[:MAX_ERRORS]
    assert summary["omitted_errors_not_shown"] == len(middle_errors) - MAX_ERRORS
    assert bounded_calls(calls[:5], dict, lambda c: c["tool"]) == {"tool_calls": calls[:5]}


async def test_serve_reply_is_valid_json_shortened_with_the_cap_and_a_bounded_call_log():
    CALLS.clear()
    with ProgrammaticToolExecutor(catalog, policies=POLICIES, limits=Limits(timeout=10)) as executor:
        server = build_server(executor, max_result_bytes=3000)
        async with Client(server) as client:
            reply = await client.call_tool(
                "execute_python",
                {
                    "code": "from tools.data import rows, flaky\nfrom tools import ToolError\n"
                    "for i in range(1, 61):\n"
                    "    try:\n        await flaky(i)\n    except ToolError:\n        pass\n"
                    "[{'i': i, 'words': 'w' * 40} for i in range(400)]"
                },
            )
    assert not reply.is_error
    text = reply.content[0].text
    data = json.loads(text)  # the whole reply is valid JSON
    assert data == payload(reply)
    value = data["result"]
    assert isinstance(value, list) and value[-1].endswith("more items") and value[0] == {"i": 0, "words": "w" * 40}
    assert json_size(value) <= 3000
    assert data["result_truncated"]["limit_bytes"] == 3000
    assert "more than this server's 3000-byte budget" in data["result_truncated"]["note"]
    assert len(data["tool_calls"]) == FIRST_CALLS + LAST_CALLS + 1
    summary = data["tool_call_summary"]
    assert summary["total"] == 60 and summary["by_tool"] == {"flaky": 60}
    middle = [i for i in range(FIRST_CALLS, 60 - LAST_CALLS) if (i + 1) % 7 == 0]
    assert [e["index"] for e in data["tool_call_errors"]] == middle
    assert all(e["error"].startswith("ToolError: no ") for e in data["tool_call_errors"])


def test_cli_run_says_the_value_was_dropped(tmp_path):
    import subprocess
    import sys

    (tmp_path / "big.py").write_text("result = 'x' * 5000\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "run", "big.py", "--max-result", "1000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert "ptc: the result (5003 bytes) was dropped: more than Limits.max_result_bytes = 1000" in proc.stderr
