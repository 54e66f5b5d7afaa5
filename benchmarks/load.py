"""Load test: thousands of mixed executions through one process, each checked against its expected outcome.

    python benchmarks/load.py                 # full: 6,800 measured executions (+300 warm-up), ~2.5 min, + adversarial
    python benchmarks/load.py --quick         # smoke: 1,050 measured executions (+80 warm-up), ~25 s, + adversarial
    python benchmarks/load.py --rss-cap 0.8   # stop a level if VmRSS passes 80 % of MemTotal (default 60 %)
    python benchmarks/load.py --quick --adversarial  # the adversarial phase alone (6 columns × 300 honest, ~1 min)

Every execution is a generated program with a known outcome: good programs
(pure compute; 1-3 calls to async and sync tools, some under asyncio.gather),
failing programs (exceptions, syntax errors, a tool that always raises, a tool
that fails at random with a fixed seed) and limit-hitting programs (a CPU loop
against a 0.5 s timeout or a 50M fuel budget, memory hogs under 128 MiB,
output floods under 4 KiB, more than 5 tool calls). They run at 1, 4, 16 and
64 executions in flight from one event loop, then from two tenants, each with
its own executor and a Quota below what its callers offer.

Per level: executions/s, p50/p99 latency, results by outcome, and correctness:
every job answered exactly once, unique execution ids, exactly one audit event
per execution, every outcome the expected one, no tenant over its quota.
VmRSS is sampled while each level runs (peak) and read after it (settled);
flat means the settled reading after the 64-in-flight level (5,000 executions)
is within 10 % of the one after the first level (500).

Then the adversarial phase: an honest tenant ("honest": its own executor and
Quota, 8 executions in flight) runs the good programs alone (the baseline),
then again beside an attacker tenant ("attacker": its own executor, catalog
and Quota) looping over hostile programs, one kind at a time, then all four
at once: frame bombs (raw `host.submit` frames of 2 million empty arrays),
reply floods (100 unwaited calls to a tool answering 8 MiB), abandoned
half-open circuit-breaker trials, and idempotency-cache floods (a fresh key
per call to a tool answering 2 MiB). Per column: the honest tenant's p50, p99
and max latency, executions/s, errors, the worst event-loop stall, VmRSS
(peak; settled after the attack; after malloc_trim; after the attacker's
executor is closed), each attack's outcomes and tool calls, and whether the
attacked breaker still refuses calls once its backend has recovered
("wedged"). Only the honest tenant's correctness is a check there: latency
and memory are measurements.

Prints markdown tables, writes benchmarks/results/load.json (with
--adversarial alone: benchmarks/results/adversarial.json) and exits 1 when
any check fails (the RSS check only in a full run).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import hashlib
import itertools
import json
import os
import random
import secrets
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from _common import MiB, log, machine, percentile, read_rss, rss_bytes

from ptc import (
    AuditEvent,
    ExecutionResult,
    Limits,
    OverCapacityError,
    Policy,
    ProgrammaticToolExecutor,
    Quota,
    ToolCallRecord,
    ToolCatalog,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 20251124  # programs, their arguments and the flaky tool's failures all follow from it
FLAKY_RATE = 0.3
LOOKUP_SECONDS = 0.002  # the async `lookup` tool's simulated backend latency
HANG_GUARD_S = 60.0  # far above every program's own timeout: an execution still out after this is hung
REJECT_BACKOFF_S = 0.05  # a tenant's caller waits this long after an OverCapacityError, then retries
TENANTS = ("load-a", "load-b")
RSS_SAMPLE_S = 0.1  # VmRSS sampling period while a level runs
RSS_FLAT_GROWTH = 0.10
RSS_ABORT_FRACTION = 0.6  # default --rss-cap: a level is stopped if VmRSS passes this share of MemTotal

BASE_LIMITS = Limits(timeout=30)
TIMEOUT_LIMITS = Limits(timeout=0.5, fuel=None)  # wall clock only: the loop must end in `timeout`
FUEL_LIMITS = Limits(timeout=30, fuel=50_000_000)  # ~7 ms of CPU: the loop must end in `out_of_fuel`
MEMORY_LIMITS = Limits(timeout=30, memory_bytes=128 * MiB)
OUTPUT_LIMITS = Limits(timeout=30, max_output_bytes=4096)
CALL_LIMITS = Limits(timeout=30, max_tool_calls=5)
# The breaker is per tool: after 5 consecutive failures of `broken` (which
# always fails) it would rightly open and turn the expected ToolErrors into
# CircuitOpenErrors. Breakers are tested elsewhere; here every call runs.
POLICY = Policy(circuit_failure_threshold=1_000_000_000)


@dataclass(frozen=True)
class Settings:
    warmup: int  # executions at the highest concurrency before the first RSS reading
    levels: tuple[tuple[int, int], ...]  # (executions in flight, executions)
    tenant_workers: int  # callers per tenant, each with one execution in flight
    tenant_quota: Quota
    tenant_executions: int  # per tenant


FULL = Settings(
    warmup=300,
    levels=((1, 500), (4, 1000), (16, 1500), (64, 2000)),
    tenant_workers=16,
    tenant_quota=Quota(max_concurrent=4, max_queued=8),
    tenant_executions=900,
)
QUICK = Settings(
    warmup=80,
    levels=((1, 100), (4, 150), (16, 200), (64, 300)),
    tenant_workers=16,
    tenant_quota=Quota(max_concurrent=4, max_queued=8),
    tenant_executions=150,
)


# -- tools -----------------------------------------------------------------


def flaky_fails(n: int) -> bool:
    """Whether `flaky(n)` fails: random with a fixed seed, but the same answer for n every time."""
    digest = hashlib.sha256(f"{SEED}:{n}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < FLAKY_RATE


def load_catalog() -> ToolCatalog:
    catalog = ToolCatalog(source="load")

    @catalog.tool(domain="load")
    async def add(a: int, b: int) -> int:
        """Return a + b (async)."""
        return a + b

    @catalog.tool(domain="load")
    async def lookup(key: str) -> dict[str, Any]:
        """Look a key up in a slow backend (async, 2 ms)."""
        await asyncio.sleep(LOOKUP_SECONDS)
        return {"key": key, "upper": key.upper()}

    @catalog.tool(domain="load")
    def scale(x: int, factor: int) -> int:
        """Return x * factor (sync; runs in the router's thread pool)."""
        return x * factor

    @catalog.tool(domain="load")
    async def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError(f"backend down for x={x}")

    @catalog.tool(domain="load")
    async def flaky(n: int) -> int:
        """Return 3 * n, or fail for about 30% of n (fixed by the seed)."""
        if flaky_fails(n):
            raise RuntimeError(f"flaky backend failed for n={n}")
        return 3 * n

    return catalog


# -- programs and what each must return --------------------------------------


@dataclass(frozen=True)
class Expected:
    outcome: str  # "ok" or an error kind
    value: Any = None  # checked when outcome is "ok"
    error_type: str | None = None
    message_has: str | None = None  # a substring of the error message
    output: str | None = None  # the exact output
    truncated: bool = False
    calls: tuple[tuple[str, str], ...] | None = None  # (tool, parameters as sorted JSON) per call, any order


@dataclass(frozen=True)
class Job:
    index: int
    program: str  # the program type
    category: str  # good, failing or limit
    code: str
    limits: Limits
    expected: Expected


def calls(*pairs: tuple[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((tool, json.dumps(params, sort_keys=True)) for tool, params in pairs))


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


Made = tuple[str, Expected]


def compute_sum(rng: random.Random, i: int) -> Made:
    n = rng.randint(1_000, 20_000)
    code = f"total = sum(k * k for k in range({n}))\nprint('job {i}')\n[{i}, total]\n"
    return code, Expected("ok", [i, sum(k * k for k in range(n))], output=f"job {i}\n")


def compute_text(rng: random.Random, i: int) -> Made:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 8))) for _ in range(rng.randint(5, 30))]
    code = (
        f"words = {words!r}\n"
        "initials = {}\n"
        "for w in words:\n"
        "    initials[w[0]] = initials.get(w[0], 0) + 1\n"
        f"result = {{'job': {i}, 'sorted': sorted(words), 'initials': initials}}\n"
    )
    return code, Expected("ok", {"job": i, "sorted": sorted(words), "initials": dict(Counter(w[0] for w in words))})


