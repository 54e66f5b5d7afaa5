"""Hostile frames and misbehaving tools: a ToolError in the program, a record, the host unharmed."""

import asyncio

import pytest

from ptc import Limits, ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolParameter

catalog = ToolCatalog()


@catalog.tool(domain="bad")
def echo(value: str) -> str:
    return value


@catalog.tool(domain="bad")
def boom() -> None:
    raise RuntimeError("backend exploded at /srv/secret/path.py")


@catalog.tool(domain="bad")
def not_plain() -> dict:
    return {"s": {1, 2}}


@catalog.tool(domain="bad")
def huge() -> str:
    return "x" * (50 * 1024 * 1024)


@catalog.tool(domain="bad")
async def slow() -> str:
    await asyncio.sleep(0.3)
    return "slow"


catalog.add_tool(ToolDefinition(name="unbound", domain="bad", parameters=[ToolParameter(name="a", type="integer")]))


@pytest.fixture(scope="module")
def executor():
    return ProgrammaticToolExecutor(catalog, timeout=10, limits=Limits(max_frame_bytes=1024 * 1024))


RAW = """
import asyncio, _ptc_tools
from tools import ToolError
loop = asyncio.get_running_loop()
try:
    _ptc_tools._decode(await loop.submit({frame}))
    result = None
except ToolError as e:
    result = [type(e).__name__, str(e)]
"""


@pytest.mark.parametrize(
    "frame, expected",
    [
        ("'\\xc1'", "malformed frame"),  # not msgpack
        ("'\\x92\\x01'", "malformed frame"),  # truncated
        ("__import__('msgpack').packb([1, 2]).decode('latin-1')", "must be a map"),
        (
            "__import__('msgpack').packb({'tool': 'echo', 'args': __import__('msgpack').ExtType(5, b'x')}).decode('latin-1')",
            "ext type",
        ),
        ("(b'\\x81\\xa4tool' + b'\\x91' * 200 + b'\\x01').decode('latin-1')", "nested deeper"),
        ("'\\x00' * (2 * 1024 * 1024)", "exceeds"),
        ("__import__('msgpack').packb({'tool': 'not_in_catalog', 'args': {}}).decode('latin-1')", "no tool named"),
        ("__import__('msgpack').packb({'tool': 'echo', 'args': {'value': 5}}).decode('latin-1')", "value"),
        (
            "__import__('msgpack').packb({'tool': 'echo', 'args': {'value': 'x'}, 'key': 7}).decode('latin-1')",
            "idempotency_key",
        ),
    ],
)
async def test_forged_frames_get_tool_errors(executor, frame, expected):
    r = await executor.execute(RAW.format(frame=frame))
    assert r.error is None, r.error
    assert r.result is not None and expected in r.result[1]
    assert len(r.tool_calls) == 1 and r.tool_calls[0].error is not None
    assert (await executor.execute("from tools.bad import echo\nawait echo(value='still fine')")).result == "still fine"


async def test_unknown_tool_is_tool_not_found(executor):
    r = await executor.execute(
        RAW.format(frame="__import__('msgpack').packb({'tool': 'other_tenant_tool', 'args': {}}).decode('latin-1')")
    )
    assert r.result[0] == "ToolNotFoundError"


@pytest.mark.parametrize(
    "call, error_type, fragment",
    [
        ("boom()", "ToolError", "boom failed (RuntimeError)"),  # not its text: that names a host path
        ("not_plain()", "ToolError", "not plain data"),
        ("huge()", "ToolError", "more than the 1048576-byte limit"),
        ("unbound(a=1)", "ToolError", "no handler"),
    ],
)
async def test_misbehaving_tools(executor, call, error_type, fragment):
    name = call.split("(")[0]
    r = await executor.execute(
        f"from tools.bad import {name}\nfrom tools import ToolError\ntry:\n    await {call}\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]"
    )
    assert r.error is None, r.error
    assert r.result[0] == error_type and fragment in r.result[1]
    record = r.tool_calls[0]
    assert record.error.type == error_type and fragment in record.error.message


async def test_host_traceback_never_reaches_the_program(executor):
    r = await executor.execute("from tools.bad import boom\nawait boom()")
    assert r.error.kind == "runtime_error" and r.error.type == "ToolError"
    assert "Traceback" not in r.error.message
    for host_detail in ("router.py", "hostcalls", "site-packages", "test_tool_bad_input"):
        assert host_detail not in r.error.traceback
    assert 'File "<program>", line 2' in r.error.traceback


async def test_non_plain_parameters_fail_in_the_program(executor):
    r = await executor.execute(
        "from tools.bad import echo\nfrom tools import ToolValidationError\ntry:\n    await echo(value={1, 2})\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "not plain data" in r.result


async def test_cancelled_call_in_the_program(executor):
    r = await executor.execute(
        "import asyncio\nfrom tools.bad import slow\ntry:\n    await asyncio.wait_for(slow(), 0.05)\nexcept TimeoutError:\n    result = 'gave up'"
    )
    assert r.result == "gave up"


async def test_sync_call_path(executor):
    r = await executor.execute(
        "import msgpack\nfrom wit_world.imports import host\nmsgpack.unpackb(host.call(msgpack.packb({'tool': 'echo', 'args': {'value': 'sync'}}).decode('latin-1')).encode('latin-1'))"
    )
    assert r.result == {"ok": "sync"}
