"""The load test's driver: callers that submit the workloads' jobs, levels of them, the adversarial phases,
and the figures and correctness counts of each (load.py prints them)."""

from __future__ import annotations

import asyncio
import gc
import itertools
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import Clock, MiB, PeakRss, Settings, Ticker, choose, log, malloc_trim, percentile, read_rss, rss_bytes
from load_workloads import (
    ADV_PHASES,
    BASE_LIMITS,
    POLICY,
    PROGRAMS,
    SEED,
    TRIAL_LIMITS,
    TRIAL_POLICY,
    WEDGE_PROBE,
    AttackKind,
    Backend,
    Job,
    JobMaker,
    attack_catalog,
    attack_sizes,
    call_label,
    load_catalog,
    mismatch,
)

from ptc import AuditEvent, ExecutionResult, Limits, OverCapacityError, ProgrammaticToolExecutor, Quota

HANG_GUARD_S = 60.0  # far above every program's own timeout: an execution still out after this is hung
REJECT_BACKOFF_S = 0.05  # a caller waits this long after an OverCapacityError, then resubmits
TENANTS = ("load-a", "load-b")
RSS_FLAT_GROWTH = 0.10
HONEST_PROGRAMS = tuple(program for program in PROGRAMS if program.category == "good")
HONEST_TENANT, ATTACKER_TENANT = "honest", "attacker"
HONEST_IN_FLIGHT = 8
HONEST_QUOTA = Quota(max_concurrent=HONEST_IN_FLIGHT, max_queued=8)  # never full at 8 in flight
ATTACKER_QUOTA = Quota(max_concurrent=4, max_queued=8)
ADV_WARMUP = 50  # honest executions before the baseline
ATTACK_GUARD_S = 30.0  # an attacker's execution still out after this is cancelled, and counted as "hung"
ATTACK_HEAD_START_S = 0.3  # the attack starts this long before the honest workload
ATTACK_DRAIN_S = 45.0  # once the honest workload is done, how long the attack's executions in flight may take
LOOP_TICK_S = 0.005  # the event-loop stall ticker's period


TENANT_QUOTA = Quota(max_concurrent=4, max_queued=8)


def settings_for(quick: bool) -> Settings:
    return choose(
        quick,
        warmup=(300, 80),  # executions at the highest concurrency before the first RSS reading
        levels=(((1, 500), (4, 1000), (16, 1500), (64, 2000)), ((1, 100), (4, 150), (16, 200), (64, 300))),
        tenant_workers=(16, 16),  # callers per tenant, each with one execution in flight
        tenant_quota=(TENANT_QUOTA, TENANT_QUOTA),
        tenant_executions=(900, 150),  # per tenant
    )


def adversarial_settings_for(quick: bool) -> Settings:
    return choose(
        quick,
        honest_executions=(1200, 300),  # per phase (column)
        attack_workers=(2, 2),  # attacker callers per kind when a kind runs alone; one each when all four run
        # At most this many programs of a kind per phase (the others loop until the honest workload is done):
        # before the fixes a reply flood held FLOOD_CALLS × 8 MiB; a cache flood holds CACHE_CALLS results.
        flood_programs=(5, 4),
        cache_programs=(16, 8),
    )


async def admitted(
    executor: ProgrammaticToolExecutor, code: str, limits: Limits, guard_s: float, rejected: Callable[[float], None]
) -> tuple[ExecutionResult | None, str | None, float]:
    """Submit until admitted, each OverCapacityError told to `rejected` (its seconds) and then backed off from:
    the result or why there is none ("hung", or execute raising), and the seconds of the admitted submission."""
    while True:
        try:
            with Clock() as clock:
                result = await asyncio.wait_for(executor.execute(code, limits=limits), guard_s)
        except OverCapacityError:
            rejected(clock.wall)
            await asyncio.sleep(REJECT_BACKOFF_S)
            continue
        except TimeoutError:
            return None, "hung", clock.wall
        except Exception as exc:  # reported, never hidden: execute() must not raise for a program
            return None, f"execute raised {exc!r}", clock.wall
        return result, None, clock.wall


