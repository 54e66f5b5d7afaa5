"""Error hygiene: what a failing program and its caller see never shows the host.

For each failing program, `result.error.message`, `result.error.traceback`,
`result.output` and the exception text the program itself sees (printed by
a wrapper that catches, formats and re-raises) must not contain host paths
(the repo, site-packages, the host Python's folder, the home folder, ptc's
cache) nor host implementation names ('hostcalls', 'router.py', 'wasmtime').
The program's own traceback starts with 'Traceback (most recent call last)';
every frame it names must be the program's or the guest's, never the host's.
"""

from __future__ import annotations

import re

import pytest

from ptc import ExecutionResult, ProgrammaticToolExecutor

from .conftest import RunCase, TenantB, assert_healthy
from .support import NAMED_KINDS, Expect, OutcomeMismatch, check_outcome, fails, texts

# What the program sees: the formatted traceback, repr, args, chained exceptions, frame files.
SEEN = """
import sys, traceback
try:
{body}
except BaseException as e:
    print(traceback.format_exc())
    print(repr(e), e.args, repr(e.__cause__), repr(e.__context__), getattr(e, '__notes__', None))
    tb = e.__traceback__
    while tb is not None:
        print('frame:', tb.tb_frame.f_code.co_filename)
        tb = tb.tb_next
    raise
"""
FRAME_FILE = re.compile(r'File "([^"]*)"|^frame: (.*)$', re.MULTILINE)
GUEST_FILE = re.compile(r"^(<program>|<string>|<stdlib>/|/0/|/1/|/bundled/|/python/|tools/|<frozen )")


def seen(body: str) -> str:
    return SEEN.format(body="\n".join("    " + line for line in body.splitlines()))


HOST_PATH_IN_TOOL_MESSAGE = (
    "an unexpected exception in a tool handler is forwarded to the program as f'{type}: {str(exc)}'; for an "
    "OSError that is the host path the handler tried to open (here under the repo), so host paths reach the "
    "program (the README only promises the traceback stays on the host)"
)
MISCLASSIFIED_ABORT = (
    "the guest aborts (wasm unreachable) and ptc reports memory_limit 'the guest aborted, most likely out of "
    "memory' for a plain program error"
)

