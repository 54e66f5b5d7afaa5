"""Every upstream is hostile input: tools, schemas and MCP servers (real subprocesses, tests/mcp_servers/hostile.py).

1. Text from a tool, a schema or a server never reaches code position in a
   stub, and every tool stays importable and callable whatever its text.
2. Discovery of any schema (recursive, or a "wide and deep" bomb) takes time
   and memory linear in its size.
3. What crosses into the program from a failure is a fixed, whitelisted
   message: no command line, stderr, path, password or connection string.
4. `ptc run` does not let a program's output drive the operator's terminal.
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import enum
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from pydantic import BaseModel

from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolError, ToolParameter
from ptc.hostcalls.backends.mcp.tools import definitions_from_mcp
from ptc.hostcalls.calls.validation import Validator
from ptc.serve import compact
from ptc.stubgen import build_stub, render_api_reference, render_stubs, write_stubs

SERVERS = Path(__file__).resolve().parents[1] / "mcp_servers"
_spec = importlib.util.spec_from_file_location("hostile_server", SERVERS / "hostile.py")
assert _spec is not None and _spec.loader is not None
hostile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hostile)

LIMITS = Limits(timeout=15, memory_bytes=256 << 20)


def command(*args: str) -> str:
    return " ".join([sys.executable, str(SERVERS / "hostile.py"), *args])


def clean(text: str) -> str:
    """Upstream text as a docstring holds it: line ends as newlines."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


@pytest.fixture(scope="module")
def evil() -> Iterator[ProgrammaticToolExecutor]:
    """The injecting server as `tools.evil` (its `exfil` tool is where injected code would send data)."""
    executor = ProgrammaticToolExecutor(mcp_servers={"evil": command("inject")}, limits=LIMITS)
    asyncio.run(executor.connect())
    yield executor
    executor.close()


# -- 1. no upstream text in code position -------------------------------------------
ALLOWED_CALLS = {"_tool", "_call", "TypedDict"}  # the decorator, the one return, a functional TypedDict


def assert_intended_structure(module: str, source: str) -> ast.AsyncFunctionDef:
    """The test's own reading of a tool module: nothing but what the template writes."""
    tree = ast.parse(source)  # also: no NUL, no lone surrogate, no stray quote
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds[:5] == ["Expr", "ImportFrom", "ImportFrom", "ImportFrom", "Assign"], (module, kinds)
    assert kinds[-1] == "AsyncFunctionDef" and set(kinds[5:-1]) <= {"ClassDef", "Assign"}, (module, kinds)
    assert [ast.unparse(n) for n in tree.body[1:4]] == [
        "from __future__ import annotations",
        "from typing import Any, Literal, NotRequired, Required, TypedDict",
        "from tools import _call, _tool",
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name) and node.func.id in ALLOWED_CALLS, (module, ast.unparse(node))
        assert not isinstance(
            node, (ast.Import, ast.Attribute, ast.Lambda, ast.NamedExpr, ast.JoinedStr, ast.Global, ast.Assert)
        ), (module, ast.unparse(node))
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        assert all(isinstance(s, (ast.AnnAssign, ast.Pass, ast.Expr)) for s in cls.body), (module, cls.name)
    function = tree.body[-1]
    assert isinstance(function, ast.AsyncFunctionDef) and len(function.decorator_list) == 1
    assert len(function.body) == 2 and isinstance(function.body[1], ast.Return), module
    return function


def test_every_stub_compiles_to_only_its_intended_structure(evil):
    modules = render_stubs(evil.catalog)
    tools = {t.python_name: t for t in evil.catalog}
    assert len(tools) == len(hostile.inject_tools())  # every tool discovered, none dropped or merged
    for module, source in modules.items():
        compile(source, module, "exec")
        if module.count(".") != 2:
            continue
        function = assert_intended_structure(module, source)
        tool = tools[function.name]
        assert "could not be rendered" not in source  # the full stub, not the minimal fallback
        # the docstrings read as the upstream text, exactly
        module_doc = ast.get_docstring(ast.parse(source), clean=False)
        assert module_doc is not None and module_doc.startswith(f"{clean(tool.name)}: ")
        doc = ast.get_docstring(function, clean=False)
        description = clean(tool.description).strip() or f"The {tool.python_name} tool."
        assert doc is not None and doc.startswith(indented(description)), module


