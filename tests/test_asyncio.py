"""The guest's own event loop, driven by the host's submit/wait."""

import time


async def test_top_level_await(run):
    r = await run("import asyncio\nawait asyncio.sleep(0.01)\n'done'")
    assert r.error is None and r.result == "done"


async def test_gather_runs_sleeps_concurrently(run):
    started = time.perf_counter()
    r = await run("import asyncio\nawait asyncio.gather(*(asyncio.sleep(0.25) for _ in range(3)))\n'ok'")
    elapsed = time.perf_counter() - started
    assert r.result == "ok"
    assert 0.25 <= elapsed < 0.6  # sequential would be 0.75 s


async def test_wait_for_times_out(run):
    r = await run(
        "import asyncio\ntry:\n    await asyncio.wait_for(asyncio.sleep(10), 0.05)\nexcept TimeoutError:\n    result = 'timeout'"
    )
    assert r.result == "timeout"


async def test_create_task_and_asyncio_run(run):
    r = await run(
        "import asyncio\nasync def f(x):\n    await asyncio.sleep(0)\n    return x * 2\nt = asyncio.create_task(f(21))\nawait t"
    )
    assert r.result == 42
    r = await run(
        "import asyncio\nasync def main():\n    await asyncio.sleep(0.01)\n    return 'ran'\nresult = asyncio.run(main())"
    )
    assert r.result == "ran"


async def test_queues_events_and_timeouts(run):
    code = """
import asyncio
q = asyncio.Queue()
async def producer():
    for i in range(5):
        await q.put(i)
        await asyncio.sleep(0)
    await q.put(None)
async def consumer():
    out = []
    while (item := await q.get()) is not None:
        out.append(item)
    return out
async with asyncio.timeout(2):
    _, got = await asyncio.gather(producer(), consumer())
got
"""
    assert (await run(code)).result == [0, 1, 2, 3, 4]


async def test_unfinished_tasks_are_cancelled_at_the_end(run):
    r = await run(
        "import asyncio\nasync def forever():\n    await asyncio.sleep(3600)\nasyncio.create_task(forever())\nawait asyncio.sleep(0)\n'finished'"
    )
    assert r.error is None and r.result == "finished"


async def test_async_generators_left_open_are_finalized_at_the_end(run):
    # As asyncio.run: the loop's async generators are closed, so their `finally` runs (and prints).
    code = (
        "import asyncio\nasync def ticks():\n    try:\n        while True:\n            yield 1\n"
        "    finally:\n        print('closed')\nit = ticks()\nawait it.__anext__()\n'left open'"
    )
    r = await run(code)
    assert r.error is None and r.result == "left open" and r.output == "closed\n", (r.error, r.output)
    r = await run("import asyncio\nawait asyncio.sleep(0)\nasyncio.get_running_loop().is_closed()")
    assert r.error is None and r.result is False  # the program's loop is its own, open while it runs
