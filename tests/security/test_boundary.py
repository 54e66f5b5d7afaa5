"""Forging the boundary: the program drives the raw host functions with hand-made frames.

The raw bindings are reachable (`from wit_world.imports import host`); that
is expected. What must hold: every hand-made frame ends as a ToolError-family
exception in the program or as a named error kind, no frame can reach a tool
outside the executor's own catalog (tenant A's `secret_a` is never run by
tenant B's programs), and the host stays healthy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ptc import ExecutionResult, ProgrammaticToolExecutor

from .conftest import SECRET_A, MiB, RunCase, TenantA, assert_healthy
from .support import Expect, OutcomeMismatch, caught, check_outcome, fails, ok

# Sends `frame` (a str) through the event loop's submit (or host.call when SYNC) and
# turns the reply into the value or the ToolError-family exception, as the stubs do.
FORGE = """
import asyncio, random, msgpack, tools
from wit_world.imports import host
from tools import ToolError
def pack(value):
    return msgpack.packb(value, use_bin_type=True).decode('latin-1')
def decode(reply):
    message = msgpack.unpackb(reply.encode('latin-1'), strict_map_key=False)
    if 'error' in message:
        raise getattr(tools, message['error']['type'], ToolError)(message['error']['message'])
    return message['ok']
frame = FRAME
try:
    if SYNC:
        value = decode(host.call(frame))
    else:
        value = decode(await asyncio.get_running_loop().submit(frame))
    result = ['ok', value]
except ToolError as e:
    result = [type(e).__name__, str(e)]
"""


def forge(frame: str, sync: bool = False) -> str:
    return FORGE.replace("FRAME", frame).replace("SYNC", str(sync))


def not_found_and_recorded(r: ExecutionResult) -> bool:
    return (
        r.result[0] == "ToolNotFoundError"
        and len(r.tool_calls) == 1
        and r.tool_calls[0].error is not None
        and r.tool_calls[0].error.type == "ToolNotFoundError"
    )


def output_is_stdout_and_stderr(r: ExecutionResult) -> bool:
    return len(r.output) == len(r.stdout) + len(r.stderr)


MISCLASSIFIED_ABORT = (
    "a guest-side abort that is not about memory (componentize-py panics when a raw host binding gets a "
    "value its WIT type cannot hold, or when the runtime itself fails) is reported as memory_limit "
    "('the guest aborted, most likely out of memory'); it is the program's error: runtime_error"
)
SABOTAGED_REPORT = (
    "a program that breaks what the guest runtime needs to write its report (the codec's pack(), "
    "builtins.len) makes the report unreadable and ptc reports internal_error/ReportError; it is the "
    "program's doing (runtime_error)"
)
PROGRAM_ERROR = fails("runtime_error")

FRAMES = [
    # -- names outside the catalog -------------------------------------------------
    pytest.param(forge("pack({'tool': 'no_such_tool', 'args': {}})"), caught("ToolNotFoundError"), id="unknown-tool"),
    pytest.param(
        forge("pack({'tool': 'secret_a', 'args': {}})"),
        ok(check=not_found_and_recorded),
        id="other-tenants-tool-async",
    ),
    pytest.param(
        forge("pack({'tool': 'secret_a', 'args': {}})", sync=True),
        ok(check=not_found_and_recorded),
        id="other-tenants-tool-sync",
    ),
    pytest.param(
        forge("pack({'tool': 'secret_a', 'args': {}, 'key': 'k', 'tenant_id': 'security-tenant-a'})"),
        caught("ToolNotFoundError"),
        id="other-tenants-tool-naming-the-tenant",
    ),
    pytest.param(
        """
from wit_world.imports import host
import msgpack
from tools import ToolError
names = ['vault.secret_a', 'tools.vault.secret_a', 'secret_a\\x00', 'SECRET_A', ' secret_a', '../secret_a',
         '__class__', '__init__', 'echo\\x00', 'shop.echo', '']
result = []
for name in names:
    reply = msgpack.unpackb(host.call(msgpack.packb({'tool': name, 'args': {}}).decode('latin-1')).encode('latin-1'))
    result.append(reply['error']['type'])