def compute_fib(rng: random.Random, i: int) -> Made:
    n = rng.randint(12, 18)
    code = f"def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n[{i}, fib({n})]\n"
    return code, Expected("ok", [i, fib(n)])


def tools_one(rng: random.Random, i: int) -> Made:
    a, b = rng.randint(-1000, 1000), rng.randint(-1000, 1000)
    code = f"from tools.load import add\n[{i}, await add(a={a}, b={b})]\n"
    return code, Expected("ok", [i, a + b], calls=calls(("add", {"a": a, "b": b})))


def tools_chain(rng: random.Random, i: int) -> Made:
    x, factor = rng.randint(0, 1000), rng.randint(2, 9)
    code = f"from tools.load import add, scale\nx = await scale(x={x}, factor={factor})\n[{i}, await add(a=x, b={i})]\n"
    return code, Expected(
        "ok",
        [i, x * factor + i],
        calls=calls(("scale", {"x": x, "factor": factor}), ("add", {"a": x * factor, "b": i})),
    )


def tools_gather(rng: random.Random, i: int) -> Made:
    key = "".join(rng.choices(string.ascii_lowercase, k=6))
    a, x = rng.randint(0, 100), rng.randint(0, 100)
    code = (
        "import asyncio\n"
        "from tools.load import add, lookup, scale\n"
        f"found, total, scaled = await asyncio.gather(lookup(key={key!r}), add(a={a}, b={i}), scale(x={x}, factor=2))\n"
        f"[{i}, found['upper'], total, scaled]\n"
    )
    expected_calls = calls(("lookup", {"key": key}), ("add", {"a": a, "b": i}), ("scale", {"x": x, "factor": 2}))
    return code, Expected("ok", [i, key.upper(), a + i, 2 * x], calls=expected_calls)


def raises(rng: random.Random, i: int) -> Made:
    limit = rng.randint(0, 100)
    code = (
        "def check(x):\n"
        f"    if x > {limit}:\n"
        f"        raise ValueError(f'job {i}: {{x}} is too big')\n"
        f"check({limit + 1})\n"
    )
    return code, Expected("runtime_error", error_type="ValueError", message_has=f"job {i}: {limit + 1} is too big")


def zero_division(rng: random.Random, i: int) -> Made:
    return f"values = [{i}, 0]\nvalues[0] / values[1]\n", Expected("runtime_error", error_type="ZeroDivisionError")


def syntax(rng: random.Random, i: int) -> Made:
    return f"def job_{i}(:\n    pass\n", Expected("syntax_error", error_type="SyntaxError")


def tool_raises(rng: random.Random, i: int) -> Made:
    code = f"from tools.load import broken\nawait broken(x={i})\n"
    return code, Expected(
        "runtime_error", error_type="ToolError", message_has=f"x={i}", calls=calls(("broken", {"x": i}))
    )


def tool_raises_caught(rng: random.Random, i: int) -> Made:
    code = (
        "from tools import ToolError\n"
        "from tools.load import broken\n"
        "try:\n"
        f"    await broken(x={i})\n"
        "except ToolError as e:\n"
        f"    result = ['caught', {i}, str(e)]\n"
    )
    value = ["caught", i, f"RuntimeError: backend down for x={i}"]
    return code, Expected("ok", value, calls=calls(("broken", {"x": i})))


def flaky_one(rng: random.Random, i: int) -> Made:
    n = rng.randrange(10**9)
    code = f"from tools.load import flaky\n[{i}, await flaky(n={n})]\n"
    made = calls(("flaky", {"n": n}))
    if flaky_fails(n):
        return code, Expected("runtime_error", error_type="ToolError", message_has=f"n={n}", calls=made)
    return code, Expected("ok", [i, 3 * n], calls=made)


def flaky_gather(rng: random.Random, i: int) -> Made:
    ns = [rng.randrange(10**9), rng.randrange(10**9)]
    code = (
        "import asyncio\n"
        "from tools.load import flaky\n"
        f"outcomes = await asyncio.gather(flaky(n={ns[0]}), flaky(n={ns[1]}), return_exceptions=True)\n"
        f"[{i}] + [v if isinstance(v, int) else type(v).__name__ for v in outcomes]\n"
    )
    value = [i] + ["ToolError" if flaky_fails(n) else 3 * n for n in ns]
    return code, Expected("ok", value, calls=calls(*(("flaky", {"n": n}) for n in ns)))


def timeout_loop(rng: random.Random, i: int) -> Made:
    return f"n = {i}\nwhile True:\n    n += 1\n", Expected("timeout", error_type="TimeoutError")


def fuel_loop(rng: random.Random, i: int) -> Made:
    return f"n = {i}\nwhile True:\n    n += 1\n", Expected("out_of_fuel", error_type="OutOfFuel")


def memory_big(rng: random.Random, i: int) -> Made:
    return f"block = bytearray({rng.randint(256, 1024)} * 2**20)\n{i}\n", Expected("memory_limit")


def memory_grow(rng: random.Random, i: int) -> Made:
    code = f"blocks = []\nwhile True:\n    blocks.append(bytearray({rng.randint(1, 4)} << 20))\n"
    return code, Expected("memory_limit")


def output_flood(rng: random.Random, i: int) -> Made:
    lines = rng.randint(10_000, 20_000)  # 1-2 MB written, 4 KiB kept
    code = f"for k in range({lines}):\n    print('job {i}', 'x' * 100)\n'flooded {i}'\n"
    return code, Expected("ok", f"flooded {i}", truncated=True)


def tool_call_limit(rng: random.Random, i: int) -> Made:
    code = f"from tools.load import add\nfor k in range(10):\n    await add(a=k, b={i})\n"
    made = calls(*(("add", {"a": k, "b": i}) for k in range(CALL_LIMITS.max_tool_calls)))
    return code, Expected("tool_call_limit", error_type="ToolCallLimitError", calls=made)


@dataclass(frozen=True)
class ProgramType:
    name: str
    category: str
    weight: int  # out of 100
    make: Callable[[random.Random, int], Made]
    limits: Limits = BASE_LIMITS


PROGRAMS: tuple[ProgramType, ...] = (
    ProgramType("compute_sum", "good", 8, compute_sum),
    ProgramType("compute_text", "good", 7, compute_text),
    ProgramType("compute_fib", "good", 6, compute_fib),
    ProgramType("tools_one", "good", 10, tools_one),
    ProgramType("tools_chain", "good", 10, tools_chain),
    ProgramType("tools_gather", "good", 10, tools_gather),
    ProgramType("raises", "failing", 5, raises),
    ProgramType("zero_division", "failing", 3, zero_division),
    ProgramType("syntax", "failing", 4, syntax),
    ProgramType("tool_raises", "failing", 4, tool_raises),
    ProgramType("tool_raises_caught", "failing", 3, tool_raises_caught),
    ProgramType("flaky_one", "failing", 5, flaky_one),
    ProgramType("flaky_gather", "failing", 5, flaky_gather),
    ProgramType("timeout_loop", "limit", 2, timeout_loop, TIMEOUT_LIMITS),
    ProgramType("fuel_loop", "limit", 5, fuel_loop, FUEL_LIMITS),
    ProgramType("memory_big", "limit", 3, memory_big, MEMORY_LIMITS),
    ProgramType("memory_grow", "limit", 3, memory_grow, MEMORY_LIMITS),
    ProgramType("output_flood", "limit", 4, output_flood, OUTPUT_LIMITS),
    ProgramType("tool_call_limit", "limit", 3, tool_call_limit, CALL_LIMITS),
)
assert sum(program.weight for program in PROGRAMS) == 100


