"""`ptc repl`: an interactive Python whose cells run in one sandbox session.

The host reads the lines and decides, as Python's own console does
(`code.InteractiveConsole`, `codeop`), when a cell is complete: that only
parses the input, never runs it. A line the host's parser rejects is sent
anyway: the sandbox's Python (3.14) may be newer than the host's, and its
parser has the last word (a real syntax error comes back from it). Each
cell runs in one `executor.session()`, so what a cell defines, the next one
sees; top-level `await` works.

What a cell printed is shown as `ptc run` shows a program's output
(terminal control characters escaped unless --raw), then its value's repr
when not None, then any error and traceback on stderr. Ctrl-C while typing
clears the line; while a cell runs it stops the cell, and the session goes
on from its journal (the state the cells before it left). Ctrl-D leaves.
History is kept in ~/.ptc_history when readline is available (not at all
when the home directory cannot be read or written).

With stdin not a terminal, the whole input is read and cut into cells as
the console would cut it, without prompts; the exit status is then 1 if any
cell failed.
"""

from __future__ import annotations

import ast
import asyncio
import code
import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator

from ptc.errors import SessionClosedError
from ptc.executor import ProgrammaticToolExecutor
from ptc.sessions import Session

HISTORY = "~/.ptc_history"
_HISTORY_LENGTH = 1000
# A person at a prompt may think for a long while: the session lasts as long as the REPL (a week at most).
_IDLE_TIMEOUT = 7 * 24 * 3600.0
STOPPED = "KeyboardInterrupt: the cell was stopped; the session goes on from the cells before it (its journal)"


class SandboxConsole(code.InteractiveConsole):
    """Python's console, with each complete cell sent to a sandbox session instead of run here."""

    def __init__(
        self,
        executor: ProgrammaticToolExecutor,
        runner: asyncio.Runner,
        show: Callable[..., int],
        raw: bool = False,
        live: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(filename="<stdin>")
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT  # as `python -m asyncio` does
        self.executor = executor
        self.runner = runner
        self.show = show
        self.raw = raw
        self.live = live  # prints a cell's output as it comes (on_output); then `show` prints the rest
        self.failed = 0
        self.session = self._new_session()

    def _new_session(self) -> Session:
        return self.executor.session(idle_timeout=_IDLE_TIMEOUT, suspendable=False)  # nothing here resumes

    def runsource(self, source: str, filename: str = "<input>", symbol: str = "single") -> bool:
        """True while the cell is incomplete (more lines wanted); else run it in the sandbox."""
        try:
            if self.compile(source, filename, symbol) is None:
                return True
        except (OverflowError, SyntaxError, ValueError):
            pass  # the sandbox's parser decides (see the module docstring)
        self.run_cell(source)
        return False

    def run_cell(self, source: str) -> None:
        """One cell in the session; Ctrl-C stops it (the REPL goes on)."""
        if not source.strip():
            return
        try:
            result = self.runner.run(self.session.execute(source, on_output=self.live))
        except KeyboardInterrupt:
            self.failed += 1
            self.write("\n" + STOPPED + "\n")  # after the terminal's ^C
            return
        except SessionClosedError as exc:
            self.failed += 1
            self.session = self._new_session()
            self.write(f"ptc: {exc}; the cell did not run. A fresh session starts now (the earlier state is gone)\n")
            return
        if self.show(result, False, raw=self.raw, printed=self.live is not None) != 0:
            self.failed += 1

    def write(self, data: str) -> None:
        sys.stderr.write(data)
        sys.stderr.flush()

    def feed(self, lines: Iterable[str]) -> None:
        """Input that is not a terminal: the lines cut into cells as the console would, then what is left."""
        for line in lines:
            self.push(line.rstrip("\r\n"))
        if self.buffer:  # the input ended inside a cell: run what there is (the sandbox says if it is incomplete)
            source = "\n".join(self.buffer)
            self.resetbuffer()
            self.run_cell(source)


@contextlib.contextmanager
def history(path: str = HISTORY) -> Iterator[None]:
    """Line editing and history with readline, when there is one; the file is best-effort."""
    try:
        import readline
    except ImportError:  # no readline (some builds): plain input
        yield
        return
    file = os.path.expanduser(path)
    readline.set_history_length(_HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(file)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            readline.write_history_file(file)


def banner(executor: ProgrammaticToolExecutor) -> str:
    domains = ", ".join(f"tools.{d}" for d in executor.catalog.domains()) or "none"
    return (
        f"ptc repl: Python 3.14 in a sandbox, {len(executor.catalog)} tools ({domains}); top-level await works.\n"
        "Ctrl-C stops a running cell, Ctrl-D leaves."
    )


def run_repl(
    executor: ProgrammaticToolExecutor,
    show: Callable[..., int],
    raw: bool = False,
    live: Callable[[str, str], None] | None = None,
) -> int:
    """The REPL on stdin: interactive on a terminal, else the input's cells in order; the exit status."""
    with asyncio.Runner() as runner:
        runner.run(executor.warm_up())  # a first build (with its progress) before the prompt, not in cell 0
        console = SandboxConsole(executor, runner, show, raw=raw, live=live)
        try:
            if sys.stdin.isatty():
                with history():
                    console.interact(banner=banner(executor), exitmsg="")
                return 0
            console.feed(sys.stdin)
            return 1 if console.failed else 0
        finally:
            runner.run(console.session.aclose())