""",
        ok(["ToolNotFoundError"] * 11),
        id="look-alike-tool-names",
    ),
    pytest.param(
        "from tools.vault import secret_a",
        fails("runtime_error", "ModuleNotFoundError"),
        id="import-other-tenants-stub",
    ),
    # -- malformed requests ------------------------------------------------------------
    pytest.param(forge("pack({'tool': 5, 'args': {}})"), caught("ToolError", "string 'tool'"), id="tool-name-int"),
    pytest.param(forge("pack({'tool': None})"), caught("ToolError", "string 'tool'"), id="tool-name-none"),
    pytest.param(forge("pack({'tool': ['echo']})"), caught("ToolError", "string 'tool'"), id="tool-name-list"),
    pytest.param(forge("pack({'tool': b'echo'})"), caught("ToolError", "string 'tool'"), id="tool-name-bytes"),
    pytest.param(forge("pack({'tool': {'name': 'echo'}})"), caught("ToolError", "string 'tool'"), id="tool-name-map"),
    pytest.param(forge("pack([1, 2])"), caught("ToolError", "must be a map"), id="frame-not-a-map"),
    pytest.param(forge("pack(None)"), caught("ToolError", "must be a map"), id="frame-nil"),
    pytest.param(forge("pack({'tool': 'echo', 'args': [1]})"), caught("ToolValidationError"), id="args-not-a-map"),
    pytest.param(forge("pack({'tool': 'echo', 'args': 'value'})"), caught("ToolValidationError"), id="args-a-string"),
    pytest.param(forge("pack({'tool': 'echo'})"), caught("ToolValidationError", "value"), id="args-missing"),
    pytest.param(forge("pack({'tool': 'echo', 'args': {1: 'x'}})"), caught("ToolValidationError"), id="args-int-key"),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {b'value': 'x'}})"), caught("ToolValidationError"), id="args-bytes-key"
    ),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'x', 'extra': 1}})"),
        caught("ToolValidationError", "extra"),
        id="args-extra",
    ),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'x'}, 'key': 7})"),
        caught("ToolValidationError", "idempotency_key"),
        id="idempotency-key-not-a-string",
    ),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'fine'}})"), ok(["ok", "fine"]), id="well-formed-frame"
    ),
    # -- hostile encodings -------------------------------------------------------------
    pytest.param(forge("'\\x00' * (2 * 1024 * 1024)"), caught("ToolError", "exceeds"), id="huge-garbage-frame"),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'x' * (2 * 1024 * 1024)}})"),
        caught("ToolError", "exceeds"),
        id="huge-valid-frame",
    ),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'x' * (2 * 1024 * 1024)}})", sync=True),
        caught("ToolError", "exceeds"),
        id="huge-valid-frame-sync",
    ),
    pytest.param(
        forge("(b'\\x82\\xa4tool\\xa4echo\\xa4args' + b'\\x91' * 200 + b'\\x01').decode('latin-1')"),
        caught("ToolError", "nested deeper"),
        id="nested-200-deep",
    ),
    pytest.param(
        forge("(b'\\x82\\xa4tool\\xa4echo\\xa4args' + b'\\x91' * 500_000 + b'\\x01').decode('latin-1')"),
        caught("ToolError"),
        id="nested-500k-deep",
    ),
    pytest.param(
        forge("(b'\\x82\\xa4tool\\xa4echo\\xa4args' + b'\\x81\\xa1k' * 100_000 + b'\\x01').decode('latin-1')"),
        caught("ToolError"),
        id="nested-maps-100k-deep",
    ),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': msgpack.ExtType(5, b'x')}})"),
        caught("ToolError", "ext type"),
        id="ext-type",
    ),
    pytest.param(
        forge("(b'\\x82\\xa4tool\\xa4echo\\xa4args\\x81\\xa5value\\xd6\\xff' + b'\\x00' * 4).decode('latin-1')"),
        caught("ToolError", "not plain data"),
        id="timestamp-ext-type",
    ),
    pytest.param(forge("'\\xc1'"), caught("ToolError", "malformed"), id="reserved-byte"),
    pytest.param(forge("'\\x92\\x01'"), caught("ToolError", "malformed"), id="truncated"),
    pytest.param(forge("''"), caught("ToolError", "malformed"), id="empty-frame"),
    pytest.param(forge("'\\xdd\\xff\\xff\\xff\\xff'"), caught("ToolError", "elements"), id="array-claims-4g-items"),
    pytest.param(forge("'\\xdb\\xff\\xff\\xff\\xff'"), caught("ToolError", "malformed"), id="str-claims-4g-bytes"),
    pytest.param(
        forge("pack({'tool': 'echo', 'args': {'value': 'x'}}) + 'trailing'"),
        caught("ToolError", "malformed"),
        id="trailing-bytes",
    ),
    pytest.param(forge("random.Random(7).randbytes(4096).decode('latin-1')"), caught("ToolError"), id="random-garbage"),
    pytest.param(forge("'\\u20ac\\u4e2d'"), caught("ToolError", "malformed"), id="not-latin-1"),
    pytest.param(forge("'\\ud800'"), PROGRAM_ERROR, id="lone-surrogate-frame"),
    # -- raw host functions used wrongly ---------------------------------------------
    pytest.param(
        "from wit_world.imports import host\nfor _ in range(5000):\n    host.submit('\\xc1')",
        fails("tool_call_limit"),
        id="5000-submits-never-waited",
    ),
    pytest.param(
        "from wit_world.imports import host\nimport msgpack\nframe = msgpack.packb({'tool': 'echo', 'args': {'value': 'x'}}).decode('latin-1')\nresult = len([host.submit(frame) for _ in range(40)])",
        ok(40),
        id="40-submits-abandoned",
    ),
    pytest.param(
        "from wit_world.imports import host\nfor i in (0, 1, 2, 12345, 2**32, 2**64 - 1):\n    host.cancel(i)\nresult = 'ok'",
        ok("ok"),
        id="cancel-ids-never-submitted",
    ),
    pytest.param(
        "from wit_world.imports import host\nimport msgpack\ni = host.submit(msgpack.packb({'tool': 'echo', 'args': {'value': 'x'}}).decode('latin-1')).value\nhost.cancel(i)\nhost.cancel(i)\nresult = [r for r in host.wait(0) if r[0] == i]",
        ok([]),
        id="cancel-twice-then-wait",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.cancel(-1)",
        PROGRAM_ERROR,
        id="cancel-negative-id",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.submit(5)",
        PROGRAM_ERROR,
        id="submit-an-int",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.wait(-1)",
        fails("timeout", max_seconds=2.5).under(timeout=1),
        id="wait-forever-on-nothing",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.wait(2**63 - 1)",
        fails("timeout", max_seconds=2.5).under(timeout=1),
        id="wait-292-years",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.wait(-2**63)",
        fails("timeout", max_seconds=2.5).under(timeout=1),
        id="wait-most-negative",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.wait(2**63)",
        PROGRAM_ERROR,
        id="wait-overflowing-s64",
    ),
    pytest.param("from wit_world.imports import host\nresult = host.wait(0)", ok([]), id="wait-zero-on-nothing"),
    pytest.param(
        "from wit_world.imports import host\nhost.sleep(2**64 - 1)",
        fails("timeout", max_seconds=2.5).under(timeout=1),
        id="sleep-584-years",
    ),
    pytest.param(
        "from wit_world.imports import host\nresult = [host.write(1, 'x' * (5 * 1024 * 1024)), host.write(1, 'y'), host.write(2, 'z')]",
        ok([False, False, False], check=lambda r: r.output_truncated and len(r.output.encode()) <= 64 * 1024),
        id="write-past-the-output-cap",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.write(7, 'to fd 7')\nprint('to stdout')",
        ok(check=output_is_stdout_and_stderr),
        id="write-to-fd-7",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.write(300, 'x')",
        PROGRAM_ERROR,
        id="write-fd-over-u8",
    ),
    pytest.param(
        "from wit_world.imports import host\nhost.write(1, '\\ud800')",
        PROGRAM_ERROR,
        id="write-lone-surrogate",
    ),
    pytest.param(
        "from wit_world.imports import host\nresult = [host.load_module(n) for n in ('os', 'sys', 'ptc', 'ptc.hostcalls.calls.router', 'hostcalls', '/etc/passwd', '../etc/passwd', 'tools/../../etc/passwd', 'tools..', 'tools.shop/../../x', '')]",
        ok([None] * 11),
        id="load-module-outside-tools",
    ),
    pytest.param(
        "from wit_world.imports import host\nresult = [host.load_module(n) for n in ('tools.vault', 'tools.vault.secret_a')]",
        ok([None, None]),
        id="load-module-of-other-tenant",
    ),
    pytest.param(
        "from wit_world.imports import host\nresult = host.load_module('tools.' + 'x' * 1_000_000)",
        ok(None),
        id="load-module-megabyte-name",
    ),
    # -- the component runtime's own entry points --------------------------------------
    pytest.param(
        "import componentize_py_runtime as r\nr.call_import(7, [])",
        PROGRAM_ERROR,
        id="call-import-unknown-index",
    ),
    pytest.param(
        "import componentize_py_runtime as r\nr.call_import(0, [])",
        PROGRAM_ERROR,
        id="call-import-missing-arguments",
    ),
    pytest.param(
        "import componentize_py_runtime as r\nr.drop_resource(0, 0)",
        PROGRAM_ERROR,
        id="drop-resource-bogus-index",
    ),
    pytest.param(
        """