class JobMaker:
    """Deterministic jobs from one seeded generator; indexes are unique over the whole run."""

    def __init__(self, seed: int, programs: Sequence[ProgramType] = PROGRAMS) -> None:
        self.rng = random.Random(seed)
        self.programs = tuple(programs)
        self.next_index = 0

    def jobs(self, count: int) -> list[Job]:
        out: list[Job] = []
        weights = [program.weight for program in self.programs]
        for program in self.rng.choices(self.programs, weights=weights, k=count):
            index = self.next_index
            self.next_index += 1
            code, expected = program.make(self.rng, index)
            out.append(Job(index, program.name, program.category, code, program.limits, expected))
        return out


def mismatch(job: Job, result: ExecutionResult, tenant_id: str) -> str | None:
    """Why the result is not what the job's program must produce (None: it is)."""
    want = job.expected
    outcome = result.error.kind if result.error is not None else "ok"
    if outcome != want.outcome:
        detail = f": {result.error}" if result.error is not None else f", value {result.result!r:.80}"
        return f"outcome {outcome} (expected {want.outcome}){detail}"
    if result.tenant_id != tenant_id:
        return f"tenant {result.tenant_id!r}, expected {tenant_id!r}"
    if result.error is not None:
        if want.error_type is not None and result.error.type != want.error_type:
            return f"error type {result.error.type} (expected {want.error_type}): {result.error.message:.80}"
        if want.message_has is not None and want.message_has not in result.error.message:
            return f"error message {result.error.message!r:.100} lacks {want.message_has!r}"
    elif result.result != want.value:
        return f"value {result.result!r:.100} (expected {want.value!r:.100})"
    if want.output is not None and result.output != want.output:
        return f"output {result.output!r:.80} (expected {want.output!r:.80})"
    if result.output_truncated != want.truncated:
        return f"output_truncated={result.output_truncated} (expected {want.truncated})"
    if len(result.output.encode()) > job.limits.max_output_bytes:
        return f"{len(result.output.encode())} bytes of output, over the {job.limits.max_output_bytes}-byte cap"
    made = tuple(sorted((call.tool, json.dumps(call.parameters, sort_keys=True)) for call in result.tool_calls))
    if made != (want.calls or ()):
        return f"tool calls {made!r:.120} (expected {want.calls!r:.120})"
    for call in result.tool_calls:
        if call.caller.execution_id != result.execution_id or call.caller.tenant_id != tenant_id:
            return f"tool call record of {call.caller.execution_id}/{call.caller.tenant_id} in this result"
    return None


# -- running -----------------------------------------------------------------


@dataclass
class Answer:
    """What one job came back with: a result, or how execute itself failed (it raised, or hung)."""

    job: Job
    tenant_id: str
    latency: float  # seconds around the admitted `await executor.execute(...)`
    result: ExecutionResult | None = None
    failure: str | None = None


@dataclass
class Lane:
    """`workers` callers of one executor, each with one execution in flight at a time, sharing the jobs."""

    executor: ProgrammaticToolExecutor
    jobs: list[Job]
    workers: int
    quota: Quota | None = None  # the tenant's, for the report
    answers: list[Answer] = field(default_factory=list)
    rejections: list[float] = field(default_factory=list)  # seconds until each OverCapacityError
    stopping: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self) -> None:
        """Until the jobs run out, or `stop()`: returns only once every worker has ended."""
        jobs = iter(self.jobs)  # shared: each job is taken by exactly one worker

        async def worker() -> None:
            for job in jobs:
                if self.stopping:
                    return
                self.answers.append(await self.submit(job))

        self.tasks = [asyncio.ensure_future(worker()) for _ in range(self.workers)]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def stop(self) -> None:
        """Cancel the executions in flight and take no more jobs. (A cancellation can be lost, as
        asyncio.wait_for in Python 3.11 returns a result that arrives with it: the flag covers that.)"""
        self.stopping = True
        for task in self.tasks:
            task.cancel()

    async def submit(self, job: Job) -> Answer:
        """Submit until admitted: each OverCapacityError is counted, then the job is retried after a back-off."""
        tenant = self.executor.tenant_id
        while True:
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(self.executor.execute(job.code, limits=job.limits), HANG_GUARD_S)
            except OverCapacityError:
                self.rejections.append(time.perf_counter() - started)
                await asyncio.sleep(REJECT_BACKOFF_S)
                continue
            except TimeoutError:
                return Answer(job, tenant, time.perf_counter() - started, failure=f"hung for {HANG_GUARD_S:g} s")
            except Exception as exc:  # reported, never hidden: execute() must not raise for a program
                return Answer(job, tenant, time.perf_counter() - started, failure=f"execute raised {exc!r}")
            return Answer(job, tenant, time.perf_counter() - started, result=result)


@dataclass
class Audits:
    """Every audit event: exactly one per execution is expected, and they give each tenant's peak concurrency."""

    events: list[AuditEvent] = field(default_factory=list)

    def __call__(self, event: AuditEvent) -> None:
        self.events.append(event)

    async def quiet(self, still: float = 0.5, longest: float = 10.0) -> None:
        """Wait until no event has arrived for `still` seconds (cancelled executions report when they stop)."""
        deadline = time.perf_counter() + longest
        count = -1
        while count != len(self.events) and time.perf_counter() < deadline:
            count = len(self.events)
            await asyncio.sleep(still)


def peak_concurrency(events: Sequence[AuditEvent]) -> int:
    """Most executions running at once, from the audit events' start and duration (both inside the quota slot)."""
    edges = sorted([(e.started_at, 1) for e in events] + [(e.started_at + e.duration, -1) for e in events])
    running = peak = 0
    for _, step in edges:  # at equal times the end (-1) sorts first
        running += step
        peak = max(peak, running)
    return peak


def mem_total_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemTotal not found in /proc/meminfo")