def indented(text: str) -> str:
    """Text as a stub's function docstring holds it: lines after the first indented, blank lines empty."""
    return "\n".join(("    " + line) if line else "" for line in text.split("\n")).lstrip()


async def test_a_program_imports_and_calls_every_tool_and_no_payload_runs(evil):
    functions = sorted(t.python_name for t in evil.catalog if t.name != "exfil")
    r = await evil.execute(
        "import builtins, importlib\n"
        f"functions = {functions!r}\n"
        "calls = {}\n"
        "for name in functions:\n"
        "    tool = getattr(importlib.import_module('tools.evil.' + name), name)\n"
        "    calls[name] = await tool()\n"
        "import tools.evil\n"
        "result = {'calls': calls, 'pwned': hasattr(builtins, 'PWNED'), 'all': sorted(tools.evil.__all__)}\n"
    )
    assert r.error is None, r.error
    assert hostile.MARKER not in r.output and r.result["pwned"] is False
    assert "exfil" not in [c.tool for c in r.tool_calls]  # no injected code called another tool
    assert len(r.tool_calls) == len(functions) and all(c.error is None for c in r.tool_calls)
    assert r.result["all"] == sorted([*functions, "exfil"])  # the domain lists every tool, nothing else
    by_function = {t.python_name: t for t in evil.catalog}
    for name, answer in r.result["calls"].items():
        assert answer["tool"] == by_function[name].name  # the server received its own name
    for i, payload in enumerate(hostile.PAYLOADS):
        (tool,) = [t for t in evil.catalog if t.name == f"{payload}{i}"]
        arguments = r.result["calls"][tool.python_name]["arguments"]
        assert arguments[payload] == payload  # a payload default reached the server intact, as data
        assert arguments["a-b"] == 1 and arguments["a_b"] == 2 and arguments["_call"] == "c"
        assert arguments["model_config"] == "m" and arguments["_private"] == "p"
        assert arguments["idempotency_key"] == "k" and arguments["__class__"] == "d"


def by_function_name(evil: ProgrammaticToolExecutor, index: int) -> str:
    name = f"{hostile.PAYLOADS[index]}{index}"
    return next(t.python_name for t in evil.catalog if t.name == name)


async def test_hostile_parameter_names_are_validated_as_themselves(evil):
    """`_private`, `model_config`, `a-b` are fields like any other: wrong types are caught by name."""
    function = by_function_name(evil, 4)
    r = await evil.execute(
        f"from tools.evil import {function}\nfrom tools import ToolValidationError\n"
        f"try:\n    await {function}(_private=5)\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert r.error is None and "'_private'" in r.result


def test_api_reference_keeps_upstream_text_inside_its_lines(evil):
    reference = render_api_reference(evil.catalog)
    lines = reference.splitlines()
    assert not any(ord(c) < 32 and c != "\n" or 0x7F <= ord(c) < 0xA0 for c in reference)  # no controls, no \r
    fences = [line for line in lines if line.startswith(("```", "~~~"))]
    assert fences == ["```python", "```"] * len(evil.catalog)  # only ptc's own code blocks
    assert [line for line in lines if line.startswith("#")] == ["# Tools API: default 1.0", "## tools.evil"]
    assert sum(line.startswith("async def ") for line in lines) == len(evil.catalog)


class Color(enum.StrEnum):
    RED = "red"


def python_catalog() -> ToolCatalog:
    """Hostile text that only Python tools can carry (MCP's JSON cannot): lone surrogates, nan, objects."""
    catalog = ToolCatalog(source='src """\n\x00', version="1\\")
    catalog.add_tool(
        ToolDefinition(
            name="declared",
            domain="py",
            description='lone \udc00 surrogate """ and \x00',
            parameters=[
                ToolParameter(name="text", required=False, default="d\ud800", description="\ud800"),
                ToolParameter(name="nan", type="number", required=False, default=float("nan")),
                ToolParameter(name="inf", type="number", required=False, default=float("-inf")),
                ToolParameter(name="huge", type="integer", required=False, default=10**5000),
                ToolParameter(name="thing", type="object", required=False, default=object()),
                ToolParameter(name="color", type="string", required=False, default=Color.RED),
                ToolParameter(name="choice", schema={"enum": [float("nan"), {"a": 1}, [1], "ok"]}, required=False),
                ToolParameter(name="fixed", schema={"const": {"a": [1]}}, required=False),
            ],
        ),
        handler=lambda payload: sorted(payload),
    )

    @catalog.tool(domain="py")
    def defaults(
        x: float = float("nan"), when: datetime.date = datetime.date(2020, 1, 2), c: Color = Color.RED
    ) -> dict:
        """Defaults whose repr is not a literal: the stub leaves them to the tool."""
        return {"nan": math.isnan(x), "when": when.isoformat(), "color": c.value}

    return catalog


async def test_python_tools_with_unprintable_text_and_defaults_stay_importable(tmp_path):
    catalog = python_catalog()
    for module, source in render_stubs(catalog).items():
        compile(source, module, "exec")
        if module.count(".") == 2:
            assert_intended_structure(module, source)
    for path in write_stubs(catalog, tmp_path):  # every module is UTF-8 text on disk
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS)
    r = await executor.execute(
        "from tools.py import declared, defaults\n"
        "result = [await declared(), await defaults(), ascii(declared.__doc__.splitlines()[0])]"
    )
    assert r.error is None, r.error
    declared_keys, defaults_value, first_line = r.result
    assert declared_keys == ["choice", "color", "fixed", "huge", "inf", "nan", "text", "thing"]  # the tool's own
    assert defaults_value == {"nan": True, "when": "2020-01-02", "color": "red"}
    assert first_line == ascii('lone \ufffd surrogate """ and \x00')  # as written, a lone surrogate as U+FFFD
    with pytest.raises(ValueError, match="lone surrogate"):
        ToolDefinition(name="bad\ud800name")  # a name is sent in every call: it must be UTF-8 text


