"""The `ptc` command line.

Ordinary mistakes end with one line on stderr, never a traceback: a bad flag
value is a usage error (exit 2), a missing extra or a failed guest build exit
1, Ctrl-C exits 130, and a closed stdout (`ptc run x.py | head`) ends the
command quietly with 141 (128 + SIGPIPE, what a shell reports for any tool
stopped by a closed pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ptc.catalog import ToolCatalog
from ptc.errors import GuestBuildError, PtcError, require_a2a, require_mcp
from ptc.executor import ProgrammaticToolExecutor
from ptc.limits import Limits, MiB
from ptc.policy import Policy
from ptc.results import ExecutionResult
from ptc.stubgen import write_modules
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


def _named(flag: str, shape: str, specs: Sequence[str]) -> dict[str, str]:
    """`NAME=TARGET` specs of a repeatable flag, by name."""
    named = {}
    for spec in specs:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            raise SystemExit(f"ptc: {flag} takes {shape}, got {spec!r}")
        named[name] = target
    return named


def _mcp_servers(specs: Sequence[str]) -> dict[str, str]:
    return _named("--mcp", 'NAME="COMMAND ARGS" or NAME=http://HOST:PORT/mcp', specs)


def _a2a_agents(specs: Sequence[str]) -> dict[str, str]:
    agents = _named("--a2a", "NAME=http://HOST:PORT (the agent's base URL)", specs)
    for name, url in agents.items():
        if not url.startswith(("http://", "https://")):
            raise SystemExit(f"ptc: --a2a {name}= takes the agent's http:// or https:// URL, got {url!r}")
    return agents


def _executor(args: argparse.Namespace) -> ProgrammaticToolExecutor:
    """The executor the flags describe: --tools catalogs, --mcp servers, --a2a agents, limits and policy."""
    if args.mcp:
        require_mcp("--mcp")
    if args.a2a:
        require_a2a("--a2a")
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
        a2a_agents=_a2a_agents(args.a2a),
        quota=Quota(**admission) if admission else None,
        workers=getattr(args, "workers", None),  # None: PTC_WORKERS, else in this process
        state=getattr(args, "state", None),  # None: this process's own policy state
    )


def _connected(args: argparse.Namespace) -> ProgrammaticToolExecutor:
    return _connect(_executor(args))


def _connect(executor: ProgrammaticToolExecutor) -> ProgrammaticToolExecutor:
    try:
        asyncio.run(executor.connect())
    except ConnectionError as exc:  # the operator's own servers: shown in full, a hostile stderr escaped
        executor.close()
        raise SystemExit(terminal_text(f"ptc: {exc}")) from None
    return executor


def _limits(args: argparse.Namespace) -> Limits:
    update: dict[str, Any] = {}
    if args.timeout is not None:
        update["timeout"] = args.timeout
    if args.memory is not None:
        update["memory_bytes"] = int(args.memory * MiB)
    if args.fuel is not None:
        update["fuel"] = args.fuel if args.fuel > 0 else None
    if args.max_output is not None:
        update["max_output_bytes"] = args.max_output
    if getattr(args, "max_result", None) is not None:
        update["max_result_bytes"] = args.max_result
    if getattr(args, "typecheck", False):
        update["typecheck"] = True
    return Limits(**update)


def _number(kind: Callable[[str], Any], lowest: float, what: str, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: `kind(text)`, finite and at least (or, with `above`, more than) `lowest`."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < lowest or (above and value == lowest):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_SECONDS = _number(float, 0, "a positive number of seconds", above=True)


def _host_port(text: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be empty for 127.0.0.1, or an [IPv6] address); PORT 0-65535 (0: any free one)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port from 0 to 65535, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "127.0.0.1", int(port)


def _add_number_flags(parser: argparse.ArgumentParser, flags: list[tuple[str, Callable[[str], Any], str]]) -> None:
    for flag, kind, help_text in flags:
        parser.add_argument(flag, type=kind, help=help_text)


_WHOLE = _number(int, 0, "a whole number, 0 or more")


def _add_limit_flags(parser: argparse.ArgumentParser) -> None:
    _add_number_flags(
        parser,
        [
            ("--timeout", _SECONDS, "wall-clock seconds (default 30)"),
            ("--memory", _number(float, 1, "a number of MiB, 1 or more"), "sandbox memory in MiB (default 256)"),
            (
                "--fuel",
                _number(int, 0, "a whole number of fuel units, 0 or more"),
                "CPU budget in fuel units; 0 turns fuel off",
            ),
            (
                "--max-output",
                _number(int, 0, "a whole number of bytes, 0 or more"),
                "bytes of output kept (default 1 MiB)",
            ),
            (
                "--max-result",
                _number(int, 1, "a whole number of bytes, 1 or more"),
                "the program's value kept up to this many bytes encoded; a larger one is dropped, and said so",
            ),
        ],
    )


def _add_typecheck_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--typecheck",
        action="store_true",
        help="type-check each program against the stubs first (ty, ptc[typecheck]); refuse one with type errors",
    )


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


def _print_result(
    result: ExecutionResult, as_json: bool, raw: bool = False, value: bool = True, printed: bool = False
) -> int:
    """Print a result and return the exit code.

    Its output (escaped unless `raw`; `printed`: already printed as it came,
    `_live_printer`), then its value, like the REPL: the `repr` of the
    program's `result` (or last expression) when it is not None, as is when
    it came back as a repr already (`result_is_repr`). Then any error on stderr.
    """
    shown = (lambda text: text) if raw else terminal_text
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")  # JSON escapes every control character itself
    else:
        if not printed:
            sys.stdout.write(shown(result.stdout))
            sys.stdout.flush()
            sys.stderr.write(shown(result.stderr))
        if result.output_truncated:
            print("ptc: output truncated", file=sys.stderr)
        for dropped in result.dropped:
            if dropped.what == "result":  # said, so an empty value is not read as None
                print(f"ptc: {dropped}", file=sys.stderr)
        sys.stderr.flush()
        if value and result.error is None and result.result is not None:
            text = result.result if result.result_is_repr else repr(result.result)
            if result.stdout and not result.stdout.endswith("\n"):
                sys.stdout.write("\n")
            sys.stdout.write(shown(str(text)) + "\n")
    if result.error is not None:
        if not as_json:
            print(shown(f"ptc: {result.error.kind}: {result.error.type}: {result.error.message}"), file=sys.stderr)
            if result.error.traceback:
                sys.stderr.write(shown(result.error.traceback))
        return 1
    return 0


def _read_program(script: str) -> str:
    if script == "-":
        return sys.stdin.read()
    try:
        return Path(script).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"ptc: cannot read {script}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SystemExit(f"ptc: cannot read {script}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _run(args: argparse.Namespace) -> int:
    executor = _executor(args)  # a bad --tools, --mcp or --a2a spec says so first
    try:
        code = _read_program(args.script)  # before any MCP server is started or agent asked
    except BaseException:
        executor.close()
        raise
    live = None if args.json else _live_printer(args.raw)  # JSON is one document, printed at the end
    with _connect(executor) as executor:
        result = asyncio.run(executor.execute(code, on_output=live))
        return _print_result(result, args.json, raw=args.raw, value=not args.no_value, printed=live is not None)


def _live_printer(raw: bool) -> Callable[[str, str], None]:
    """`ptc run` prints the program's output as it prints it (escaped unless `raw`), not when it ends."""

    def printed(stream: str, text: str) -> None:
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.write(text if raw else terminal_text(text))
        out.flush()

    return printed