def malloc_trim() -> bool:
    """Give the C heap's free memory back to the system (glibc only): what is left is really in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


class PeakRss:
    """Samples VmRSS every RSS_SAMPLE_S while a level runs; calls `over_cap` once if it passes `cap` bytes."""

    def __init__(self, cap: int, over_cap: Callable[[], None]) -> None:
        self.cap = cap
        self.over_cap = over_cap
        self.peak = rss_bytes()
        self.exceeded = False
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            current = rss_bytes()
            self.peak = max(self.peak, current)
            if current > self.cap and not self.exceeded:
                self.exceeded = True
                self.over_cap()
            await asyncio.sleep(RSS_SAMPLE_S)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
        self.peak = max(self.peak, rss_bytes())


class Ledger:
    """Execution ids and audit events over the whole run, and its memory cap."""

    def __init__(self, rss_cap: int) -> None:
        self.rss_cap = rss_cap  # bytes of VmRSS that stop a level
        self.ids: Counter[str] = Counter()
        self.audits = Audits()
        self.executions = 0  # measured (after warm-up)


def ms(seconds: float) -> float:
    return seconds * 1000


def outcome_of(answer: Answer) -> str:
    if answer.result is None:
        return "failed_to_return"
    return answer.result.error.kind if answer.result.error is not None else "ok"


async def run_level(name: str, lanes: Sequence[Lane], ledger: Ledger, max_examples: int = 5) -> dict[str, Any]:
    audits_before = len(ledger.audits.events)
    cpu_started, started = time.process_time(), time.perf_counter()
    aborted = False

    def abort() -> None:
        nonlocal aborted
        aborted = True
        log(f"{name}: aborting, VmRSS passed {ledger.rss_cap / MiB:.0f} MB")
        for lane in lanes:
            lane.stop()

    with PeakRss(ledger.rss_cap, abort) as rss:
        await asyncio.gather(*(lane.run() for lane in lanes))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return summarize_level(name, lanes, ledger, wall, cpu, aborted, rss.peak, audits_before, max_examples)


def summarize_level(
    name: str,
    lanes: Sequence[Lane],
    ledger: Ledger,
    wall: float,
    cpu: float,
    aborted: bool,
    peak_rss: int,
    audits_before: int,
    max_examples: int = 5,
) -> dict[str, Any]:
    """A level's figures and correctness counts, from its lanes' answers and the audit events since `audits_before`."""
    answers = [answer for lane in lanes for answer in lane.answers]
    submitted = [job.index for lane in lanes for job in lane.jobs]
    answered = Counter(answer.job.index for answer in answers)
    unanswered = sum(1 for index in submitted if answered[index] == 0)
    duplicated = sum(count - 1 for count in answered.values() if count > 1)
    results = [answer.result for answer in answers if answer.result is not None]
    ids = Counter(result.execution_id for result in results)
    # an id seen twice in this level, or already seen in an earlier one
    duplicate_ids = sum(count - 1 for count in ids.values()) + sum(1 for i in ids if ledger.ids[i] > 0)
    ledger.ids.update(ids)

    # Every result has exactly one audit event (emitted before execute returns). Events without a
    # result (cancelled executions of an aborted level) are checked at the end of the run.
    audited = Counter(event.execution_id for event in ledger.audits.events)
    audit_problems = sum(1 for i in ids if audited[i] != 1)

    outcomes: Counter[str] = Counter()
    by_program: dict[str, Counter[str]] = {}
    mismatches: list[dict[str, Any]] = []
    for answer in answers:
        outcome = outcome_of(answer)
        outcomes[outcome] += 1
        by_program.setdefault(answer.job.program, Counter())[outcome] += 1
        problem = answer.failure
        if answer.result is not None:
            problem = mismatch(answer.job, answer.result, answer.tenant_id)
        if problem is not None:
            mismatches.append({"job": answer.job.index, "program": answer.job.program, "problem": problem})

    latencies = [answer.latency for answer in answers if answer.result is not None]
    good = [answer.latency for answer in answers if answer.result is not None and answer.job.category == "good"]
    rejections = [seconds for lane in lanes for seconds in lane.rejections]
    level: dict[str, Any] = {
        "name": name,
        "in_flight": sum(lane.workers for lane in lanes),
        "submitted": len(submitted),
        "answers": len(answers),
        "executed": len(results),
        "wall_s": wall,
        "cpu_s": cpu,
        "executions_per_s": len(results) / wall,
        "p50_ms": ms(percentile(latencies, 50)) if latencies else None,
        "p99_ms": ms(percentile(latencies, 99)) if latencies else None,
        "max_ms": ms(max(latencies)) if latencies else None,
        "good_p50_ms": ms(percentile(good, 50)) if good else None,
        "good_p99_ms": ms(percentile(good, 99)) if good else None,
        "outcomes": dict(sorted(outcomes.items())),
        "outcomes_by_program": {program: dict(sorted(c.items())) for program, c in sorted(by_program.items())},
        "rejected": len(rejections),
        "rejection_p99_ms": ms(percentile(rejections, 99)) if rejections else None,
        "rss_cap_mb": ledger.rss_cap / MiB,
        "aborted": aborted,  # stopped by the memory guard: the unanswered jobs were cancelled, not lost
        "lost": 0 if aborted else unanswered,
        "not_run": unanswered if aborted else 0,
        "duplicated": duplicated,
        "duplicate_execution_ids": duplicate_ids,
        "audit_problems": audit_problems,
        "mismatched": len(mismatches),
        "mismatch_examples": mismatches[:max_examples],
        "peak_rss_mb": peak_rss / MiB,
        "slowest": [
            {"job": a.job.index, "program": a.job.program, "outcome": outcome_of(a), "ms": ms(a.latency)}
            for a in sorted(answers, key=lambda a: a.latency, reverse=True)[:max_examples]
        ],
    }
    if any(lane.quota is not None for lane in lanes):
        level["tenants"] = {
            lane.executor.tenant_id: {
                "quota": lane.quota.model_dump() if lane.quota is not None else None,
                "workers": lane.workers,
                "executed": sum(1 for answer in lane.answers if answer.result is not None),
                "rejected": len(lane.rejections),
                "rejection_p99_ms": ms(percentile(lane.rejections, 99)) if lane.rejections else None,
                "peak_concurrent": peak_concurrency(
                    [e for e in ledger.audits.events[audits_before:] if e.tenant_id == lane.executor.tenant_id]
                ),
            }
            for lane in lanes
        }
    return level


# -- the run -----------------------------------------------------------------


async def run_all(settings: Settings, rss_cap: int) -> dict[str, Any]:
    ledger = Ledger(rss_cap)
    maker = JobMaker(SEED)
    top = max(in_flight for in_flight, _ in settings.levels)
    # The levels measure the runtime, not admission: room for all of the highest level at once.
    executor = ProgrammaticToolExecutor(
        load_catalog(),
        limits=BASE_LIMITS,
        policy=POLICY,
        tenant_id="load",
        quota=Quota(max_concurrent=top, max_queued=top),
        on_audit=ledger.audits,
    )
    report: dict[str, Any] = {}

    log("loading the runtime (first execution)")
    started = time.perf_counter()
    first = await executor.execute("x = 1")
    report["first_execution_s"] = time.perf_counter() - started
    if first.error is not None:
        raise RuntimeError(f"the first execution failed: {first.error}")
    ledger.ids[first.execution_id] += 1

    log(f"warm-up: {settings.warmup} executions, {top} in flight")
    warmup = await run_level(f"warm-up ({top} in flight)", [Lane(executor, maker.jobs(settings.warmup), top)], ledger)
    readings = [await read_rss(0)]  # after warm-up, then after each level
    levels: list[dict[str, Any]] = []

    async def measured(lanes: list[Lane], name: str) -> None:
        level = await run_level(name, lanes, ledger)
        levels.append(level)
        ledger.executions += level["executed"]
        if level["aborted"]:
            await ledger.audits.quiet()  # let the cancelled executions stop before the next level
        readings.append(await read_rss(ledger.executions))

    for in_flight, count in settings.levels:
        log(f"level: {count} executions, {in_flight} in flight")
        await measured([Lane(executor, maker.jobs(count), in_flight)], f"{in_flight} in flight")
    quota = settings.tenant_quota
    tenants = [
        Lane(
            ProgrammaticToolExecutor(
                load_catalog(), limits=BASE_LIMITS, policy=POLICY, tenant_id=tenant, quota=quota, on_audit=ledger.audits
            ),
            maker.jobs(settings.tenant_executions),
            settings.tenant_workers,
            quota,
        )
        for tenant in TENANTS
    ]
    name = f"2 tenants × {settings.tenant_workers} in flight, quota {quota.max_concurrent} + {quota.max_queued} queued"
    log(f"level: {name}, {settings.tenant_executions} executions each")
    await measured(tenants, name)

    # Audit events without a result: only cancelled executions of aborted levels may have them.
    await ledger.audits.quiet()
    strays = Counter(event.outcome for event in ledger.audits.events if event.execution_id not in ledger.ids)
    report["audit_events_without_result"] = dict(strays)

    trimmed = rss_bytes() / MiB if malloc_trim() else None
    rss: dict[str, Any] = {
        "readings": [
            {"after": name, **asdict(reading)}
            for name, reading in zip(["warm-up", *(level["name"] for level in levels)], readings, strict=True)
        ],
        "after_malloc_trim_mb": trimmed,  # at the end: what is left once the C heap's free memory is returned
    }
    # Flat: the settled RSS after the first level against after the last single-executor
    # level (500 and 5,000 executions in the full run).
    low, high = readings[1], readings[len(settings.levels)]
    growth = (high.mb - low.mb) / low.mb
    rss.update({"low": asdict(low), "high": asdict(high), "growth_pct": growth * 100, "flat": growth < RSS_FLAT_GROWTH})

    report.update(
        {
            "warmup": warmup,
            "levels": levels,
            "rss": rss,
            "measured_executions": ledger.executions,
            "all_executions": sum(ledger.ids.values()),
            "unique_execution_ids": len(ledger.ids),
        }
    )
    return report


def problems(report: dict[str, Any]) -> list[str]:
    """What fails the run: lost, duplicated, hung or wrong executions; a quota not exercised or not holding."""
    out: list[str] = []
    for level in [report["warmup"], *report["levels"]]:
        if level["aborted"]:
            out.append(f"{level['name']}: aborted when VmRSS passed {level['rss_cap_mb']:.0f} MB (--rss-cap)")
        for key in ("lost", "duplicated", "duplicate_execution_ids", "audit_problems", "mismatched"):
            if level[key]:
                out.append(f"{level['name']}: {key} = {level[key]}")
        for tenant, figures in level.get("tenants", {}).items():
            if figures["rejected"] == 0:
                out.append(f"{level['name']}: {tenant} was never rejected (the quota was not exercised)")
            if figures["peak_concurrent"] > figures["quota"]["max_concurrent"]:
                out.append(f"{level['name']}: {tenant} ran {figures['peak_concurrent']} at once, over its quota")
    aborted = any(level["aborted"] for level in [report["warmup"], *report["levels"]])
    strays = report["audit_events_without_result"]  # outcome -> count
    unexpected = {outcome: n for outcome, n in strays.items() if outcome != "cancelled" or not aborted}
    if unexpected:
        out.append(f"audit events without a result: {unexpected}")
    rss = report["rss"]
    if not rss["flat"] and report["environment"]["mode"] == "full":  # too few executions in a quick run
        out.append(
            f"settled VmRSS grew {rss['growth_pct']:+.1f} % from {rss['low']['executions']:,} to "
            f"{rss['high']['executions']:,} executions (threshold +{RSS_FLAT_GROWTH:.0%})"
        )
    if report["unique_execution_ids"] != report["all_executions"]:
        out.append(f"{report['all_executions']} results but {report['unique_execution_ids']} unique execution ids")
    return out


# -- adversarial phase ---------------------------------------------------------
#
# An honest tenant runs the good programs at a fixed concurrency, first alone
# (the baseline), then beside an attacker tenant (its own executor, catalog and
# quota) that loops over hostile programs: one kind at a time, then all four at
# once. What an attacker's executions should change: neither the honest
# tenant's latency and throughput nor the host's memory.

HONEST_PROGRAMS = tuple(program for program in PROGRAMS if program.category == "good")
HONEST_TENANT = "honest"
ATTACKER_TENANT = "attacker"
HONEST_IN_FLIGHT = 8
HONEST_QUOTA = Quota(max_concurrent=HONEST_IN_FLIGHT, max_queued=8)  # never full at 8 in flight
ATTACKER_QUOTA = Quota(max_concurrent=4, max_queued=8)
ADV_WARMUP = 50  # honest executions before the baseline
ATTACK_GUARD_S = 30.0  # an attacker's execution still out after this is cancelled, and counted as "hung"
ATTACK_HEAD_START_S = 0.3  # the attack starts this long before the honest workload
ATTACK_DRAIN_S = 45.0  # once the honest workload is done, how long the attack's executions in flight may take
LOOP_TICK_S = 0.005  # the event-loop stall ticker's period

BOMB_ELEMENTS = 2_000_000  # one ~2 MB frame that decodes to 2 million empty lists
BOMBS_PER_PROGRAM = 3
BOMB_LIMITS = Limits(max_frame_bytes=8 * MiB, timeout=2)
BLOB_BYTES = 8 * MiB  # the `blob` tool's reply: one shared string, so a call costs the tool nothing
FLOOD_CALLS = 100
FLOOD_SLEEP_S = 2
FLOOD_LIMITS = Limits(timeout=10)
TRIAL_POLICY = Policy(circuit_failure_threshold=2, circuit_reset_timeout=0.2)
TRIAL_BACKEND_S = 0.1  # the `flappy` backend's latency: long enough to abandon a call in flight
TRIAL_LIMITS = Limits(timeout=5)
WEDGE_PROBES = 6  # after the backend recovers: calls WEDGE_PROBE_GAP_S apart, until one is served
WEDGE_PROBE_GAP_S = 0.25
CACHE_RESULT_BYTES = 2 * MiB  # the `fetch` tool's reply: a fresh string per call, so the cache holds each
CACHE_CALLS = 32
CACHE_LIMITS = Limits(timeout=20)


@dataclass(frozen=True)
class AdversarialSettings:
    honest_executions: int  # per phase (column)
    attack_workers: int  # attacker callers per kind when a kind runs alone; one each when all four run
    # At most this many programs of a kind per phase (the others loop until the honest workload is done):
    # before the fixes a reply flood held FLOOD_CALLS × 8 MiB; a cache flood holds CACHE_CALLS results.
    flood_programs: int
    cache_programs: int


ADV_FULL = AdversarialSettings(honest_executions=1200, attack_workers=2, flood_programs=5, cache_programs=16)
ADV_QUICK = AdversarialSettings(honest_executions=300, attack_workers=2, flood_programs=4, cache_programs=8)


class Backend:
    """The `flappy` tool's backend: down until `healthy` is set."""

    def __init__(self) -> None:
        self.healthy = False


