"""The interface every peer implements, and the one round of workloads run through it.

A peer is a `Sandbox`: how it runs a program in fresh state (`run`), a program of N tool calls
(`calls`), three 200 ms calls under gather (`gather`), a reused sandbox (`reused`), an agent's
blocks one by one in one new session (`agent_run`), small cells in an open session
(`session_cells`), a new host object (`new_host`) and a fresh OS process (`process_argv`). What a
peer cannot do is named in `not_applicable`, with why, and its method is never called. `measure`
is the same for every peer.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from harness import CPU_WORKLOADS, atimed, describe, log, timed

TRIVIAL = "x = 1"
CALLS = 1_000  # sequential awaited calls in one program, for the per-call figure
NAP_S = 0.2
NAP_CALLS = 3
NAP_VALUE = 0 + 1 + 2

# Sample keys: the same vocabulary for every peer.
COLD = "cold_start"  # fresh sandbox state per run, host kept warm
REUSE = "reused_sandbox"  # one sandbox, state carries over
NEW_HOST = "new_host"  # a new executor / worker pool per run
PROCESS = "fresh_process"  # a new OS process per run, end to end
CALLS_0 = "calls_0"  # the tool program with zero calls: the baseline for the net figure
CALLS_1 = "calls_1"
CALLS_N = "calls_n"
GATHER = "gather_naps"
TOOL_KEYS = (CALLS_0, CALLS_1, CALLS_N, GATHER)
AGENT = "agent_blocks"  # the agent's blocks (settings.agent_blocks) one by one in one new session: their wall
AGENT_WHOLE = "agent_blocks_whole"  # the same run, opening and closing the session included
SESSION_CELL = "session_cell"  # TRIVIAL in an open session, back to back, after warm-up cells
SESSION_KEYS = (AGENT, AGENT_WHOLE, SESSION_CELL)
AGENT_SPACING_S = 0.01  # idle before each agent run, as sessions_section.py (an agent's turns are spaced)


def expect(what: str, got: object, wanted: object) -> None:
    if got != wanted:
        raise RuntimeError(f"{what}: got {got!r}, expected {wanted!r}")


def expect_printed(stdout: str, expected: object) -> None:
    """For a peer that only gives back stdout: it printed `expected` (nothing, for None)."""
    expect("stdout", stdout.strip(), "" if expected is None else str(expected))


def sum_below(calls: int) -> int:
    return calls * (calls - 1) // 2


def process_walls(runs: int, argv: Sequence[str], env: dict[str, str] | None = None) -> list[float]:
    """Wall time of whole subprocesses, each of which must exit 0."""

    def once() -> None:
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{argv[0]} exited {done.returncode}: {tail[0]}")

    return timed(once, runs)


@dataclass
class Recorder:
    """What one peer measured in one round: samples in seconds, failures, and what does not apply."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    async def record(self, key: str, measure: Callable[[], list[float] | Awaitable[list[float]]]) -> None:
        try:
            samples = measure()
            self.samples.setdefault(key, []).extend(await samples if inspect.isawaitable(samples) else samples)
        except Exception as exc:  # one workload failing must not stop the others
            self.errors[key] = describe(exc)
            log(f"{key} failed: {self.errors[key]}")

    async def time(self, key: str, runs: int, once: Callable[[], Awaitable[object]]) -> None:
        """`runs` wall times of `await once()` under `key`."""
        await self.record(key, lambda: atimed(once, runs))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Sandbox:
    """A peer (its subclass `Adapter` in adapters/<name>.py, whose docstring says what each figure is)."""

    key: ClassVar[str]  # for --only and the JSON
    title: ClassVar[str]  # the column's header
    requirement: ClassVar[str | None] = None  # what to pip-install, pinned to the version this was written against
    venv: ClassVar[bool] = True  # in a virtual environment of its own (else `pip install --target`, for this python)
    in_process: ClassVar[bool] = False  # measured in the comparing process, not by a driver in the peer's python
    not_applicable: ClassVar[dict[str, str]] = {}
    gather_mode: ClassVar[str] = "asyncio.gather"
    prints: ClassVar[bool] = False  # gives back only stdout (else the program's last expression)

    def __init__(self, settings: Any) -> None:
        self.settings = settings  # peers.py's Settings, as a dict with attribute access
        self.rec = Recorder(not_applicable=dict(self.not_applicable))

    @property
    def how(self) -> str:
        """What each figure is, for the notes: the adapter's docstring."""
        return " ".join((type(self).__doc__ or "").split())

    def program(self, body: str) -> str:
        """A CPU body (it sets `total`) as a program whose value or output is `total`."""
        return body + ("print(total)\n" if self.prints else "total\n")

    async def start(self) -> None:
        """Load the peer; put its versions and first-run times into self.rec.info."""

    async def run(self, code: str, expected: object = None) -> None:
        """`code` in fresh state; its value (or output) must be `expected`."""
        raise NotImplementedError

    async def calls(self, n: int) -> None:
        """A program of `n` sequential awaited calls of `noop(x=i)`, fresh state; it must sum them."""
        raise NotImplementedError

    async def gather(self) -> None:
        """NAP_CALLS calls of `nap` (NAP_S each) under gather, fresh state; it must sum them."""
        raise NotImplementedError

    async def reused(self, runs: int) -> list[float]:
        """Wall times of `runs` TRIVIAL runs in one sandbox."""
        raise NotImplementedError

    async def agent_run(self, blocks: Sequence[str], expected: str) -> tuple[float, float]:
        """`blocks` one after another in one new session, each building on the state the ones before left; the
        last one's printed output must be `expected`. (Wall of opening the session, the blocks and closing it;
        wall of the blocks alone.)"""
        raise NotImplementedError

    async def session_cells(self, runs: int) -> list[float]:
        """Wall times of `runs` TRIVIAL cells back to back in one open session, after a first cell and
        warm-up cells (ten per warm-up run)."""
        raise NotImplementedError

    async def new_host(self) -> None:
        """TRIVIAL in a new host object (executor, pool) made for the run."""
        raise NotImplementedError

    def process_argv(self) -> tuple[list[str], dict[str, str] | None]:
        """A fresh OS process running TRIVIAL, end to end, and its environment."""
        raise NotImplementedError

    async def close(self) -> None:
        """Free what start() made, before the new-host and fresh-process figures."""

    def applies(self, key: str) -> bool:
        return key not in self.rec.not_applicable

    async def measure_cpu(self, suffix: str = "", **options: Any) -> None:
        """`cpu_loop` and `cpu_fib` (+ suffix), each run as `run(program(body), value, **options)`."""
        for name, (body, value) in CPU_WORKLOADS.items():
            once = functools.partial(self.run, self.program(body), value, **options)
            await self.rec.time(f"cpu_{name}{suffix}", self.settings.cpu_runs, once)

    async def measure_sessions(self) -> None:
        """AGENT and AGENT_WHOLE (one agent run gives a sample of each), then SESSION_CELL."""
        s, rec = self.settings, self.rec
        if self.applies(AGENT):
            log(f"{self.key}: {len(s.agent_blocks)} agent blocks in one session, {s.agent_runs} runs")

            async def agent() -> list[float]:
                for _ in range(s.warmup):
                    await self.agent_run(s.agent_blocks, s.agent_expected)
                wholes, walls = [], []
                for _ in range(s.agent_runs):
                    await asyncio.sleep(AGENT_SPACING_S)
                    whole, wall = await self.agent_run(s.agent_blocks, s.agent_expected)
                    wholes.append(whole)
                    walls.append(wall)
                rec.samples.setdefault(AGENT_WHOLE, []).extend(wholes)
                return walls

            await rec.record(AGENT, agent)
            if AGENT in rec.errors:
                rec.errors[AGENT_WHOLE] = rec.errors[AGENT]
        if self.applies(SESSION_CELL):
            log(f"{self.key}: `{TRIVIAL}` in an open session, {s.session_cells} cells")
            await rec.record(SESSION_CELL, lambda: self.session_cells(s.session_cells))

    async def measure(self) -> Recorder:
        """One round of every workload that applies."""
        s, rec = self.settings, self.rec
        await self.start()
        for _ in range(s.warmup):
            await self.run(TRIVIAL)
            if self.applies(CALLS_1):
                await self.calls(1)
        log(f"{self.key}: cold start, {s.cold_samples} runs")
        await rec.time(COLD, s.cold_samples, lambda: self.run(TRIVIAL))
        if self.applies(REUSE):
            await rec.record(REUSE, lambda: self.reused(s.reuse_samples))
        await self.measure_sessions()
        log(f"{self.key}: tool calls, CPU")
        for key, n, runs in ((CALLS_0, 0, s.call_program_samples), (CALLS_1, 1, s.call_program_samples)):
            if self.applies(key):
                await rec.time(key, runs, functools.partial(self.calls, n))
        if self.applies(CALLS_N):
            await rec.time(CALLS_N, s.call_runs, lambda: self.calls(CALLS))
        if self.applies(GATHER):
            await rec.time(GATHER, s.gather_runs, self.gather)
            rec.info["gather_mode"] = self.gather_mode
        await self.measure_cpu()
        await self.close()
        if self.applies(NEW_HOST):
            log(f"{self.key}: new host per run, {s.new_host_samples} runs")
            await rec.time(NEW_HOST, s.new_host_samples, self.new_host)
        if self.applies(PROCESS):
            log(f"{self.key}: fresh process, {s.process_samples} runs")
            argv, env = self.process_argv()
            await rec.record(PROCESS, lambda: process_walls(s.process_samples, argv, env))
        return rec
