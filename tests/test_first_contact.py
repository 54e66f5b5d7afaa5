"""A person's first minutes with `ptc`: the first run, its progress, mistakes, pipes, Ctrl-C, stdin, values.

Each runs the command line in a subprocess, as a person does. A slow runtime
start is simulated by a `python -c` launcher that wraps `ptc.engine._create`
in a sleep (the real thing, a fresh guest build, is the one slow test).
"""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest


def ptc(*args, cwd, input=None, env=None, timeout=120, module="ptc.cli"):
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env=env,
    )


# `python -c LAUNCHER DELAY ARGS...`: ptc's command line with a runtime that takes DELAY s to start.
SLOW_START = """
import sys, time
import ptc.engine as engine
real, delay = engine._create, float(sys.argv[1])
engine._create = lambda fuel: (time.sleep(delay), real(fuel))[1]
from ptc.cli import main
sys.exit(main(sys.argv[2:]))
"""

# `python -c LAUNCHER ARGS...`: ptc's command line in an environment without the MCP SDK.
NO_MCP = """
import sys
sys.modules["mcp"] = None  # `import mcp` raises ImportError, as when the extra is not installed
sys.modules["mcp_types"] = None
from ptc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def launch(launcher, *args, cwd, input=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-c", launcher, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, input=input
    )


# -- 1. the runtime's start is not the program's time ---------------------------------------------


@pytest.mark.slow
def test_first_run_on_a_fresh_machine_builds_the_guest_outside_execution_time(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "PTC_CACHE_DIR": str(cache)}
    started = time.monotonic()
    (tmp_path / "hi.py").write_text("print('hi')\n")
    proc = ptc("run", "hi.py", "--json", cwd=tmp_path, env=env, timeout=600)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["output"] == "hi\n"
    assert list(cache.glob("guest-*.wasm")) and list(cache.glob("guest-*.cwasm"))  # it did build and compile
    assert took > 15, took
    assert result["execution_time"] < 3, (result["execution_time"], took)  # was the whole build: 25-70 s
    # The build's progress, as plain lines (stderr is not a terminal here), with the real figures.
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("ptc: first run on this machine: building the sandbox guest, then compiling it")
    assert "about 20-90 s on 2 cores" in lines[0] and str(cache) in lines[0]
    assert "ptc: building the sandbox guest (10-60 s)..." in lines, proc.stderr
    assert any(re.fullmatch(r"ptc: building the sandbox guest .*: done in \d+\.\d s", line) for line in lines)
    assert any(re.fullmatch(r"ptc: compiling the guest for wasmtime .*: done in \d+\.\d s", line) for line in lines)
    assert "about 10 s" not in proc.stderr


def test_execution_time_excludes_a_slow_runtime_start(tmp_path):
    started = time.monotonic()
    (tmp_path / "hi.py").write_text("print('hi')\n")
    proc = launch(SLOW_START, "3", "run", "hi.py", "--json", cwd=tmp_path)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert took > 3
    assert result["output"] == "hi\n" and result["execution_time"] < 1.5, result["execution_time"]


def _demo_figures(stdout):
    sequential = float(re.search(r"== sequential: 8 tool calls in (\d+\.\d+) s", stdout).group(1))
    gathered = float(re.search(r"== asyncio.gather: 8 tool calls in (\d+\.\d+) s", stdout).group(1))
    summary = re.search(r"summary: sequential (\S+) s, gather (\S+) s \((.*)\); same result: True", stdout)
    assert summary, stdout
    return sequential, gathered, summary


def test_demo_times_only_the_programs_when_the_runtime_is_slow_to_start(tmp_path):
    proc = launch(SLOW_START, "4", "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sequential, gathered, summary = _demo_figures(proc.stdout)
    assert 2.0 <= sequential < 3.5, proc.stdout  # 8 calls of 0.25 s one after another, not the runtime's 4 s
    assert 0.25 <= gathered < 1.5, proc.stdout
    assert float(summary.group(1)) == sequential and float(summary.group(2)) == gathered
    ratio = float(re.fullmatch(r"gather (\d+\.\d)x faster", summary.group(3)).group(1))
    assert abs(ratio - sequential / gathered) <= 0.06, (ratio, sequential, gathered)


def test_demo_comparison_says_what_was_measured():
    from ptc.demo import comparison

    assert comparison(2.0, 0.5) == "gather 4.0x faster"
    assert comparison(1.0, 2.0) == "gather 2.0x slower"
    assert comparison(1.0, 1.05) == "about the same"
    assert comparison(0.0, 1.0).startswith("no comparison")


# -- 2. progress on a terminal and off it --------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_ticks_in_place_on_a_terminal_and_is_plain_lines_elsewhere():
    from ptc.guest.build import progress

    terminal = _Terminal()
    with progress("building the thing", stream=terminal, tick=0.05):
        time.sleep(0.3)
    shown = terminal.getvalue()
    assert shown.startswith("\rptc: building the thing... 0 s\x1b[K")
    assert shown.count("\r") >= 4  # it ticked, redrawing one line
    assert re.search(r"\rptc: building the thing\.\.\. done in 0\.\d s\x1b\[K\n$", shown), repr(shown)
    assert shown.count("\n") == 1

    log = io.StringIO()
    with pytest.raises(KeyError), progress("building the thing", stream=log):
        raise KeyError("x")
    lines = log.getvalue().splitlines()
    assert lines[0] == "ptc: building the thing..."
    assert re.fullmatch(r"ptc: building the thing: failed after 0\.\d s", lines[1]) and len(lines) == 2
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


# -- 3. without the mcp extra ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "p.py", "--mcp", "shop=python shop.py"],
        ["api", "--mcp", "shop=python shop.py"],
        ["serve"],
        ["serve", "--tools", "ptc.examples.budget:catalog", "--http", "127.0.0.1:0"],
    ],
    ids=["run", "api", "serve", "serve-http"],
)
def test_mcp_without_the_extra_says_what_to_install_at_once(tmp_path, args):
    (tmp_path / "p.py").write_text("print('hi')\n")
    started = time.monotonic()
    proc = launch(NO_MCP, *args, cwd=tmp_path, timeout=60)
    assert time.monotonic() - started < 15  # was a 30 s connect timeout, then "failed to start: TimeoutError"
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "pip install 'ptc[mcp]'" in proc.stderr


def test_library_without_the_extra_raises_missing_extra_error(monkeypatch):
    from ptc import MissingExtraError, ProgrammaticToolExecutor, PtcError
    from ptc.serve import build_server

    monkeypatch.setitem(sys.modules, "mcp", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'ptc\[mcp\]'") as caught:
        ProgrammaticToolExecutor(mcp_servers={"shop": "python shop.py"})
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, PtcError)
    with pytest.raises(MissingExtraError, match=r"ptc serve needs the MCP SDK"):
        build_server(ProgrammaticToolExecutor())


# -- 4. ordinary mistakes: one line, the right status ---------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "p.py", "--timeout", "0"],
        ["run", "p.py", "--timeout", "-1"],
        ["run", "p.py", "--timeout", "nan"],
        ["run", "p.py", "--memory", "0"],
        ["run", "p.py", "--fuel", "-5"],
        ["run", "p.py", "--max-output", "lots"],
        ["serve", "--http", "localhost:notaport"],
        ["serve", "--http", "localhost:70000"],
        ["serve", "--timeout", "0"],
        ["serve", "--max-concurrent", "0"],
        ["serve", "--tool-timeout", "-2"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_are_one_line_usage_errors(tmp_path, args):
    (tmp_path / "p.py").write_text("print('hi')\n")
    proc = ptc(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "error:" in proc.stderr and proc.stdout == ""


def test_a_closed_stdout_ends_quietly(tmp_path):
    (tmp_path / "many.py").write_text("for i in range(40000):\n    print('line', i)\n")  # ~450 KB: past a pipe's buffer
    # A person's environment: with PYTHONUNBUFFERED a write cut short by the closed pipe is dropped silently.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    for extra in ([], ["--json"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ptc.cli", "run", "many.py", *extra],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(60) == 141, stderr  # 128 + SIGPIPE, as a shell reports `yes | head -1`
        assert stderr == "", stderr  # no BrokenPipeError, no "Exception ignored"


def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    marker = tmp_path / "started"
    (tmp_path / "marktools.py").write_text(
        "from pathlib import Path\nfrom ptc import ToolCatalog\ncatalog = ToolCatalog()\n\n"
        "@catalog.tool(domain='test')\ndef started() -> bool:\n"
        f"    Path({str(marker)!r}).touch()\n    return True\n"
    )
    (tmp_path / "forever.py").write_text(
        "import asyncio\nfrom tools.test import started\nawait started()\nwhile True:\n    await asyncio.sleep(0.05)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptc.cli", "run", "forever.py", "--tools", "marktools:catalog", "--timeout", "60"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 130, stderr
    assert stderr == "ptc: interrupted\n" and stdout == ""


# -- 5. python -m ptc, programs on stdin, the program's value -------------------------------------


def test_python_dash_m_ptc(tmp_path):
    (tmp_path / "hello.py").write_text("print('hello')\n")
    proc = ptc("run", "hello.py", cwd=tmp_path, module="ptc")
    assert proc.returncode == 0 and proc.stdout == "hello\n", proc.stderr
    proc = ptc("--help", cwd=tmp_path, module="ptc")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: ptc ")


def test_run_reads_the_program_from_stdin(tmp_path):
    proc = ptc("run", "-", cwd=tmp_path, input="print('from stdin')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from stdin\n"


@pytest.mark.parametrize(
    ("program", "stdout"),
    [
        ("print('x')\n6 * 7\n", "x\n42\n"),
        ("result = {'answer': 42, 'names': ['a']}\n", "{'answer': 42, 'names': ['a']}\n"),
        ("'text'\n", "'text'\n"),  # a repr, like the REPL
        ("print('no newline', end='')\nb'\\x00'\n", "no newline\nb'\\x00'\n"),
        ("class Point:\n    def __repr__(self):\n        return 'Point(1, 2)'\nPoint()\n", "Point(1, 2)\n"),  # as is
        ("print('only output')\n", "only output\n"),  # print() is None: nothing more
        ("x = 1\n", ""),
        ("'\\x1b]52;c;bad\\x07'\n", "'\\x1b]52;c;bad\\x07'\n"),  # a repr escapes control characters itself
    ],
)
def test_run_shows_the_programs_value(tmp_path, program, stdout):
    (tmp_path / "prog.py").write_text(program)
    proc = ptc("run", "prog.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == stdout


def test_run_value_can_be_hidden_and_is_not_shown_for_a_failure(tmp_path):
    (tmp_path / "value.py").write_text("print('x')\n6 * 7\n")
    proc = ptc("run", "value.py", "--no-value", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == "x\n", proc.stderr
    (tmp_path / "fails.py").write_text("result = 5\n1 / 0\n")
    proc = ptc("run", "fails.py", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == "" and "ZeroDivisionError" in proc.stderr
    help_text = " ".join(ptc("run", "--help", cwd=tmp_path).stdout.split())
    assert "or - to read it from standard input" in help_text
    assert "then its value like the REPL" in help_text and "--no-value" in help_text
