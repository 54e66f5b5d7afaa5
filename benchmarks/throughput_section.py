"""Throughput section: executions per second of `x = 1` and of a 3-call program, serially (one event loop), by
2 threads (a loop each, one executor) and by 2 processes ('spawn': each builds and warms its own executors, then
a barrier releases them into the same window), round-robin within each round; the children idle on the barrier
while this process measures its own setups. README.md says how, figure by figure.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from harness import Clock, Row, Settings, check, choose, log

from ptc import Limits, ProgrammaticToolExecutor

LIMITS = Limits(timeout=60)
CHILD_TIMEOUT_S = 180.0  # a child's start-up (import, load the runtime, warm up) or one window, at most
THREE_CALLS = "from tools.bench import noop\n(await noop(x=1)) + (await noop(x=2)) + (await noop(x=3))\n"
# key: (label, program, its value, target executions/s on 2 cores)
WORKLOADS: dict[str, tuple[str, str, Any, float]] = {
    "trivial": ("`x = 1`", "x = 1", None, 1_000.0),
    "three_calls": ("3 sequential awaited `noop` calls", THREE_CALLS, 6, 400.0),
}
SIDE_BY_SIDE = ("serial", "two_threads", "workers_2")  # in this process; "two_processes" is measured by Processes
WORKER_BATCH = 8  # `workers=2` is driven from one loop, this many executions at once (each worker holds several)
EXTRAS = ("serial_execute_sync", "two_threads_execute_sync", "gather_batches_of_2", "gather_batches_of_4")


def make_executor(key: str, workers: int = 0) -> ProgrammaticToolExecutor:
    from tools_section import bench_catalog

    catalog = bench_catalog() if key == "three_calls" else None
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS, workers=workers)
    if workers:
        asyncio.run(executor.warm_up())  # the worker processes have their runtimes before anything is measured
    return executor


def _checked(result: Any, key: str) -> None:
    check(result, key, WORKLOADS[key][2])


def until(executor: ProgrammaticToolExecutor, key: str, deadline: float, batch: int = 1, sync: bool = False) -> int:
    """Executions of the workload until the deadline: `execute_sync` in turn, or in one loop `batch` at a time."""
    code = WORKLOADS[key][1]
    count = 0
    if sync:
        while time.perf_counter() < deadline:
            _checked(executor.execute_sync(code), key)
            count += 1
        return count

    async def body() -> int:
        count = 0
        while time.perf_counter() < deadline:
            if batch == 1:
                _checked(await executor.execute(code), key)
            else:
                for result in await asyncio.gather(*(executor.execute(code) for _ in range(batch))):
                    _checked(result, key)
            count += batch
        return count

    return asyncio.run(body())


def on_threads(workers: Sequence[Callable[[float], int]], seconds: float) -> dict[str, float]:
    """Run each worker on its own thread until a shared deadline; executions per second overall."""
    counts = [0] * len(workers)
    errors: list[BaseException] = []

    def target(index: int, deadline: float) -> None:
        try:
            counts[index] = workers[index](deadline)
        except BaseException as exc:  # reported on the main thread
            errors.append(exc)

    with Clock() as clock:
        deadline = time.perf_counter() + seconds
        threads = [threading.Thread(target=target, args=(i, deadline)) for i in range(len(workers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return {"executions": sum(counts), "seconds": clock.wall, "per_second": sum(counts) / clock.wall}


def _child_main(settings: Settings, barrier: Any, results: Any) -> None:
    """A measuring process: warm up, say ready, then one window per barrier release, in the parent's order."""
    try:
        executors = {key: make_executor(key) for key in WORKLOADS}
        for key, executor in executors.items():
            for _ in range(settings.warmup):
                _checked(executor.execute_sync(WORKLOADS[key][1]), key)
        results.put(("ready", os.getpid(), 0.0))
        for _ in range(settings.rounds):
            for key in WORKLOADS:
                barrier.wait(timeout=CHILD_TIMEOUT_S)
                with Clock() as clock:
                    count = until(executors[key], key, time.perf_counter() + settings.seconds)
                results.put((key, count, clock.wall))
    except BaseException:
        results.put(("error", os.getpid(), traceback.format_exc()))


