"""CPU section: what running inside the sandbox costs Python code itself: each module's `import`, timed inside
the guest, and the loop and fib workloads (the same as peers.py's) timed inside the guest around the work only,
fuel on and off, against the same text `exec`-ed in this interpreter. README.md says how, figure by figure.
"""

from __future__ import annotations

import platform
import statistics
from typing import Any

from harness import CPU_WORKLOADS, FIB_N, LOOP_N, Clock, Row, check, choose, log, target_row

from ptc import Limits, ProgrammaticToolExecutor

MODULES = (
    "json re datetime collections dataclasses typing decimal statistics asyncio csv hashlib urllib.parse email "
    "xml.etree.ElementTree html.parser fractions textwrap string itertools uuid sqlite3 ssl"
).split()
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
MODES = {"fuel": Limits(timeout=60), "no_fuel": Limits(timeout=60, fuel=None)}


def timed_program(body: str) -> str:
    """The same text runs in the guest and natively: `_work` is the body's own time."""
    start = "import time\n_started = time.perf_counter()\n"
    return f"{start}{body}_work = time.perf_counter() - _started\n[total, _work]\n"


def import_costs(executor: ProgrammaticToolExecutor, runs: int) -> dict[str, Any]:
    """Round-robin over the modules, so drift on the machine spreads over all of them."""
    samples: dict[str, list[float]] = {module: [] for module in MODULES}
    preloaded: dict[str, bool] = {}
    errors: dict[str, str] = {}
    for run in range(runs):
        log(f"imports: run {run + 1}/{runs} over {len(MODULES)} modules")
        for module in MODULES:
            result = executor.execute_sync(IMPORT_PROGRAM % module)
            if result.error is not None:  # the import took the execution down (a trap, a limit)
                preloaded[module], errors[module] = False, f"{result.error.kind}: {result.error.message}"
                continue
            preloaded[module], seconds, error = result.result
            if error:
                errors[module] = error
            else:
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


def native(code: str, value: int) -> float:
    compiled = compile(code, "<bench>", "exec")
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compiled, namespace)
    if namespace["total"] != value:
        raise RuntimeError(f"native: total {namespace['total']}, expected {value}")
    return float(namespace["_work"])


def cpu_ratios(runs: int) -> dict[str, Any]:
    executors = {mode: ProgrammaticToolExecutor(limits=limits) for mode, limits in MODES.items()}
    figures: dict[str, Any] = {"native_python": platform.python_version(), "native_method": "in-process exec"}
    for name, (body, value) in CPU_WORKLOADS.items():
        code = timed_program(body)
        work: dict[str, list[float]] = {"native": [], **{mode: [] for mode in MODES}}
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        fuel: list[int] = []
        for run in range(runs):
            log(f"cpu: {name}, run {run + 1}/{runs}: native, fuel on, fuel off")
            work["native"].append(native(code, value))
            for mode, executor in executors.items():
                with Clock() as clock:
                    result = check(executor.execute_sync(code), "CPU workload")
                walls[mode].append(clock.wall)
                total, seconds = result.result
                if total != value:
                    raise RuntimeError(f"sandbox: total {total}, expected {value}")
                work[mode].append(seconds)
                if mode == "fuel" and result.fuel_used is not None:
                    fuel.append(result.fuel_used)
        base = statistics.median(work["native"])
        figures[name] = {
            "native_ms": base * 1000,
            "fuel_used": statistics.median(fuel) if fuel else None,
            **{
                mode: {
                    "work_ms": statistics.median(work[mode]) * 1000,
                    "execution_wall_ms": statistics.median(walls[mode]) * 1000,
                    "ratio_vs_native": statistics.median(work[mode]) / base,
                }
                for mode in MODES
            },
            "samples_ms": {mode: [s * 1000 for s in samples] for mode, samples in work.items()},
        }
    return figures


def measure(quick: bool) -> dict[str, Any]:
    settings = choose(quick, import_runs=(15, 3), cpu_runs=(5, 1))  # fresh executions per module; per workload
    executor = ProgrammaticToolExecutor(limits=Limits(timeout=60))
    guest = check(executor.execute_sync("import sys\nsys.version.split()[0]"), "warm-up").result
    return {
        "settings": settings,
        "guest_python": guest,
        "imports": import_costs(executor, settings.import_runs),
        "cpu": cpu_ratios(settings.cpu_runs),
    }


def _import_row(modules: dict[str, Any], runs: int) -> Row:
    preloaded = [m for m, f in modules.items() if f["preloaded"] and f["importable"]]
    loaded = {m: f["median_ms"] for m, f in modules.items() if not f["preloaded"] and f["importable"]}
    slowest = sorted(loaded, key=lambda m: loaded[m], reverse=True)[:3]
    parts = [
        f"{len(preloaded)} pre-imported: ≤ {max((modules[m]['median_ms'] for m in preloaded), default=0.0):.2f} ms"
    ]
    if loaded:
        parts.append(
            f"{len(loaded)} not: median {statistics.median(loaded.values()):.1f} ms, max {max(loaded.values()):.1f} ms"
            " (slowest: " + ", ".join(f"`{m}` {loaded[m]:.1f}" for m in slowest) + ")"
        )
    parts.append(
        "not importable: " + (", ".join(f"`{m}`" for m, f in modules.items() if not f["importable"]) or "none")
    )
    return Row(
        f"`import` inside the sandbox, {len(modules)} modules (in-guest time, median of {runs}; each in the JSON)",
        "; ".join(parts),
    )


def rows(figures: dict[str, Any]) -> list[Row]:
    out = [_import_row(figures["imports"]["modules"], figures["settings"]["import_runs"])]
    cpu, runs = figures["cpu"], figures["settings"]["cpu_runs"]
    labels = {"loop": f"loop summing {LOOP_N:,} ints", "fib": f"recursive fib({FIB_N})"}
    for name, label in labels.items():
        for mode, mode_label in {"fuel": "default limits (fuel on)", "no_fuel": "`Limits(fuel=None)`"}.items():
            ratio = cpu[name][mode]["ratio_vs_native"]
            metric = (
                f"CPU: {label}, {mode_label}, vs native CPython {cpu['native_python']} "
                f"(guest {figures['guest_python']}; work only, median of {runs})"
            )
            value = f"{ratio:.2f}× ({cpu[name][mode]['work_ms']:.0f} ms vs {cpu[name]['native_ms']:.0f} ms)"
            out.append(target_row(metric, value, ratio, CPU_NATIVE_RATIO, "× native"))
    return out
