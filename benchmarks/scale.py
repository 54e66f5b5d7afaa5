"""Past one machine (issue 17 §3): RayExecutor throughput and latency for 1 and 2 Ray workers, with and without
Redis state; what Redis adds per tool call with an idempotency key and per execution with a quota; and a load run
of N mixed executions across 2 workers with one worker killed halfway (lost, duplicated, mismatched: goal 0, 0, 0).

    python benchmarks/scale.py            # full: 10,000 executions in the load run
    python benchmarks/scale.py --quick    # smoke run (~1 minute)

Needs the ray and redis extras and Debian's redis-server (started here on a free loopback port, as the tests do).
Everything runs on this machine: a local Ray instance with 2 CPUs (one per actor), the driver in this process.
Prints the tables, writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, Clock, choose, environment, finish, log, percentile, table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, available  # noqa: E402

from ptc import Limits, ProgrammaticToolExecutor, Quota, RedisState, ToolCatalog  # noqa: E402
from ptc.ray import RayExecutor  # noqa: E402

LIMITS = Limits(timeout=60)
ONE_CALL = "from tools.bench import echo\nawait echo(x=1)"
WORKLOADS = {"trivial": ("x = 1", None), "one_call": (ONE_CALL, 1)}
IN_FLIGHT = 8  # executions kept in flight by the throughput runs (a closed loop)
KEYED_CALLS = 10  # tool calls with an idempotency key in one program (the Redis cost per call)


def catalog(log_path: str) -> ToolCatalog:
    """`echo` (async, returns x) and `once` (counts each run in `log_path`, O_APPEND: duplicates show)."""
    tools = ToolCatalog(source="benchmarks-scale")

    @tools.tool(domain="bench")
    async def echo(x: int) -> int:
        """Return x."""
        return x

    @tools.tool(domain="bench")
    def once(x: int) -> int:
        """Return x; note the run."""
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{x}\n".encode())
        finally:
            os.close(fd)
        return x

    return tools


def ms(samples: list[float]) -> dict[str, float]:
    values = [s * 1000 for s in samples]
    return {"p50_ms": statistics.median(values), "p99_ms": percentile(values, 99), "n": len(values)}


# -- throughput and latency ----------------------------------------------------------------------
async def closed_loop(executor: RayExecutor, code: str, value: Any, seconds: float) -> dict[str, Any]:
    """IN_FLIGHT executions at a time for `seconds`: executions/s and each one's latency."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def one_lane() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            result = await executor.execute(code)
            latencies.append(time.perf_counter() - began)
            if result.error is not None or result.result != value:
                raise RuntimeError(f"{code!r}: {result.error or result.result}")

    with Clock() as clock:
        await asyncio.gather(*(one_lane() for _ in range(IN_FLIGHT)))
    return {"executions_per_s": len(latencies) / clock.wall, **ms(latencies)}


async def serial(executor: RayExecutor, code: str, runs: int) -> dict[str, float]:
    latencies = []
    for _ in range(runs):
        began = time.perf_counter()
        await executor.execute(code)
        latencies.append(time.perf_counter() - began)
    return ms(latencies)


