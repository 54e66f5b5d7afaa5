"""CPU section: what running inside the sandbox costs Python code itself.

Import cost: for each module, a fresh execution times `importlib.import_module`
inside the guest with `time.perf_counter()` (so the execution's own start is
not in the figure), minus the cost of an empty timed interval measured the same
way in the same execution; the median over several executions (each a fresh
instance of the snapshot). A module already in `sys.modules` at the start
was pre-imported into the snapshot; one that raises is reported as not
importable, with its error.

CPU: the loop and fib workloads of peers.py, timed inside the guest around
the work only, under default limits (fuel metered) and `Limits(fuel=None)`,
against the same program text `exec`-ed in this interpreter (in-process,
compiled before the clock starts, timed around the same lines).
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from _common import FIB_BODY, FIB_N, FIB_VALUE, LOOP_BODY, LOOP_N, LOOP_VALUE, Row, check, info, log

from ptc import Limits, ProgrammaticToolExecutor

MODULES = (
    "json",
    "re",
    "datetime",
    "collections",
    "dataclasses",
    "typing",
    "decimal",
    "statistics",
    "asyncio",
    "csv",
    "hashlib",
    "urllib.parse",
    "email",
    "xml.etree.ElementTree",
    "html.parser",
    "fractions",
    "textwrap",
    "string",
    "itertools",
    "uuid",
    "sqlite3",
    "ssl",
)
IMPORT_PROGRAM = """import sys, time, importlib
name = %r
preloaded = name in sys.modules
t0 = time.perf_counter()
t1 = time.perf_counter()
try:
    importlib.import_module(name)
    error = None
except Exception as exc:
    error = '%%s: %%s' %% (type(exc).__name__, exc)
t2 = time.perf_counter()
[preloaded, (t2 - t1) - (t1 - t0), error]
"""
CPU_NATIVE_RATIO = 2.5  # target: at most this many times native CPython's time


def timed_program(body: str) -> str:
    """The same text runs in the guest and natively: `_work` is the body's own time."""
    start = "import time\n_started = time.perf_counter()\n"
    return f"{start}{body}_work = time.perf_counter() - _started\n[total, _work]\n"


@dataclass(frozen=True)
class CpuSettings:
    import_runs: int  # fresh executions per module
    cpu_runs: int  # per workload and mode


FULL = CpuSettings(import_runs=15, cpu_runs=5)
QUICK = CpuSettings(import_runs=3, cpu_runs=1)


# -- imports -----------------------------------------------------------------------


def _import_once(executor: ProgrammaticToolExecutor, module: str) -> tuple[bool, float | None, str | None]:
    result = executor.execute_sync(IMPORT_PROGRAM % module)
    if result.error is not None:  # the import took the execution down (a trap, a limit)
        return False, None, f"{result.error.kind}: {result.error.message}"
    preloaded, seconds, error = result.result
    return preloaded, (None if error else seconds), error


def import_costs(executor: ProgrammaticToolExecutor, settings: CpuSettings) -> dict[str, Any]:
    """Round-robin over the modules, so drift on the machine spreads over all of them."""
    samples: dict[str, list[float]] = {module: [] for module in MODULES}
    preloaded: dict[str, bool] = {}
    errors: dict[str, str] = {}
    for run in range(settings.import_runs):
        log(f"imports: run {run + 1}/{settings.import_runs} over {len(MODULES)} modules")
        for module in MODULES:
            was_loaded, seconds, error = _import_once(executor, module)
            preloaded[module] = was_loaded
            if error is not None:
                errors[module] = error
            elif seconds is not None:
                samples[module].append(seconds)
    per_module = {
        module: {
            "preloaded": preloaded[module],
            "importable": module not in errors,
            "error": errors.get(module),
            "median_ms": statistics.median(samples[module]) * 1000 if samples[module] else None,
            "samples_ms": [s * 1000 for s in samples[module]],
        }
        for module in MODULES
    }
    return {"method": "in-guest perf_counter around importlib.import_module", "modules": per_module}


# -- CPU -----------------------------------------------------------------------------------


