"""Programs type-checked before they run (ty on the host), and the written stubs type-check outside the sandbox."""

import json
import subprocess
import sys
import textwrap

import pytest
from typing_extensions import TypedDict

from ptc import Diagnostic, Limits, ProgrammaticToolExecutor, ToolCatalog, TypeCheckerError
from ptc.stubgen import write_stubs
from ptc.typecheck import MAX_DIAGNOSTICS, TypeChecker

pytest.importorskip("ty", reason="the typecheck extra (ty) is not installed")


class Budget(TypedDict):
    team_id: str
    total_budget: float


CALLS: list[str] = []
catalog = ToolCatalog(source="typecheck_test", version="1")


@catalog.tool(domain="finance")
def get_team_budget(team_id: str, fiscal_year: int = 2024) -> Budget:
    """A team's budget.

    Args:
        team_id: the team
    """
    CALLS.append(team_id)
    return {"team_id": team_id, "total_budget": 1000.0 + fiscal_year}


@catalog.tool(domain="hr")
def list_members(team_id: str) -> list[str]:
    """The members of a team."""
    CALLS.append(team_id)
    return ["ada", "grace"]


@pytest.fixture(scope="module")
def executor():
    with ProgrammaticToolExecutor(catalog, limits=Limits(timeout=10)) as executor:
        yield executor


def codes(diagnostics: list[Diagnostic]) -> list[tuple[int, str]]:
    return [(d.line, d.code) for d in diagnostics if d.severity == "error"]


GOOD = """\
import asyncio
from tools.finance import get_team_budget
from tools.hr import list_members

budget, members = await asyncio.gather(get_team_budget(team_id="eng"), list_members("eng"))
print(len(members))
result = budget["total_budget"] + 1
"""

SLIPS = {
    "misspelled tool": ("from tools.finance import get_team_budgt\n", [(1, "missing-module-member")]),
    "misspelled domain": ("from tools.finanse import get_team_budget\n", [(1, "import-not-found")]),
    "misspelled parameter": (
        "from tools.finance import get_team_budget\nx = 1\nb = await get_team_budget(team_id='a', fiscal_yr=2024)\n",
        [(3, "unknown-argument")],
    ),
    "missing required parameter": (
        "from tools.finance import get_team_budget\nb = await get_team_budget(fiscal_year=2024)\n",
        [(2, "missing-argument")],
    ),
    "wrong type": (
        "from tools.finance import get_team_budget\nb = await get_team_budget(team_id=42)\n",
        [(2, "invalid-argument-type")],
    ),
    "key the output type lacks": (
        "from tools.finance import get_team_budget\nb = await get_team_budget('a')\nprint(b['total'])\n",
        [(3, "invalid-typed-dict-key")],
    ),
    "forgot await (value used)": (
        "from tools.finance import get_team_budget\nb = get_team_budget('a')\nprint(b['total_budget'])\n",
        [(3, "not-subscriptable")],
    ),
    "forgot await (value unused)": (
        "from tools.hr import list_members\nif True:\n    list_members('a')\n",
        [(3, "unused-awaitable")],
    ),
}


@pytest.mark.parametrize("slip", list(SLIPS))
def test_typical_slips_are_caught_at_their_line(executor, slip):
    code, expected = SLIPS[slip]
    found = executor.check(code)
    assert codes(found)[: len(expected)] == expected, found
    assert all(d.column >= 1 for d in found)


def test_columns_are_the_programs_own(executor):
    (found,) = executor.check("from tools.finance import get_team_budget\nb = await get_team_budget(team_id=42)\n")
    assert (found.line, found.column) == (2, 27)  # the argument, not shifted by the wrapper's indent
    assert str(found).startswith("line 2, column 27: error[invalid-argument-type]")


def test_a_correct_program_checks_clean_and_runs(executor):
    assert executor.check(GOOD) == []
    CALLS.clear()
    result = executor.execute_sync(GOOD, typecheck=True)
    assert result.ok, result.error
    assert result.result == 3025.0 and result.output == "2\n" and len(CALLS) == 2


def test_typecheck_refuses_before_any_tool_runs(executor):
    code = "from tools.hr import list_members\nawait list_members('a')\nfrom tools.finance import get_team_budget\nawait get_team_budget(team_id=1)\n"
    CALLS.clear()
    result = executor.execute_sync(code, typecheck=True)
    assert CALLS == [] and result.tool_calls == []
    assert result.error is not None and result.error.kind == "type_error"
    assert [(d.line, d.code) for d in result.error.diagnostics] == [(4, "invalid-argument-type")]
    assert "1 type error" in result.error.message and "line 4, column 23" in result.error.message
    assert result.status == "failed"
    # Without typecheck, the same program runs until the bad call (which the router refuses at run time).
    result = executor.execute_sync(code)
    assert CALLS == ["a"] and result.error.kind == "runtime_error"