def attack_catalog(backend: Backend) -> ToolCatalog:
    catalog = ToolCatalog(source="attack")
    blob_text = "b" * BLOB_BYTES

    @catalog.tool(domain="attack")
    def blob(n: int) -> str:
        """8 MiB of text (the same string every time)."""
        return blob_text

    @catalog.tool(domain="attack")
    async def flappy(n: int) -> int:
        """A slow backend that fails until it recovers."""
        await asyncio.sleep(TRIAL_BACKEND_S)
        if not backend.healthy:
            raise RuntimeError(f"backend down (n={n})")
        return n

    @catalog.tool(domain="attack")
    def fetch(key: str) -> str:
        """A few MiB of text, made afresh for each call."""
        return (key[:1] or "c") * CACHE_RESULT_BYTES

    return catalog


RAW = "from wit_world.imports import host\nimport _ptc_codec\n"  # raw frames, straight to the host


def raw_frame(tool: str, args: str) -> str:
    """Guest code for a call frame as a latin-1 str (args: a dict display in guest code)."""
    return f"_ptc_codec.pack({{'tool': {tool!r}, 'args': {args}, 'key': None}}).decode('latin-1')"


def frame_bomb(i: int) -> str:
    # {'tool': 'no_such_tool', 'args': {'v': <array of 2,000,000 empty arrays>}}: ~2 MB on the wire
    head = msgpack.packb({"tool": "no_such_tool", "args": {"v": []}})[:-1] + b"\xdd"
    return (
        RAW
        + f"n = {BOMB_ELEMENTS}\n"
        + f"frame = ({head!r} + n.to_bytes(4, 'big') + b'\\x90' * n).decode('latin-1')\n"
        + f"replies = [str(host.submit(frame).value)[:100] for _ in range({BOMBS_PER_PROGRAM})]\n"
        + f"[{i}, replies]\n"
    )


def reply_flood(i: int) -> str:
    # submitted, never waited for; the program sleeps, then ends
    frame = raw_frame("blob", "{'n': k}")
    return (
        RAW
        + "import time\n"
        + f"ids = [host.submit({frame}).value for k in range({FLOOD_CALLS})]\n"
        + f"time.sleep({FLOOD_SLEEP_S})\n"
        + f"[{i}, len(ids)]\n"
    )


def abandoned_trial(i: int) -> str:
    # two failures open the breaker; past its reset timeout the next call is the half-open
    # trial, which the program abandons: cancels it (even i) or ends while it runs (odd i)
    if i % 2 == 0:
        abandon = (
            "task = asyncio.create_task(flappy(n=2))\n"
            "await asyncio.sleep(0.01)\n"
            "task.cancel()\n"
            "try:\n"
            "    await task\n"
            "except asyncio.CancelledError:\n"
            "    seen.append('abandoned')\n"
            "except ToolError as e:\n"
            "    seen.append(type(e).__name__)\n"
        )
    else:
        frame = raw_frame("flappy", "{'n': 2}")
        abandon = f"host.submit({frame})\nseen.append('left running')\n"
    return (
        RAW
        + "import asyncio\n"
        + "from tools import ToolError\n"
        + "from tools.attack import flappy\n"
        + "seen = []\n"
        + "for n in range(2):\n"
        + "    try:\n"
        + "        seen.append(await flappy(n=n))\n"
        + "    except ToolError as e:\n"
        + "        seen.append(type(e).__name__)\n"
        + f"await asyncio.sleep({TRIAL_POLICY.circuit_reset_timeout + 0.05})\n"
        + abandon
        + f"[{i}, seen]\n"
    )


