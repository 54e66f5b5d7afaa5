"""Type-check a program against its executor's stubs before it runs, with a real checker (ty) on the host.

Why on the host: the checker is a native binary, fast (~40 ms for a small
program), and what it reads is exactly the package `ptc stubs` writes, so
a model's program is judged by what an IDE would say.

How. A program uses top-level `await`, which a checker reads as an error
at module level, so it is checked as the body of one `async def`:

    from tools import *                 <- hoisted: `import *` and `from __future__` are module-level only
    async def __ptc_program__():
        <the program, each line indented by 4>
        pass

and every diagnostic's line and column are mapped back to the program's
own (1-based). Decisions, documented in the README:

* `return` and `yield` at top level are not reported (they are legal in
  the wrapper); the sandbox refuses them as `syntax_error` anyway. For the
  same reason a syntax error found by the check is left to the sandbox,
  whose parser (3.14) has the last word: `type_error` is only ever about
  types (`invalid-syntax` findings are returned by `check`, but do not
  refuse a program under `Limits(typecheck=True)`).
* Names the program binds are the function's locals; `result = ...` is an
  ordinary assignment.
* The checker sees the sandbox's world: Python 3.14, the standard library
  and `tools`, nothing installed on the host (it is pointed at an empty
  environment), so `import numpy` is an error here as it is there.
* `unused-awaitable` (a tool called without `await`, its value unused) is
  an error, not ty's default warning: in the sandbox that call never runs.

Everything the checker prints is parsed as JSON (ty's `gitlab` format),
kept only for the program's own file, bounded in count and size; the
program text can only ever be inside JSON strings. The checker runs with a
timeout, in a cleaned environment, from a private directory; a crash, a
timeout or output that is not what ty prints is a TypeCheckerError.

The stubs are written once per catalog revision into a private directory
(`write_modules`, the same text `ptc stubs` writes); a warm check writes
only the program's file and runs the checker once.
"""

from __future__ import annotations

import ast
import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Literal

from ptc.errors import TypeCheckerError, require_typecheck
from ptc.results import Diagnostic
from ptc.stubgen import StubCache, write_modules

GUEST_PYTHON = "3.14"  # the sandbox's CPython: what the checker assumes
DEFAULT_TIMEOUT = 10.0  # seconds for one check (ty answers in ~40 ms; past this it is stuck)
MAX_DIAGNOSTICS = 50  # kept per check: a model reads them, and the first ones are what it fixes
MAX_MESSAGE = 500  # characters of one diagnostic's message
MAX_CODE = 1 << 20  # characters of a program the checker is given (larger ones: TypeCheckerError)
MAX_OUTPUT = 16 << 20  # bytes of checker output read at most, as it comes (then it is stopped)

_HEADER = "async def __ptc_program__():"
_NEWLINE = re.compile(r"\r\n|\r|\n")  # what Python's tokenizer counts as a line break, and ty too
_RULE = re.compile(r"[a-z0-9-]{1,64}")
_SEVERITIES: dict[str, Literal["error", "warning"]] = {
    "blocker": "error",
    "critical": "error",
    "major": "error",
    "minor": "warning",
    "info": "warning",
}
_ENV_DROP = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME")


class _Wrapped:
    """The program as the checker reads it, and where each of its lines came from."""

    def __init__(self, code: str) -> None:
        lines = _NEWLINE.split(code)
        hoisted = _module_level_lines(code, len(lines))
        out: list[str] = []
        self.origin: list[tuple[int, int]] = []  # per checked line (0-based): (program line, column shift)
        for number in sorted(hoisted):
            out.append(lines[number - 1])
            self.origin.append((number, 0))
        out.append(_HEADER)
        self.origin.append((1, -1))  # a synthetic line: only a syntax error is reported there
        for number, line in enumerate(lines, 1):
            out.append("" if number in hoisted else ("    " + line if line else ""))
            self.origin.append((number, 4))
        out.append("    pass")  # the body is never empty (a program of only comments, or only hoisted lines)
        self.origin.append((len(lines), -1))
        self.text = "\n".join(out) + "\n"

    def locate(self, line: int, column: int) -> tuple[int, int, bool]:
        """The program's (line, column), both 1-based, of a position in the checked text, and whether that
        position is the program's own text (not the wrapper's header or closing `pass`)."""
        if not 1 <= line <= len(self.origin):
            return (self.origin[-1][0], 1, False)
        program_line, shift = self.origin[line - 1]
        if shift < 0:
            return (program_line, 1, False)
        return (program_line, max(1, column - shift), True)


