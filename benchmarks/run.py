"""Speed and memory figures for ptc, measured through the public API.

    python benchmarks/run.py                  # full run (about 2.5 minutes)
    python benchmarks/run.py --quick          # smoke run (under ~40 s)
    python benchmarks/run.py --only tools     # one section: sandbox, tools, throughput, cpu, mcp or all (default)

Prints a markdown table (metric | value | target | status) and writes every
figure, plus the raw samples' summaries and the environment, to
benchmarks/results/latest.json. Each section lives in its own module
(<name>_section.py) with `measure(quick)` and `rows(figures)`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import Row, check, loadavg, log, machine

from ptc import Limits, ProgrammaticToolExecutor

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# In the order they run; what each measures is in its module's docstring and in README.md.
SECTIONS = {
    "sandbox": "cold start with and without spare instances, a gather of sleeps, RSS per instance and over time",
    "tools": "tool-call round trips by path, calls under gather, concurrent slow calls",
    "throughput": "executions/s: serial, 2 threads, 2 processes",
    "cpu": "import cost inside the sandbox; CPU-bound Python against native CPython",
    "mcp": "an MCP tool call direct and through the sandbox",
}


def run_section(name: str, quick: bool) -> dict[str, Any]:
    """The section module's figures; MCP's measure is a coroutine."""
    module = importlib.import_module(f"{name}_section")
    log(f"section {name}: {SECTIONS[name]}")
    started = time.perf_counter()
    figures = module.measure(quick)
    if asyncio.iscoroutine(figures):
        figures = asyncio.run(figures)
    figures["section_seconds"] = time.perf_counter() - started
    return figures


def rows(report: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name in SECTIONS:
        if name in report:
            out += importlib.import_module(f"{name}_section").rows(report[name])
    return out


def markdown(table: list[Row]) -> str:
    lines = ["| metric | value | target | status |", "|---|---|---|---|"]
    for row in table:
        status = "—" if row.met is None else ("met" if row.met else "**not met**")
        lines.append(f"| {row.metric} | {row.value} | {row.target} | {status} |")
    return "\n".join(lines)


def first_execution() -> float:
    """Load the runtime (engine, compiled guest) once, so no section's first figure pays for it."""
    log("loading the runtime (first execution)")
    started = time.perf_counter()
    check(ProgrammaticToolExecutor(limits=Limits(timeout=60)).execute_sync("x = 1"), "first execution")
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run in under ~40 s")
    parser.add_argument("--only", choices=(*SECTIONS, "all"), default="all", help="run one section (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"

    began = time.perf_counter()
    report: dict[str, Any] = {
        "environment": {"mode": mode, "only": args.only, **machine(), "loadavg_at_start": loadavg()}
    }
    report["first_execution_s"] = first_execution()
    for name in SECTIONS:
        if args.only in (name, "all"):
            report[name] = run_section(name, args.quick)
    report["total_seconds"] = time.perf_counter() - began
    report["environment"]["loadavg_at_end"] = loadavg()

    table = rows(report)
    report["table"] = [asdict(row) for row in table]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(markdown(table))
    load = report["environment"]
    print(
        f"\n{mode} run ({args.only}), {report['total_seconds']:.1f} s; 1-min load average "
        f"{load['loadavg_at_start'][0]:.1f} at start, {load['loadavg_at_end'][0]:.1f} at end; "
        f"JSON written to {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