class Processes:
    """N measuring processes that run each window together; this process only waits while they do."""

    def __init__(self, settings: Settings) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier = context.Barrier(settings.processes + 1)
        self.results = context.Queue()
        args = (settings, self.barrier, self.results)
        self.children = [context.Process(target=_child_main, args=args, daemon=True) for _ in range(settings.processes)]

    def _take(self) -> tuple[str, Any, Any]:
        message: tuple[str, Any, Any] = self.results.get(timeout=CHILD_TIMEOUT_S)
        if message[0] == "error":
            raise RuntimeError(f"measuring process {message[1]} failed:\n{message[2]}")
        return message

    def start(self) -> None:
        """Start the children and wait until every one is warm, so their start-up disturbs no window."""
        for child in self.children:
            child.start()
        for _ in self.children:
            self._take()

    def window(self, key: str) -> dict[str, Any]:
        self.barrier.wait(timeout=CHILD_TIMEOUT_S)
        measured = [self._take() for _ in self.children]
        if any(message[0] != key for message in measured):
            raise RuntimeError(f"measuring processes out of step: {measured}")
        executions = sum(message[1] for message in measured)
        seconds = max(message[2] for message in measured)  # the common window: until the last one stopped
        per_process = [message[1] / message[2] for message in measured]
        return {
            "executions": executions,
            "seconds": seconds,
            "per_second": executions / seconds,
            "per_process": per_process,
        }

    def close(self) -> None:
        """Release any child still waiting (after an error here), then reap them all."""
        self.barrier.abort()
        for child in self.children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
                child.join()


