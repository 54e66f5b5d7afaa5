"""Many executions at once, from one event loop and from threads."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor


async def test_many_executions_from_one_loop(executor):
    results = await asyncio.gather(*(executor.execute(f"result = {i} * 2") for i in range(20)))
    assert [r.result for r in results] == [i * 2 for i in range(20)]
    assert len({r.execution_id for r in results}) == 20


async def test_a_sleeping_execution_does_not_block_others(executor):
    slow = asyncio.ensure_future(executor.execute("import time\ntime.sleep(1)\n'slow'"))
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    fast = await executor.execute("'fast'")
    assert fast.result == "fast"
    assert time.perf_counter() - started < 0.5
    assert (await slow).result == "slow"


async def test_many_sleepers_overlap(executor):
    started = time.perf_counter()
    results = await asyncio.gather(*(executor.execute("import time\ntime.sleep(0.3)\n1") for _ in range(30)))
    assert all(r.result == 1 for r in results)
    assert time.perf_counter() - started < 3  # 30 x 0.3 s one after another would be 9 s


def test_executions_from_threads(executor):
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: executor.execute_sync(f"result = {i}"), range(12)))
    assert [r.result for r in results] == list(range(12))


async def test_failures_do_not_disturb_concurrent_executions(executor):
    programs = ["1/0", "while True: pass", "result = 'good'", "import time; time.sleep(10)", "x = bytearray(2**30)"]
    limits = executor.limits.model_copy(update={"timeout": 1})
    results = await asyncio.gather(*(executor.execute(p, limits=limits) for p in programs))
    kinds = [r.error.kind if r.error else r.result for r in results]
    assert kinds[0] == "runtime_error"
    assert kinds[1] in ("timeout", "out_of_fuel")
    assert kinds[2] == "good"
    assert kinds[3] == "timeout"
    assert kinds[4] == "memory_limit"