def _repl(args: argparse.Namespace) -> int:
    from ptc.repl import run_repl

    with _connected(args) as executor:
        return run_repl(executor, _print_result, raw=args.raw, live=_live_printer(args.raw))


def _stubs(args: argparse.Namespace) -> int:
    with _connected(args) as executor:
        for path in write_modules(executor.stubs.modules(), Path(args.out)):  # as the sandbox and checker see them
            print(path)
    return 0


def _api(args: argparse.Namespace) -> int:
    with _connected(args) as executor:
        sys.stdout.write(executor.api_reference())
    return 0


def _say(text: str) -> None:
    """One line for the operator on stderr (a stdio MCP client reads only stdout)."""
    print(terminal_text(text), file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace) -> int:
    require_mcp("ptc serve")
    if args.print_config:
        print(json.dumps(client_config(args), indent=2))
        return 0
    from ptc.serve import build_server, run_http

    with _connected(args) as executor:
        # The runtime first (on a fresh machine the guest build, with its progress
        # above): no client's first call waits a minute on it without a word.
        asyncio.run(executor.warm_up())
        server = build_server(executor, **({"max_result_bytes": args.max_result_json} if args.max_result_json else {}))
        domains = ", ".join(executor.catalog.domains()) or "none"
        tools = f"{len(executor.catalog)} tools (domains: {domains})"
        if args.http:
            host, port = args.http
            _say(f"ptc serve: sandbox ready, {tools}")
            run_http(server, host, port, on_listening=lambda url: _say(f"ptc serve: listening on {url}"))
        else:
            _say(f"ptc serve: ready, {tools}; serving MCP on stdio")
            server.run()
    return 0