def cache_flood(i: int) -> str:
    # every call a new idempotency key: each result is kept for the key's TTL
    key = f"{secrets.token_hex(4)}-{i}-{{k}}"
    return (
        "from tools.attack import fetch\n"
        "total = 0\n"
        f"for k in range({CACHE_CALLS}):\n"
        f"    total += len(await fetch(key=f'{key}', idempotency_key=f'{key}'))\n"
        f"[{i}, total]\n"
    )


WEDGE_PROBE = (
    "import asyncio\n"
    "from tools import CircuitOpenError, ToolError\n"
    "from tools.attack import flappy\n"
    "seen = []\n"
    f"for n in range({WEDGE_PROBES}):\n"
    "    try:\n"
    "        await flappy(n=n)\n"
    "    except ToolError as e:\n"
    "        seen.append(type(e).__name__)\n"
    "    else:\n"
    "        seen.append('ok')\n"
    "        break\n"
    f"    await asyncio.sleep({WEDGE_PROBE_GAP_S})\n"
    "seen\n"
)


@dataclass(frozen=True)
class AttackKind:
    key: str
    title: str
    make: Callable[[int], str]
    limits: Limits
    capped_by: str | None = None  # the AdversarialSettings field with its most programs per phase


ATTACKS: tuple[AttackKind, ...] = (
    AttackKind("frame_bombs", "frame bombs", frame_bomb, BOMB_LIMITS),
    AttackKind("reply_floods", "reply floods", reply_flood, FLOOD_LIMITS, "flood_programs"),
    AttackKind("abandoned_trials", "abandoned trials", abandoned_trial, TRIAL_LIMITS),
    AttackKind("cache_floods", "cache floods", cache_flood, CACHE_LIMITS, "cache_programs"),
)
ADV_PHASES: tuple[tuple[str, tuple[AttackKind, ...]], ...] = (
    ("baseline", ()),
    *((kind.title, (kind,)) for kind in ATTACKS),
    ("all four at once", ATTACKS),
)


def call_label(call: ToolCallRecord) -> str:
    """A call's outcome for the counts: "ok", "unfinished" (still running, or never started, when the
    execution ended), or its error type, with why the host refused it when it did."""
    if call.error is None:
        return "ok" if call.completed_at is not None else "unfinished"
    if "budget" in call.error.message:
        return f"{call.error.type} (over the host budget)"
    if call.error.message.startswith("rejected"):
        return f"{call.error.type} (frame refused)"
    return call.error.type


@dataclass
class AttackStats:
    """One attack kind's programs in one phase, by outcome; their tool calls by error type."""

    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # error kind or "ok"; "hung": cancelled by the guard
    calls: Counter[str] = field(default_factory=Counter)  # by call_label()
    rejected: int = 0  # OverCapacityError from the attacker's own quota (then retried)
    host_memory_peak: int | None = None  # the largest of its executions' (None: the code has no such field)
    slowest_s: float = 0.0
    example: str | None = None  # the first program's value or error, cut short

    def record(self, result: ExecutionResult, seconds: float) -> None:
        self.outcomes[result.error.kind if result.error is not None else "ok"] += 1
        for call in result.tool_calls:
            self.calls[call_label(call)] += 1
        peak = getattr(result, "host_memory_peak", None)
        if peak is not None:
            self.host_memory_peak = max(self.host_memory_peak or 0, peak)
        self.slowest_s = max(self.slowest_s, seconds)
        if self.example is None:
            self.example = f"{result.error}"[:200] if result.error is not None else f"{result.result!r}"[:200]

    def figures(self) -> dict[str, Any]:
        return {
            "programs": sum(self.outcomes.values()),
            "outcomes": dict(sorted(self.outcomes.items())),
            "tool_calls": dict(sorted(self.calls.items())),
            "rejected": self.rejected,
            "host_memory_peak_mb": None if self.host_memory_peak is None else self.host_memory_peak / MiB,
            "slowest_s": self.slowest_s,
            "example": self.example,
        }


class Attacker:
    """The attacker tenant: `workers` callers per attack kind, each looping over its kind's programs."""

    def __init__(self, kinds: Sequence[AttackKind], workers: int, settings: AdversarialSettings) -> None:
        self.backend = Backend()
        self.audits = Audits()
        self.executor = ProgrammaticToolExecutor(
            attack_catalog(self.backend),
            policy=POLICY,
            policies={"flappy": TRIAL_POLICY},
            tenant_id=ATTACKER_TENANT,
            quota=ATTACKER_QUOTA,
            on_audit=self.audits,
        )
        self.kinds = tuple(kinds)
        self.workers = workers
        self.settings = settings
        self.stats = {kind.key: AttackStats() for kind in self.kinds}
        self.serial = itertools.count()
        self.stopping = False
        self.aborted = False  # stopped by the memory guard
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        self.tasks = [asyncio.ensure_future(self._worker(kind)) for kind in self.kinds for _ in range(self.workers)]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _worker(self, kind: AttackKind) -> None:
        stats = self.stats[kind.key]
        cap = getattr(self.settings, kind.capped_by) if kind.capped_by is not None else None
        while not self.stopping and (cap is None or stats.started < cap):
            stats.started += 1
            code = kind.make(next(self.serial))
            began = time.perf_counter()
            try:
                result = await asyncio.wait_for(self.executor.execute(code, limits=kind.limits), ATTACK_GUARD_S)
            except OverCapacityError:
                stats.started -= 1
                stats.rejected += 1
                await asyncio.sleep(REJECT_BACKOFF_S)
                continue
            except TimeoutError:
                stats.outcomes["hung"] += 1
                continue
            except Exception as exc:  # counted: execute() must not raise for a program
                stats.outcomes[f"execute raised {type(exc).__name__}"] += 1
                continue
            stats.record(result, time.perf_counter() - began)
            del result  # it can hold what the host decoded (before the fixes: a bomb's millions of lists)

    def stop(self) -> None:
        """Start no more programs; those running end on their own."""
        self.stopping = True

    def abort(self) -> None:
        """Cancel the programs running too."""
        self.stopping = self.aborted = True
        for task in self.tasks:
            task.cancel()

    async def probe_breaker(self) -> dict[str, Any]:
        """After the attack: the backend recovers; do calls from another execution get served?"""
        self.backend.healthy = True
        await asyncio.sleep(TRIAL_POLICY.circuit_reset_timeout + 0.1)
        while True:
            try:
                result = await asyncio.wait_for(self.executor.execute(WEDGE_PROBE, limits=TRIAL_LIMITS), ATTACK_GUARD_S)
            except OverCapacityError:  # cancelled attack executions may still hold the quota's slots
                await asyncio.sleep(REJECT_BACKOFF_S)
                continue
            except TimeoutError:
                return {"replies": ["hung"], "wedged": True}
            break
        replies = result.result if result.error is None else [str(result.error)]
        return {"replies": replies, "wedged": "ok" not in replies}


