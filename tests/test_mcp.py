"""Real MCP servers (the official SDK, stdio subprocess and streamable HTTP) as tool backends."""

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptc import Policy, ProgrammaticToolExecutor
from ptc.hostcalls.backends.mcp.client import MCPConnectionError
from ptc.stubgen import render_stubs

SHOP = Path(__file__).parent / "mcp_servers" / "shop.py"
STDIO = f"{sys.executable} {SHOP}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


@contextlib.contextmanager
def http_server(script: Path) -> Iterator[str]:
    """An MCP server script (`--http PORT`) on a free loopback port: its URL while it runs."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), "--http", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def http_shop():
    with http_server(SHOP) as url:
        yield url


@pytest.fixture
async def shop():
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, timeout=20, policy=Policy(timeout=5)) as executor:
        yield executor


async def test_tools_are_discovered_into_the_named_domain(shop):
    names = {t.python_name: t for t in shop.catalog}
    assert {"search_orders", "create_customer", "get_weather", "list_files", "fail", "hang"} <= set(names)
    assert all(t.domain == "shop" and t.type == "mcp" for t in names.values())
    assert names["get_weather"].name == "get-weather" and names["list_files"].name == "list.files"


async def test_schemas_become_typed_stubs(shop):
    stubs = render_stubs(shop.catalog)
    search = stubs["tools.shop.search_orders"]
    # enum via $ref/$defs, nullable with default, number and integer defaults, output schema
    assert "status: Literal['open', 'shipped'] | None = None, min_total: float = 0.0, limit: int = 10" in search
    assert (
        ") -> list[Order]:" in search and "class Order(TypedDict" in search and "items: Required[list[str]]" in search
    )
    assert "only orders in this status" in search  # from the server's docstring
    customer = stubs["tools.shop.create_customer"]
    assert "customer: Customer" in customer and "class Address(TypedDict" in customer
    assert "address: Required[Address]" in customer and "zip: str | None" in customer
    assert "priority: Literal['low', 'high'] = 'low'" in customer and "note: str | None = None" in customer
    weather = stubs["tools.shop.get_weather"]
    assert "async def get_weather(city: str," in weather and "_call('get-weather'" in weather
    assert "The server calls this tool 'get-weather'." in weather
    odd = stubs["tools.shop.odd"]
    assert "value: Any" in odd and "not expressible" in odd
    for source in stubs.values():
        compile(source, "stub", "exec")


async def test_results_reach_the_program_as_plain_values(shop):
    r = await shop.execute(
        "from tools.shop import search_orders, get_weather, list_files, two_parts, picture, create_customer\n"
        "result = {\n"
        "  'orders': await search_orders(status='open', min_total=10),\n"
        "  'weather': await get_weather(city='Oslo'),\n"
        "  'files': await list_files(pattern='*.py'),\n"
        "  'parts': await two_parts(),\n"
        "  'picture': await picture(),\n"
        "  'customer': await create_customer(customer={'name': 'Ada', 'address': {'street': 'x', 'city': 'London'}}),\n"
        "}"
    )
    assert r.error is None, r.error
    out = r.result
    assert out["orders"] == [{"id": 1, "status": "open", "total": 25.5, "items": ["pen", "ink"]}]
    assert out["weather"] == "sunny in Oslo"
    assert out["files"] == "a.txt matching *.py"
    assert out["parts"] == "first part\nsecond part"
    assert out["picture"][0]["type"] == "image" and out["picture"][0]["mimeType"] == "image/png"
    # a dict result without an output schema arrives as JSON text, which reaches the program as data
    assert out["customer"]["created"] == "Ada" and out["customer"]["city"] == "London"


async def test_validation_happens_before_the_server_is_called(shop):
    r = await shop.execute(
        "from tools.shop import search_orders\nfrom tools import ToolValidationError\n"
        "try:\n    await search_orders(status='lost')\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "status" in r.result


async def test_is_error_raises_tool_error_with_the_server_text(shop):
    r = await shop.execute(
        "from tools.shop import fail\nfrom tools import ToolError\ntry:\n    await fail(message='out of stock')\nexcept ToolError as e:\n    result = str(e)"
    )
    assert "out of stock" in r.result
    assert r.tool_calls[0].error.type == "ToolError"


async def test_one_session_shared_and_concurrent(shop):
    pids = [(await shop.execute("from tools.shop import pid\nawait pid()")).result for _ in range(3)]
    assert len(set(pids)) == 1
    started = time.perf_counter()
    r = await shop.execute(
        "import asyncio\nfrom tools.shop import slow_echo\nawait asyncio.gather(*(slow_echo(text=str(i), delay=0.3) for i in range(20)))"
    )
    assert r.result == [str(i) for i in range(20)]
    assert time.perf_counter() - started < 3  # 20 x 0.3 s in sequence would be 6 s


async def test_crash_mid_call_then_reconnect(shop):
    before = (await shop.execute("from tools.shop import pid\nawait pid()")).result
    r = await shop.execute(
        "from tools.shop import crash\nfrom tools import ToolError\ntry:\n    await crash()\nexcept ToolError as e:\n    result = str(e)"
    )
    assert r.error is None and isinstance(r.result, str)
    assert r.tool_calls[0].error is not None
    after = await shop.execute("from tools.shop import pid\nawait pid()")
    assert after.error is None and after.result != before


async def test_hanging_server_times_out(shop):
    started = time.perf_counter()
    r = await shop.execute(
        "from tools.shop import hang\nfrom tools import ToolTimeoutError\ntry:\n    await hang()\nexcept ToolTimeoutError as e:\n    result = 'timed out'",
    )
    assert r.result == "timed out"
    assert time.perf_counter() - started < 8
    assert (
        await shop.execute("from tools.shop import get_weather\nawait get_weather(city='x')")
    ).result == "sunny in x"


async def test_circuit_breaker_is_per_server():
    policy = Policy(timeout=5, circuit_failure_threshold=2, circuit_reset_timeout=60)
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, policy=policy) as ex:
        code = "from tools.shop import {a}, {b}, get_weather\nfrom tools import ToolError\nout = []\nfor call in ({a}({args}), {b}({args}), get_weather(city='z')):\n    try:\n        out.append(await call)\n    except ToolError as e:\n        out.append(type(e).__name__)\nout"
        # isError replies are the server answering: they do not count against it
        r = await ex.execute(code.format(a="fail", b="fail", args="message='x'"))
        assert r.result == ["ToolError", "ToolError", "sunny in z"]
        # the server dying mid-call does: two of them open the circuit for all its tools
        r = await ex.execute(code.format(a="crash", b="crash", args=""))
        assert r.result == ["ToolError", "ToolError", "CircuitOpenError"]


async def test_server_that_will_not_start_is_a_clear_error():
    bad = f"{sys.executable} -c \"import sys; sys.stderr.write('missing API key'); sys.exit(3)\""
    executor = ProgrammaticToolExecutor(mcp_servers={"broken": bad})
    with pytest.raises(MCPConnectionError) as info:
        await executor.connect()
    message = str(info.value)
    assert "broken" in message and "missing API key" in message and sys.executable in message
    with pytest.raises(MCPConnectionError, match="nope-not-a-command"):
        await ProgrammaticToolExecutor(mcp_servers={"gone": "nope-not-a-command --flag"}).connect()


async def test_close_ends_the_subprocess():
    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}) as ex:
        server_pid = (await ex.execute("from tools.shop import pid\nawait pid()")).result
        os.kill(server_pid, 0)  # alive
    for _ in range(50):
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the MCP server process outlived the executor")


async def test_streamable_http_backend(http_shop):
    async with ProgrammaticToolExecutor(
        mcp_servers={"remote": {"url": http_shop, "headers": {"Authorization": "Bearer test"}}}
    ) as ex:
        r = await ex.execute(
            "from tools.remote import search_orders, get_weather\n[len(await search_orders()), await get_weather(city='Rome')]"
        )
        assert r.result == [3, "sunny in Rome"]


def test_execute_sync_with_mcp():
    executor = ProgrammaticToolExecutor(mcp_servers={"shop": STDIO})
    try:
        assert executor.execute_sync("from tools.shop import count\nawait count()").result == 1
        assert executor.execute_sync("from tools.shop import count\nawait count()").result == 2  # same session
    finally:
        executor.close()


def test_a_backends_loop_closes_what_its_clients_left_open() -> None:
    """A client's stream (an async generator) left suspended on a backend's private loop is closed
    with the loop, as asyncio.run closes its own, not finalized after it ("Task was destroyed")."""
    from ptc.loop_thread import LoopThread

    closed: list[str] = []

    async def stream():
        try:
            while True:
                yield "event"
                await asyncio.sleep(3600)
        finally:
            closed.append("stream")

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            closed.append("task")

    backend = LoopThread("ptc-test-loop")
    reader = stream()

    async def read_one() -> str:
        backend.loop.create_task(forever())
        return await reader.__anext__()

    assert asyncio.run_coroutine_threadsafe(read_one(), backend.loop).result(5) == "event"
    backend.close()
    assert sorted(closed) == ["stream", "task"]
    assert backend.loop.is_closed()
