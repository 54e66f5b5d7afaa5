"""Live output (`on_output`): the program's output reaches the caller while it runs, bounded like the result."""

import asyncio
import logging
import subprocess
import sys
import time

from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog


def gated() -> tuple[ProgrammaticToolExecutor, asyncio.Event]:
    """An executor whose `gate()` tool answers only once the test sets the event."""
    event = asyncio.Event()
    cat = ToolCatalog()

    @cat.tool(domain="t", policy=Policy(timeout=8))
    async def gate() -> str:
        """Waits for the test."""
        await event.wait()
        return "opened"

    return ProgrammaticToolExecutor(cat, timeout=10), event


async def test_output_arrives_before_the_program_ends():
    """The tool the program waits on answers only once the first chunk was seen: no live output, no answer."""
    ex, event = gated()
    chunks: list[tuple[str, str]] = []

    def seen(stream: str, text: str) -> None:
        chunks.append((stream, text))
        if "first" in text:
            event.set()

    program = "from tools.t import gate\nimport sys\nprint('first')\nprint('warned', file=sys.stderr)\nprint(await gate())\nprint('last')"
    r = await ex.execute(program, on_output=seen)
    assert r.error is None, r.error
    assert r.output == "first\nwarned\nopened\nlast\n"
    assert chunks[0] == ("stdout", "first\n")  # delivered while the program was blocked in the call
    assert "".join(t for _, t in chunks) == r.output  # everything, in order, before execute() returned
    assert "".join(t for s, t in chunks if s == "stderr") == r.stderr == "warned\n"


async def test_an_async_callback_and_a_sync_call():
    ex, event = gated()
    got: list[str] = []

    async def seen(stream: str, text: str) -> None:
        await asyncio.sleep(0)
        got.append(text)
        event.set()

    r = await ex.execute("import time\nprint('a')\ntime.sleep(0.05)\nprint('b')", on_output=seen)
    assert r.error is None and "".join(got) == r.output == "a\nb\n"
    assert got[0] == "a\n"  # sent before the sleep blocked the program


async def test_total_is_capped_like_the_result():
    ex, _ = gated()
    got: list[str] = []
    program = "import asyncio\nfor i in range(200):\n    print('x' * 99)\n    await asyncio.sleep(0)"
    r = await ex.execute(
        program, limits=Limits(timeout=10, max_output_bytes=1000), on_output=lambda s, t: got.append(t)
    )
    assert r.output_truncated and len(r.output.encode()) <= 1000
    assert "".join(got) == r.output


async def test_a_slow_callback_gets_coalesced_batches_and_never_blocks_the_program():
    ex, _ = gated()
    calls: list[str] = []

    async def slow(stream: str, text: str) -> None:
        calls.append(text)
        await asyncio.sleep(0.1)

    program = "import asyncio\nfor i in range(100):\n    print(i)\n    await asyncio.sleep(0.002)"
    started = time.perf_counter()
    r = await ex.execute(program, on_output=slow)
    assert r.error is None
    assert "".join(calls) == r.output == "".join(f"{i}\n" for i in range(100))
    assert len(calls) < 30  # while one delivery ran, the next lines were queued and went as one
    # the program did not wait for the callback (100 x 0.1 s)
    assert time.perf_counter() - started < 5


async def test_a_callback_that_raises_does_not_break_the_execution(caplog):
    ex, _ = gated()
    calls = []

    def broken(stream: str, text: str) -> None:
        calls.append(text)
        raise RuntimeError("callback bug")

    with caplog.at_level(logging.WARNING, logger="ptc"):
        r = await ex.execute("import time\nprint(1)\ntime.sleep(0.01)\nprint(2)", on_output=broken)
    assert r.error is None and r.output == "1\n2\n"
    assert calls == ["1\n", "2\n"]
    assert "on_output callback raised RuntimeError" in caplog.text


async def test_a_session_cell():
    ex, _ = gated()
    got: list[str] = []
    async with ex.session() as session:
        await session.execute("x = 1\nprint('one')", on_output=lambda s, t: got.append(t))
        r = await session.execute("print(x + 1)", on_output=lambda s, t: got.append(t))
    assert r.output == "2\n" and got == ["one\n", "2\n"]


async def test_no_callback_no_live_output():
    ex, _ = gated()
    r = await ex.execute("print('plain')")
    assert r.output == "plain\n"


def test_ptc_run_prints_as_the_program_prints(tmp_path):
    """`ptc run`: the first line is on stdout while the program still sleeps; the second comes after."""
    (tmp_path / "slow.py").write_text("import time\nprint('first', flush=False)\ntime.sleep(3)\nprint('second')\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptc.cli", "run", "slow.py", "--timeout", "20"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        at_first = time.perf_counter()
        assert first == "first\n"
        assert proc.poll() is None  # the program is still running
        second = proc.stdout.readline()
        assert second == "second\n" and time.perf_counter() - at_first > 2
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_ptc_serve_sends_the_output_as_progress_when_asked(tmp_path):
    """An MCP client that asks for progress gets the output while the program sleeps."""
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "ptc.cli", "serve"])
    code = "import time, sys\nprint('first')\ntime.sleep(1.5)\nprint('oops', file=sys.stderr)\nprint('second')"
    with open(tmp_path / "stderr.txt", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            seen: list[tuple[float, str | None, float]] = []

            async def progress(value: float, total: float | None, message: str | None) -> None:
                seen.append((value, message, time.perf_counter()))

            started = time.perf_counter()
            result = await client.call_tool("execute_python", {"code": code}, progress_callback=progress)
            ended = time.perf_counter()
            assert not result.is_error
            assert [m for _, m, _ in seen] == ["first\n", "[stderr] oops\n", "second\n"]
            assert [v for v, _, _ in seen] == [6, 11, 18]  # characters sent so far: it grows
            assert ended - seen[0][2] > 1.0 and seen[0][2] - started < ended - started - 1.0  # before the sleep ended
            plain = await client.call_tool(
                "execute_python", {"code": "print('x')"}
            )  # no progress asked: no live output
            assert not plain.is_error


def test_ptc_repl_prints_a_cells_output_as_it_comes(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptc.cli", "repl", "--timeout", "20"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("import time; print('first'); time.sleep(3); print('second')\n")
        proc.stdin.close()
        assert proc.stdout.readline() == "first\n"
        at_first = time.perf_counter()
        assert proc.poll() is None
        assert proc.stdout.readline() == "second\n" and time.perf_counter() - at_first > 2
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_with_worker_processes_the_callback_gets_everything_at_the_end():
    ex = ProgrammaticToolExecutor(workers=1, timeout=20)
    try:
        got: list[tuple[str, str]] = []
        r = await ex.execute(
            "import sys\nprint('a')\nprint('b', file=sys.stderr)", on_output=lambda s, t: got.append((s, t))
        )
        assert r.error is None and r.output == "a\nb\n"
        assert got == [("stdout", "a\n"), ("stderr", "b\n")]
    finally:
        await ex.aclose()
