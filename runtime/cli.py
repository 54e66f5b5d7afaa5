"""The `ptc` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ptc.executor import ProgrammaticToolExecutor
from ptc.limits import Limits, MiB
from ptc.results import ExecutionResult


def _limits(args: argparse.Namespace) -> Limits:
    update: dict[str, object] = {}
    if args.timeout is not None:
        update["timeout"] = args.timeout
    if args.memory is not None:
        update["memory_bytes"] = int(args.memory * MiB)
    if args.fuel is not None:
        update["fuel"] = args.fuel if args.fuel > 0 else None
    if args.max_output is not None:
        update["max_output_bytes"] = args.max_output
    return Limits(**update)


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, help="wall-clock seconds (default 30)")
    parser.add_argument("--memory", type=float, help="sandbox memory in MiB (default 256)")
    parser.add_argument("--fuel", type=int, help="CPU budget in fuel units; 0 turns fuel off")
    parser.add_argument("--max-output", type=int, help="bytes of output kept (default 1 MiB)")


def _print_result(result: ExecutionResult, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        if result.output_truncated:
            print("ptc: output truncated", file=sys.stderr)
    if result.error is not None:
        if not as_json:
            print(f"ptc: {result.error.kind}: {result.error.type}: {result.error.message}", file=sys.stderr)
            if result.error.traceback:
                sys.stderr.write(result.error.traceback)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    with open(args.script, encoding="utf-8") as f:
        code = f.read()
    executor = ProgrammaticToolExecutor(limits=_limits(args))
    return _print_result(executor.execute_sync(code), args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptc", description="Run Python programs against tools in a WebAssembly sandbox."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a program")
    run.add_argument("script", help="the program's file")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    _add_limit_flags(run)
    run.set_defaults(handler=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