def test_a_tampered_stub_is_rejected(evil):
    """The check after rendering: a module with anything more than the template writes is refused."""
    from ptc.stubgen.verify import StubError, verify_tool_module

    tool = next(t for t in evil.catalog if t.name == "exfil")
    stub = build_stub(tool)
    modules = render_stubs(evil.catalog)
    source = modules[stub.module]
    doc = ast.get_docstring(ast.parse(source), clean=False)
    verify_tool_module(source, stub, doc)
    tampered = [
        source + "\nprint('PWNED')\n",
        source.replace("from tools import _call, _tool", "from tools import _call, _tool\nimport os"),
        source.replace("data: str | None = None", "data: str | None = __import__('os').getcwd()"),
        source.replace("-> Any:", "-> 'os.system(1)':"),
        source.replace('"""Where injected code', '"""Where\nx = 1\n"""injected code'),
        source.replace("    return await", "    print(1)\n    return await"),
        source.replace("@_tool(", "@print\n@_tool("),
    ]
    for bad in tampered:
        assert bad != source
        with pytest.raises(StubError):
            verify_tool_module(bad, stub, doc)


# -- 2. recursive and large schemas -----------------------------------------------------
def tree(depth: int) -> dict[str, Any]:
    return {"value": depth, "left": tree(depth - 1) if depth > 1 else None, "right": None}


async def test_a_recursive_schema_over_mcp_is_discovered_fast_and_callable():
    started = time.perf_counter()
    async with ProgrammaticToolExecutor(mcp_servers={"trees": command("schemas")}, limits=LIMITS) as executor:
        render_stubs(executor.catalog)
        render_api_reference(executor.catalog)
        discovered = time.perf_counter() - started  # a server start is ~1 s; naive inlining never finished
        assert discovered < 8, discovered
        stub = render_stubs(executor.catalog)["tools.trees.tree_depth"]
        assert "class Node(TypedDict, total=False):" in stub and "    left: Node | None\n" in stub  # refers to itself
        r = await executor.execute(
            "from tools.trees import tree_depth, tree_echo, bomb, self_root\n"
            f"tree = {tree(6)!r}\n"
            "result = [await tree_depth(tree=tree), await tree_echo(tree=tree),\n"
            "          await bomb(value={'a': {'b': {'a': {}}}}), await self_root(child={'child': {'n': 1}}, n=0)]"
        )
        assert r.error is None, r.error
        depth, echoed, bombed, rooted = r.result
        assert depth == "6" and echoed == tree(6)
        assert bombed["arguments"] == {"value": {"a": {"b": {"a": {}}}}}
        assert rooted["arguments"] == {"child": {"child": {"n": 1}}, "n": 0}


