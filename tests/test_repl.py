"""`ptc repl`: piped input, and a person at a real terminal (tmux): prompts, history, Ctrl-C, Ctrl-D."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from test_first_contact import ptc
from test_mcp import STDIO

from ptc.repl import STOPPED

TOOLS = ["--tools", "ptc.examples.budget:catalog"]


def test_piped_input_runs_as_the_console_cuts_it(tmp_path):
    cells = (
        "from tools.finance import get_team_budget\n"
        "budget = await get_team_budget(team_id='ops-team-3')\n"
        "def total(b):\n"
        "    return b['total_budget']\n"
        "\n"
        "total(budget)\n"
        "print('\\x1b[2Jcleared')\n"
        "for i in range(2):\n"
        "    print(i)\n"
    )  # the input ends inside the `for`: it runs too
    proc = ptc("repl", *TOOLS, cwd=tmp_path, input=cells)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "410000\n\\x1b[2Jcleared\n0\n1\n", proc.stdout
    assert ">>>" not in proc.stdout + proc.stderr  # no prompts without a terminal


def test_repl_with_an_mcp_server(tmp_path):
    proc = ptc(
        "repl",
        "--mcp",
        f"shop={STDIO}",
        cwd=tmp_path,
        input="from tools.shop import get_weather\nawait get_weather(city='Lima')\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "'sunny in Lima'\n"


def test_piped_input_with_a_failing_cell_goes_on_and_exits_1(tmp_path):
    proc = ptc("repl", cwd=tmp_path, input="x = 1\n1/0\nx + 1\n")
    assert proc.returncode == 1
    assert proc.stdout == "2\n"
    assert "ZeroDivisionError: division by zero" in proc.stderr and 'File "<cell 1>"' in proc.stderr


def test_repl_takes_the_tool_flags_and_says_what_is_wrong(tmp_path):
    help_text = ptc("repl", "--help", cwd=tmp_path).stdout
    for flag in ("--tools", "--mcp", "--a2a", "--timeout", "--memory", "--raw"):
        assert flag in help_text
    bad = ptc("repl", "--a2a", "agent=ftp://x", cwd=tmp_path, input="")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "http:// or https://" in bad.stderr
    bad = ptc("repl", "--timeout", "0", cwd=tmp_path, input="")
    assert bad.returncode == 2 and "positive number of seconds" in bad.stderr


class Terminal:
    """A real terminal: `ptc repl` in a tmux pane, driven by keys, read from the screen."""

    def __init__(self, tmp_path, home):
        # A server of its own per terminal: reusing one socket name raced the
        # previous test's kill-server ("server exited unexpectedly" in CI).
        self.tmux = ["tmux", "-L", f"ptc-test-{os.getpid()}-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
        env = f"env HOME={home} PTC_CACHE_DIR={os.environ.get('PTC_CACHE_DIR', os.path.expanduser('~/.cache/ptc'))}"
        command = f"cd {tmp_path} && {env} {sys.executable} -m ptc.cli repl {' '.join(TOOLS)}; echo EXIT=$?; sleep 60"
        self.run("new-session", "-d", "-s", "repl", "-x", "150", "-y", "50", command)

    def run(self, *args):
        return subprocess.run([*self.tmux, *args], capture_output=True, text=True, check=True, timeout=30).stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "repl", *keys)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "repl", "-S", "-200")

    def wait_for(self, text, count=1, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} (x{count}) never showed:\n{self.screen()}")

    def close(self):
        subprocess.run([*self.tmux, "kill-server"], capture_output=True, timeout=30)


@pytest.fixture
def terminal(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("no tmux")
    terminals = []

    def start(home):
        terminals.append(Terminal(tmp_path, home))
        return terminals[-1]

    yield start
    for t in terminals:
        t.close()


def test_repl_in_a_real_terminal(terminal, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    t = terminal(home)
    t.wait_for(">>>")
    assert "ptc repl: Python 3.14 in a sandbox, 2 tools (tools.finance, tools.hr)" in t.screen()
    t.keys("from tools.finance import get_team_budget", "Enter")
    t.keys("x = (await get_team_budget(team_id='ops-team-3'))['total_budget']", "Enter")
    t.keys("def f():", "Enter")
    t.wait_for("...")
    t.keys("    return x + 1", "Enter", "Enter")
    t.keys("f()", "Enter")
    t.wait_for("410001")
    # Ctrl-C stops a running cell; the session goes on with what the cells before it left
    t.keys("while True: x = 0", "Enter", "Enter")
    time.sleep(1.0)
    t.keys("C-c")
    t.wait_for(STOPPED)
    t.keys("f()", "Enter")
    t.wait_for("410001", count=2)
    # Ctrl-C while typing clears the line
    t.keys("half a line")
    t.keys("C-c")
    t.wait_for("KeyboardInterrupt\n>>>")
    # history: Up brings back the last line
    t.keys("Up", "Enter")
    t.wait_for("410001", count=3)
    # control characters a cell prints are shown, not obeyed
    t.keys("print('\\x1b]0;title\\x07done')", "Enter")
    t.wait_for("\\x1b]0;title\\x07done")
    t.keys("1/0", "Enter")
    t.wait_for("ZeroDivisionError: division by zero")
    t.keys("C-d")
    screen = t.wait_for("EXIT=0")
    assert 'Traceback (most recent call last):\n  File "<cell' in screen
    assert "f()\n" in (home / ".ptc_history").read_text()


def test_repl_without_a_writable_home(terminal, tmp_path):
    t = terminal(tmp_path / "no-such-home")
    t.wait_for(">>>")
    t.keys("6 * 7", "Enter")
    t.wait_for("42")
    t.keys("C-d")
    t.wait_for("EXIT=0")