class Callers:
    """Callers on one executor, each with one execution in flight at a time."""

    def __init__(self, executor: ProgrammaticToolExecutor) -> None:
        self.executor = executor
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []

    async def _all(self, callers: Sequence[Coroutine[Any, Any, None]]) -> None:
        """Returns only once every caller has ended."""
        self.tasks = [asyncio.ensure_future(caller) for caller in callers]
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def cancel(self) -> None:
        """Cancel the executions in flight and start no more. (A cancellation can be lost, as asyncio.wait_for
        in Python 3.11 returns a result that arrives with it: the flag covers that.)"""
        self.stopping = True
        for task in self.tasks:
            task.cancel()


@dataclass
class Answer:
    """What one job came back with: a result, or how execute itself failed (it raised, or hung)."""

    job: Job
    tenant_id: str
    latency: float  # seconds around the admitted `await executor.execute(...)`
    result: ExecutionResult | None = None
    failure: str | None = None


class Lane(Callers):
    """`workers` callers of one executor sharing the jobs: each job is taken by exactly one of them."""

    def __init__(
        self, executor: ProgrammaticToolExecutor, jobs: list[Job], workers: int, quota: Quota | None = None
    ) -> None:
        super().__init__(executor)
        self.jobs, self.workers, self.quota = jobs, workers, quota  # the tenant's quota, for the report
        self.answers: list[Answer] = []
        self.rejections: list[float] = []  # seconds until each OverCapacityError

    async def run(self) -> None:
        jobs = iter(self.jobs)

        async def caller() -> None:
            for job in jobs:
                if self.stopping:
                    return
                tenant = self.executor.tenant_id
                result, failure, seconds = await admitted(
                    self.executor, job.code, job.limits, HANG_GUARD_S, self.rejections.append
                )
                failure = f"hung for {HANG_GUARD_S:g} s" if failure == "hung" else failure
                self.answers.append(Answer(job, tenant, seconds, result, failure))

        await self._all([caller() for _ in range(self.workers)])


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


class Ledger:
    """Execution ids and audit events over the whole run, and its memory cap."""

    def __init__(self, rss_cap: int) -> None:
        self.rss_cap = rss_cap  # bytes of VmRSS that stop a level
        self.ids: Counter[str] = Counter()
        self.audits = Audits()
        self.executions = 0  # measured (after warm-up)

    def executor(self, tenant_id: str, quota: Quota) -> ProgrammaticToolExecutor:
        return ProgrammaticToolExecutor(
            load_catalog(), limits=BASE_LIMITS, policy=POLICY, tenant_id=tenant_id, quota=quota, on_audit=self.audits
        )

    async def first(self, executor: ProgrammaticToolExecutor) -> float:
        """The executor's first execution (loads the runtime); its seconds."""
        with Clock() as clock:
            first = await executor.execute("x = 1")
        if first.error is not None:
            raise RuntimeError(f"the first execution failed: {first.error}")
        self.ids[first.execution_id] += 1
        return clock.wall

    def strays(self) -> dict[str, int]:
        """Audit events without a result, by outcome."""
        return dict(Counter(event.outcome for event in self.audits.events if event.execution_id not in self.ids))


def ms(samples: Sequence[float], q: float | None = None) -> float | None:
    """The q-th percentile (None: the largest) of seconds, in ms; None without samples."""
    return None if not samples else (max(samples) if q is None else percentile(samples, q)) * 1000


def outcome_of(answer: Answer) -> str:
    if answer.result is None:
        return "failed_to_return"
    return answer.result.error.kind if answer.result.error is not None else "ok"


async def run_level(name: str, lanes: Sequence[Lane], ledger: Ledger) -> dict[str, Any]:
    audits_before = len(ledger.audits.events)
    aborted = False

    def abort() -> None:
        nonlocal aborted
        aborted = True
        log(f"{name}: aborting, VmRSS passed {ledger.rss_cap / MiB:.0f} MB")
        for lane in lanes:
            lane.cancel()

    with PeakRss(ledger.rss_cap, abort) as rss, Clock() as clock:
        await asyncio.gather(*(lane.run() for lane in lanes))
    return summarize_level(name, lanes, ledger, clock, aborted, rss.peak, audits_before)


