"""What a program can make the host hold, and for how long: bounded by its own limits.

Each case is an attack from the second adversarial corpus (or a variant of
one): a frame that costs the host far more than its bytes, a report as large
as the sandbox, replies never waited for, error text without end. Host
memory is read from /proc (resident set, sampled while the execution runs),
so a case fails on what the host really held, not on what ptc says it held;
`host_memory_peak` is checked beside it.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ptc import ExecutionResult, Limits, Policy, ProgrammaticToolExecutor, ToolCatalog, ToolError
from ptc.engine import get_runtime, runtime_ready
from ptc.hostcalls.wasm.budget import REPORT_RESERVE

from .conftest import LIMITS, MiB, RunCase, assert_healthy
from .support import caught, fails, ok, on_time

_PAGE = 4096


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


class _Peak:
    growth = 0


@contextmanager
def rss_growth() -> Iterator[_Peak]:
    """The most the process's resident memory rose above where it started, sampled every 2 ms."""
    gc.collect()
    peak = _Peak()
    base = _rss()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.growth = max(peak.growth, _rss() - base)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        done.set()
        thread.join()
        peak.growth = max(peak.growth, _rss() - base)


async def _spares_settled() -> None:
    """No refill of the spare pool starts inside a measurement (waited for off the loop: LoopStall watches it)."""
    for fuel in (True, False):
        if runtime_ready(fuel):
            await asyncio.to_thread(get_runtime(fuel).spares.settle)


async def host_growth(
    executor: ProgrammaticToolExecutor, code: str, control: str, **limits: object
) -> tuple[ExecutionResult, int]:
    """(the attack's result, how much more the process grew for it than for `control`).

    The sandbox's own memory is part of the process, so each attack is set
    against a control program that builds the same data in the guest but
    does not hand it to the host.

    The process also grows for reasons of its own (the spare pool making an
    instance of ~10 MB in the background, after the execution retires its
    own): `rss_growth` waits for the pool to settle first, and what noise is
    left only adds, so the pair is measured three times and the smallest
    difference kept. An amplification the attack causes shows in every run.
    The result returned is the attack's fastest run, for the same reason.
    """
    run_limits = LIMITS.model_copy(update=limits)
    differences, results = [], []
    for _ in range(3):
        await _spares_settled()
        with rss_growth() as baseline:
            await executor.execute(control, limits=run_limits)
        await _spares_settled()
        with rss_growth() as grown:
            results.append(await executor.execute(code, limits=run_limits))
        differences.append(grown.growth - baseline.growth)
    return min(results, key=lambda r: r.execution_time), min(differences)


