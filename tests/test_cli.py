"""`ptc run` as a person uses it."""

import json
import subprocess
import sys


def ptc(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "ptc.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_run_prints_output_and_exits_zero(tmp_path):
    (tmp_path / "hello.py").write_text("print('hello from the sandbox')\n")
    proc = ptc("run", "hello.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from the sandbox\n"


def test_run_failure_exits_non_zero_with_kind_and_traceback(tmp_path):
    (tmp_path / "bad.py").write_text("print('before')\ndef f():\n    raise ValueError('nope')\nf()\n")
    proc = ptc("run", "bad.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == "before\n"
    assert "runtime_error" in proc.stderr and "ValueError: nope" in proc.stderr
    assert 'File "<program>", line 3, in f' in proc.stderr


def test_run_json_and_limits(tmp_path):
    (tmp_path / "spin.py").write_text("while True: pass\n")
    proc = ptc("run", "spin.py", "--json", "--timeout", "1", "--fuel", "100000000", "--memory", "128", cwd=tmp_path)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["error"]["kind"] in ("out_of_fuel", "timeout")
    (tmp_path / "ok.py").write_text("result = {'answer': 42}\n")
    proc = ptc("run", "ok.py", "--json", cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["result"] == {"answer": 42}


def test_run_with_tools(tmp_path):
    (tmp_path / "mytools.py").write_text(
        "from ptc import ToolCatalog\ncatalog = ToolCatalog()\n\n@catalog.tool(domain='text')\ndef shout(s: str) -> str:\n    return s.upper()\n"
    )
    (tmp_path / "prog.py").write_text("from tools.text import shout\nprint(await shout(s='hi'))\n")
    proc = ptc("run", "prog.py", "--tools", "mytools:catalog", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "HI\n"
    proc = ptc(
        "run", "prog.py", "--tools", "mytools:catalog", "--tools", "ptc.examples.budget:catalog", "--json", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tool_calls"][0]["tool"] == "shout"


def test_bad_tools_spec_is_a_clear_error(tmp_path):
    proc = ptc("run", "x.py", "--tools", "no_such_module:catalog", cwd=tmp_path)
    assert proc.returncode != 0 and "cannot load --tools" in proc.stderr


def test_stubs_and_api(tmp_path):
    proc = ptc("stubs", "--tools", "ptc.examples.budget:catalog", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "tools" / "finance" / "get_team_budget.py").exists()
    assert (tmp_path / "out" / "tools" / "hr" / "get_team_members.py").exists()
    proc = ptc("api", "--tools", "ptc.examples.budget:catalog", cwd=tmp_path)
    assert proc.returncode == 0
    assert "## tools.finance" in proc.stdout and "async def get_team_budget(team_id: str" in proc.stdout
    assert "## tools.hr" in proc.stdout


def test_demo(tmp_path):
    proc = ptc("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "sequential" in proc.stdout and "asyncio.gather" in proc.stdout
    assert "same result: True" in proc.stdout
    assert proc.stdout.count("get_team_budget") >= 8
    # MCP + A2A: the demo's own agent, started on a free port and stopped again
    assert "== MCP + A2A: 12 tool calls (4 to the A2A agent `advisor` at http://127.0.0.1:" in proc.stdout
    assert proc.stdout.count("advisor.review_budget") == 4 and "ops-team-3: hold" in proc.stdout
    assert "a2a_status events (submitted, working, completed); the agent is stopped" in proc.stdout
