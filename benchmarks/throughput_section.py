"""Throughput section: executions per second on this machine's cores, threads against processes.

Two workloads (`x = 1` and a program making 3 tool calls), each run serially
(one event loop), by 2 threads (each with its own event loop, one shared
executor) and by 2 processes (multiprocessing, 'spawn' context: each process
builds its own executors and warms them up; then, released together by a
barrier, every process runs for the same wall window and reports its count).
Setups go round-robin within each round, so slow drift on the machine does
not favour whichever runs first; the children wait on the barrier, idle,
while this process measures its own setups.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from _common import Row, check, info, log

from ptc import Limits, ProgrammaticToolExecutor

LIMITS = Limits(timeout=60)
CHILD_TIMEOUT_S = 180.0  # a child's start-up (import, load the runtime, warm up) or one window, at most


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    code: str
    expected: Any  # the program's value
    tools: bool  # needs the bench catalog
    target_per_s: float


WORKLOADS = (
    Workload("trivial", "`x = 1`", "x = 1", None, False, 1_000.0),
    Workload(
        "three_calls",
        "3 sequential awaited `noop` calls",
        "from tools.bench import noop\n(await noop(x=1)) + (await noop(x=2)) + (await noop(x=3))\n",
        6,
        True,
        300.0,
    ),
)
BY_KEY = {workload.key: workload for workload in WORKLOADS}
SIDE_BY_SIDE = ("serial", "two_threads")  # in this process; "two_processes" is measured by Processes
EXTRAS = ("serial_execute_sync", "two_threads_execute_sync", "gather_batches_of_2", "gather_batches_of_4")


@dataclass(frozen=True)
class RateSettings:
    seconds: float  # per setup and round
    rounds: int
    warmup: int  # executions of each workload before measuring, per process
    processes: int


FULL = RateSettings(seconds=1.5, rounds=3, warmup=30, processes=2)
QUICK = RateSettings(seconds=0.75, rounds=1, warmup=15, processes=2)


def make_executor(workload: Workload) -> ProgrammaticToolExecutor:
    if workload.tools:
        from tools_section import bench_catalog

        return ProgrammaticToolExecutor(bench_catalog(), limits=LIMITS)
    return ProgrammaticToolExecutor(limits=LIMITS)


def _checked(result: Any, workload: Workload) -> None:
    check(result, workload.key)
    if result.result != workload.expected:
        raise RuntimeError(f"{workload.key}: value {result.result!r}, expected {workload.expected!r}")


# -- one caller: executions until the deadline --------------------------------------


def serial_loop(executor: ProgrammaticToolExecutor, workload: Workload, deadline: float) -> int:
    async def body() -> int:
        count = 0
        while time.perf_counter() < deadline:
            _checked(await executor.execute(workload.code), workload)
            count += 1
        return count

    return asyncio.run(body())


def serial_sync(executor: ProgrammaticToolExecutor, workload: Workload, deadline: float) -> int:
    count = 0
    while time.perf_counter() < deadline:
        _checked(executor.execute_sync(workload.code), workload)
        count += 1
    return count


def batched_loop(executor: ProgrammaticToolExecutor, workload: Workload, deadline: float, batch: int) -> int:
    async def body() -> int:
        count = 0
        while time.perf_counter() < deadline:
            for result in await asyncio.gather(*(executor.execute(workload.code) for _ in range(batch))):
                _checked(result, workload)
            count += batch
        return count

    return asyncio.run(body())


# -- threads in this process ------------------------------------------------------------


def on_threads(workers: Sequence[Callable[[float], int]], seconds: float) -> dict[str, float]:
    """Run each worker on its own thread until a shared deadline; executions per second overall."""
    counts = [0] * len(workers)
    errors: list[BaseException] = []

    def target(index: int, deadline: float) -> None:
        try:
            counts[index] = workers[index](deadline)
        except BaseException as exc:  # reported on the main thread
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=target, args=(i, started + seconds)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return {"executions": sum(counts), "seconds": elapsed, "per_second": sum(counts) / elapsed}


# -- processes ------------------------------------------------------------------------------


def _child_main(keys: Sequence[str], settings: RateSettings, barrier: Any, results: Any) -> None:
    """A measuring process: warm up, say ready, then one window per barrier release, in the parent's order."""
    try:
        executors = {key: make_executor(BY_KEY[key]) for key in keys}
        for key, executor in executors.items():
            for _ in range(settings.warmup):
                _checked(executor.execute_sync(BY_KEY[key].code), BY_KEY[key])
        results.put(("ready", os.getpid(), 0.0))
        for _ in range(settings.rounds):
            for key in keys:
                barrier.wait(timeout=CHILD_TIMEOUT_S)
                started = time.perf_counter()
                count = serial_loop(executors[key], BY_KEY[key], started + settings.seconds)
                results.put((key, count, time.perf_counter() - started))
    except BaseException:
        results.put(("error", os.getpid(), traceback.format_exc()))


