"""Speed and memory figures for ptc, measured through the public API.

    python benchmarks/run.py                  # full run (about 2.5 minutes)
    python benchmarks/run.py --quick          # smoke run (under ~40 s)
    python benchmarks/run.py --only tools     # one section (sandbox, tools, ..., sessions, typecheck) or all

Prints a markdown table (metric | value | target | status) and writes every
figure, plus the raw samples' summaries and the environment, to
benchmarks/results/latest.json. Each section lives in its own module
(<name>_section.py) with `measure(quick)` and `rows(figures)`; what they
share (timing, percentiles, the table, the JSON) is in harness.py.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, Clock, check, environment, finish, log, targets_table

from ptc import Limits, ProgrammaticToolExecutor

# In the order they run; what each measures is in its module's docstring and in README.md.
SECTIONS = {
    "sandbox": "cold start with and without spare instances, a gather of sleeps, RSS per instance and over time",
    "tools": "tool-call round trips by path, calls under gather, concurrent slow calls",
    "throughput": "executions/s: serial, 2 threads, 2 processes",
    "cpu": "import cost inside the sandbox; CPU-bound Python against native CPython",
    "mcp": "an MCP tool call direct and through the sandbox",
    "a2a": "an A2A agent call direct and through the sandbox",
    "sessions": "ten agent blocks in one session, a small cell, restoring a session from its journal",
    "typecheck": "executor.check of a 20-line program against a 100-tool catalog, warm",
}


def run_section(name: str, quick: bool) -> dict[str, Any]:
    """The section module's figures; MCP's and A2A's measure are coroutines."""
    log(f"section {name}: {SECTIONS[name]}")
    with Clock() as clock:
        figures = importlib.import_module(f"{name}_section").measure(quick)
        if asyncio.iscoroutine(figures):
            figures = asyncio.run(figures)
    figures["section_seconds"] = clock.wall
    return figures  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a smoke run in under ~40 s")
    parser.add_argument("--only", choices=(*SECTIONS, "all"), default="all", help="run one section (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"

    began = Clock()
    report: dict[str, Any] = {"environment": environment(mode, only=args.only)}
    log("loading the runtime (first execution)")  # once, so no section's first figure pays for it
    with Clock() as clock:
        check(ProgrammaticToolExecutor(limits=Limits(timeout=60)).execute_sync("x = 1"), "first execution")
    report["first_execution_s"] = clock.wall
    for name in SECTIONS:
        if args.only in (name, "all"):
            report[name] = run_section(name, args.quick)

    table = [
        row
        for name in SECTIONS
        if name in report
        for row in importlib.import_module(f"{name}_section").rows(report[name])
    ]
    report["table"] = [asdict(row) for row in table]
    print(targets_table(table) + finish(report, args.output, began, f"{mode} run ({args.only})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