def _thread_plans(
    executors: dict[str, ProgrammaticToolExecutor], pooled: dict[str, ProgrammaticToolExecutor]
) -> dict[str, Callable[[float], dict[str, float]]]:
    """(workload, setup) -> a measurement of `seconds`, for the setups that run in this process."""

    def on(key: str, threads: int, pool: bool = False, **how: Any) -> Callable[[float], dict[str, float]]:
        executor = (pooled if pool else executors)[key]
        worker = lambda deadline: until(executor, key, deadline, **how)  # noqa: E731
        return lambda seconds: on_threads([worker] * threads, seconds)

    plans = {
        f"{key}/{setup}": on(key, threads)
        for key in WORKLOADS
        for setup, threads in (("serial", 1), ("two_threads", 2))
    }
    for key in WORKLOADS:
        plans[f"{key}/serial"] = _with_cpu(executors[key], plans[f"{key}/serial"])
    for key in WORKLOADS:  # ProgrammaticToolExecutor(workers=2): the programs run in 2 worker processes
        plans[f"{key}/workers_2"] = _with_cpu(pooled[key], on(key, 1, pool=True, batch=WORKER_BATCH))
    # For information: other ways to drive `x = 1` from one process.
    plans["trivial/serial_execute_sync"] = on("trivial", 1, sync=True)
    plans["trivial/two_threads_execute_sync"] = on("trivial", 2, sync=True)
    plans["trivial/gather_batches_of_2"] = on("trivial", 1, batch=2)
    plans["trivial/gather_batches_of_4"] = on("trivial", 1, batch=4)
    return plans


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(
    executor: ProgrammaticToolExecutor, plan: Callable[[float], dict[str, Any]]
) -> Callable[[float], dict[str, Any]]:
    """The plan, also saying the CPU it took per execution in this process and in the executor's workers:
    a figure a loaded machine does not bend the way it bends executions/s."""

    def measured(seconds: float) -> dict[str, Any]:
        pool = executor._pool
        pids = [os.getpid(), *(pool.pids if pool is not None else [])]
        before = [_cpu_seconds(pid) for pid in pids]
        figures = plan(seconds)
        spent = [_cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
        figures["cpu_ms_parent"] = 1000 * spent[0]
        figures["cpu_ms_workers"] = 1000 * sum(spent[1:])
        return figures

    return measured


def _combine(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    executions = sum(run["executions"] for run in measured)
    seconds = sum(run["seconds"] for run in measured)
    combined = {"executions": executions, "seconds": seconds, "per_second": executions / seconds}
    combined["per_round"] = [run["per_second"] for run in measured]
    if "cpu_ms_parent" in measured[0]:
        for part in ("parent", "workers"):
            combined[f"cpu_ms_per_execution_{part}"] = sum(run[f"cpu_ms_{part}"] for run in measured) / executions
    if "per_process" in measured[0]:
        combined["per_process"] = [run["per_process"] for run in measured]
    return combined


def measure(quick: bool) -> dict[str, Any]:
    # seconds per setup and round; executions of each workload before measuring, per process
    settings = choose(quick, seconds=(1.5, 0.75), rounds=(3, 1), warmup=(30, 15), processes=(2, 2))
    executors = {key: make_executor(key) for key in WORKLOADS}
    pooled = {key: make_executor(key, workers=2) for key in WORKLOADS}
    for key in WORKLOADS:
        for executor in (executors[key], pooled[key]):
            for _ in range(settings.warmup):
                _checked(executor.execute_sync(WORKLOADS[key][1]), key)
    plans = _thread_plans(executors, pooled)
    log(f"throughput: starting {settings.processes} measuring processes ('spawn')")
    processes = Processes(settings)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        processes.start()
        for round_ in range(settings.rounds):
            log(f"throughput round {round_ + 1}/{settings.rounds}: {len(plans) + len(WORKLOADS)} setups")
            for key in WORKLOADS:
                for setup in SIDE_BY_SIDE:
                    runs.setdefault(f"{key}/{setup}", []).append(plans[f"{key}/{setup}"](settings.seconds))
                runs.setdefault(f"{key}/two_processes", []).append(processes.window(key))
            for name, plan in plans.items():
                if name.split("/")[1] not in SIDE_BY_SIDE:
                    runs.setdefault(name, []).append(plan(settings.seconds))
    finally:
        processes.close()
        for executor in pooled.values():
            executor.close()
    return {"settings": settings, **{name: _combine(measured) for name, measured in runs.items()}}


def rows(figures: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for key, (label, _, _, target) in WORKLOADS.items():
        serial, threads, pooled, procs = (
            figures[f"{key}/{setup}"]["per_second"] for setup in (*SIDE_BY_SIDE, "two_processes")
        )
        out.append(
            Row(
                f"executions/s, {label}: serial (one loop) / 2 threads / `workers=2` / 2 separate processes",
                f"{serial:,.0f} / {threads:,.0f} / {pooled:,.0f} / {procs:,.0f}",
                f"≥ {target:,.0f}/s on 2 cores (`workers=2`)",
                pooled >= target,
            )
        )
    for key, (label, _, _, _) in WORKLOADS.items():
        pooled = figures[f"{key}/workers_2"]
        parent, workers = pooled["cpu_ms_per_execution_parent"], pooled["cpu_ms_per_execution_workers"]
        alone = figures[f"{key}/serial"]["cpu_ms_per_execution_parent"]
        out.append(
            Row(
                f"CPU ms per execution, {label}: in one process (serial) / `workers=2` parent + workers "
                "(in brackets: 2 cores over the `workers=2` sum, the rate two idle cores would allow)",
                f"{alone:.2f} / {parent:.2f} + {workers:.2f} ({2000 / (parent + workers):,.0f}/s)",
            )
        )
    out.append(
        Row(
            "executions/s, `x = 1`, other one-process setups: serial `execute_sync` / 2 threads × `execute_sync` / "
            "one loop, `gather` batches of 2 / of 4",
            " / ".join(f"{figures[f'trivial/{name}']['per_second']:,.0f}" for name in EXTRAS),
        )
    )
    return out