def _portable_command(command: str) -> str:
    """A stdio server's command line with its program and the files it names made absolute."""
    argv = shlex.split(command)
    if argv and not os.path.isabs(argv[0]):
        found = shutil.which(argv[0])
        if found:
            argv[0] = os.path.abspath(found)
    for i, arg in enumerate(argv[1:], 1):
        if not arg.startswith("-") and not os.path.isabs(arg) and os.path.exists(arg):
            argv[i] = os.path.abspath(arg)
    return shlex.join(argv)


def client_config(args: argparse.Namespace, name: str = "ptc") -> dict[str, Any]:
    """An MCP client's `mcpServers` entry that runs this `ptc serve` from anywhere.

    The command is this Python (`sys.executable -m ptc serve`), so the client
    needs no virtual environment on its PATH; the flags are the ones given,
    with each stdio --mcp server's program and existing files made absolute,
    and with this directory on PYTHONPATH when --tools names a module
    (clients start servers in a directory of their own). With --http the
    entry is the server's URL instead (`{"type": "http", "url": ...}`): the
    client connects to it, the operator starts it.
    """
    flags: list[str] = []
    for spec in args.tools:
        flags += ["--tools", spec]
    for spec in args.mcp:
        name_, _, target = spec.partition("=")
        if not target.startswith(("http://", "https://")):
            target = _portable_command(target)
        flags += ["--mcp", f"{name_}={target}"]
    for spec in args.a2a:
        flags += ["--a2a", spec]
    for flag in (
        "timeout", "memory", "fuel", "max_output", "max_result", "max_result_json", "tool_timeout", "max_retries",
        "max_concurrent", "max_queued", "workers",
    ):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            flags += [f"--{flag.replace('_', '-')}", str(value)]
    if args.typecheck:
        flags.append("--typecheck")
    if args.http:  # the client does not start an HTTP server: it is reached at its URL
        host, port = args.http
        if port == 0:
            raise SystemExit("ptc: --print-config with --http needs the port the server will listen on, not 0")
        shown = f"[{host}]" if ":" in host else host
        return {"mcpServers": {name: {"type": "http", "url": f"http://{shown}:{port}/mcp"}}}
    entry: dict[str, Any] = {"command": sys.executable, "args": ["-m", "ptc", "serve", *flags]}
    if args.tools:
        entry["env"] = {"PYTHONPATH": os.getcwd()}
    return {"mcpServers": {name: entry}}


