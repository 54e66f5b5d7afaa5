"""`ptc serve` driven by the official MCP SDK client, over stdio and streamable HTTP."""

import asyncio
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from test_first_contact import SLOW_START
from test_mcp import SHOP, STDIO, free_port, wait_for_port

SERVE = [sys.executable, "-m", "ptc.cli", "serve", "--mcp", f"shop={STDIO}", "--tools", "ptc.examples.budget:catalog"]


def payload(result):
    structured = result.structured_content
    if structured is not None:
        return structured["result"] if set(structured) == {"result"} else structured  # the SDK wraps non-objects
    return json.loads(result.content[0].text)


async def check_server(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"execute_python", "close_session", "search_tools", "describe_tool"}
    description = tools["execute_python"].description
    assert "## tools.shop" in description and "async def search_orders(" in description
    assert "## tools.finance" in description

    result = payload(
        await client.call_tool(
            "execute_python",
            {
                "code": "import asyncio\nfrom tools.shop import search_orders\nfrom tools.finance import get_team_budget\n"
                "orders, budget = await asyncio.gather(search_orders(status='open'), get_team_budget(team_id='ops-team-3'))\n"
                "print(len(orders))\nbudget['total_budget']"
            },
        )
    )
    assert result["output"] == "2\n" and result["result"] == 410000 and result["error"] is None
    assert [c["tool"] for c in result["tool_calls"]] == ["search_orders", "get_team_budget"]

    # A failed program is an MCP error, its error text first, its result still structured.
    failed = await client.call_tool("execute_python", {"code": "print('before')\n1/0"})
    assert failed.is_error
    first = failed.content[0].text
    assert first.startswith("runtime_error: ZeroDivisionError: division by zero\n"), first
    assert 'File "<program>", line 2, in <module>' in first and first.endswith("output:\nbefore")
    structured = payload(failed)
    assert structured["error"]["kind"] == "runtime_error" and structured["error"]["type"] == "ZeroDivisionError"
    assert structured["output"] == "before\n"
    succeeded = await client.call_tool("execute_python", {"code": "6 * 7"})
    assert not succeeded.is_error and payload(succeeded)["result"] == 42
    # The program's parameter says what it is.
    code = tools["execute_python"].input_schema["properties"]["code"]
    assert "program" in code["description"] and "tools.<domain>" in code["description"]

    found = payload(await client.call_tool("search_tools", {"query": "weather city"}))
    assert found[0]["name"] == "shop.get_weather" and found[0]["import"] == "from tools.shop import get_weather"

    stub = await client.call_tool("describe_tool", {"name": "shop.get_weather"})
    text = stub.content[0].text
    assert "async def get_weather(city: str" in text and "Example:" in text
    missing = await client.call_tool("describe_tool", {"name": "nope"})
    assert missing.is_error
    assert missing.content[0].text.endswith(
        ": no tool named 'nope'; use search_tools to find one"
    )  # not only "Error executing tool describe_tool"


def no_tracebacks(stderr: str) -> None:
    """What stdio clients show their users of a server's stderr: no tracebacks for expected failures."""
    assert "Traceback" not in stderr and "raised an unexpected exception" not in stderr, stderr


async def test_serve_over_stdio():
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:])
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await check_server(client)
        errlog.seek(0)
        stderr = errlog.read()
    no_tracebacks(stderr)
    assert re.search(
        r"^ptc serve: ready, 17 tools \(domains: finance, hr, shop\); serving MCP on stdio$", stderr, re.M
    ), stderr


async def test_serve_builds_the_runtime_before_serving():
    """The first call does not wait for the runtime: serve made it ready (with a word) before serving."""
    args = ["-c", SLOW_START, "3", "serve", "--tools", "ptc.examples.budget:catalog"]
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(
            stdio_client(StdioServerParameters(command=sys.executable, args=args), errlog=errlog)
        ) as client:
            errlog.seek(0)
            assert "ptc serve: ready, 2 tools (domains: finance, hr); serving MCP on stdio\n" in errlog.read()
            first = payload(await client.call_tool("execute_python", {"code": "print('hi')"}))
    assert first["output"] == "hi\n" and first["execution_time"] < 1.5, first  # was the runtime's start too