def _module_level_lines(code: str, count: int) -> set[int]:
    """The lines of top-level statements only legal at module level (`from x import *`, `from __future__`),
    when each stands on lines of its own; they are checked outside the wrapper, where they stay legal."""
    try:
        tree = compile(code, "<program>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    assert isinstance(tree, ast.Module)  # the checker reports what it finds; the sandbox's parser has the last word
    spans = [(node.lineno, node.end_lineno or node.lineno) for node in tree.body]
    lines: set[int] = set()
    for index, node in enumerate(tree.body):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.module != "__future__" and not any(alias.name == "*" for alias in node.names):
            continue
        first, last = spans[index]
        shares = (index > 0 and spans[index - 1][1] >= first) or (
            index + 1 < len(spans) and spans[index + 1][0] <= last
        )
        if not shares and last <= count:
            lines.update(range(first, last + 1))
    return lines


class TypeChecker:
    """Checks programs against one catalog's stubs (an executor's), each in a subprocess of ty.

    Thread-safe: checks may run at once (each has its own program file); the
    stubs directory is rewritten under a lock when the catalog's revision
    changes, into a fresh directory so a check in flight keeps reading the
    one it started with.
    """

    def __init__(self, stubs: StubCache, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._stubs = stubs
        self.timeout = timeout
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._revision: tuple[int, Path] | None = None
        self._retired: list[tuple[float, Path]] = []  # (when, directory) of earlier revisions' stubs
        self._binary: str | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _prepare(self) -> tuple[str, Path, Path]:
        """(ty's path, the stubs directory for the catalog as it is now, the root), made on first use."""
        with self._lock:
            if self._binary is None:
                require_typecheck("type-checking programs")
                from ty import find_ty_bin

                self._binary = os.fsdecode(find_ty_bin())
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="ptc-typecheck-"))
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._root, True)
                # An environment with nothing installed: the checker resolves only the standard library
                # (its own typeshed) and the stubs, as the sandbox has only those.
                (self._root / "env" / "lib" / f"python{GUEST_PYTHON}" / "site-packages").mkdir(parents=True)
                (self._root / "programs").mkdir()
            revision, modules = self._stubs.current()
            if self._revision is None or self._revision[0] != revision:
                stubs = self._root / f"stubs-{revision}-{uuid.uuid4().hex[:8]}"
                write_modules(modules, stubs)
                if self._revision is not None:  # a check in flight may still read it: removed once none can
                    self._retired.append((time.monotonic(), self._revision[1]))
                self._revision = (revision, stubs)
            while self._retired and time.monotonic() - self._retired[0][0] > 2 * self.timeout:
                shutil.rmtree(self._retired.pop(0)[1], ignore_errors=True)
            return self._binary, self._revision[1], self._root

    def close(self) -> None:
        """Remove the private directory (also done when the checker is collected or the process exits)."""
        if self._finalizer is not None:
            self._finalizer()

    def check(self, code: str) -> list[Diagnostic]:
        """The program's diagnostics (errors and warnings), at its own lines; [] when it type-checks.

        Raises MissingExtraError without ty, TypeCheckerError when the
        checker crashes, times out or prints what ptc cannot read.
        """
        if len(code) > MAX_CODE:
            raise TypeCheckerError(f"the program is too large to type-check ({len(code)} > {MAX_CODE} characters)")
        binary, stubs, root = self._prepare()
        wrapped = _Wrapped(code)
        program = root / "programs" / f"p{uuid.uuid4().hex}.py"
        program.write_text(wrapped.text, encoding="utf-8", errors="surrogatepass")
        try:
            output = self._run(binary, stubs, root, program)
        finally:
            program.unlink(missing_ok=True)
        return _parse(output, program.name, wrapped)

    def _run(self, binary: str, stubs: Path, root: Path, program: Path) -> bytes:
        command = [
            binary,
            "check",
            "--output-format",
            "gitlab",
            "--no-progress",
            "--color",
            "never",
            "--exit-zero",
            "--python",
            str(root / "env"),
            "--python-version",
            GUEST_PYTHON,
            "--extra-search-path",
            str(stubs),
            "--error",
            "unused-awaitable",
            "--",
            str(program),
        ]
        env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP and not k.startswith("TY_")}
        errors = program.with_suffix(".err")  # a file, so the one pipe read below cannot deadlock on the other
        try:
            with errors.open("w+b") as stderr:
                try:
                    process = subprocess.Popen(
                        command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
                    )
                except OSError as exc:
                    raise TypeCheckerError(f"the type checker could not be started ({type(exc).__name__})") from None
                try:
                    output = self._read(process)
                finally:
                    if process.poll() is None:
                        process.kill()
                    process.wait()
                    assert process.stdout is not None
                    process.stdout.close()
                if process.returncode != 0:
                    stderr.seek(0)
                    lines = stderr.read(64 * 1024).decode("utf-8", "replace").strip().splitlines()
                    detail = lines[-1][:300] if lines else "no output"
                    raise TypeCheckerError(f"the type checker failed (exit {process.returncode}): {detail}")
        finally:
            errors.unlink(missing_ok=True)
        return output

    def _read(self, process: subprocess.Popen[bytes]) -> bytes:
        """The checker's stdout, read as it comes: at most MAX_OUTPUT bytes, within the timeout (the caller
        kills it otherwise), so what a program makes it print never makes the host hold more."""
        assert process.stdout is not None
        deadline = time.monotonic() + self.timeout
        out = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TypeCheckerError(f"the type checker did not finish within {self.timeout:g} s")
                if not selector.select(left):
                    continue
                chunk = os.read(process.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                out += chunk
                if len(out) > MAX_OUTPUT:
                    raise TypeCheckerError(f"the type checker printed more than {MAX_OUTPUT} bytes")
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise TypeCheckerError(f"the type checker did not finish within {self.timeout:g} s") from None
        return bytes(out)


def _parse(output: bytes, filename: str, wrapped: _Wrapped) -> list[Diagnostic]:
    """ty's gitlab JSON, read defensively: only what names the program's file, each field checked."""
    try:
        items = json.loads(output) if output.strip() else []
    except (ValueError, RecursionError):
        raise TypeCheckerError("the type checker's output is not JSON") from None
    if not isinstance(items, list):
        raise TypeCheckerError("the type checker's output is not a list of diagnostics")
    diagnostics: list[Diagnostic] = []
    for item in items:
        found = _diagnostic(item, filename, wrapped)
        if found is not None:
            diagnostics.append(found)
            if len(diagnostics) == MAX_DIAGNOSTICS:
                break
    diagnostics.sort(key=lambda d: (d.line, d.column))
    return diagnostics


def _diagnostic(item: Any, filename: str, wrapped: _Wrapped) -> Diagnostic | None:
    if not isinstance(item, dict):
        return None
    location = item.get("location")
    if not isinstance(location, dict) or not isinstance(location.get("path"), str):
        return None
    if Path(location["path"]).name != filename:
        return None  # a finding in a stub is not the program's to fix
    try:
        begin = location["positions"]["begin"]
        line, column = int(begin["line"]), int(begin["column"])
    except (KeyError, TypeError, ValueError):
        line, column = 0, 1
    code = item.get("check_name")
    code = code if isinstance(code, str) and _RULE.fullmatch(code) else "type-error"
    message = item.get("description")
    message = message if isinstance(message, str) else ""
    if message.startswith(code + ": "):
        message = message[len(code) + 2 :]
    message = " ".join(message.split())  # one line: it is quoted to a model in a list
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    severity = _SEVERITIES.get(str(item.get("severity")), "error")
    program_line, program_column, own = wrapped.locate(line, column)
    if not own and code != "invalid-syntax":
        return None  # about the wrapper itself (`pass` after an unclosed bracket): the syntax error says it
    return Diagnostic(line=program_line, column=program_column, code=code, message=message, severity=severity)


def refusing(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """The diagnostics that refuse a program under Limits(typecheck=True): its errors, unless it does not
    parse. A syntax error is the sandbox's to report (its 3.14 parser has the last word, as `syntax_error`),
    and what a checker infers from a program it could not parse is noise."""
    if any(d.code == "invalid-syntax" for d in diagnostics):
        return []
    return [d for d in diagnostics if d.severity == "error"]


def describe(diagnostics: list[Diagnostic]) -> str:
    """The message a model reads: how many errors, then one line each."""
    count = len(diagnostics)
    head = f"the program has {count} type error{'s' if count != 1 else ''} (checked before it ran; nothing ran):"
    return "\n".join([head, *(f"  {d}" for d in diagnostics)])