def _demo(args: argparse.Namespace) -> int:
    from ptc.demo import main as demo_main

    return demo_main()


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ptc", description="Run Python programs against tools in a WebAssembly sandbox.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run a program",
        description=(
            "Run a program. Prints its output, then its value like the REPL (the repr of `result`, or of the "
            "last expression, when not None), and exits 1 with the error on stderr if it failed."
        ),
    )
    run.add_argument("script", help="the program's file, or - to read it from standard input")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    run.add_argument("--no-value", action="store_true", help="do not print the program's value after its output")
    run.add_argument(
        "--raw", action="store_true", help="write the program's output as is (terminal control sequences included)"
    )
    _add_limit_flags(run)
    _add_typecheck_flag(run)
    _add_tool_flags(run)
    _add_state_flag(run)
    run.set_defaults(handler=_run)

    repl = commands.add_parser(
        "repl",
        help="an interactive Python in a sandbox session, the tools importable",
        description=(
            "An interactive Python whose cells run in one sandbox session: what a cell defines, the next sees; "
            "top-level await works. Ctrl-C stops a running cell (the session goes on from the cells before it), "
            "Ctrl-D leaves. History in ~/.ptc_history. With stdin not a terminal, runs its cells in order "
            "(exit status 1 if any failed)."
        ),
    )
    repl.add_argument(
        "--raw", action="store_true", help="write the cells' output as is (terminal control sequences included)"
    )
    _add_limit_flags(repl)
    _add_tool_flags(repl)
    repl.set_defaults(handler=_repl)

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
    _add_typecheck_flag(serve)
    serve.add_argument("--http", metavar="HOST:PORT", type=_host_port, help="streamable HTTP instead of stdio")
    _add_state_flag(serve)
    _add_number_flags(
        serve,
        [
            ("--tool-timeout", _SECONDS, "seconds per tool call (default 30)"),
            ("--max-retries", _WHOLE, "retries of transient tool failures (default 0)"),
            (
                "--max-concurrent",
                _number(int, 1, "a whole number, 1 or more"),
                "programs running at once, all clients (default 8)",
            ),
            ("--max-queued", _WHOLE, "programs waiting for a slot; more fail at once (default 32)"),
            ("--workers", _WHOLE, "worker processes running the programs (default $PTC_WORKERS, else 0: this one)"),
            (
                "--max-result-json",
                _number(int, 256, "a whole number of bytes, 256 or more"),
                "a reply's value as JSON up to this size, shortened structurally past it (default 100000)",
            ),
        ],
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print an MCP client configuration (mcpServers JSON, absolute paths) that runs this command, and exit",
    )
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser(
        "demo", help="run the budget walkthrough: sequential vs asyncio.gather, then MCP + A2A (a local agent)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _add_state_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        metavar="URL",
        default=os.environ.get("PTC_STATE") or None,
        help=(
            "share policy state (idempotency, breakers, quotas, journals) with every process naming the same "
            "Redis: redis://HOST:PORT/DB (default $PTC_STATE, which keeps a password out of the process list)"
        ),
    )


def _add_tool_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tools", action="append", default=[], metavar="MODULE:ATTR", help="a ToolCatalog with handlers (repeatable)"
    )
    parser.add_argument(
        "--mcp", action="append", default=[], metavar="NAME=SERVER", help='an MCP server: NAME="CMD ARGS" or NAME=URL'
    )
    parser.add_argument(
        "--a2a", action="append", default=[], metavar="NAME=URL", help="an A2A agent (its base URL) as tools.NAME"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit status (see the module docstring for the failures)."""
    try:
        args = build_parser().parse_args(argv)
        status: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's shutdown
        return status
    except KeyboardInterrupt:
        _quiet_line("ptc: interrupted")
        return 130
    except BrokenPipeError:
        # stdout's reader went away (`| head`): say nothing, and keep Python's
        # shutdown flush from failing on it again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 141
    except GuestBuildError as exc:
        _quiet_line(f"ptc: the sandbox guest could not be built: {exc}")
        return 1
    except PtcError as exc:  # MissingExtraError and the like: the message says what to do
        _quiet_line(f"ptc: {exc}")
        return 1


def _quiet_line(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr may be gone too
        erase = "\r\x1b[K" if sys.stderr.isatty() else ""  # over a progress line cut short, if any
        print(erase + terminal_text(text), file=sys.stderr, flush=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