async def test_serve_over_capacity_is_a_tool_error_with_its_message():
    args = [*SERVE[1:], "--max-concurrent", "1", "--max-queued", "0"]
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(StdioServerParameters(command=SERVE[0], args=args), errlog=errlog)) as client:
            slow = asyncio.create_task(
                client.call_tool("execute_python", {"code": "import asyncio\nawait asyncio.sleep(2)"})
            )
            await asyncio.sleep(0.5)
            rejected = await client.call_tool("execute_python", {"code": "1"})
            assert not (await slow).is_error
        errlog.seek(0)
        no_tracebacks(errlog.read())
    assert rejected.is_error and "over capacity" in rejected.content[0].text, rejected.content


@pytest.fixture
def http_serve():
    port = free_port()
    proc = subprocess.Popen(
        [*SERVE, "--http", f"127.0.0.1:{port}", "--timeout", "10"], stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, proc, timeout=60)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_serve_over_streamable_http(http_serve):
    async with Client(http_serve) as client:
        await check_server(client)


async def test_serve_http_says_where_it_listens():
    proc = subprocess.Popen([*SERVE, "--http", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        seen = []
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline:
            try:
                line = await asyncio.to_thread(lines.get, timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append(line)
            found = re.fullmatch(r"ptc serve: listening on (http://127\.0\.0\.1:(\d+)/mcp)\n", line)
        assert found, seen
        assert int(found.group(2)) > 0  # the port it bound, not the 0 it was given
        async with Client(found.group(1)) as client:
            assert {t.name for t in (await client.list_tools()).tools} == {
                "execute_python",
                "close_session",
                "search_tools",
                "describe_tool",
            }
    finally:
        proc.terminate()
        proc.wait(10)


async def test_print_config_runs_from_a_client_without_the_venv_on_its_path(tmp_path):
    """The printed entry works from another directory with a PATH that lacks this Python."""
    bin_dir, servers, elsewhere = tmp_path / "bin", tmp_path / "servers", tmp_path / "elsewhere"
    for d in (bin_dir, servers, elsewhere):
        d.mkdir()
    python = bin_dir / "python"  # a bare `python` that is this environment's, as in a shell with the venv active
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    shutil.copy(SHOP, servers / "shop.py")
    (tmp_path / "mytools.py").write_text(
        "from ptc import ToolCatalog\ncatalog = ToolCatalog()\n\n@catalog.tool(domain='text')\n"
        "def shout(s: str) -> str:\n    return s.upper()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "serve", "--mcp", "shop=python servers/shop.py", "--tools", "mytools:catalog"]
        + ["--timeout", "10", "--print-config"],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)["mcpServers"]["ptc"]
    assert entry["command"] == sys.executable and os.path.isabs(entry["command"])
    assert entry["args"][:3] == ["-m", "ptc", "serve"] and entry["args"][-2:] == ["--timeout", "10.0"]
    assert f"shop={python} {servers / 'shop.py'}" in entry["args"]
    params = StdioServerParameters(
        command=entry["command"],
        args=entry["args"],
        env={**entry.get("env", {}), "PATH": "/usr/bin:/bin"},
        cwd=str(elsewhere),
    )
    async with Client(params) as client:
        code = "from tools.shop import get_weather\nfrom tools.text import shout\nawait shout(s=await get_weather(city='Lima'))"
        result = payload(await client.call_tool("execute_python", {"code": code}))
    assert result["result"] == "SUNNY IN LIMA", result


def test_cli_run_stubs_and_api_accept_mcp(tmp_path):
    (tmp_path / "p.py").write_text("from tools.shop import get_weather\nprint(await get_weather(city='Lima'))\n")
    run = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "run", "p.py", "--mcp", f"shop={STDIO}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "sunny in Lima\n"
    stubs = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "stubs", "--mcp", f"shop={STDIO}", "--out", "s"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stubs.returncode == 0 and (tmp_path / "s" / "tools" / "shop" / "get_weather.py").exists()
    api = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "api", "--mcp", f"shop={STDIO}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "## tools.shop" in api.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "run", "p.py", "--mcp", "shop=definitely-not-a-binary"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "definitely-not-a-binary" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_run_against_http_mcp(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SHOP), "--http", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        (tmp_path / "p.py").write_text("from tools.web import get_weather\nprint(await get_weather(city='Quito'))\n")
        run = subprocess.run(
            [sys.executable, "-m", "ptc.cli", "run", "p.py", "--mcp", f"web=http://127.0.0.1:{port}/mcp"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == "sunny in Quito\n"
    finally:
        proc.terminate()
        proc.wait(10)
