"""Resource exhaustion: CPU, memory, stack, parser, regex, output, tool calls, sleeping forever.

Every case ends with its named error kind (or, for output floods, a bounded
truncated output) within the limits, and the executor's next execution is
healthy.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from ptc import ExecutionResult, ProgrammaticToolExecutor

from .conftest import LIMITS, RunCase, TenantB
from .support import STOPPED, Expect, OutcomeMismatch, caught, fails, ok

CAP = LIMITS.max_output_bytes


def nested(depth: int) -> str:
    """Program lines that build a list nested `depth` deep in `x`."""
    return f"x = []\nfor _ in range({depth}):\n    x = [x]\n"


def bounded_output(r: ExecutionResult) -> bool:
    data = r.output.encode("utf-8", "surrogatepass")
    return r.output_truncated and 0 < len(data) <= CAP


# A program that waits forever: a timeout, within the timeout plus a second.
SLEEPING_FOREVER = fails("timeout", max_seconds=2.0).under(timeout=1)
RECURSION = fails("runtime_error", "RecursionError")
MEMORY = fails("memory_limit")

CPU = [
    pytest.param("while True: pass", fails(STOPPED), id="cpu-while-true"),
    pytest.param("for i in range(10**12): pass", fails(STOPPED), id="cpu-huge-range"),
    pytest.param("x = 10 ** 10 ** 8", fails(STOPPED), id="cpu-bigint-power"),
    pytest.param("import math\nmath.factorial(10**7)", fails(STOPPED), id="cpu-factorial"),
    pytest.param(
        "try:\n    while True: pass\nfinally:\n    while True: pass", fails(STOPPED), id="cpu-loop-in-finally"
    ),
    pytest.param(
        "class E(Exception):\n    def __str__(self):\n        while True: pass\nraise E()",
        fails(STOPPED),
        id="cpu-loop-while-reporting-the-error",
    ),
    pytest.param(
        "while True: pass",
        fails("timeout", max_seconds=2.0).under(fuel=None, timeout=1),
        id="cpu-fuel-off-still-times-out",
    ),
    pytest.param(
        "import re\nre.match('(a+)+$', 'a' * 40 + 'b')",
        fails(STOPPED, max_seconds=3.0),
        id="cpu-catastrophic-regex",
    ),
    pytest.param(
        "import re\nre.match('(a+)+$', 'a' * 40 + 'b')",
        fails("timeout", max_seconds=2.0).under(fuel=None, timeout=1),
        id="cpu-catastrophic-regex-fuel-off",
    ),
]

MEMORY_CASES = [
    pytest.param("x = bytearray(2**30)", MEMORY, id="mem-bytearray-1g"),
    pytest.param("x = bytearray(2**31)", MEMORY, id="mem-bytearray-2g"),
    pytest.param("x = b'x' * 2**29", MEMORY, id="mem-bytes-multiplication"),
    pytest.param("x = 'x' * 2**40", MEMORY, id="mem-str-multiplication-1t"),
    pytest.param("x = [0] * 2**28", MEMORY, id="mem-list-multiplication"),
    pytest.param("x = []\nwhile True:\n    x.append(' ' * 100_000)", MEMORY, id="mem-growing-list"),
    pytest.param("s = 'x'\nwhile True:\n    s += s", MEMORY, id="mem-doubling-string"),
    pytest.param("d = {i: i for i in range(10**9)}", fails(frozenset({"memory_limit", "out_of_fuel"})), id="mem-dict"),
    pytest.param("x = 1 << 2**31", MEMORY, id="mem-huge-int"),
    pytest.param("x = 1 << 2**34", fails("runtime_error", "OverflowError"), id="mem-int-too-big-to-exist"),
]

RECURSION_CASES = [
    pytest.param("def f(n):\n    return f(n + 1)\nf(0)", RECURSION, id="rec-python"),
    pytest.param(
        "import sys\nsys.setrecursionlimit(10**6)\ndef f(n):\n    return f(n + 1)\nf(0)",
        RECURSION,
        id="rec-python-with-raised-limit",
    ),
    pytest.param("def g(n):\n    yield from g(n + 1)\nnext(g(0))", RECURSION, id="rec-generator-chain"),
    pytest.param(nested(100_000) + "repr(x)", RECURSION, id="rec-c-repr"),
    pytest.param(nested(100_000) + "import json\njson.dumps(x)", RECURSION, id="rec-c-json-dumps"),
    pytest.param(nested(100_000) + "import pickle\npickle.dumps(x)", RECURSION, id="rec-c-pickle"),
    pytest.param(nested(100_000) + "import copy\ncopy.deepcopy(x)", RECURSION, id="rec-c-deepcopy"),
    pytest.param(nested(100_000) + "x == x", ok(True), id="rec-c-compare-identical"),  # identity: no recursion
    pytest.param(
        nested(100_000) + "y = []\nfor _ in range(100_000):\n    y = [y]\nx == y", RECURSION, id="rec-c-compare"
    ),
    pytest.param("d = {}\nfor _ in range(100_000):\n    d = {'a': d}\nstr(d)", RECURSION, id="rec-c-dict-str"),
    pytest.param(
        "import sys\nsys.setrecursionlimit(10**6)\n" + nested(100_000) + "repr(x)",
        RECURSION,
        id="rec-c-repr-with-raised-limit",
    ),
    pytest.param(
        nested(100_000) + "result = x", ok("<list object (its repr raised RecursionError)>"), id="rec-result-100k-deep"
    ),
    pytest.param(nested(100) + "result = x", ok("[" * 101 + "]" * 101), id="rec-result-100-deep"),
    pytest.param("x = []\nx.append(x)\nresult = x", ok("[[...]]"), id="rec-result-self-reference"),
    pytest.param("x = []\nx.append(x)\nx", ok("[[...]]"), id="rec-last-expression-self-reference"),
    pytest.param(
        "e = ValueError(0)\nfor i in range(5000):\n    try:\n        raise e\n    except ValueError as x:\n        e = ValueError(i)\n        e.__context__ = x\nraise e",
        fails(STOPPED | {"runtime_error"}),
        id="rec-exception-context-chain",
    ),
    pytest.param(
        "raise ExceptionGroup('g', [ValueError(i) for i in range(20000)])",
        fails("runtime_error", "ExceptionGroup"),
        id="rec-exception-group-20000",
    ),
]

PARSER = [
    pytest.param("x = " + "[" * 5000 + "]" * 5000, fails("syntax_error"), id="parse-nested-brackets"),
    pytest.param("(" * 100_000, fails("syntax_error"), id="parse-unclosed-parens"),
    pytest.param("x = " + "-" * 1_000_000 + "1", fails("syntax_error"), id="parse-unary-chain"),
    pytest.param(
        "".join("    " * i + "if 1:\n" for i in range(200)) + "    " * 200 + "pass\n",
        fails("syntax_error"),
        id="parse-nested-blocks",
    ),
    pytest.param("x = 1\x00", fails("syntax_error"), id="parse-nul-byte"),
    pytest.param(
        "x = " + " + ".join(["1"] * 100_000),
        fails("syntax_error"),
        id="parse-100k-term-sum",
    ),
    pytest.param("eval('[' * 5000 + ']' * 5000)", fails("runtime_error"), id="parse-eval-bomb"),
    pytest.param("compile('-' * 1_000_000 + '1', 's', 'eval')", fails("runtime_error"), id="parse-compile-bomb"),
    pytest.param(
        "import ast\nast.literal_eval('[' * 100_000 + ']' * 100_000)", fails("runtime_error"), id="parse-literal-eval"
    ),
    pytest.param(
        "eval(" + repr(" + ".join(["1"] * 100_000)) + ")", fails("runtime_error"), id="parse-eval-100k-term-sum"
    ),
]

OUTPUT = [
    pytest.param("print('x' * 10**7)\nresult = 'done'", ok("done", check=bounded_output), id="out-one-huge-line"),
    pytest.param(
        "while True:\n    print('x' * 1000)", fails(STOPPED, check=bounded_output), id="out-flood-until-stopped"
    ),
    pytest.param(
        "import sys\nsys.stderr.write('e' * 10**7)\nresult = 'done'", ok("done", check=bounded_output), id="out-stderr"
    ),
    pytest.param(
        "import sys\nfor i in range(10_000):\n    print(i)\n    print(i, file=sys.stderr)\nresult = 'done'",
        ok("done", check=bounded_output),
        id="out-interleaved",
    ),
    pytest.param(
        "import sys\nwhile True:\n    sys.stdout.write('x')", fails(STOPPED, check=bounded_output), id="out-tiny-writes"
    ),
    pytest.param(
        "print('\\u00e9\\U0001F600' * 10**6)\nresult = 'done'",
        ok("done", check=bounded_output),
        id="out-multibyte-at-cap",
    ),
    pytest.param(
        "from wit_world.imports import host\nwhile True:\n    host.write(1, 'x' * 100_000)",
        fails(STOPPED, check=bounded_output),
        id="out-raw-host-write",
    ),
]

TOOLS = [
    pytest.param(
        "from tools.shop import huge\nfrom tools import ToolError\ntry:\n    await huge()\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]",
        caught("ToolError", "limit"),
        id="tool-50mb-result",
    ),
    pytest.param(
        "from tools.shop import huge\nawait huge()", fails("runtime_error", "ToolError"), id="tool-50mb-result-uncaught"
    ),
    pytest.param(
        "from tools.shop import echo\nfrom tools import ToolError\ntry:\n    await echo(value='x' * (2 * 1024 * 1024))\nexcept ToolError as e:\n    result = [type(e).__name__, str(e)]",
        caught("ToolError", "exceeds"),
        id="tool-2mb-argument",
    ),
    pytest.param(
        "from tools.shop import echo\nfor i in range(1000):\n    await echo(value=str(i))",
        fails("tool_call_limit"),
        id="tool-calls-sequential",
    ),
    pytest.param(
        "import asyncio\nfrom tools.shop import echo\nawait asyncio.gather(*(echo(value=str(i)) for i in range(1000)))",
        fails("tool_call_limit"),
        id="tool-calls-gathered",
    ),
    pytest.param(
        "from tools.shop import echo\nfrom tools import ToolError\nn = 0\nwhile True:\n    try:\n        await echo(value='x')\n    except ToolError:\n        pass\n    n += 1",
        fails("tool_call_limit"),
        id="tool-calls-limit-cannot-be-caught",
    ),
    pytest.param(
        "from tools.shop import hang\nawait hang(tag='awaited')", SLEEPING_FOREVER, id="tool-that-never-answers"
    ),
]

SLEEPING = [
    pytest.param("import time\ntime.sleep(3600)", SLEEPING_FOREVER, id="sleep-time-sleep"),
    pytest.param(
        "import time\ntime.sleep(1e12)",
        fails(frozenset({"timeout", "runtime_error"}), max_seconds=2.0).under(timeout=1),
        id="sleep-time-sleep-1e12",
    ),
    pytest.param(
        "import time\ntime.sleep(float('inf'))", fails("runtime_error", "OverflowError"), id="sleep-time-sleep-inf"
    ),
    pytest.param(
        "import time\ntime.sleep(float('nan'))", fails("runtime_error", "ValueError"), id="sleep-time-sleep-nan"
    ),
    pytest.param("import asyncio\nawait asyncio.sleep(3600)", SLEEPING_FOREVER, id="sleep-asyncio-sleep"),
    pytest.param("import asyncio\nawait asyncio.sleep(1e12)", SLEEPING_FOREVER, id="sleep-asyncio-sleep-1e12"),
    pytest.param("import asyncio\nawait asyncio.sleep(float('inf'))", SLEEPING_FOREVER, id="sleep-asyncio-sleep-inf"),
    pytest.param(
        "import asyncio\nawait asyncio.get_running_loop().create_future()",
        SLEEPING_FOREVER,
        id="sleep-unresolved-future",
    ),
    pytest.param("import asyncio\nawait asyncio.Event().wait()", SLEEPING_FOREVER, id="sleep-event-wait"),
    pytest.param("import asyncio\nawait asyncio.Queue().get()", SLEEPING_FOREVER, id="sleep-queue-get"),
    pytest.param(
        "import asyncio\nlock = asyncio.Lock()\nawait lock.acquire()\nawait lock.acquire()",
        SLEEPING_FOREVER,
        id="sleep-lock-deadlock",
    ),
    pytest.param(
        "import asyncio\nawait asyncio.wait_for(asyncio.Event().wait(), 1e9)", SLEEPING_FOREVER, id="sleep-wait-for-1e9"
    ),
    pytest.param(
        "import asyncio\nawait asyncio.gather(asyncio.Event().wait(), asyncio.sleep(1e9))",
        SLEEPING_FOREVER,
        id="sleep-gather",
    ),
    pytest.param(
        "import asyncio\nasync def main():\n    await asyncio.Event().wait()\nasyncio.run(main())",
        SLEEPING_FOREVER,
        id="sleep-asyncio-run",
    ),
    pytest.param(
        "import asyncio\nasync def stubborn():\n    while True:\n        try:\n            await asyncio.sleep(1000)\n        except asyncio.CancelledError:\n            pass\nasyncio.create_task(stubborn())\nawait asyncio.sleep(0)\nresult = 'left behind'",
        SLEEPING_FOREVER,
        id="sleep-task-refusing-cancellation",
    ),
    pytest.param(
        "import asyncio, time\ntry:\n    await asyncio.sleep(1e9)\nfinally:\n    time.sleep(1e9)",
        SLEEPING_FOREVER,
        id="sleep-again-in-finally",
    ),
    pytest.param(
        "import time\nwhile True:\n    time.sleep(0)",
        fails(STOPPED, max_seconds=2.0).under(timeout=1),
        id="sleep-zero-forever",
    ),
    pytest.param(
        "import asyncio\nwhile True:\n    await asyncio.sleep(0)", fails(STOPPED), id="sleep-asyncio-zero-forever"
    ),
    pytest.param(
        "import sys\ndel sys.modules['time']\nimport time\ntime.sleep(100)",
        fails("runtime_error", "SandboxError", max_seconds=1.0),
        id="sleep-native-clock",
    ),
    pytest.param(
        "import select\nselect.select([], [], [], 100)",
        fails("runtime_error", "SandboxError", max_seconds=1.0),
        id="sleep-select",
    ),
]


@pytest.mark.parametrize("code, expect", CPU + MEMORY_CASES + RECURSION_CASES + PARSER + OUTPUT + TOOLS + SLEEPING)
async def test_exhaustion(
    executor: ProgrammaticToolExecutor, tenant_b: TenantB, run_case: RunCase, code: str, expect: Expect
) -> None:
    try:
        await run_case(executor, code, expect)
    finally:
        tenant_b.cancel_running()


ORPHANS = [
    pytest.param(
        "import asyncio\nfrom tools.shop import hang\nasyncio.create_task(hang(tag='$TAG'))\nawait asyncio.sleep(0.1)\nresult = 'left'",
        ok("left"),
        id="task-left-running-at-the-end",
    ),
    pytest.param(
        "import msgpack\nfrom wit_world.imports import host\nhost.submit(msgpack.packb({'tool': 'hang', 'args': {'tag': '$TAG'}}).decode('latin-1'))\nresult = 'left'",
        ok("left"),
        id="raw-submit-never-waited",
    ),
    pytest.param(
        "from tools.shop import hang\nawait hang(tag='$TAG')",
        fails("timeout").under(timeout=0.5),
        id="awaited-until-the-timeout",
    ),
    pytest.param(
        "import asyncio\nfrom tools.shop import hang\nasyncio.create_task(hang(tag='$TAG'))\nawait asyncio.sleep(0.1)\nwhile True: pass",
        fails("out_of_fuel"),
        id="running-when-fuel-runs-out",
    ),
]


@pytest.mark.parametrize("code, expect", ORPHANS)
async def test_tool_calls_do_not_outlive_their_execution(
    executor: ProgrammaticToolExecutor, tenant_b: TenantB, run_case: RunCase, code: str, expect: Expect
) -> None:
    """Once an execution has ended, none of its tool calls may still run on the host.

    Otherwise every execution that ends by a trap (timeout, fuel, memory) or
    simply abandons calls leaves up to max_tool_calls handlers running on the
    host until their own policy timeout (5 s here, 30 s by default, forever
    with Policy(timeout=None)).
    """
    tag = f"orphan-{time.monotonic_ns()}"
    try:
        r = await run_case(executor, code.replace("$TAG", tag), expect)
        await asyncio.sleep(0.3)  # a cancellation needs a loop turn or two
        if tag in tenant_b.running:
            raise OutcomeMismatch(f"the call {tag!r} still runs after the execution ended ({r.error})")
    finally:
        tenant_b.cancel_running()