class LoopLag:
    """The longest the event loop went without running a LOOP_TICK_S ticker: a stalled loop stalls every tenant."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LOOP_TICK_S)
            self.worst = max(self.worst, time.perf_counter() - before - LOOP_TICK_S)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()


async def adversarial_phase(
    name: str,
    kinds: Sequence[AttackKind],
    honest: ProgrammaticToolExecutor,
    maker: JobMaker,
    ledger: Ledger,
    settings: AdversarialSettings,
) -> dict[str, Any]:
    """The honest workload, beside `kinds` of attack (none: the baseline), then the host's memory."""
    lane = Lane(honest, maker.jobs(settings.honest_executions), HONEST_IN_FLIGHT, HONEST_QUOTA)
    workers = settings.attack_workers if len(kinds) == 1 else 1
    attacker = Attacker(kinds, workers, settings) if kinds else None
    audits_before = len(ledger.audits.events)
    honest_aborted = False

    def over_cap() -> None:  # the attack is stopped; the honest workload goes on (unless it is the baseline)
        nonlocal honest_aborted
        stopping = "attack" if attacker is not None else "baseline"
        log(f"{name}: VmRSS passed {ledger.rss_cap / MiB:.0f} MB (--rss-cap), stopping the {stopping}")
        if attacker is not None:
            attacker.abort()
        else:
            honest_aborted = True
            lane.stop()

    with PeakRss(ledger.rss_cap, over_cap) as rss, LoopLag() as lag:
        attack = asyncio.ensure_future(attacker.run()) if attacker is not None else None
        if attack is not None:
            await asyncio.sleep(ATTACK_HEAD_START_S)
        cpu_started, started = time.process_time(), time.perf_counter()
        await lane.run()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        stall = lag.worst  # while the honest workload ran
        drain_s = 0.0
        if attacker is not None and attack is not None:
            attacker.stop()
            drained = time.perf_counter()
            done, _ = await asyncio.wait({attack}, timeout=ATTACK_DRAIN_S)
            if not done:
                log(f"{name}: the attack's executions still run after {ATTACK_DRAIN_S:g} s: cancelling them")
                attacker.abort()
                await attack
            drain_s = time.perf_counter() - drained
    figures = summarize_level(name, [lane], ledger, wall, cpu, honest_aborted, rss.peak, audits_before)
    errors = sum(count for outcome, count in figures["outcomes"].items() if outcome != "ok")
    phase: dict[str, Any] = {
        "name": name,
        "attacks": [kind.key for kind in kinds],
        "attack_workers_per_kind": workers if kinds else 0,
        "honest": figures,
        "honest_errors": errors,
        "loop_stall_ms": ms(stall),
    }
    if attacker is not None:
        phase["attack"] = {kind.key: attacker.stats[kind.key].figures() for kind in kinds}
        phase["attack_aborted"] = attacker.aborted  # stopped by --rss-cap
        phase["attack_drain_s"] = drain_s
        if any(kind.key == "abandoned_trials" for kind in kinds):
            phase["breaker"] = await attacker.probe_breaker()
        await attacker.audits.quiet(still=0.2)  # cancelled executions report once their instance has ended
    reading = await read_rss(0)
    trimmed = rss_bytes() / MiB if malloc_trim() else None
    memory: dict[str, Any] = {
        "peak_mb": rss.peak / MiB,
        "at_end_mb": reading.at_end_mb,
        "settled_mb": reading.settled_mb,
        "after_malloc_trim_mb": trimmed,
        "attacker_closed_mb": None,
    }
    if attacker is not None:
        # What the attacker's executor still holds (its policy state: breakers, the idempotency cache)
        # goes with it: close it, drop it, and read again.
        attacker.executor.close()
        attacker = None
        del attack
        gc.collect()
        memory["attacker_closed_mb"] = (await read_rss(0)).settled_mb
        if malloc_trim():
            memory["attacker_closed_mb"] = rss_bytes() / MiB
    phase["rss"] = memory
    return phase


async def run_adversarial(settings: AdversarialSettings, rss_cap: int) -> dict[str, Any]:
    ledger = Ledger(rss_cap)
    maker = JobMaker(SEED + 1, HONEST_PROGRAMS)
    honest = ProgrammaticToolExecutor(
        load_catalog(),
        limits=BASE_LIMITS,
        policy=POLICY,
        tenant_id=HONEST_TENANT,
        quota=HONEST_QUOTA,
        on_audit=ledger.audits,
    )
    first = await honest.execute("x = 1")
    if first.error is not None:
        raise RuntimeError(f"the honest tenant's first execution failed: {first.error}")
    ledger.ids[first.execution_id] += 1
    log(f"adversarial warm-up: {ADV_WARMUP} honest executions, {HONEST_IN_FLIGHT} in flight")
    warmup = await run_level(
        "adversarial warm-up", [Lane(honest, maker.jobs(ADV_WARMUP), HONEST_IN_FLIGHT, HONEST_QUOTA)], ledger
    )
    phases = []
    for name, kinds in ADV_PHASES:
        log(f"adversarial: {name}, {settings.honest_executions} honest executions, {HONEST_IN_FLIGHT} in flight")
        phases.append(await adversarial_phase(name, kinds, honest, maker, ledger, settings))
    await ledger.audits.quiet()
    strays = Counter(event.outcome for event in ledger.audits.events if event.execution_id not in ledger.ids)
    honest.close()
    wedged = [phase["breaker"]["wedged"] for phase in phases if "breaker" in phase]
    return {
        "settings": asdict(settings),
        "honest_in_flight": HONEST_IN_FLIGHT,
        "honest_quota": HONEST_QUOTA.model_dump(),
        "attacker_quota": ATTACKER_QUOTA.model_dump(),
        "attack_sizes": {
            "frame_bombs": {
                "elements": BOMB_ELEMENTS,
                "per_program": BOMBS_PER_PROGRAM,
                "limits": BOMB_LIMITS.model_dump(),
            },
            "reply_floods": {"reply_bytes": BLOB_BYTES, "calls": FLOOD_CALLS, "limits": FLOOD_LIMITS.model_dump()},
            "abandoned_trials": {"policy": TRIAL_POLICY.model_dump(), "backend_s": TRIAL_BACKEND_S},
            "cache_floods": {
                "result_bytes": CACHE_RESULT_BYTES,
                "calls": CACHE_CALLS,
                "limits": CACHE_LIMITS.model_dump(),
            },
        },
        "warmup": warmup,
        "phases": phases,
        "breaker_wedged": any(wedged) if wedged else None,
        "honest_audit_events_without_result": dict(strays),
    }


def adversarial_problems(adversarial: dict[str, Any]) -> list[str]:
    """The honest tenant's correctness (latency and RSS are measurements, not checks)."""
    out: list[str] = []
    levels = [adversarial["warmup"], *(phase["honest"] for phase in adversarial["phases"])]
    for level in levels:
        label = f"adversarial, {level['name']}: honest tenant"
        if level["aborted"]:
            out.append(f"{label}: aborted when VmRSS passed {level['rss_cap_mb']:.0f} MB (--rss-cap)")
        for key in ("lost", "duplicated", "duplicate_execution_ids", "audit_problems", "mismatched"):
            if level[key]:
                out.append(f"{label}: {key} = {level[key]}")
        for figures in level.get("tenants", {}).values():
            if figures["peak_concurrent"] > figures["quota"]["max_concurrent"]:
                out.append(f"{label}: ran {figures['peak_concurrent']} at once, over its quota")
    strays = adversarial["honest_audit_events_without_result"]
    if strays:
        out.append(f"adversarial: honest audit events without a result: {strays}")
    return out


# -- report ------------------------------------------------------------------

KINDS = ("ok", "runtime_error", "syntax_error", "timeout", "out_of_fuel", "memory_limit", "tool_call_limit")


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def markdown(report: dict[str, Any]) -> str:
    levels = [report["warmup"], *report["levels"]]
    lines = [
        "| level | executions | wall s | exec/s | CPU s | p50 ms | p99 ms | p99 ms, good programs "
        "| lost | duplicated | mismatched | rejected (OverCapacityError) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        duplicated = level["duplicated"] + level["duplicate_execution_ids"] + level["audit_problems"]
        lines.append(
            f"| {level['name']}{' (aborted)' if level['aborted'] else ''} | {level['executed']:,} "
            f"| {level['wall_s']:.1f} | {level['executions_per_s']:.0f} "
            f"| {level['cpu_s']:.1f} | {fmt_ms(level['p50_ms'])} | {fmt_ms(level['p99_ms'])} "
            f"| {fmt_ms(level['good_p99_ms'])} | {level['lost']} | {duplicated} | {level['mismatched']} "
            f"| {level['rejected']:,} |"
        )

    others = sorted({kind for level in levels for kind in level["outcomes"]} - set(KINDS))
    columns = [*KINDS, *others]
    lines += ["", "| level | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for level in levels:
        counts = " | ".join(str(level["outcomes"].get(kind, 0)) for kind in columns)
        lines.append(f"| {level['name']} | {counts} |")

    rss = report["rss"]
    lines += [
        "",
        "| VmRSS | measured executions | peak MB while running | MB at the end | MB settled |",
        "|---|---|---|---|---|",
    ]
    for reading, level in zip(rss["readings"], levels, strict=True):
        lines.append(
            f"| after {reading['after']} | {reading['executions']:,} | {level['peak_rss_mb']:.1f} "
            f"| {reading['at_end_mb']:.1f} | {reading['settled_mb']:.1f} |"
        )
    trimmed = rss["after_malloc_trim_mb"]
    lines += [
        "",
        f"Settled VmRSS from {rss['low']['executions']:,} to {rss['high']['executions']:,} executions: "
        f"{rss['low']['settled_mb']:.1f} → {rss['high']['settled_mb']:.1f} MB, {rss['growth_pct']:+.1f} % "
        f"({'flat' if rss['flat'] else '**not flat**'}: threshold +{RSS_FLAT_GROWTH:.0%})"
        + (f"; {trimmed:.1f} MB at the end after malloc_trim(0)." if trimmed is not None else "."),
    ]
    for level in report["levels"]:
        for tenant, figures in level.get("tenants", {}).items():
            quota = figures["quota"]
            lines.append(
                f"{tenant}: {figures['executed']:,} executed, {figures['rejected']:,} submissions rejected "
                f"(OverCapacityError after p99 {fmt_ms(figures['rejection_p99_ms'])} ms, then retried), "
                f"at most {figures['peak_concurrent']} running at once (quota {quota['max_concurrent']})."
            )
    for level in levels:
        for example in level["mismatch_examples"]:
            lines.append(f"{level['name']}: job {example['job']} ({example['program']}): {example['problem']}")
    return "\n".join(lines)


def fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items(), key=lambda item: -item[1])) or "—"