def summarize_level(
    name: str, lanes: Sequence[Lane], ledger: Ledger, clock: Clock, aborted: bool, peak_rss: int, audits_before: int
) -> dict[str, Any]:
    """A level's figures and correctness counts, from its lanes' answers and the audit events since `audits_before`."""
    answers = [answer for lane in lanes for answer in lane.answers]
    submitted = [job.index for lane in lanes for job in lane.jobs]
    answered = Counter(answer.job.index for answer in answers)
    unanswered = sum(1 for index in submitted if answered[index] == 0)
    results = [answer.result for answer in answers if answer.result is not None]
    ids = Counter(result.execution_id for result in results)
    # an id seen twice in this level, or already seen in an earlier one
    duplicate_ids = sum(count - 1 for count in ids.values()) + sum(1 for i in ids if ledger.ids[i] > 0)
    ledger.ids.update(ids)
    # Every result has exactly one audit event (emitted before execute returns). Events without a
    # result (cancelled executions of an aborted level) are checked at the end of the run.
    audited = Counter(event.execution_id for event in ledger.audits.events)

    outcomes: Counter[str] = Counter()
    by_program: dict[str, Counter[str]] = {}
    mismatches: list[dict[str, Any]] = []
    for answer in answers:
        outcomes[outcome_of(answer)] += 1
        by_program.setdefault(answer.job.program, Counter())[outcome_of(answer)] += 1
        problem = answer.failure if answer.result is None else mismatch(answer.job, answer.result, answer.tenant_id)
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
        "wall_s": clock.wall,
        "cpu_s": clock.cpu,
        "executions_per_s": len(results) / clock.wall,
        "p50_ms": ms(latencies, 50),
        "p99_ms": ms(latencies, 99),
        "max_ms": ms(latencies),
        "good_p50_ms": ms(good, 50),
        "good_p99_ms": ms(good, 99),
        "outcomes": dict(sorted(outcomes.items())),
        "outcomes_by_program": {program: dict(sorted(c.items())) for program, c in sorted(by_program.items())},
        "rejected": len(rejections),
        "rejection_p99_ms": ms(rejections, 99),
        "rss_cap_mb": ledger.rss_cap / MiB,
        "aborted": aborted,  # stopped by the memory guard: the unanswered jobs were cancelled, not lost
        "lost": 0 if aborted else unanswered,
        "not_run": unanswered if aborted else 0,
        "duplicated": sum(count - 1 for count in answered.values() if count > 1),
        "duplicate_execution_ids": duplicate_ids,
        "audit_problems": sum(1 for i in ids if audited[i] != 1),
        "mismatched": len(mismatches),
        "mismatch_examples": mismatches[:5],
        "peak_rss_mb": peak_rss / MiB,
        "slowest": [
            {"job": a.job.index, "program": a.job.program, "outcome": outcome_of(a), "ms": a.latency * 1000}
            for a in sorted(answers, key=lambda a: a.latency, reverse=True)[:5]
        ],
    }
    if any(lane.quota is not None for lane in lanes):
        events = ledger.audits.events[audits_before:]
        level["tenants"] = {
            lane.executor.tenant_id: {
                "quota": lane.quota.model_dump() if lane.quota is not None else None,
                "workers": lane.workers,
                "executed": sum(1 for answer in lane.answers if answer.result is not None),
                "rejected": len(lane.rejections),
                "rejection_p99_ms": ms(lane.rejections, 99),
                "peak_concurrent": peak_concurrency([e for e in events if e.tenant_id == lane.executor.tenant_id]),
            }
            for lane in lanes
        }
    return level