def _native(code: str, value: int) -> float:
    compiled = compile(code, "<bench>", "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compiled, namespace)
    if namespace["total"] != value:
        raise RuntimeError(f"native: total {namespace['total']}, expected {value}")
    return namespace["_work"]


def _sandboxed(executor: ProgrammaticToolExecutor, code: str, value: int) -> tuple[float, float, int | None]:
    """(work seconds timed in the guest, wall of the whole execution, fuel used)."""
    started = time.perf_counter()
    result = executor.execute_sync(code)
    wall = time.perf_counter() - started
    check(result, "CPU workload")
    total, work = result.result
    if total != value:
        raise RuntimeError(f"sandbox: total {total}, expected {value}")
    return work, wall, result.fuel_used


def cpu_ratios(settings: CpuSettings) -> dict[str, Any]:
    executors = {
        "fuel": ProgrammaticToolExecutor(limits=Limits(timeout=60)),
        "no_fuel": ProgrammaticToolExecutor(limits=Limits(timeout=60, fuel=None)),
    }
    workloads = {"loop": (LOOP_BODY, LOOP_VALUE), "fib": (FIB_BODY, FIB_VALUE)}
    figures: dict[str, Any] = {"native_python": platform.python_version(), "native_method": "in-process exec"}
    for name, (body, value) in workloads.items():
        code = timed_program(body)
        work: dict[str, list[float]] = {"native": [], "fuel": [], "no_fuel": []}
        walls: dict[str, list[float]] = {"fuel": [], "no_fuel": []}
        fuel: list[int] = []
        for run in range(settings.cpu_runs):
            log(f"cpu: {name}, run {run + 1}/{settings.cpu_runs}: native, fuel on, fuel off")
            work["native"].append(_native(code, value))
            for mode, executor in executors.items():
                seconds, wall, used = _sandboxed(executor, code, value)
                work[mode].append(seconds)
                walls[mode].append(wall)
                if mode == "fuel" and used is not None:
                    fuel.append(used)
        native = statistics.median(work["native"])
        figures[name] = {
            "native_ms": native * 1000,
            "fuel_used": statistics.median(fuel) if fuel else None,
            **{
                mode: {
                    "work_ms": statistics.median(work[mode]) * 1000,
                    "execution_wall_ms": statistics.median(walls[mode]) * 1000,
                    "ratio_vs_native": statistics.median(work[mode]) / native,
                }
                for mode in executors
            },
            "samples_ms": {mode: [s * 1000 for s in samples] for mode, samples in work.items()},
        }
    return figures


def measure(quick: bool) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    executor = ProgrammaticToolExecutor(limits=Limits(timeout=60))
    check(executor.execute_sync("import sys\nsys.version"), "warm-up")
    guest = executor.execute_sync("import sys\nsys.version.split()[0]").result
    return {
        "settings": asdict(settings),
        "guest_python": guest,
        "imports": import_costs(executor, settings),
        "cpu": cpu_ratios(settings),
    }


# -- the table ------------------------------------------------------------------------------


def _import_row(imports: dict[str, Any], runs: int) -> Row:
    modules = imports["modules"]
    preloaded = [m for m, f in modules.items() if f["preloaded"] and f["importable"]]
    loaded = {m: f["median_ms"] for m, f in modules.items() if not f["preloaded"] and f["importable"]}
    broken = [m for m, f in modules.items() if not f["importable"]]
    slowest = sorted(loaded, key=lambda m: loaded[m], reverse=True)[:3]
    pre_max = max((modules[m]["median_ms"] for m in preloaded), default=0.0)
    parts = [f"{len(preloaded)} pre-imported: ≤ {pre_max:.2f} ms"]
    if loaded:
        parts.append(
            f"{len(loaded)} not: median {statistics.median(loaded.values()):.1f} ms, max {max(loaded.values()):.1f} ms"
            " (slowest: " + ", ".join(f"`{m}` {loaded[m]:.1f}" for m in slowest) + ")"
        )
    parts.append("not importable: " + (", ".join(f"`{m}`" for m in broken) or "none"))
    return info(
        f"`import` inside the sandbox, {len(modules)} modules (in-guest time, median of {runs}; each in the JSON)",
        "; ".join(parts),
    )


def rows(figures: dict[str, Any]) -> list[Row]:
    out = [_import_row(figures["imports"], figures["settings"]["import_runs"])]
    cpu = figures["cpu"]
    labels = {"loop": f"loop summing {LOOP_N:,} ints", "fib": f"recursive fib({FIB_N})"}
    modes = {"fuel": "default limits (fuel on)", "no_fuel": "`Limits(fuel=None)`"}
    runs = figures["settings"]["cpu_runs"]
    for name, label in labels.items():
        for mode, mode_label in modes.items():
            ratio = cpu[name][mode]["ratio_vs_native"]
            out.append(
                Row(
                    f"CPU: {label}, {mode_label}, vs native CPython {cpu['native_python']} "
                    f"(guest {figures['guest_python']}; work only, median of {runs})",
                    f"{ratio:.2f}× ({cpu[name][mode]['work_ms']:.0f} ms vs {cpu[name]['native_ms']:.0f} ms)",
                    f"≤ {CPU_NATIVE_RATIO:g}× native",
                    ratio <= CPU_NATIVE_RATIO,
                )
            )
    return out
