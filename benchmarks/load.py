"""Load test: thousands of mixed executions through one process, each checked against its expected outcome.

    python benchmarks/load.py                 # full: 6,800 measured executions (+300 warm-up), ~2.5 min, + adversarial
    python benchmarks/load.py --quick         # smoke: 1,050 measured executions (+80 warm-up), ~25 s, + adversarial
    python benchmarks/load.py --rss-cap 0.8   # stop a level if VmRSS passes 80 % of MemTotal (default 60 %)
    python benchmarks/load.py --quick --adversarial  # the adversarial phase alone (6 columns × 300 honest, ~1 min)

Every execution is a generated program with a known outcome (load_workloads.py: good programs, failing
programs, limit-hitting programs), run at 1, 4, 16 and 64 in flight from one event loop, then from two
tenants with their own executor and Quota; then the adversarial phase: an honest tenant alone, then beside
an attacker tenant running frame bombs, reply floods, abandoned breaker trials and idempotency-cache
floods, one kind at a time and all four at once (load_driver.py). Per level: executions/s, latency,
outcomes, VmRSS and the correctness checks; benchmarks/README.md says how each figure is measured.

Prints markdown tables, writes benchmarks/results/load.json (with --adversarial alone:
benchmarks/results/adversarial.json) and exits 1 when any check fails (the RSS check only in a full run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import RESULTS_DIR, Clock, MiB, environment, finish, mem_total_bytes, table
from load_driver import RSS_FLAT_GROWTH, adversarial_settings_for, run_adversarial, run_all, settings_for
from load_workloads import PROGRAMS, SEED

RSS_ABORT_FRACTION = 0.6  # default --rss-cap: a level is stopped if VmRSS passes this share of MemTotal
KINDS = ("ok", "runtime_error", "syntax_error", "timeout", "out_of_fuel", "memory_limit", "tool_call_limit")
COUNTS = ("lost", "duplicated", "duplicate_execution_ids", "audit_problems", "mismatched")


def level_problems(level: dict[str, Any], label: str, exercised: bool) -> list[str]:
    """What fails the run in one level: lost, duplicated, hung or wrong executions; a quota not holding (or, with
    `exercised`, never refusing a submission)."""
    out = [f"{label}: aborted when VmRSS passed {level['rss_cap_mb']:.0f} MB (--rss-cap)"] if level["aborted"] else []
    out += [f"{label}: {key} = {level[key]}" for key in COUNTS if level[key]]
    for tenant, figures in level.get("tenants", {}).items():
        if exercised and figures["rejected"] == 0:
            out.append(f"{label}: {tenant} was never rejected (the quota was not exercised)")
        if figures["peak_concurrent"] > figures["quota"]["max_concurrent"]:
            out.append(f"{label}: {tenant} ran {figures['peak_concurrent']} at once, over its quota")
    return out


def problems(report: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "levels" in report:
        levels = [report["warmup"], *report["levels"]]
        out += [problem for level in levels for problem in level_problems(level, level["name"], True)]
        aborted = any(level["aborted"] for level in levels)
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
    adversarial = report["adversarial"]  # only the honest tenant's correctness: latency and RSS are measurements
    for level in [adversarial["warmup"], *(phase["honest"] for phase in adversarial["phases"])]:
        out += level_problems(level, f"adversarial, {level['name']}: honest tenant", False)
    if adversarial["honest_audit_events_without_result"]:
        out.append(
            f"adversarial: honest audit events without a result: {adversarial['honest_audit_events_without_result']}"
        )
    return out


def fmt_ms(value: float | None) -> str:
    return "—" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def fmt_mb(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n:,}" for kind, n in sorted(counts.items(), key=lambda item: -item[1])) or "—"


def duplicated(level: dict[str, Any]) -> int:
    return level["duplicated"] + level["duplicate_execution_ids"] + level["audit_problems"]


def examples(levels: Sequence[dict[str, Any]], prefix: str = "") -> list[str]:
    return [
        f"{prefix}{level['name']}: job {e['job']} ({e['program']}): {e['problem']}"
        for level in levels
        for e in level["mismatch_examples"]
    ]


def markdown(report: dict[str, Any]) -> str:
    levels = [report["warmup"], *report["levels"]]
    header = ["level", "executions", "wall s", "exec/s", "CPU s", "p50 ms", "p99 ms", "p99 ms, good programs", "lost"]
    header += ["duplicated", "mismatched", "rejected (OverCapacityError)"]
    rows = [
        (
            f"{level['name']}{' (aborted)' if level['aborted'] else ''}",
            f"{level['executed']:,}",
            f"{level['wall_s']:.1f}",
            f"{level['executions_per_s']:.0f}",
            f"{level['cpu_s']:.1f}",
            *(fmt_ms(level[key]) for key in ("p50_ms", "p99_ms", "good_p99_ms")),
            *(str(n) for n in (level["lost"], duplicated(level), level["mismatched"])),
            f"{level['rejected']:,}",
        )
        for level in levels
    ]
    columns = [*KINDS, *sorted({kind for level in levels for kind in level["outcomes"]} - set(KINDS))]
    counts = [(level["name"], *(str(level["outcomes"].get(kind, 0)) for kind in columns)) for level in levels]
    rss = report["rss"]
    readings = [
        (
            f"after {r['after']}",
            f"{r['executions']:,}",
            f"{level['peak_rss_mb']:.1f}",
            f"{r['at_end_mb']:.1f}",
            f"{r['settled_mb']:.1f}",
        )
        for r, level in zip(rss["readings"], levels, strict=True)
    ]
    header_rss = ("VmRSS", "measured executions", "peak MB while running", "MB at the end", "MB settled")
    trimmed = rss["after_malloc_trim_mb"]
    lines = [table(header, rows), "", table(("level", *columns), counts), "", table(header_rss, readings), ""]
    lines.append(
        f"Settled VmRSS from {rss['low']['executions']:,} to {rss['high']['executions']:,} executions: "
        f"{rss['low']['settled_mb']:.1f} → {rss['high']['settled_mb']:.1f} MB, {rss['growth_pct']:+.1f} % "
        f"({'flat' if rss['flat'] else '**not flat**'}: threshold +{RSS_FLAT_GROWTH:.0%})"
        + (f"; {trimmed:.1f} MB at the end after malloc_trim(0)." if trimmed is not None else ".")
    )
    for level in report["levels"]:
        for tenant, figures in level.get("tenants", {}).items():
            lines.append(
                f"{tenant}: {figures['executed']:,} executed, {figures['rejected']:,} submissions rejected "
                f"(OverCapacityError after p99 {fmt_ms(figures['rejection_p99_ms'])} ms, then retried), "
                f"at most {figures['peak_concurrent']} running at once (quota {figures['quota']['max_concurrent']})."
            )
    return "\n".join(lines + examples(levels))


def adversarial_markdown(adversarial: dict[str, Any]) -> str:
    phases, settings, attacker = adversarial["phases"], adversarial["settings"], adversarial["attacker_quota"]
    cells: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("executions", lambda p: f"{p['honest']['executed']:,}"),
        ("executions/s", lambda p: f"{p['honest']['executions_per_s']:.0f}"),
        ("p50 latency, ms", lambda p: fmt_ms(p["honest"]["p50_ms"])),
        ("p99 latency, ms", lambda p: fmt_ms(p["honest"]["p99_ms"])),
        ("max latency, ms", lambda p: fmt_ms(p["honest"]["max_ms"])),
        ("errors (not ok)", lambda p: str(p["honest_errors"])),
        (
            "lost / duplicated / mismatched",
            lambda p: f"{p['honest']['lost']} / {duplicated(p['honest'])} / {p['honest']['mismatched']}",
        ),
        ("CPU s of the process", lambda p: f"{p['honest']['cpu_s']:.1f}"),
        ("worst event-loop stall, ms", lambda p: fmt_ms(p["loop_stall_ms"])),
        ("VmRSS peak, MB", lambda p: fmt_mb(p["rss"]["peak_mb"])),
        ("VmRSS settled after, MB", lambda p: fmt_mb(p["rss"]["settled_mb"])),
        ("… after malloc_trim, MB", lambda p: fmt_mb(p["rss"]["after_malloc_trim_mb"])),
        ("… attacker's executor closed, MB", lambda p: fmt_mb(p["rss"]["attacker_closed_mb"])),
        (
            "attack stopped by --rss-cap",
            lambda p: ("**yes**" if p["attack_aborted"] else "no") if "attack" in p else "—",
        ),
    ]
    honest = table(
        ("honest tenant", *(phase["name"] for phase in phases)), ((label, *map(cell, phases)) for label, cell in cells)
    )
    attacks = [
        (
            phase["name"],
            key.replace("_", " "),
            f"{f['programs']:,}",
            fmt_counts(f["outcomes"]),
            fmt_counts(f["tool_calls"]),
            f"{f['rejected']:,}",
            fmt_mb(f["host_memory_peak_mb"]),
            f"{f['slowest_s']:.1f}",
        )
        for phase in phases
        for key, f in phase.get("attack", {}).items()
    ]
    header = ("phase", "attack", "programs", "outcomes", "their tool calls", "rejected", "largest host_memory_peak, MB")
    wedged = adversarial["breaker_wedged"]
    probes = "; ".join(
        f"{phase['name']}: after the backend recovered, a new execution's calls got "
        + ", ".join(map(str, phase["breaker"]["replies"]))
        for phase in phases
        if "breaker" in phase
    )
    lines = [
        f"Adversarial mix: the honest tenant runs {settings['honest_executions']:,} good programs per column, "
        f"{adversarial['honest_in_flight']} in flight (its own executor and quota); beside it the attacker "
        f"tenant (its own executor, catalog and quota {attacker['max_concurrent']} + {attacker['max_queued']} "
        f"queued) loops over one kind of hostile program ({settings['attack_workers']} callers), then all four "
        "(one caller each).",
        "",
        honest,
        "",
        table((*header, "slowest program, s"), attacks),
        "",
        f"Breaker wedged: {'n/a' if wedged is None else ('**yes**' if wedged else 'no')} ({probes}).",
    ]
    levels = [adversarial["warmup"], *(phase["honest"] for phase in phases)]
    return "\n".join(lines + examples(levels, "adversarial, "))


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
    settings = settings_for(args.quick)
    mode = "quick" if args.quick else "full"
    output = args.output or RESULTS_DIR / ("adversarial.json" if args.adversarial else "load.json")

    began = Clock()
    report: dict[str, Any] = {"environment": environment(mode, adversarial_only=args.adversarial), "seed": SEED}
    rss_cap = int(mem_total_bytes() * args.rss_cap)
    report["rss_cap_mb"] = rss_cap / MiB
    if not args.adversarial:
        report["settings"] = {**settings, "tenant_quota": settings.tenant_quota.model_dump()}
        report["programs"] = [
            {"name": p.name, "category": p.category, "weight": p.weight, "limits": p.limits.model_dump()}
            for p in PROGRAMS
        ]

    async def run() -> None:
        if not args.adversarial:
            report.update(await run_all(settings, rss_cap))
        report["adversarial"] = await run_adversarial(adversarial_settings_for(args.quick), rss_cap)

    asyncio.run(run())
    report["problems"] = problems(report)
    what = f"{mode} adversarial run" if args.adversarial else f"{mode} run"
    if not args.adversarial:
        what += f", {report['measured_executions']:,} measured executions ({report['all_executions']:,} with warm-up)"
    footer = finish(report, output, began, what)
    if not args.adversarial:
        print(markdown(report) + "\n")
    print(adversarial_markdown(report["adversarial"]) + footer)
    print(
        "\n".join(["PROBLEMS:", *(f"  - {problem}" for problem in report["problems"])])
        if report["problems"]
        else "no problems"
    )
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