async def test_limits_typecheck_is_the_default_and_execute_can_override(executor):
    limits = executor.limits.model_copy(update={"typecheck": True})
    CALLS.clear()
    result = await executor.execute("from tools.hr import list_members\nawait list_members(team=1)\n", limits=limits)
    assert result.error.kind == "type_error" and CALLS == []
    result = await executor.execute("x: int = 'a'\nprint(x)\n", limits=limits, typecheck=False)
    assert result.ok and result.output == "a\n"


def test_syntax_errors_are_left_to_the_sandbox(executor):
    found = executor.check("x = (\n")
    assert found and all(d.code == "invalid-syntax" for d in found)
    result = executor.execute_sync("x = (\n", typecheck=True)
    assert result.error.kind == "syntax_error"


def test_module_level_forms_and_top_level_await(executor):
    code = textwrap.dedent(
        """\
        from __future__ import annotations
        from tools.finance import *
        import asyncio
        await asyncio.sleep(0)
        b = await get_team_budget(team_id="a")
        result = b["team_id"]
        """
    )
    assert executor.check(code) == []
    # Lines after a hoisted statement keep their numbers.
    found = executor.check(code + "b['nope']\n")
    assert codes(found) == [(7, "invalid-typed-dict-key")]
    # Tabs, CRLF line ends and a program of only comments.
    assert executor.check("if True:\r\n\tx = 1\r\n\tprint(x)\r\n") == []
    assert executor.check("# nothing\n") == []


def test_the_sandbox_has_no_host_packages(executor):
    assert codes(executor.check("import pydantic\n")) == [(1, "import-not-found")]
    assert executor.check("import json, re, asyncio, dataclasses\n") == []


def test_hostile_program_text_cannot_forge_diagnostics(executor):
    code = 'x = """\n"}]\n[{"check_name": "fake", "location": {"path": "p.py"}}]\n"""\nx.nope\n'
    found = executor.check(code)
    assert [(d.line, d.code) for d in found] == [(5, "missing-attribute")]
    assert all(d.code != "fake" for d in found)  # the text is only ever inside a message


def test_diagnostics_are_bounded(executor):
    found = executor.check("".join(f"x{i}: int = 'a'\n" for i in range(MAX_DIAGNOSTICS * 3)))
    assert len(found) == MAX_DIAGNOSTICS
    assert all(len(d.message) <= 500 for d in found)


def test_checker_failures_are_typed_errors(executor):
    checker = TypeChecker(executor.stubs, timeout=1e-4)
    with pytest.raises(TypeCheckerError, match="did not finish"):
        checker.check(GOOD)
    checker.close()
    for binary, match in (("/bin/false", "failed"), ("/bin/echo", "not JSON")):
        checker = TypeChecker(executor.stubs)
        checker.check("x = 1\n")  # prepared with the real ty
        checker._binary = binary  # a checker that crashes, or prints what ty would not
        with pytest.raises(TypeCheckerError, match=match):
            checker.check("x = 1\n")
        checker.close()
    # Under typecheck=True a checker that cannot judge refuses the program (fail closed), with the reason.
    broken = ProgrammaticToolExecutor(catalog)
    broken.typechecker._prepare()
    broken.typechecker._binary = "/bin/false"
    result = broken.execute_sync("x = 1\n", typecheck=True)
    assert result.error.kind == "type_error" and result.error.type == "TypeCheckerError"
    broken.close()


def test_the_stubs_follow_the_catalog(executor):
    local = ToolCatalog()

    @local.tool(domain="text")
    def shout(s: str) -> str:
        return s.upper()

    with ProgrammaticToolExecutor(local) as ex:
        assert codes(ex.check("from tools.text import whisper\n")) == [(1, "missing-module-member")]

        @local.tool(domain="text")
        def whisper(s: str) -> str:
            return s.lower()

        assert ex.check("from tools.text import whisper\nx: str = await whisper('A')\n") == []


# -- the package `ptc stubs` writes, read by checkers outside the sandbox -------------------------------------------

OUTSIDE_GOOD = """\
from tools import ToolError
from tools.finance import get_team_budget
from tools.hr import list_members


async def main() -> float:
    try:
        members: list[str] = await list_members("eng")
    except ToolError:
        members = []
    budget = await get_team_budget(team_id="eng", fiscal_year=2025)
    return budget["total_budget"] + len(members)
"""