class LoopStall:
    """The longest the event loop went without running a 5 ms ticker (a stalled loop stalls every client)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.perf_counter() - before - 0.005)

    def __enter__(self) -> LoopStall:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


# A raw frame sent straight to the host, bypassing the stubs (what a hostile program does).
RAW = "from wit_world.imports import host\nimport msgpack\n"
EMPTY_ARRAYS = RAW + (
    "bomb = b'\\x82\\xa4tool\\xa9no_such_t\\xa4args\\x81\\xa1v\\xdd' + (3_800_000).to_bytes(4, 'big') + b'\\x90' * 3_800_000\n"
    "frame = bomb.decode('latin-1')\n"
)
BIG_FRAMES = {"max_frame_bytes": 8 * MiB, "memory_bytes": 128 * MiB, "timeout": 2}


def _bomb(body: str) -> str:
    """A program that sends a frame built by `body` (which sets `items`, an msgpack array body) to no tool."""
    return (
        RAW
        + body
        + (
            "frame = msgpack.packb({'tool': 'no_such_tool', 'args': {'v': 0}})[:-1].decode('latin-1')\n"
            "frame += ('\\xdd' + len(items).to_bytes(4, 'big').decode('latin-1') + ''.join(items))\n"
        )
    )


async def test_a_frame_of_empty_arrays_costs_the_host_little(executor: ProgrammaticToolExecutor) -> None:
    # Before: +600 MB and 3.9 s of host CPU for a 3.8 MiB frame, to a tool that does not exist.
    code = EMPTY_ARRAYS + "reply = host.submit(frame)\nresult = str(reply)[:300]"
    stalls = []
    for _ in range(2):  # a stall the frame causes shows both times; one of the whole machine, once
        with LoopStall() as stall:
            r, grown = await host_growth(executor, code, EMPTY_ARRAYS + "result = 'x'", **BIG_FRAMES)
        stalls.append(stall.worst)
        if stall.worst < 0.25:
            break
    assert r.error is None, r.error
    assert "elements" in r.result  # the program is told why, as a ToolError reply
    # What is left: the transient copies of the 3.8 MiB frame (wasmtime's, UTF-8, latin-1) and 250k elements.
    assert grown < 64 * MiB, f"the host grew by {grown / MiB:.0f} MiB"  # before: ~600 MiB
    assert r.execution_time < 1.5, f"the refusal took {r.execution_time:.2f} s"
    assert min(stalls) < 0.25, f"the event loop stalled {min(stalls):.2f} s"
    assert r.host_memory_peak < 2 * MiB
    await assert_healthy(executor)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("items = ['\\x91\\x90'] * 1_500_000\n", id="arrays-of-one-empty-array"),
        pytest.param("items = ['\\x81\\x00\\x80'] * 1_000_000\n", id="maps-of-an-empty-map"),
        pytest.param("items = ['\\xc0'] * 3_000_000\n", id="three-million-nils"),
    ],
)
async def test_amplifying_frames_are_refused_within_the_element_budget(
    executor: ProgrammaticToolExecutor, run_case: RunCase, body: str
) -> None:
    code = _bomb(body) + "reply = host.submit(frame)\nresult = str(reply)[:300]"
    r, grown = await host_growth(executor, code, _bomb(body) + "result = 'x'", **BIG_FRAMES)
    assert r.error is None and "elements" in r.result, r
    # What is left: the transient copies of the 3.8 MiB frame (wasmtime's, UTF-8, latin-1) and 250k elements.
    assert grown < 64 * MiB, f"the host grew by {grown / MiB:.0f} MiB"  # before: ~600 MiB
    await run_case(executor, code, ok(), **BIG_FRAMES)


async def test_frames_sent_in_a_loop_end_at_the_deadline(executor: ProgrammaticToolExecutor) -> None:
    # Before: with timeout=2 the execution ended after 7.7 s (decoding ran outside the deadline).
    code = EMPTY_ARRAYS + "while True:\n    host.submit(frame)\n"

    async def attempt() -> str | None:
        with LoopStall() as stall:
            started = time.perf_counter()
            limits = LIMITS.model_copy(update={**BIG_FRAMES, "max_tool_calls": 10**6})
            r = await executor.execute(code, limits=limits)
            took = time.perf_counter() - started
        assert r.error is not None and r.error.kind == "timeout", r.error
        if took >= 2.6 or stall.worst >= 0.25:
            return f"a 2 s execution took {took:.2f} s, and the event loop stalled up to {stall.worst:.2f} s"
        return None

    await on_time(attempt)


async def test_the_element_budget_is_a_limit(executor: ProgrammaticToolExecutor, run_case: RunCase) -> None:
    code = "from tools.shop import echo\ntry:\n    await echo(value=str(list(range(20))))\nexcept Exception as e:\n"
    code += "    result = 'unexpected'\nelse:\n    result = 'small ok'\n"
    code += "from tools import _call\ntry:\n    await _call('echo', {'value': 'x', 'junk': list(range(50))})\n"
    code += "except Exception as e:\n    result = [type(e).__name__, str(e)]\n"
    await run_case(executor, code, caught("ToolError", "elements").under(max_frame_items=40))


async def test_a_result_larger_than_the_frame_limit_never_reaches_the_host(
    executor: ProgrammaticToolExecutor, run_case: RunCase
) -> None:
    # Before: `result = 'x' * (24 << 20)` arrived whole under a 1 MiB frame limit.
    code = "result = 'x' * (24 << 20)"
    r = await run_case(executor, code, fails("runtime_error", "ResultTooLargeError"), memory_bytes=128 * MiB)
    assert r.result is None and "Limits.max_frame_bytes" in r.error.message
    assert r.host_memory_peak < 1 * MiB
    # The guest's own work for such a result: a check that it encodes, then the report's encoding.
    control = "import _ptc_codec\nx = 'x' * (24 << 20)\n_ptc_codec.pack(x)\ny = _ptc_codec.pack({'value': x})"
    _, grown = await host_growth(executor, code, control, memory_bytes=128 * MiB)
    assert grown < 30 * MiB, f"the host grew by {grown / MiB:.0f} MiB"  # before: ~72 MiB (three copies)


async def test_a_huge_exception_message_is_cut_in_the_report(
    executor: ProgrammaticToolExecutor, run_case: RunCase
) -> None:
    # Before: a 24 MiB message arrived twice (message and traceback).
    r = await run_case(
        executor, "raise ValueError('y' * (24 << 20))", fails("runtime_error", "ValueError"), memory_bytes=128 * MiB
    )
    assert len(r.error.message) < 70 * 1024 and "characters cut" in r.error.message
    assert len(r.error.traceback) < 270 * 1024 and r.error.traceback.rstrip().endswith("y")


@pytest.mark.parametrize(
    "pack",
    [
        pytest.param(
            "lambda report: b'\\x83\\xa5value\\xdd' + (3_000_000).to_bytes(4, 'big') + b'\\x90' * 3_000_000"
            " + b'\\xa5error\\xc0\\xa6memory\\x00'",
            id="empty-arrays",
        ),
        pytest.param("lambda report: b'\\xdb' + (1 << 31).to_bytes(4, 'big')", id="claims-2-GiB"),
        pytest.param("lambda report: b'\\xc1'", id="garbage"),
    ],
)
async def test_a_program_that_replaces_the_report_encoder_cannot_amplify_it(
    executor: ProgrammaticToolExecutor, run_case: RunCase, pack: str
) -> None:
    # Before: +592 MB for a report of empty arrays.
    code = f"import _ptc_run\nclass Codec:\n    pack = staticmethod({pack})\n_ptc_run._ptc_codec = Codec\nresult = 1"
    limits = {"max_frame_bytes": 8 * MiB, "memory_bytes": 128 * MiB}
    r = await run_case(executor, code, fails("runtime_error"), **limits)
    assert r.error.type in ("ResultTooLargeError", "SandboxError")
    # The control makes the guest's copies of the report as the runtime does (its
    # latin-1 text, and the UTF-8 that text is handed over as), so what is left is the host's.
    control = f"x = ({pack})(None).decode('latin-1').encode('utf-8')"
    _, grown = await host_growth(executor, code, control, **limits)
    assert grown < 48 * MiB, f"the host grew by {grown / MiB:.0f} MiB"


# -- replies -----------------------------------------------------------------------
BLOB = 8 * MiB


@pytest.fixture(scope="module")
def blob_executor() -> Iterator[ProgrammaticToolExecutor]:
    catalog = ToolCatalog(source="replies")

    text = "b" * BLOB  # one string: the tool itself costs nothing per call

    @catalog.tool(domain="data")
    def blob(n: int) -> str:
        """8 MiB of text."""
        return text

    @catalog.tool(domain="data")
    def shout(n: int) -> str:
        """Fail on purpose with a very long message."""
        raise ToolError("z" * (10 * MiB))

    limits = Limits(timeout=20, memory_bytes=256 * MiB, max_host_bytes=64 * MiB, max_frame_bytes=16 * MiB, fuel=None)
    executor = ProgrammaticToolExecutor(catalog, limits=limits, policy=Policy(circuit_failure_threshold=10**6))
    yield executor
    executor.close()


SUBMIT_BLOBS = (
    "from wit_world.imports import host\nimport msgpack, time\n"
    "frames = [msgpack.packb({'tool': 'blob', 'args': {'n': i}}).decode('latin-1') for i in range(200)]\n"
    "ids = [host.submit(frame).value for frame in frames]\n"
    "time.sleep(3)\n"  # every reply has arrived (or been refused) by now
)


async def test_replies_never_waited_for_are_bounded_by_the_budget(blob_executor: ProgrammaticToolExecutor) -> None:
    # Before: 60 submits of an 8 MiB reply, never waited for, left 480 MiB queued on the host (200: 1.6 GB).
    await _spares_settled()
    with rss_growth() as grown:
        r = await blob_executor.execute(SUBMIT_BLOBS + "result = len(ids)")
    assert r.error is None and r.result == 200, r.error
    assert r.host_memory_peak <= 64 * MiB + 64 * 1024
    assert grown.growth < 160 * MiB, f"the host grew by {grown.growth / MiB:.0f} MiB"


async def test_replies_past_the_budget_become_errors_the_program_can_read(
    blob_executor: ProgrammaticToolExecutor,
) -> None:
    code = SUBMIT_BLOBS + (
        "pending = set(ids)\nreplies = []\n"
        "while pending:\n"
        "    for call_id, reply in host.wait(-1):\n"
        "        pending.discard(call_id)\n        replies.append(reply if len(reply) < 4096 else 'ok')\n"
        "ok = replies.count('ok')\n"
        "refused = [msgpack.unpackb(r.encode('latin-1'))['error']['message'] for r in replies if r != 'ok']\n"
        "result = [ok, len(refused), refused[:1]]\n"
    )
    r = await blob_executor.execute(code)
    assert r.error is None, r.error
    delivered, refused, sample = r.result
    assert delivered + refused == 200 and refused > 0
    assert delivered * BLOB <= 64 * MiB and "host memory budget" in sample[0]
    assert sum(1 for c in r.tool_calls if c.error is not None) == refused


async def test_replies_waited_for_one_by_one_all_arrive(blob_executor: ProgrammaticToolExecutor) -> None:
    code = (
        "import asyncio\nfrom tools.data import blob\n"
        "sizes = [len(await blob(n=i)) for i in range(30)]\nresult = sum(sizes)\n"
    )
    r = await blob_executor.execute(code)
    assert r.error is None and r.result == 30 * BLOB
    assert r.host_memory_peak < 3 * BLOB


async def test_replies_the_program_has_taken_are_not_kept_by_the_host(blob_executor: ProgrammaticToolExecutor) -> None:
    # Before: each finished call's task kept its reply, and a cycle (state -> session -> call -> state)
    # kept every ended execution's replies until the cyclic GC ran: 4 x 20 awaited 8 MiB replies, +600 MiB.
    code = "from tools.data import blob\nfor i in range(20):\n    x = await blob(n=i)\nresult = len(x)"
    gc.collect()
    await _spares_settled()
    gc.disable()  # what the host frees must not wait for the cyclic GC
    try:
        with rss_growth() as grown:
            for _ in range(4):
                r = await blob_executor.execute(code)
                assert r.error is None and r.result == BLOB, r.error
    finally:
        gc.enable()
    assert grown.growth < 200 * MiB, f"the host grew by {grown.growth / MiB:.0f} MiB"


async def test_a_tool_error_message_is_cut_before_it_reaches_the_program(
    blob_executor: ProgrammaticToolExecutor,
) -> None:
    code = "from tools.data import shout\ntry:\n    await shout(n=1)\nexcept Exception as e:\n    result = str(e)"
    r = await blob_executor.execute(code)
    assert r.error is None and len(r.result) < 5000 and r.result.startswith("zzz")
    assert len(r.tool_calls[0].error.message) < 5000


async def test_a_frame_bomb_does_not_slow_other_executions(executor: ProgrammaticToolExecutor) -> None:
    # Before: through `ptc serve --http`, one client's 2 MB frame made another's trivial requests take 2.2 s.
    bomb = _bomb("items = ['\\x90'] * 2_000_000\n") + "for _ in range(5):\n    host.submit(frame)\n"

    async def attempt() -> str | None:
        attack = asyncio.ensure_future(executor.execute(bomb, limits=LIMITS.model_copy(update=BIG_FRAMES)))
        worst = 0.0
        try:
            await asyncio.sleep(0.05)
            for _ in range(15):
                started = time.perf_counter()
                r = await executor.execute("from tools.shop import echo\nresult = await echo(value='ok')")
                worst = max(worst, time.perf_counter() - started)
                assert r.result == "ok", r.error
        finally:
            await attack
        return f"a one-call program took {worst:.2f} s beside the attack" if worst >= 0.5 else None

    await on_time(attempt)


# -- through `ptc serve --http`: one event loop for every client -------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served() -> Iterator[str]:
    port = _free_port()
    command = [sys.executable, "-m", "ptc.cli", "serve", "--tools", "ptc.examples.budget:catalog"]
    proc = subprocess.Popen([*command, "--http", f"127.0.0.1:{port}", "--timeout", "5"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, "ptc serve exited"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_one_clients_frame_bombs_do_not_slow_another_client_of_ptc_serve(served: str) -> None:
    # Before: one client's 2 MB frame made another client's trivial requests take 2.2 s.
    from mcp import Client

    bomb = _bomb("items = ['\\x90'] * 2_000_000\n") + "for _ in range(3):\n    host.submit(frame)\n"
    async with Client(served) as attacker, Client(served) as victim:
        await victim.call_tool("execute_python", {"code": "1"})  # the runtime is warm

        async def attack() -> None:
            for _ in range(4):
                await attacker.call_tool("execute_python", {"code": bomb})

        async def attempt() -> str | None:
            attacking = asyncio.ensure_future(attack())
            worst = 0.0
            try:
                await asyncio.sleep(0.2)
                while not attacking.done():
                    started = time.perf_counter()
                    await victim.call_tool("execute_python", {"code": "6 * 7"})
                    worst = max(worst, time.perf_counter() - started)
            finally:
                await attacking
            return f"a trivial request took {worst:.2f} s beside the attack" if worst >= 0.5 else None

        await on_time(attempt)


def test_ptc_serve_echoes_only_small_parameters() -> None:
    # A program's parameters can be as large as its host budget; ptc serve echoed them whole to every client.
    from ptc.serve import compact

    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def take(v: str, b: bytes = b"") -> int:
        """Take a value."""
        return len(v)

    with ProgrammaticToolExecutor(catalog, limits=Limits(timeout=10)) as executor:
        r = executor.execute_sync(
            "from tools.d import take\nawait take(v='small', b=b'\\xff')\nawait take(v='x' * (4 << 20))\nresult = 1"
        )
    assert r.error is None, r.error
    small, large = compact(r)["tool_calls"]
    assert small["parameters"] == {"v": "small", "b": "b'\\xff'"}
    assert isinstance(large["parameters"], str) and large["parameters"].startswith("<not shown")


async def test_output_counts_against_the_host_budget(executor: ProgrammaticToolExecutor) -> None:
    # The output cap alone would keep 1 MiB; the host budget is smaller, so it decides.
    limits = LIMITS.model_copy(update={"max_output_bytes": 1 * MiB, "max_host_bytes": 200_000})
    r = await executor.execute("print('x' * 500_000)", limits=limits)
    assert r.error is None, r.error
    assert r.output_truncated and 0 < len(r.stdout) <= 200_000
    # The full budget still ends with a result: the report has a fixed reserve of its own.
    assert 200_000 < r.host_memory_peak <= 200_000 + REPORT_RESERVE


def test_a_one_shot_journal_is_charged_to_the_execution_budget():
    """The journal keeps every reply the program got: that is host memory held for the program, so it is
    charged to the program's budget; what does not fit ends the journal, never the execution."""
    from ptc import Limits, ProgrammaticToolExecutor, ToolCatalog

    catalog = ToolCatalog()

    @catalog.tool(domain="d")
    def big() -> str:
        return "x" * 300_000

    code = "from tools.d import big\nfor i in range(10):\n    await big()\n"
    tight = ProgrammaticToolExecutor(catalog, limits=Limits(max_host_bytes=2 << 20)).execute_sync(code)
    assert tight.error is None and len(tight.tool_calls) == 10
    assert all(call.error is None for call in tight.tool_calls)
    assert tight.journal is None  # 3 MB of replies could not be kept within 2 MiB
    assert tight.host_memory_peak <= 2 << 20
    roomy = ProgrammaticToolExecutor(catalog, limits=Limits(max_host_bytes=64 << 20)).execute_sync(code)
    assert roomy.error is None and roomy.journal is not None
    assert roomy.host_memory_peak >= 3_000_000  # the journal's replies are counted while it holds them
