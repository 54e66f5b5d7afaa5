"""The `ptc` command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from ptc.catalog import ToolCatalog
from ptc.executor import ProgrammaticToolExecutor
from ptc.hostcalls.policies import Policy
from ptc.limits import Limits, MiB
from ptc.results import ExecutionResult
from ptc.stubgen import render_api_reference, write_stubs
from ptc.tenancy import Quota


def load_catalog(specs: Sequence[str]) -> ToolCatalog:
    """One catalog from `MODULE:ATTR` specs (a ToolCatalog, or a callable returning one)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    catalogs = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise SystemExit(f"ptc: --tools takes MODULE:ATTR, got {spec!r}")
        try:
            value = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise SystemExit(f"ptc: cannot load --tools {spec}: {exc}") from None
        if callable(value) and not isinstance(value, ToolCatalog):
            value = value()
        if not isinstance(value, ToolCatalog):
            raise SystemExit(f"ptc: --tools {spec} is a {type(value).__name__}, not a ToolCatalog")
        catalogs.append(value)
    if len(catalogs) == 1:
        return catalogs[0]
    merged = ToolCatalog(source="cli")
    for catalog in catalogs:
        merged.merge(catalog)
    return merged


def _mcp_servers(specs: Sequence[str]) -> dict[str, str]:
    servers = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            raise SystemExit(f'ptc: --mcp takes NAME="COMMAND ARGS" or NAME=http://HOST:PORT/mcp, got {spec!r}')
        servers[name] = target
    return servers


def _executor(args: argparse.Namespace) -> ProgrammaticToolExecutor:
    """The executor the flags describe: --tools catalogs, --mcp servers, limits and policy."""
    policy = Policy(
        **{
            k: v
            for k, v in (
                ("timeout", getattr(args, "tool_timeout", None)),
                ("max_retries", getattr(args, "max_retries", None)),
            )
            if v is not None
        }
    )
    limits = _limits(args) if hasattr(args, "timeout") else Limits()
    admission = {
        k: v
        for k, v in (
            ("max_concurrent", getattr(args, "max_concurrent", None)),
            ("max_queued", getattr(args, "max_queued", None)),
        )
        if v is not None
    }
    return ProgrammaticToolExecutor(
        load_catalog(args.tools),
        limits=limits,
        policy=policy,
        mcp_servers=_mcp_servers(args.mcp),
        quota=Quota(**admission) if admission else None,
    )


def _connected(args: argparse.Namespace) -> ProgrammaticToolExecutor:
    executor = _executor(args)
    try:
        asyncio.run(executor.connect())
    except ConnectionError as exc:  # the operator's own servers: shown in full, a hostile stderr escaped
        executor.close()
        raise SystemExit(terminal_text(f"ptc: {exc}")) from None
    return executor


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


# C0 controls but tab and newline, DEL, C1 controls (CSI, OSC, ...) and lone surrogates (unencodable).
_TERMINAL_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def terminal_text(text: str) -> str:
    r"""`text` safe to write to a terminal: control characters shown as escapes (`\x1b`), not obeyed.

    A program's output is the program's, so it must not drive the operator's
    terminal: set the clipboard (OSC 52), retitle the window, erase or
    overwrite lines (`\r`, CSI sequences). Tab and newline stay as they are;
    backslashes are not doubled, so a literal `\x1b` in the output reads the same.
    """
    return _TERMINAL_CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def _print_result(result: ExecutionResult, as_json: bool, raw: bool = False) -> int:
    """Print a result: its output (escaped unless `raw`), then any error on stderr; the exit code."""
    shown = (lambda text: text) if raw else terminal_text
    if as_json:
        print(result.model_dump_json(indent=2))  # JSON escapes every control character itself
    else:
        sys.stdout.write(shown(result.stdout))
        sys.stderr.write(shown(result.stderr))
        if result.output_truncated:
            print("ptc: output truncated", file=sys.stderr)
    if result.error is not None:
        if not as_json:
            print(shown(f"ptc: {result.error.kind}: {result.error.type}: {result.error.message}"), file=sys.stderr)
            if result.error.traceback:
                sys.stderr.write(shown(result.error.traceback))
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    with _connected(args) as executor:
        try:
            code = Path(args.script).read_text(encoding="utf-8")
        except OSError as exc:
            raise SystemExit(f"ptc: cannot read {args.script}: {exc.strerror}") from None
        return _print_result(executor.execute_sync(code), args.json, raw=args.raw)


def _stubs(args: argparse.Namespace) -> int:
    with _connected(args) as executor:
        for path in write_stubs(executor.catalog, Path(args.out)):
            print(path)
    return 0


def _api(args: argparse.Namespace) -> int:
    with _connected(args) as executor:
        sys.stdout.write(render_api_reference(executor.catalog))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ptc.serve import build_server

    with _connected(args) as executor:
        server = build_server(executor)
        if args.http:
            host, _, port = args.http.rpartition(":")
            server.run("streamable-http", host=host or "127.0.0.1", port=int(port))
        else:
            server.run()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ptc.demo import main as demo_main

    return demo_main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptc", description="Run Python programs against tools in a WebAssembly sandbox."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a program")
    run.add_argument("script", help="the program's file")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    run.add_argument(
        "--raw", action="store_true", help="write the program's output as is (terminal control sequences included)"
    )
    _add_limit_flags(run)
    _add_tool_flags(run)
    run.set_defaults(handler=_run)

    stubs = commands.add_parser("stubs", help="write the generated stub package")
    _add_tool_flags(stubs)
    stubs.add_argument("--out", default="stubs", help="folder to write tools/ into (default ./stubs)")
    stubs.set_defaults(handler=_stubs)

    api = commands.add_parser("api", help="print the prompt-ready API reference")
    _add_tool_flags(api)
    api.set_defaults(handler=_api)

    serve = commands.add_parser("serve", help="serve the tools to MCP clients as one code-execution tool")
    _add_tool_flags(serve)
    _add_limit_flags(serve)
    serve.add_argument("--http", metavar="HOST:PORT", help="streamable HTTP instead of stdio")
    serve.add_argument("--tool-timeout", type=float, help="seconds per tool call (default 30)")
    serve.add_argument("--max-retries", type=int, help="retries of transient tool failures (default 0)")
    serve.add_argument("--max-concurrent", type=int, help="programs running at once, all clients (default 8)")
    serve.add_argument("--max-queued", type=int, help="programs waiting for a slot; more fail at once (default 32)")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo", help="run the budget walkthrough, sequential vs asyncio.gather")
    demo.set_defaults(handler=_demo)
    return parser


def _add_tool_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tools", action="append", default=[], metavar="MODULE:ATTR", help="a ToolCatalog with handlers (repeatable)"
    )
    parser.add_argument(
        "--mcp", action="append", default=[], metavar="NAME=SERVER", help='an MCP server: NAME="CMD ARGS" or NAME=URL'
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