import sys
for name in ('_ptc_codec', 'msgpack'):
    module = sys.modules.get(name)
    for attr in ('pack', 'packb'):
        if module is not None and hasattr(module, attr):
            setattr(module, attr, lambda *a, **k: b'\\xc1')
result = 'sabotaged'
""",
        PROGRAM_ERROR,
        id="sabotaged-result-encoder",
    ),
    pytest.param(
        "import builtins\nbuiltins.len = lambda obj: 0\nresult = 'sabotaged'",
        PROGRAM_ERROR,
        id="sabotaged-builtins-len",
    ),
]

TOOL_CALL = """
from tools.shop import TOOL
from tools import ToolError
try:
    result = ['ok', await TOOL()]
except ToolError as e:
    result = [type(e).__name__, str(e)]
"""
UNDECODABLE_REPLY = (
    "a tool reply the host accepts but the guest's codec refuses (nesting between the host's and the guest's "
    "depth caps, a map key that packs as an array) raises ValueError/TypeError in the program instead of a ToolError"
)

REPLIES = [
    pytest.param(TOOL_CALL.replace("TOOL", "not_plain"), caught("ToolError", "not plain data"), id="reply-not-plain"),
    pytest.param(
        TOOL_CALL.replace("TOOL", "boom_generic"),
        caught("ToolError", "boom_generic failed (ValueError)"),
        id="reply-tool-failed",
    ),
    pytest.param(TOOL_CALL.replace("TOOL", "huge"), caught("ToolError", "limit"), id="reply-50mb"),
    pytest.param(
        TOOL_CALL.replace("TOOL", "deep_result"),
        caught("ToolError"),
        id="reply-nested-100-deep",
    ),
    pytest.param(
        TOOL_CALL.replace("TOOL", "tuple_key_result"),
        caught("ToolError"),
        id="reply-array-map-key",
    ),
]


@pytest.mark.parametrize("code, expect", FRAMES + REPLIES)
async def test_forged_frames(
    executor: ProgrammaticToolExecutor, tenant_a: TenantA, run_case: RunCase, code: str, expect: Expect
) -> None:
    calls = tenant_a.calls
    try:
        await run_case(executor, code, expect)
    finally:
        assert tenant_a.calls == calls, "tenant B's program ran tenant A's tool"


async def test_tenant_a_cannot_reach_tenant_b(executor_a: ProgrammaticToolExecutor, run_case: RunCase) -> None:
    r = await run_case(executor_a, forge("pack({'tool': 'echo', 'args': {'value': 'x'}})"), caught("ToolNotFoundError"))
    assert [c.tool for c in r.tool_calls] == ["echo"]


async def test_each_tenant_reaches_its_own_tool(executor_a: ProgrammaticToolExecutor, tenant_a: TenantA) -> None:
    # The control: the forging program is sound, it is tenant B's catalog that refuses.
    calls = tenant_a.calls
    r = await executor_a.execute(forge("pack({'tool': 'secret_a', 'args': {}})"))
    assert r.error is None and r.result == ["ok", SECRET_A] and tenant_a.calls == calls + 1
    await assert_healthy(executor_a)


def host_retains_at_most(limit: int) -> Callable[[ExecutionResult], bool]:
    def check(r: ExecutionResult) -> bool:
        return sum(len(str(c.parameters)) for c in r.tool_calls) <= limit

    return check


async def test_frames_summing_past_guest_memory_do_not_pile_up_on_the_host(
    executor: ProgrammaticToolExecutor, run_case: RunCase
) -> None:
    # Each frame is under max_frame_bytes and the program reuses one string, so its
    # own memory stays small; the host decodes every frame and records its parameters.
    # 100 frames of ~1 MiB: 100 MiB held by the host for a sandbox limited to 64 MiB.
    code = (
        "from wit_world.imports import host\nimport msgpack\n"
        "frame = msgpack.packb({'tool': 'no_such_tool', 'args': {'v': 'x' * (1024 * 1024 - 64)}}).decode('latin-1')\n"
        "for _ in range(100):\n    host.submit(frame)\nresult = 'submitted'"
    )
    limits = {"memory_bytes": 64 * MiB, "max_tool_calls": 1000, "timeout": 20, "fuel": None}
    await run_case(executor, code, ok("submitted", check=host_retains_at_most(64 * MiB)).under(**limits))


def _execute_in_own_loop(executor: ProgrammaticToolExecutor, code: str) -> ExecutionResult | BaseException:
    try:
        return asyncio.run(executor.execute(code))
    except BaseException as exc:  # noqa: BLE001 - what escapes execute() is the finding
        return exc


async def test_a_tool_raising_system_exit_fails_only_its_call(executor: ProgrammaticToolExecutor) -> None:
    # The program controls the arguments, so it decides when the tool exits. Run in a
    # loop of its own: what escapes must not take the test's loop down with it.
    code = TOOL_CALL.replace("TOOL()", "TOOL(argv=['--bogus'])").replace("TOOL", "cli")
    outcome = await asyncio.to_thread(_execute_in_own_loop, executor, code)
    await assert_healthy(executor)
    if not isinstance(outcome, ExecutionResult):
        raise OutcomeMismatch(f"execute() raised {type(outcome).__name__}: {outcome!r}")
    check_outcome(outcome, caught("ToolError"))