async def run_all(settings: Settings, rss_cap: int) -> dict[str, Any]:
    ledger = Ledger(rss_cap)
    maker = JobMaker(SEED)
    top = max(in_flight for in_flight, _ in settings.levels)
    # The levels measure the runtime, not admission: room for all of the highest level at once.
    executor = ledger.executor("load", Quota(max_concurrent=top, max_queued=top))
    log("loading the runtime (first execution)")
    report: dict[str, Any] = {"first_execution_s": await ledger.first(executor)}
    log(f"warm-up: {settings.warmup} executions, {top} in flight")
    warmup = await run_level(f"warm-up ({top} in flight)", [Lane(executor, maker.jobs(settings.warmup), top)], ledger)
    readings = [await read_rss(0)]  # after warm-up, then after each level
    levels: list[dict[str, Any]] = []

    async def measured(lanes: list[Lane], name: str) -> None:
        log(f"level: {name}, {sum(len(lane.jobs) for lane in lanes)} executions")
        level = await run_level(name, lanes, ledger)
        levels.append(level)
        ledger.executions += level["executed"]
        if level["aborted"]:
            await ledger.audits.quiet()  # let the cancelled executions stop before the next level
        readings.append(await read_rss(ledger.executions))

    for in_flight, count in settings.levels:
        await measured([Lane(executor, maker.jobs(count), in_flight)], f"{in_flight} in flight")
    quota, workers = settings.tenant_quota, settings.tenant_workers
    tenants = [Lane(ledger.executor(t, quota), maker.jobs(settings.tenant_executions), workers, quota) for t in TENANTS]
    await measured(
        tenants, f"2 tenants × {workers} in flight, quota {quota.max_concurrent} + {quota.max_queued} queued"
    )

    # Audit events without a result: only cancelled executions of aborted levels may have them.
    await ledger.audits.quiet()
    report["audit_events_without_result"] = ledger.strays()
    names = ["warm-up", *(level["name"] for level in levels)]
    rss: dict[str, Any] = {
        "readings": [{"after": name, **asdict(reading)} for name, reading in zip(names, readings, strict=True)],
        # at the end: what is left once the C heap's free memory is returned
        "after_malloc_trim_mb": rss_bytes() / MiB if malloc_trim() else None,
    }
    # Flat: the settled RSS after the first level against after the last single-executor
    # level (500 and 5,000 executions in the full run).
    low, high = readings[1], readings[len(settings.levels)]
    growth = (high.mb - low.mb) / low.mb
    rss.update({"low": asdict(low), "high": asdict(high), "growth_pct": growth * 100, "flat": growth < RSS_FLAT_GROWTH})
    report.update({"warmup": warmup, "levels": levels, "rss": rss, "measured_executions": ledger.executions})
    report.update({"all_executions": sum(ledger.ids.values()), "unique_execution_ids": len(ledger.ids)})
    return report


# -- the adversarial phase -------------------------------------------------------------
#
# An honest tenant runs the good programs at a fixed concurrency, first alone
# (the baseline), then beside an attacker tenant (its own executor, catalog and
# quota) that loops over hostile programs: one kind at a time, then all four at
# once. What an attacker's executions should change: neither the honest
# tenant's latency and throughput nor the host's memory.


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
        self.calls.update(call_label(call) for call in result.tool_calls)
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


class Attacker(Callers):
    """The attacker tenant: `workers` callers per attack kind, each looping over its kind's programs."""

    def __init__(self, kinds: Sequence[AttackKind], workers: int, settings: Settings) -> None:
        self.backend = Backend()
        self.audits = Audits()
        catalog = attack_catalog(self.backend)
        policies = {"flappy": TRIAL_POLICY}
        quota, audits = ATTACKER_QUOTA, self.audits
        super().__init__(
            ProgrammaticToolExecutor(
                catalog, policy=POLICY, policies=policies, tenant_id=ATTACKER_TENANT, quota=quota, on_audit=audits
            )
        )
        self.kinds, self.workers, self.settings = tuple(kinds), workers, settings
        self.stats = {kind.key: AttackStats() for kind in self.kinds}
        self.serial = itertools.count()
        self.aborted = False  # stopped by the memory guard

    async def run(self) -> None:
        await self._all([self._caller(kind) for kind in self.kinds for _ in range(self.workers)])

    async def _caller(self, kind: AttackKind) -> None:
        stats = self.stats[kind.key]
        cap = self.settings[kind.capped_by] if kind.capped_by is not None else None

        def rejected(_: float) -> None:
            stats.rejected += 1

        while not self.stopping and (cap is None or stats.started < cap):
            stats.started += 1
            code = kind.make(next(self.serial))
            result, failure, seconds = await admitted(self.executor, code, kind.limits, ATTACK_GUARD_S, rejected)
            if result is None:
                stats.outcomes[failure or "?"] += 1
                continue
            stats.record(result, seconds)
            del result  # it can hold what the host decoded (before the fixes: a bomb's millions of lists)

    def abort(self) -> None:
        """Cancel the programs running too (stop: `stopping`, and those running end on their own)."""
        self.aborted = True
        self.cancel()

    async def probe_breaker(self) -> dict[str, Any]:
        """After the attack: the backend recovers; do calls from another execution get served?"""
        self.backend.healthy = True
        await asyncio.sleep(TRIAL_POLICY.circuit_reset_timeout + 0.1)
        # rejections: cancelled attack executions may still hold the quota's slots
        result, failure, _ = await admitted(self.executor, WEDGE_PROBE, TRIAL_LIMITS, ATTACK_GUARD_S, lambda _: None)
        if result is None:
            return {"replies": [failure], "wedged": True}
        replies = result.result if result.error is None else [str(result.error)]
        return {"replies": replies, "wedged": "ok" not in replies}


