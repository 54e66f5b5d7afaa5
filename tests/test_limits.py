"""Every limit ends the execution with a named kind; the next execution is fine."""

import time

import pytest

from ptc import Limits, ProgrammaticToolExecutor


@pytest.fixture
async def healthy(run):
    """After each test, the same executor still runs programs normally."""
    yield
    r = await run("result = 'healthy'")
    assert r.error is None and r.result == "healthy"


async def test_cpu_loop_ends_with_timeout_or_fuel(run, healthy):
    r = await run("while True: pass", timeout=1)
    assert r.error.kind in ("timeout", "out_of_fuel")


async def test_fuel_budget(run, healthy):
    r = await run("while True: pass", fuel=50_000_000, timeout=10)
    assert r.error.kind == "out_of_fuel"
    assert r.fuel_used >= 50_000_000


async def test_fuel_can_be_turned_off(run, healthy):
    r = await run("sum(range(100000))", fuel=None)
    assert r.error is None and r.result == 4999950000 and r.fuel_used is None


@pytest.mark.parametrize("code", ["import time; time.sleep(3600)", "import asyncio; await asyncio.sleep(3600)"])
async def test_sleeping_past_the_timeout(run, healthy, code):
    started = time.perf_counter()
    r = await run(code, timeout=1)
    assert r.error.kind == "timeout"
    assert time.perf_counter() - started < 2


async def test_waiting_forever_on_nothing_times_out(run, healthy):
    r = await run("import asyncio\nawait asyncio.get_running_loop().create_future()", timeout=0.5)
    assert r.error.kind == "timeout"


async def test_native_sleep_cannot_pin_a_host_thread(run, healthy):
    # A program that digs out the C-level sleep reaches wasmtime's own clock
    # wait, which no deadline interrupts: the host refuses it.
    started = time.perf_counter()
    r = await run("import sys\ndel sys.modules['time']\nimport time\ntime.sleep(100)", timeout=2)
    assert r.error.kind == "runtime_error" and r.error.type == "SandboxError"
    assert time.perf_counter() - started < 2


@pytest.mark.parametrize(
    "code", ["x = bytearray(2**31)", "x = bytearray(2**30)", "x = []\nwhile True:\n    x.append(' ' * 100_000)"]
)
async def test_memory_limit(run, healthy, code):
    r = await run(code, memory_bytes=128 * 1024 * 1024)
    assert r.error.kind == "memory_limit"


async def test_memory_limit_too_small_to_start(run, healthy):
    r = await run("x = 1", memory_bytes=1024 * 1024)
    assert r.error.kind == "memory_limit"


async def test_unbounded_recursion_is_a_recursion_error(run, healthy):
    r = await run("def f(n):\n    return f(n + 1)\nf(0)")
    assert r.error.kind == "runtime_error" and r.error.type == "RecursionError"


async def test_deep_c_recursion_is_a_recursion_error(run, healthy):
    r = await run("x = []\nfor _ in range(100_000):\n    x = [x]\nrepr(x)")
    assert r.error.kind == "runtime_error" and r.error.type == "RecursionError"


async def test_parser_bomb(run, healthy):
    r = await run("x = " + "[" * 5000 + "]" * 5000)
    assert r.error.kind == "syntax_error"
    r = await run("eval('[' * 5000 + ']' * 5000)")
    assert r.error.kind == "runtime_error"


async def test_output_is_truncated_at_the_cap(run, healthy):
    r = await run("for i in range(100_000):\n    print('line', i)\nresult = 'finished'", max_output_bytes=10_000)
    assert r.error is None and r.result == "finished"
    assert r.output_truncated
    assert len(r.output.encode()) <= 10_000
    assert r.output.startswith("line 0\nline 1\n")


async def test_output_flood_until_timeout_keeps_host_memory_bounded(run, healthy):
    r = await run("while True:\n    print('x' * 1000)", timeout=1, max_output_bytes=50_000)
    assert r.error.kind in ("timeout", "out_of_fuel")
    assert r.output_truncated and len(r.output) <= 50_000


async def test_limits_are_validated():
    with pytest.raises(ValueError):
        Limits(timeout=0)
    with pytest.raises(ValueError):
        Limits(memory_bytes=-1)


def test_executor_timeout_argument_sets_the_limit():
    assert ProgrammaticToolExecutor(timeout=7).limits.timeout == 7.0