def discovered(schema: dict[str, Any]) -> ToolDefinition:
    """The definition an MCP tool with this input schema becomes."""
    ((definition, _, _),) = definitions_from_mcp("d", [mcp_types.Tool(name="t", input_schema=schema)])
    return definition


def test_a_wide_and_deep_schema_bomb_resolves_in_well_under_a_second():
    for levels in (30, 300):
        started = time.perf_counter()
        definition = discovered(hostile.bomb_schema(levels))
        catalog = ToolCatalog()
        catalog.add_tool(definition)
        source = render_stubs(catalog)["tools.d.t"]
        Validator(definition, None)({"value": {"a": {"a": {"b": {}}}}})  # D3 is an object, checked at any depth
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, (levels, elapsed)
        assert len(definition.model_dump_json()) < 2_000_000 and len(source) < 100_000
        assert "nested too deeply" in source  # the stub says what became Any


class Node(BaseModel):
    value: int
    left: Node | None = None
    right: Node | None = None


async def test_a_self_referencing_pydantic_model_is_a_tool():
    catalog = ToolCatalog()

    @catalog.tool(domain="trees")
    def depth(tree: Node) -> int:
        """The depth of a tree (the handler gets a real Node)."""
        assert isinstance(tree, Node)
        return 1 + max(depth(tree.left) if tree.left else 0, depth(tree.right) if tree.right else 0)

    @catalog.tool(domain="trees")
    def grow(levels: int) -> Node:
        """A tree (a recursive output schema)."""
        return Node.model_validate(tree(levels))

    stub = render_stubs(catalog)["tools.trees.depth"]
    assert "class Node(TypedDict, total=False):" in stub and "    left: Node | None\n" in stub
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS)
    r = await executor.execute(
        f"from tools.trees import depth, grow\nresult = [await depth(tree={tree(5)!r}), await grow(levels=3)]"
    )
    assert r.error is None, r.error
    assert r.result == [5, tree(3)]


def test_schema_keywords_are_read_only_where_a_schema_has_them():
    """A property named `$ref` or `definitions`, or a default that looks like a reference, is data."""
    properties = {
        "$ref": {"type": "string"},
        "definitions": {"type": "integer"},
        "link": {"type": "object", "default": {"$ref": "#/nowhere"}},
    }
    definition = discovered({"type": "object", "properties": properties})
    assert {p.name: p.schema_dict() for p in definition.parameters} == properties
    assert definition.notes == []


# -- 3. host secrets never reach the program ------------------------------------------
API_KEY = "sk-live-" + "7f3a9c2e51d84b06"


async def test_a_crashing_mcp_server_does_not_give_the_program_its_command_line_or_stderr(tmp_path):
    events: list[Any] = []
    executor = ProgrammaticToolExecutor(
        mcp_servers={"crm": command("crash", f"--api-key={API_KEY}", "--state", str(tmp_path))},
        limits=LIMITS,
        policy=Policy(timeout=10, max_retries=1, backoff=0),
        on_event=events.append,
    )
    async with executor:
        r = await executor.execute(
            "from tools.crm import explode\nfrom tools import ToolError\n"
            "try:\n    await explode()\nexcept ToolError as e:\n    result = [type(e).__name__, str(e), repr(e.args)]"
        )
    assert r.error is None, r.error
    assert r.result[:2] == ["ToolError", "MCP server 'crm' is unavailable"]  # the restart failed
    seen = json.dumps([r.output, r.result, compact(r), [c.model_dump() for c in r.tool_calls]])
    for secret in (API_KEY, API_KEY[-8:], "hunter2", "--api-key", str(tmp_path), sys.executable):
        assert secret not in seen
    details = " ".join(e.error or "" for e in events)
    assert "hunter2" in details and API_KEY in details  # the operator still gets the whole story


SECRET = "s3cr3t-" + "b9d2"