class LoopLag(Ticker):
    """The longest the event loop went without running a LOOP_TICK_S ticker: a stalled loop stalls every tenant."""

    def __init__(self) -> None:
        super().__init__(LOOP_TICK_S, self._tick)
        self.worst, self.last = 0.0, time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst = max(self.worst, now - self.last - LOOP_TICK_S)
        self.last = now


async def adversarial_phase(
    name: str,
    kinds: Sequence[AttackKind],
    honest: ProgrammaticToolExecutor,
    maker: JobMaker,
    ledger: Ledger,
    settings: Settings,
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
            lane.cancel()

    drain_s = 0.0
    with PeakRss(ledger.rss_cap, over_cap) as rss, LoopLag() as lag:
        attack = asyncio.ensure_future(attacker.run()) if attacker is not None else None
        if attack is not None:
            await asyncio.sleep(ATTACK_HEAD_START_S)
        with Clock() as clock:
            await lane.run()
        stall = lag.worst  # while the honest workload ran
        if attacker is not None and attack is not None:
            attacker.stopping = True  # start no more programs; those running end on their own
            with Clock() as drained:
                done, _ = await asyncio.wait({attack}, timeout=ATTACK_DRAIN_S)
                if not done:
                    log(f"{name}: the attack's executions still run after {ATTACK_DRAIN_S:g} s: cancelling them")
                    attacker.abort()
                    await attack
            drain_s = drained.wall
    figures = summarize_level(name, [lane], ledger, clock, honest_aborted, rss.peak, audits_before)
    phase: dict[str, Any] = {
        "name": name,
        "attacks": [kind.key for kind in kinds],
        "attack_workers_per_kind": workers if kinds else 0,
        "honest": figures,
        "honest_errors": sum(count for outcome, count in figures["outcomes"].items() if outcome != "ok"),
        "loop_stall_ms": stall * 1000,
    }
    if attacker is not None:
        phase["attack"] = {kind.key: attacker.stats[kind.key].figures() for kind in kinds}
        phase["attack_aborted"] = attacker.aborted  # stopped by --rss-cap
        phase["attack_drain_s"] = drain_s
        if any(kind.key == "abandoned_trials" for kind in kinds):
            phase["breaker"] = await attacker.probe_breaker()
        await attacker.audits.quiet(still=0.2)  # cancelled executions report once their instance has ended
    reading = await read_rss(0)
    memory: dict[str, Any] = {
        "peak_mb": rss.peak / MiB,
        "at_end_mb": reading.at_end_mb,
        "settled_mb": reading.settled_mb,
    }
    memory["after_malloc_trim_mb"] = rss_bytes() / MiB if malloc_trim() else None
    memory["attacker_closed_mb"] = None
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


async def run_adversarial(settings: Settings, rss_cap: int) -> dict[str, Any]:
    ledger = Ledger(rss_cap)
    maker = JobMaker(SEED + 1, HONEST_PROGRAMS)
    honest = ledger.executor(HONEST_TENANT, HONEST_QUOTA)
    await ledger.first(honest)
    log(f"adversarial warm-up: {ADV_WARMUP} honest executions, {HONEST_IN_FLIGHT} in flight")
    lanes = [Lane(honest, maker.jobs(ADV_WARMUP), HONEST_IN_FLIGHT, HONEST_QUOTA)]
    warmup = await run_level("adversarial warm-up", lanes, ledger)
    phases = []
    for name, kinds in ADV_PHASES:
        log(f"adversarial: {name}, {settings.honest_executions} honest executions, {HONEST_IN_FLIGHT} in flight")
        phases.append(await adversarial_phase(name, kinds, honest, maker, ledger, settings))
    await ledger.audits.quiet()
    honest.close()
    wedged = [phase["breaker"]["wedged"] for phase in phases if "breaker" in phase]
    return {
        "settings": settings,
        "honest_in_flight": HONEST_IN_FLIGHT,
        "honest_quota": HONEST_QUOTA.model_dump(),
        "attacker_quota": ATTACKER_QUOTA.model_dump(),
        "attack_sizes": attack_sizes(),
        "warmup": warmup,
        "phases": phases,
        "breaker_wedged": any(wedged) if wedged else None,
        "honest_audit_events_without_result": ledger.strays(),
    }