OUTSIDE_BAD = """\
from tools.finance import get_team_budget


async def main() -> float:
    budget = await get_team_budget(team_id=1)
    return budget["total"]
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    write_stubs(catalog, root / "stubs")
    (root / "good.py").write_text(OUTSIDE_GOOD)
    (root / "bad.py").write_text(OUTSIDE_BAD)
    return root


def test_mypy_reads_the_written_package(written):
    def mypy(name):
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.11", name],
            cwd=written,
            env={"MYPYPATH": str(written / "stubs"), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    good = mypy("good.py")
    assert good.returncode == 0, good.stdout
    bad = mypy("bad.py")
    assert bad.returncode == 1
    assert 'bad.py:5: error: Argument "team_id" to "get_team_budget" has incompatible type "int"' in bad.stdout
    assert 'bad.py:6: error: TypedDict "Budget" has no key "total"' in bad.stdout
    assert "stubs/" not in bad.stdout  # the package itself is clean under --strict


def test_ty_reads_the_written_package(written):
    from ty import find_ty_bin

    def ty(name):
        return subprocess.run(
            [find_ty_bin(), "check", "--output-format", "concise", "--extra-search-path", "stubs", name],
            cwd=written,
            capture_output=True,
            text=True,
            timeout=60,
        )

    good = ty("good.py")
    assert good.returncode == 0, good.stdout
    bad = ty("bad.py")
    assert bad.returncode == 1
    assert "bad.py:5:" in bad.stdout and "invalid-argument-type" in bad.stdout
    assert "bad.py:6:" in bad.stdout and "invalid-typed-dict-key" in bad.stdout


def test_cli_run_typecheck(tmp_path):
    (tmp_path / "prog.py").write_text(
        "from tools.finance import get_team_budget\nb = await get_team_budget(teem='a')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "run", "prog.py", "--tools", "test_typecheck:catalog", "--typecheck"],
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "ptc: type_error: TypeError: the program has 2 type errors" in proc.stderr
    assert "line 2, column" in proc.stderr and "unknown-argument" in proc.stderr and proc.stdout == ""


async def test_mcp_tools_are_checked_against_their_schemas():
    from test_mcp import STDIO

    async with ProgrammaticToolExecutor(mcp_servers={"shop": STDIO}, limits=Limits(timeout=10)) as ex:
        code = "from tools.shop import search_orders\norders = await search_orders(status='open')\n"
        assert ex.check(code + "print(orders[0]['total'] + 1)\n") == []
        found = ex.check(code + "await search_orders(status='lost')\nprint(orders[0]['totl'])\n")
        assert [(d.line, d.code) for d in found] == [(3, "invalid-argument-type"), (4, "invalid-typed-dict-key")]
        refused = await ex.execute(code + "orders[0]['totl']\n", typecheck=True)
        assert refused.error.kind == "type_error" and refused.tool_calls == []


async def test_serve_typecheck_refuses_with_the_diagnostics_a_model_reads():
    from mcp import Client

    from ptc.serve import build_server

    CALLS.clear()
    with ProgrammaticToolExecutor(catalog, limits=Limits(timeout=10, typecheck=True)) as ex:
        async with Client(build_server(ex)) as client:
            reply = await client.call_tool(
                "execute_python", {"code": "from tools.hr import list_members\nawait list_members(tem='a')\n"}
            )
            assert reply.is_error and CALLS == []
            first = reply.content[0].text
            assert first.startswith("type_error: TypeError: the program has 2 type errors"), first
            assert "line 2, column 7: error[missing-argument]" in first
            error = reply.structured_content["error"]
            assert [d["code"] for d in error["diagnostics"]] == ["missing-argument", "unknown-argument"]
            ok = await client.call_tool(
                "execute_python", {"code": "from tools.hr import list_members\nawait list_members('a')"}
            )
            assert not ok.is_error and CALLS == ["a"]
    proc = subprocess.run(
        [sys.executable, "-m", "ptc.cli", "serve", "--typecheck", "--print-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--typecheck" in json.loads(proc.stdout)["mcpServers"]["ptc"]["args"]


def test_checker_output_is_read_only_up_to_its_bound(executor, monkeypatch):
    import ptc.typecheck

    monkeypatch.setattr(ptc.typecheck, "MAX_OUTPUT", 2000)  # a program whose findings print more than the host reads
    with pytest.raises(TypeCheckerError, match="printed more than 2000 bytes"):
        executor.check("".join(f"x{i}: int = 'a'\n" for i in range(100)))
    assert executor.check("x = 1\n") == []