def adversarial_markdown(adversarial: dict[str, Any]) -> str:
    phases = adversarial["phases"]
    settings = adversarial["settings"]
    lines = [
        f"Adversarial mix: the honest tenant runs {settings['honest_executions']:,} good programs per column, "
        f"{adversarial['honest_in_flight']} in flight (its own executor and quota); beside it the attacker "
        f"tenant (its own executor, catalog and quota {adversarial['attacker_quota']['max_concurrent']} + "
        f"{adversarial['attacker_quota']['max_queued']} queued) loops over one kind of hostile program "
        f"({settings['attack_workers']} callers), then all four (one caller each).",
        "",
        "| honest tenant | " + " | ".join(phase["name"] for phase in phases) + " |",
        "|---" * (len(phases) + 1) + "|",
    ]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(phase) for phase in phases) + " |")

    row("executions", lambda p: f"{p['honest']['executed']:,}")
    row("executions/s", lambda p: f"{p['honest']['executions_per_s']:.0f}")
    row("p50 latency, ms", lambda p: fmt_ms(p["honest"]["p50_ms"]))
    row("p99 latency, ms", lambda p: fmt_ms(p["honest"]["p99_ms"]))
    row("max latency, ms", lambda p: fmt_ms(p["honest"]["max_ms"]))
    row("errors (not ok)", lambda p: str(p["honest_errors"]))
    row(
        "lost / duplicated / mismatched",
        lambda p: (
            f"{p['honest']['lost']} / "
            f"{p['honest']['duplicated'] + p['honest']['duplicate_execution_ids'] + p['honest']['audit_problems']} / "
            f"{p['honest']['mismatched']}"
        ),
    )
    row("CPU s of the process", lambda p: f"{p['honest']['cpu_s']:.1f}")
    row("worst event-loop stall, ms", lambda p: fmt_ms(p["loop_stall_ms"]))
    row("VmRSS peak, MB", lambda p: fmt_mb(p["rss"]["peak_mb"]))
    row("VmRSS settled after, MB", lambda p: fmt_mb(p["rss"]["settled_mb"]))
    row("… after malloc_trim, MB", lambda p: fmt_mb(p["rss"]["after_malloc_trim_mb"]))
    row("… attacker's executor closed, MB", lambda p: fmt_mb(p["rss"]["attacker_closed_mb"]))
    row("attack stopped by --rss-cap", lambda p: ("**yes**" if p["attack_aborted"] else "no") if "attack" in p else "—")

    lines += [
        "",
        "| phase | attack | programs | outcomes | their tool calls | rejected | largest host_memory_peak, MB "
        "| slowest program, s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        for key, figures in phase.get("attack", {}).items():
            lines.append(
                f"| {phase['name']} | {key.replace('_', ' ')} | {figures['programs']:,} "
                f"| {fmt_counts(figures['outcomes'])} | {fmt_counts(figures['tool_calls'])} | {figures['rejected']:,} "
                f"| {fmt_mb(figures['host_memory_peak_mb'])} | {figures['slowest_s']:.1f} |"
            )
    wedged = adversarial["breaker_wedged"]
    lines.append("")
    lines.append(
        "Breaker wedged: "
        + ("n/a" if wedged is None else ("**yes**" if wedged else "no"))
        + " ("
        + "; ".join(
            f"{phase['name']}: after the backend recovered, a new execution's calls got "
            f"{', '.join(map(str, phase['breaker']['replies']))}"
            for phase in phases
            if "breaker" in phase
        )
        + ")."
    )
    for level in [adversarial["warmup"], *(phase["honest"] for phase in phases)]:
        for example in level["mismatch_examples"]:
            job = f"job {example['job']} ({example['program']})"
            lines.append(f"adversarial, {level['name']}: {job}: {example['problem']}")
    return "\n".join(lines)


def git_state() -> dict[str, Any]:
    """The commit measured, and whether ptc's sources differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        changed = git("status", "--porcelain", "--", "runtime", "hostcalls", "stubgen", "guest")
        return {"commit": git("rev-parse", "--short", "HEAD"), "ptc_sources_modified": bool(changed)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "ptc_sources_modified": None}


def environment(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        **git_state(),
        "loadavg_at_start": os.getloadavg(),
        **machine(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer executions: a smoke run in under ~30 s")
    parser.add_argument(
        "--adversarial",
        action="store_true",
        help="run only the adversarial phase (honest tenant beside an attacker); JSON to results/adversarial.json",
    )
    parser.add_argument(
        "--rss-cap",
        type=float,
        default=RSS_ABORT_FRACTION,
        metavar="FRACTION",
        help=f"stop a level (or an attack) when VmRSS passes this share of MemTotal (default {RSS_ABORT_FRACTION})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the JSON (default results/load.json, or results/adversarial.json with --adversarial)",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    adv_settings = ADV_QUICK if args.quick else ADV_FULL
    mode = "quick" if args.quick else "full"
    output = args.output or RESULTS_DIR / ("adversarial.json" if args.adversarial else "load.json")

    began = time.perf_counter()
    report: dict[str, Any] = {"environment": {**environment(mode), "adversarial_only": args.adversarial}, "seed": SEED}
    rss_cap = int(mem_total_bytes() * args.rss_cap)
    report["rss_cap_mb"] = rss_cap / MiB
    if not args.adversarial:
        report["settings"] = asdict(settings)
        report["settings"]["tenant_quota"] = settings.tenant_quota.model_dump()
        report["programs"] = [
            {"name": p.name, "category": p.category, "weight": p.weight, "limits": p.limits.model_dump()}
            for p in PROGRAMS
        ]

    async def run() -> None:
        if not args.adversarial:
            report.update(await run_all(settings, rss_cap))
        report["adversarial"] = await run_adversarial(adv_settings, rss_cap)

    asyncio.run(run())
    report["total_seconds"] = time.perf_counter() - began
    report["loadavg_at_end"] = os.getloadavg()
    report["problems"] = ([] if args.adversarial else problems(report)) + adversarial_problems(report["adversarial"])

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")

    if not args.adversarial:
        print(markdown(report))
        print()
    print(adversarial_markdown(report["adversarial"]))
    env = report["environment"]
    counted = (
        ""
        if args.adversarial
        else f"{report['measured_executions']:,} measured executions ({report['all_executions']:,} with warm-up), "
    )
    print(
        f"\n{mode}{' adversarial' if args.adversarial else ''} run at {env['commit']}"
        f"{' (ptc sources modified)' if env['ptc_sources_modified'] else ''}, "
        f"load average {env['loadavg_at_start'][0]:.1f} → {report['loadavg_at_end'][0]:.1f}: "
        f"{counted}{report['total_seconds']:.1f} s; JSON written to {output}"
    )
    if report["problems"]:
        print("PROBLEMS:", *(f"  - {problem}" for problem in report["problems"]), sep="\n")
    else:
        print("no problems")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