CASES = [
    # -- the program's own mistakes --------------------------------------------------
    pytest.param("def f(:\n    pass", fails("syntax_error", "SyntaxError"), id="syntax-error"),
    pytest.param("if True:\nprint(1)", fails("syntax_error", "IndentationError"), id="indentation-error"),
    pytest.param("x = 1\x00", fails("syntax_error"), id="nul-byte"),
    pytest.param("x = " + "[" * 5000 + "]" * 5000, fails("syntax_error"), id="parser-bomb"),
    pytest.param(seen("1 / 0"), fails("runtime_error", "ZeroDivisionError"), id="zero-division"),
    pytest.param(seen("import json\njson.loads('{')"), fails("runtime_error", "JSONDecodeError"), id="stdlib-error"),
    pytest.param(seen("import numpy"), fails("runtime_error", "ModuleNotFoundError"), id="missing-module"),
    pytest.param(
        seen("from tools.nope import x"), fails("runtime_error", "ModuleNotFoundError"), id="missing-tools-domain"
    ),
    pytest.param(
        seen("from wit_world.imports import host\nhost.nope"),
        fails("runtime_error", "AttributeError"),
        id="host-binding-attribute",
    ),
    pytest.param(seen("import sys\nsys.exit('bye')"), fails("runtime_error", "SystemExit"), id="sys-exit"),
    pytest.param("import os\nos._exit(3)", fails("runtime_error", "SystemExit"), id="os-exit"),
    pytest.param(
        "class E(Exception):\n    def __str__(self):\n        raise RuntimeError('no text')\nraise E()",
        fails("runtime_error", "E"),
        id="exception-with-failing-str",
    ),
    pytest.param(
        "class E(Exception):\n    def __str__(self):\n        return 5\nraise E()",
        fails("runtime_error", "E"),
        id="exception-with-non-str-str",
    ),
    pytest.param(
        "print('half an emoji: \\ud83d')",
        fails("runtime_error"),
        id="lone-surrogate-in-output",
    ),
    pytest.param(
        "result = 'half an emoji: \\ud83d'",
        fails("runtime_error"),
        id="lone-surrogate-in-result",
    ),
    pytest.param(
        "raise ValueError('half an emoji: \\ud83d')",
        fails("runtime_error", "ValueError"),
        id="lone-surrogate-in-error-message",
    ),
    # -- tools that fail -------------------------------------------------------------
    pytest.param(
        seen("from tools.shop import boom\nawait boom()"), fails("runtime_error", "ToolError"), id="tool-empty-message"
    ),
    pytest.param(
        seen("from tools.shop import boom_generic\nawait boom_generic()"),
        fails("runtime_error", "ToolError"),
        id="tool-generic-message",
    ),
    pytest.param(
        seen("from tools.shop import boom_host_path\nawait boom_host_path()"),
        fails("runtime_error", "ToolError"),
        id="tool-oserror-on-a-host-path",
    ),
    pytest.param(
        seen("from tools.shop import echo\nawait echo(value=5)"),
        fails("runtime_error", "ToolValidationError"),
        id="tool-bad-type",
    ),
    pytest.param(
        seen("from tools.shop import echo\nawait echo()"),
        fails("runtime_error", "ToolValidationError"),
        id="tool-missing-parameter",
    ),
    pytest.param(
        seen("from tools.shop import not_plain\nawait not_plain()"),
        fails("runtime_error", "ToolError"),
        id="tool-not-plain",
    ),
    pytest.param(
        seen("from tools.shop import huge\nawait huge()"), fails("runtime_error", "ToolError"), id="tool-huge-result"
    ),
    pytest.param(
        seen("from tools.shop import deep_result\nawait deep_result()"),
        fails("runtime_error"),
        id="tool-undecodable-result",
    ),
    pytest.param(
        seen("import asyncio\nfrom tools.shop import hang\nawait asyncio.wait_for(hang(tag='hygiene'), 0.05)"),
        fails("runtime_error", "TimeoutError"),
        id="tool-call-given-up",
    ),
    # -- forged frames -------------------------------------------------------------------
    pytest.param(
        seen(
            "from wit_world.imports import host\nimport msgpack, tools\nreply = msgpack.unpackb(host.call('\\xc1').encode('latin-1'))\nraise tools.ToolError(reply['error']['message'])"
        ),
        fails("runtime_error", "ToolError"),
        id="forged-garbage",
    ),
    pytest.param(
        seen(
            "from wit_world.imports import host\nimport msgpack, tools\nreply = msgpack.unpackb(host.call(msgpack.packb({'tool': 'secret_a', 'args': {}}).decode('latin-1')).encode('latin-1'))\nraise tools.ToolNotFoundError(reply['error']['message'])"
        ),
        fails("runtime_error", "ToolNotFoundError"),
        id="forged-other-tenants-tool",
    ),
    pytest.param(
        seen(
            "from wit_world.imports import host\nimport msgpack, tools\nreply = msgpack.unpackb(host.call('\\x00' * (2 * 1024 * 1024)).encode('latin-1'))\nraise tools.ToolError(reply['error']['message'])"
        ),
        fails("runtime_error", "ToolError"),
        id="forged-huge-frame",
    ),
    # -- limits --------------------------------------------------------------------------
    pytest.param("while True: pass", fails("timeout").under(fuel=None, timeout=0.5), id="limit-timeout"),
    pytest.param("while True: pass", fails("out_of_fuel"), id="limit-fuel"),
    pytest.param("x = bytearray(2**30)", fails("memory_limit"), id="limit-memory"),
    pytest.param("x = 1", fails("memory_limit").under(memory_bytes=1024 * 1024), id="limit-memory-too-small-to-start"),
    pytest.param(
        "from tools.shop import echo\nfor i in range(100):\n    await echo(value='x')",
        fails("tool_call_limit"),
        id="limit-tool-calls",
    ),
    pytest.param(
        "x = []\nfor _ in range(100_000):\n    x = [x]\nrepr(x)",
        fails("runtime_error", "RecursionError"),
        id="limit-stack",
    ),
    pytest.param(seen("def f():\n    return f()\nf()"), fails("runtime_error", "RecursionError"), id="limit-recursion"),
    pytest.param("while True:\n    print('x' * 1000)", fails(frozenset({"timeout", "out_of_fuel"})), id="limit-output"),
    pytest.param(
        "import sys\ndel sys.modules['time']\nimport time\ntime.sleep(100)",
        fails("runtime_error", "SandboxError"),
        id="sandbox-error",
    ),
    pytest.param(
        "import componentize_py_runtime as r\nr.drop_resource(0, 0)", fails(NAMED_KINDS | {"internal_error"}), id="trap"
    ),
    pytest.param("import time\ntime.sleep(1e12)", fails(NAMED_KINDS), id="guest-abort"),
]


def host_leaks(r: ExecutionResult, host_details: list[str]) -> list[str]:
    problems = [f"{detail!r} in {text[:300]!r}" for text in texts(r) for detail in host_details if detail in text]
    if r.error is not None and "Traceback" in r.error.message:
        problems.append(f"a traceback in the error message: {r.error.message[:300]!r}")
    for text in (r.output, r.error.traceback if r.error else ""):
        for match in FRAME_FILE.finditer(text):
            name = match.group(1) or match.group(2)
            if not GUEST_FILE.match(name):
                problems.append(f"a frame of {name!r} (not the program's, not the guest's)")
    return problems


@pytest.mark.parametrize("code, expect", CASES)
async def test_errors_show_nothing_of_the_host(
    executor: ProgrammaticToolExecutor,
    tenant_b: TenantB,
    run_case: RunCase,
    host_details: list[str],
    code: str,
    expect: Expect,
) -> None:
    try:
        r = await run_case(executor, code, expect)
    finally:
        tenant_b.cancel_running()
    problems = host_leaks(r, host_details)
    if problems:
        raise OutcomeMismatch("host details reached the program or its caller:\n" + "\n".join(problems))


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("x = '\ud800'", id="lone-surrogate-in-a-string"),
        pytest.param("# \udcff\nresult = 1", id="lone-surrogate-in-a-comment"),
    ],
)
async def test_unencodable_program_text_is_a_syntax_error(executor: ProgrammaticToolExecutor, code: str) -> None:
    try:
        r = await executor.execute(code)
    except UnicodeError as exc:
        await assert_healthy(executor)
        raise OutcomeMismatch(f"execute() raised {type(exc).__name__}: {exc}") from None
    await assert_healthy(executor)
    check_outcome(r, fails("syntax_error"))
