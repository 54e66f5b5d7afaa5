"""`ptc serve` driven by the official MCP SDK client, over stdio and streamable HTTP."""

import json
import subprocess
import sys

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from test_mcp import SHOP, STDIO, free_port, wait_for_port

SERVE = [sys.executable, "-m", "ptc.cli", "serve", "--mcp", f"shop={STDIO}", "--tools", "ptc.examples.budget:catalog"]


def payload(result):
    structured = result.structured_content
    if structured is not None:
        return structured["result"] if set(structured) == {"result"} else structured  # the SDK wraps non-objects
    return json.loads(result.content[0].text)


async def check_server(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"execute_python", "search_tools", "describe_tool"}
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

    failed = payload(await client.call_tool("execute_python", {"code": "1/0"}))
    assert failed["error"]["kind"] == "runtime_error" and failed["error"]["type"] == "ZeroDivisionError"

    found = payload(await client.call_tool("search_tools", {"query": "weather city"}))
    assert found[0]["name"] == "shop.get_weather" and found[0]["import"] == "from tools.shop import get_weather"

    stub = await client.call_tool("describe_tool", {"name": "shop.get_weather"})
    text = stub.content[0].text
    assert "async def get_weather(city: str" in text and "Example:" in text
    missing = await client.call_tool("describe_tool", {"name": "nope"})
    assert missing.is_error


async def test_serve_over_stdio():
    params = StdioServerParameters(command=SERVE[0], args=SERVE[1:])
    async with Client(params) as client:
        await check_server(client)


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