def secret_tools() -> ToolCatalog:
    catalog = ToolCatalog()

    @catalog.tool(domain="leaky")
    def shell() -> str:
        raise subprocess.CalledProcessError(1, ["deploy", f"--token={SECRET}"], output=SECRET, stderr=SECRET)

    @catalog.tool(domain="leaky")
    def oserror() -> str:
        raise OSError(f"/srv/{SECRET}/data.csv missing")

    @catalog.tool(domain="leaky")
    def value() -> str:
        raise ValueError(f"password={SECRET}")

    @catalog.tool(domain="leaky")
    def connection() -> str:
        raise ConnectionError(f"postgres://admin:{SECRET}@db.internal:5432/prod")

    @catalog.tool(domain="leaky")
    def key() -> str:
        raise KeyError(SECRET)

    @catalog.tool(domain="leaky")
    def exits() -> str:
        raise SystemExit(f"fatal: {SECRET}")

    @catalog.tool(domain="leaky")
    def deliberate() -> str:
        raise ToolError("out of stock " + "x" * 100_000)

    return catalog


async def test_python_tool_exceptions_reach_the_program_as_fixed_messages():
    events: list[Any] = []
    executor = ProgrammaticToolExecutor(
        secret_tools(), limits=LIMITS, policy=Policy(max_retries=0), on_event=events.append
    )
    names = ["shell", "oserror", "value", "connection", "key", "exits", "deliberate"]
    r = await executor.execute(
        f"from tools.leaky import {', '.join(names)}\nfrom tools import ToolError\nresult = {{}}\n"
        f"for tool in [{', '.join(names)}]:\n"
        "    try:\n        await tool()\n    except ToolError as e:\n"
        "        result[tool.__name__] = [type(e).__name__, str(e), repr(e.args), str(e.__cause__)]"
    )
    assert r.error is None, r.error
    messages = {name: value[1] for name, value in r.result.items()}
    assert messages == {
        "shell": "shell failed (CalledProcessError)",
        "oserror": "oserror failed (OSError)",
        "value": "value failed (ValueError)",
        "connection": "connection failed (ConnectionError)",
        "key": "key failed (KeyError)",
        "exits": "exits failed (SystemExit)",
        "deliberate": "out of stock " + "x" * (4000 - len("out of stock ")) + "... (truncated)",
    }
    seen = json.dumps([r.output, r.result, compact(r), [c.model_dump() for c in r.tool_calls]])
    assert SECRET not in seen
    failures = [e.error for e in events if e.kind == "failure"]
    assert len(failures) == len(names) and sum(SECRET in f for f in failures) == 6  # details for the operator


# -- 4. the operator's terminal -------------------------------------------------------
CONTROL = "\x1b]52;c;UFdORUQ=\x07\x1b]0;owned\x07\x1b[2J\x1b[1A\r\x9b31m\x7f\x00\x08"


def ptc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`ptc ...` as a terminal would receive it (bytes as UTF-8, no newline translation: a `\r` stays one)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ptc.cli", *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_ptc_run_escapes_terminal_control_sequences(tmp_path):
    (tmp_path / "loud.py").write_text(
        "import sys\n"
        f"print({CONTROL!r} + 'out\\tend')\n"
        f"print({CONTROL!r}, file=sys.stderr)\n"
        f"raise ValueError({CONTROL!r})\n"
    )
    proc = ptc("run", "loud.py", cwd=tmp_path)
    assert proc.returncode == 1
    for stream in (proc.stdout, proc.stderr):
        assert not any(c in stream for c in "\x1b\x07\r\x9b\x7f\x00\x08")
        assert "\\x1b]52;c;UFdORUQ=\\x07" in stream and "\\x1b[2J" in stream and "\\x0d\\x9b31m" in stream
    assert proc.stdout.endswith("\\x08out\tend\n")  # tab and newline kept
    assert proc.stderr.count("\\x1b]0;owned\\x07") >= 3  # the output, the error line and the traceback
    raw = ptc("run", "loud.py", "--raw", cwd=tmp_path)
    assert raw.stdout == CONTROL + "out\tend\n"  # --raw: as the program wrote it


def test_an_mcp_server_failing_at_startup_is_shown_to_the_operator_escaped(tmp_path):
    (tmp_path / "p.py").write_text("print(1)\n")
    noisy = f"{sys.executable} -c \"import sys; sys.stderr.write('boom \\x1b]0;owned\\x07'); sys.exit(3)\""
    proc = ptc("run", "p.py", "--mcp", f"bad={noisy}", cwd=tmp_path)
    assert proc.returncode != 0 and "bad" in proc.stderr and "boom" in proc.stderr  # the operator's details
    assert "\x1b" not in proc.stderr and "\\x1b]0;owned\\x07" in proc.stderr
