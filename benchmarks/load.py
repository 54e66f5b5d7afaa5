"""Load test: thousands of mixed executions through one process, each checked against its expected outcome.

    python benchmarks/load.py                 # full run: 6,800 measured executions (+300 warm-up), ~2.5 min
    python benchmarks/load.py --quick         # smoke run: 1,050 measured executions (+80 warm-up), ~25 s
    python benchmarks/load.py --rss-cap 0.8   # stop a level if VmRSS passes 80 % of MemTotal (default 60 %)

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
is within 10 % of the one after the first level (500). Prints markdown tables,
writes benchmarks/results/load.json and exits 1 when any check fails (the RSS
check only in a full run).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import json
import os
import random
import string
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import MiB, log, machine, percentile, read_rss, rss_bytes
from ptc import (
    AuditEvent,
    ExecutionResult,
    Limits,
    OverCapacityError,
    Policy,
    ProgrammaticToolExecutor,
    Quota,
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

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.next_index = 0

    def jobs(self, count: int) -> list[Job]:
        out: list[Job] = []
        weights = [program.weight for program in PROGRAMS]
        for program in self.rng.choices(PROGRAMS, weights=weights, k=count):
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
        "peak_rss_mb": rss.peak / MiB,
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
        "--rss-cap",
        type=float,
        default=RSS_ABORT_FRACTION,
        metavar="FRACTION",
        help=f"stop a level when VmRSS passes this share of MemTotal (default {RSS_ABORT_FRACTION})",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "load.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"

    began = time.perf_counter()
    report: dict[str, Any] = {"environment": environment(mode), "settings": asdict(settings), "seed": SEED}
    report["settings"]["tenant_quota"] = settings.tenant_quota.model_dump()
    report["programs"] = [
        {"name": p.name, "category": p.category, "weight": p.weight, "limits": p.limits.model_dump()} for p in PROGRAMS
    ]
    rss_cap = int(mem_total_bytes() * args.rss_cap)
    report["rss_cap_mb"] = rss_cap / MiB
    report.update(asyncio.run(run_all(settings, rss_cap)))
    report["total_seconds"] = time.perf_counter() - began
    report["loadavg_at_end"] = os.getloadavg()
    report["problems"] = problems(report)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(markdown(report))
    env = report["environment"]
    print(
        f"\n{mode} run at {env['commit']}{' (ptc sources modified)' if env['ptc_sources_modified'] else ''}, "
        f"load average {env['loadavg_at_start'][0]:.1f} → {report['loadavg_at_end'][0]:.1f}: "
        f"{report['measured_executions']:,} measured executions ({report['all_executions']:,} with warm-up) "
        f"in {report['total_seconds']:.1f} s; JSON written to {args.output}"
    )
    if report["problems"]:
        print("PROBLEMS:", *(f"  - {problem}" for problem in report["problems"]), sep="\n")
    else:
        print("no problems")
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