class Processes:
    """N measuring processes that run each window together; this process only waits while they do."""

    def __init__(self, keys: Sequence[str], settings: RateSettings) -> None:
        context = multiprocessing.get_context("spawn")
        self.count = settings.processes
        self.barrier = context.Barrier(self.count + 1)
        self.results = context.Queue()
        self.children = [
            context.Process(target=_child_main, args=(list(keys), settings, self.barrier, self.results), daemon=True)
            for _ in range(self.count)
        ]

    def _take(self) -> tuple[str, Any, Any]:
        message = self.results.get(timeout=CHILD_TIMEOUT_S)
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
        return {
            "executions": executions,
            "seconds": seconds,
            "per_second": executions / seconds,
            "per_process": [message[1] / message[2] for message in measured],
        }

    def close(self) -> None:
        """Release any child still waiting (after an error here), then reap them all."""
        self.barrier.abort()
        for child in self.children:
            child.join(timeout=10)
        for child in self.children:
            if child.is_alive():
                child.terminate()
                child.join()


# -- the section -----------------------------------------------------------------------------


def _thread_plans(executors: dict[str, ProgrammaticToolExecutor]) -> dict[str, Callable[[float], dict[str, float]]]:
    """(workload, setup) -> a measurement of `seconds`, for the setups that run in this process."""
    plans: dict[str, Callable[[float], dict[str, float]]] = {}

    def loop(key: str) -> Callable[[float], int]:
        return lambda deadline: serial_loop(executors[key], BY_KEY[key], deadline)

    def sync(key: str) -> Callable[[float], int]:
        return lambda deadline: serial_sync(executors[key], BY_KEY[key], deadline)

    def batched(key: str, batch: int) -> Callable[[float], int]:
        return lambda deadline: batched_loop(executors[key], BY_KEY[key], deadline, batch)

    for key in BY_KEY:
        plans[f"{key}/serial"] = lambda s, key=key: on_threads([loop(key)], s)
        plans[f"{key}/two_threads"] = lambda s, key=key: on_threads([loop(key), loop(key)], s)
    # For information: other ways to drive `x = 1` from one process.
    plans["trivial/serial_execute_sync"] = lambda s: on_threads([sync("trivial")], s)
    plans["trivial/two_threads_execute_sync"] = lambda s: on_threads([sync("trivial"), sync("trivial")], s)
    plans["trivial/gather_batches_of_2"] = lambda s: on_threads([batched("trivial", 2)], s)
    plans["trivial/gather_batches_of_4"] = lambda s: on_threads([batched("trivial", 4)], s)
    return plans


def _combine(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    executions = sum(run["executions"] for run in measured)
    seconds = sum(run["seconds"] for run in measured)
    return {
        "executions": executions,
        "seconds": seconds,
        "per_second": executions / seconds,
        "per_round": [run["per_second"] for run in measured],
        **({"per_process": [run["per_process"] for run in measured]} if "per_process" in measured[0] else {}),
    }


def measure(quick: bool) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    executors = {workload.key: make_executor(workload) for workload in WORKLOADS}
    for workload in WORKLOADS:
        for _ in range(settings.warmup):
            _checked(executors[workload.key].execute_sync(workload.code), workload)
    plans = _thread_plans(executors)
    log(f"throughput: starting {settings.processes} measuring processes ('spawn')")
    processes = Processes(list(BY_KEY), settings)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        processes.start()
        for round_ in range(settings.rounds):
            log(f"throughput round {round_ + 1}/{settings.rounds}: {len(plans) + len(BY_KEY)} setups")
            for key in BY_KEY:
                for setup in SIDE_BY_SIDE:
                    runs.setdefault(f"{key}/{setup}", []).append(plans[f"{key}/{setup}"](settings.seconds))
                runs.setdefault(f"{key}/two_processes", []).append(processes.window(key))
            for name, plan in plans.items():
                if name.split("/")[1] not in SIDE_BY_SIDE:
                    runs.setdefault(name, []).append(plan(settings.seconds))
    finally:
        processes.close()
    return {"settings": asdict(settings), **{name: _combine(measured) for name, measured in runs.items()}}


def _rate(figures: dict[str, Any]) -> str:
    return f"{figures['per_second']:,.0f}"


def rows(figures: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for workload in WORKLOADS:
        serial, threads, procs = (figures[f"{workload.key}/{setup}"] for setup in (*SIDE_BY_SIDE, "two_processes"))
        best = max(threads["per_second"], procs["per_second"])
        out.append(
            Row(
                f"executions/s, {workload.label}: serial (one loop) / 2 threads / 2 processes",
                f"{_rate(serial)} / {_rate(threads)} / {_rate(procs)}",
                f"≥ {workload.target_per_s:,.0f}/s on 2 cores (best of threads, processes)",
                best >= workload.target_per_s,
            )
        )
    out.append(
        info(
            "executions/s, `x = 1`, other one-process setups: serial `execute_sync` / 2 threads × `execute_sync` / "
            "one loop, `gather` batches of 2 / of 4",
            " / ".join(_rate(figures[f"trivial/{name}"]) for name in EXTRAS),
        )
    )
    return out