async def throughput(settings: Any, redis_url: str, log_path: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for workers in (1, 2):
        for state in (None, redis_url):
            label = f"{workers} worker{'s' if workers > 1 else ''}, {'Redis' if state else 'in-process'} state"
            log(f"throughput: {label}")
            executor = RayExecutor(catalog(log_path), workers=workers, state=state, limits=LIMITS)
            try:
                await executor.warm_up()
                for code, _value in WORKLOADS.values():  # warm: stubs compiled, spares made, connections open
                    for _ in range(20):
                        await executor.execute(code)
                row: dict[str, Any] = {}
                for key, (code, value) in WORKLOADS.items():
                    row[key] = await closed_loop(executor, code, value, settings.seconds)
                    row[key]["serial"] = await serial(executor, code, settings.serial)
                figures[label] = row
            finally:
                await executor.aclose()
    return figures


# -- what Redis adds, in one process (no Ray: the difference is Redis's alone) ---------------------------
def keyed_program(run: int) -> str:
    calls = " + ".join(f"(await once(x={i}, idempotency_key='c{run}-{i}'))" for i in range(KEYED_CALLS))
    return f"from tools.bench import once\n{calls}"


async def redis_costs(settings: Any, redis_url: str, log_path: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, state in (("in-process", None), ("redis", redis_url)):
        log(f"redis cost: {name} state")
        executor = ProgrammaticToolExecutor(
            catalog(log_path), limits=LIMITS, state=state, tenant_id=f"scale-{name}", quota=Quota(max_concurrent=8)
        )
        try:
            for run in range(20):
                await executor.execute(keyed_program(-run - 1))
                await executor.execute("x = 1")
            keyed, trivial = [], []
            for run in range(settings.cost_runs):
                began = time.perf_counter()
                result = await executor.execute(keyed_program(run))
                keyed.append(time.perf_counter() - began)
                if result.error is not None or any(c.cache_hit for c in result.tool_calls):
                    raise RuntimeError(f"keyed program: {result.error}")
                began = time.perf_counter()
                await executor.execute("x = 1")
                trivial.append(time.perf_counter() - began)
            figures[name] = {"keyed_program": ms(keyed), "trivial_with_quota": ms(trivial)}
        finally:
            await executor.aclose()
    local, shared = figures["in-process"], figures["redis"]
    figures["per_keyed_call_ms"] = (shared["keyed_program"]["p50_ms"] - local["keyed_program"]["p50_ms"]) / KEYED_CALLS
    figures["per_execution_with_quota_ms"] = (
        shared["trivial_with_quota"]["p50_ms"] - local["trivial_with_quota"]["p50_ms"]
    )
    return figures


# -- the load run --------------------------------------------------------------------------------------
def mixed(i: int) -> tuple[str, Any, str | None]:
    """Execution i of the load run: (program, the value it must return, the error kind it must end with)."""
    kind = i % 5
    if kind == 0:
        return f"x = {i}\nx * 2", 2 * i, None
    if kind == 1:
        return f"from tools.bench import echo\nawait echo(x={i})", i, None
    if kind == 2:
        return f"from tools.bench import once\n(await once(x={i}, idempotency_key='load-{i}')) + 1", i + 1, None
    if kind == 3:
        return f"print({i})\n{i}", i, None
    return f"1 / 0 if {i} >= 0 else 0", None, "runtime_error"


async def load_run(settings: Any, redis_url: str, log_path: str) -> dict[str, Any]:
    """N mixed executions, IN_FLIGHT * 2 at a time, over 2 workers sharing Redis state; worker 0 killed when
    half have returned. Executions its death ends ("the worker was lost") are sent again once, as a caller
    would; with the shared state their idempotent calls are not run again."""
    import ray

    total = settings.load
    Path(log_path).write_text("")
    state = functools.partial(RedisState, redis_url, lease=2.0)  # a dead claimant's keys come back in 2 s
    executor = RayExecutor(catalog(log_path), workers=2, state=state, limits=LIMITS)
    results: dict[int, Any] = {}
    returned: Counter[int] = Counter()
    lost_to_kill: list[int] = []
    gate = asyncio.Semaphore(IN_FLIGHT * 2)
    killed = asyncio.Event()
    done = 0

    async def one(i: int) -> None:
        nonlocal done
        async with gate:
            result = await executor.execute(mixed(i)[0])
        returned[i] += 1
        if result.error is not None and result.error.message == "the worker was lost":
            lost_to_kill.append(i)
            result = await executor.execute(mixed(i)[0])  # the caller's retry
        results[i] = result
        done += 1
        if done == total // 2 and not killed.is_set():
            killed.set()
            ray.kill(executor.actors[0])
            log(f"load run: worker 0 killed after {done} executions")

    try:
        await executor.warm_up()
        log(f"load run: {total} mixed executions over 2 workers")
        with Clock() as clock:
            await asyncio.gather(*(one(i) for i in range(total)))
        replaced = executor.replaced
    finally:
        await executor.aclose()
    mismatched = 0
    for i in range(total):
        result = results.get(i)
        if result is None:
            continue
        _, value, error = mixed(i)
        kind = result.error.kind if result.error is not None else None
        if kind != error or (error is None and result.result != value) or (i % 5 == 3 and result.output != f"{i}\n"):
            mismatched += 1
    runs = Counter(Path(log_path).read_text().split())
    keyed = [i for i in range(total) if i % 5 == 2]
    return {
        "executions": total,
        "seconds": clock.wall,
        "executions_per_s": total / clock.wall,
        "lost": total - len(results),
        "duplicated_results": sum(1 for n in returned.values() if n > 1),
        "duplicated_runs": sum(1 for i in keyed if runs[str(i)] > 1),
        "idempotent_never_ran": sum(1 for i in keyed if runs[str(i)] == 0),
        "mismatched": mismatched,
        "ended_by_the_kill": len(lost_to_kill),
        "retried_keyed": sum(1 for i in lost_to_kill if i % 5 == 2),
        "actors_replaced": replaced,
        "execution_ids_unique": len({r.execution_id for r in results.values()}) == len(results),
    }


# -- report ------------------------------------------------------------------------------------------
def tables(report: dict[str, Any]) -> str:
    rows = []
    for label, row in report["throughput"].items():
        for key, figures in row.items():
            rows.append(
                (
                    label,
                    key,
                    f"{figures['executions_per_s']:.0f}",
                    f"{figures['p50_ms']:.1f} / {figures['p99_ms']:.1f}",
                    f"{figures['serial']['p50_ms']:.1f} / {figures['serial']['p99_ms']:.1f}",
                )
            )
    out = [
        table(
            (
                "Ray workers, state",
                "program",
                f"executions/s ({IN_FLIGHT} in flight)",
                "p50 / p99 ms",
                "serial p50 / p99 ms",
            ),
            rows,
        )
    ]
    costs = report["redis_costs"]
    out.append(
        table(
            ("what Redis adds (one process, p50 difference)", "ms"),
            [
                ("per tool call with an idempotency key", f"{costs['per_keyed_call_ms']:.2f}"),
                ("per execution with a tenant quota (`x = 1`)", f"{costs['per_execution_with_quota_ms']:.2f}"),
            ],
        )
    )
    load = report["load"]
    out.append(
        table(
            ("load run", "value"),
            [
                ("executions (mixed, 2 workers, Redis state)", f"{load['executions']:,}"),
                ("executions/s", f"{load['executions_per_s']:.0f}"),
                ("lost (no result)", str(load["lost"])),
                (
                    "duplicated (a result twice, or an idempotent key run twice)",
                    str(load["duplicated_results"] + load["duplicated_runs"]),
                ),
                ("mismatched (another value, output or error than expected)", str(load["mismatched"])),
                ("ended by the kill (internal_error, sent again once)", str(load["ended_by_the_kill"])),
                ("actors replaced", str(load["actors_replaced"])),
            ],
        )
    )
    return "\n\n".join(out)


async def measure(settings: Any, redis_url: str, log_path: str) -> dict[str, Any]:
    return {
        "throughput": await throughput(settings, redis_url, log_path),
        "redis_costs": await redis_costs(settings, redis_url, log_path),
        "load": await load_run(settings, redis_url, log_path),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and a 500-execution load run")
    parser.add_argument("--load", type=int, default=None, help="executions in the load run (default 10,000)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "scale.json")
    args = parser.parse_args()
    if not available():
        print("needs Debian's redis-server: apt-get install -y redis-server", file=sys.stderr)
        return 2
    import ray

    mode = "quick" if args.quick else "full"
    settings = choose(args.quick, seconds=(5.0, 1.5), serial=(200, 40), cost_runs=(200, 40), load=(10_000, 500))
    if args.load is not None:
        settings["load"] = args.load
    began = Clock()
    report: dict[str, Any] = {"environment": environment(mode, ray=ray.__version__), "settings": dict(settings)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            report.update(asyncio.run(measure(settings, server.url, str(Path(tmp) / "runs"))))
        finally:
            server.stop()
            ray.shutdown()
    print(tables(report) + finish(report, args.output, began, f"scale, {mode} run"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
