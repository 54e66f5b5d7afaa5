"""Stub modules compiled once by an instance that runs no program, then served as code (ptc.stub_code).

Real guest, real tools: what a program sees of a compiled stub is what it saw of one compiled from
source (signature, docstring, source lines, validation), no program can poison the code later
executions load, and a journal recorded before the code was ready replays after.
"""

from __future__ import annotations

import pytest
from session_tools import CALLS, shop

from ptc import Limits, ProgrammaticToolExecutor

IMPORT = "from tools.shop import price, stock"
SEEN = """
from tools.shop import stock
import inspect
source = inspect.getsource(stock)
try:
    await stock(sku=3)
except Exception as exc:
    error = (type(exc).__name__, str(exc))
result = [str(inspect.signature(stock)), stock.__doc__.splitlines()[0], 'async def stock' in source, error]
"""


@pytest.fixture
def executor() -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(shop("stub-code-test"), limits=Limits(timeout=10), tenant_id="stub-code")


def _compiled(executor: ProgrammaticToolExecutor, module: str) -> bool:
    text = executor._module_source(module)
    return text is not None and text.startswith("\0")


async def test_warm_up_compiles_the_catalogs_stubs_and_they_behave_as_from_source(executor):
    await executor.warm_up()
    assert executor._stub_code.wait_idle()
    assert all(_compiled(executor, m) for m in ("tools", "tools.shop", "tools.shop.stock", "tools.shop.refund"))
    compiled = await executor.execute(SEEN)
    assert compiled.error is None, compiled.error
    signature, doc, has_source, (error, message) = compiled.result
    assert signature == "(sku: 'str', *, idempotency_key: 'str | None' = None) -> 'int'", signature
    assert doc == "Units in stock (inline: answered at submit)." and has_source
    assert error == "ToolValidationError" and "sku" in message
    await executor.aclose()


async def test_a_program_cannot_poison_the_code_later_executions_load(executor):
    evil = (
        "import builtins, marshal\n"
        "def poisoned(*args, **kwargs):\n    raise SystemExit('poisoned')\n"
        "builtins.compile = marshal.loads = marshal.dumps = poisoned\n"
        f"{IMPORT}\n"
    )
    await executor.execute(evil)
    assert executor._stub_code.wait_idle()
    calls = CALLS["stock"]
    r = await executor.execute(f"{IMPORT}\nresult = await stock(sku='A1')")
    assert r.error is None and r.result == 7, r.error
    assert CALLS["stock"] == calls + 1
    await executor.aclose()


async def test_a_journal_recorded_from_source_replays_from_code(executor):
    session = executor.session()
    assert (await session.execute(f"{IMPORT}\nn = await stock(sku='A1')")).error is None
    assert executor._stub_code.wait_idle() and _compiled(executor, "tools.shop.stock")
    journal = session.journal().model_dump_json()
    await session.aclose()
    calls = CALLS["stock"]
    restored = await executor.restore_session(journal)
    r = await restored.execute("n + await stock(sku='B2')")
    assert r.error is None and r.result == 14, r.error
    assert CALLS["stock"] == calls + 1  # the restore ran no tool; the new cell ran one
    await restored.aclose()
    await executor.aclose()


TYPES = """
import sys, typing
from tools.f import size
module = sys.modules['tools.f.size']
before = [n for n in ('Node', 'SizeInput') if n in vars(module)]
from tools.f.size import Node, SizeInput
result = [
    await size(tree={'name': 'r', 'children': [{'name': 'a'}]}), before, repr(Node), 'Node' in dir(module),
    *[[sorted(c.__required_keys__), {k: str(v) for k, v in typing.get_type_hints(c).items()}] for c in (Node, SizeInput)],
]
from_source = {'__name__': 'tools.f.size'}  # the module's own source, run as written
exec(compile(SOURCE, 'tools/f/size.py', 'exec', dont_inherit=True), from_source)
result.append([[sorted(from_source[n].__required_keys__), {k: str(v) for k, v in typing.get_type_hints(from_source[n]).items()}] for n in ('Node', 'SizeInput')])
"""


async def test_a_compiled_tool_module_makes_its_types_on_first_use_and_they_are_the_same():
    from test_schemas import function_catalog

    executor = ProgrammaticToolExecutor(function_catalog(), limits=Limits(timeout=10))
    await executor.warm_up()
    assert executor._stub_code.wait_idle() and _compiled(executor, "tools.f.size")
    source = executor.stubs.source("tools.f.size")
    r = await executor.execute(f"SOURCE = {source!r}\n{TYPES}")
    assert r.error is None, r.error
    count, before, shown, listed, node, size_input, from_source = r.result
    assert count == 2 and before == [] and listed  # the types were made on first use, not at import
    assert shown == "<class 'tools.f.size.Node'>"
    assert node[1]["children"] == "list[tools.f.size.Node]", node
    assert [node[0], size_input[0]] == [k for k, _ in from_source]  # required keys as the source makes them
    assert node[0] == ["name"] and size_input[0] == ["tree"]  # Required[...] seen through the string annotations
    assert node[1].keys() == from_source[0][1].keys() and size_input[1].keys() == from_source[1][1].keys()
    await executor.aclose()


@pytest.mark.parametrize(
    "program, expected",
    [
        ("import tools.shop.stock as m\nresult = type(m).__name__", "module"),
        ("from tools.shop import stock\nresult = type(stock).__name__", "function"),
        ("import tools.shop\nresult = type(tools.shop.stock).__name__", "function"),
        ("from tools.shop.stock import StockInput\nresult = StockInput(sku='A1')", {"sku": "A1"}),
        ("from tools.shop import stock, price\nresult = [await stock(sku='A1'), await price(sku='A1')]", [7, 3.5]),
        ("def later():\n    from tools.shop import stock\n    return stock\nresult = later().__name__", "stock"),
        ("from tools.shop import nope", "ImportError: cannot import name 'nope' from 'tools.shop'"),
        ("import tools.nope", "ModuleNotFoundError: No module named 'tools.nope'"),
        ("from tools.nope import x", "ModuleNotFoundError: No module named 'tools.nope'"),
    ],
)
async def test_top_level_imports_are_loaded_before_the_program_runs_as_importlib_would(program, expected):
    # ptc._ptc_tools.preload loads what a program's top-level statements import without importlib's machinery.
    executor = ProgrammaticToolExecutor(shop("stub-code-imports"), limits=Limits(timeout=10))
    r = await executor.execute(program)
    if isinstance(expected, str) and "Error" in expected:
        assert r.error is not None and f"{r.error.type}: {r.error.message}".startswith(expected), r.error
    else:
        assert r.error is None and r.result == expected, (r.error, r.result)
    await executor.aclose()


async def test_a_compiler_that_fails_leaves_the_modules_served_as_source(executor, monkeypatch):
    # A compile that raises (an instance that would not start, say) must not wedge the cache: the modules
    # stay source, the thread ends, and programs run as before.
    import ptc.stub_code

    def broken(sources: dict[str, str]) -> dict[str, bytes]:
        raise RuntimeError("no instance")

    monkeypatch.setattr(ptc.stub_code, "_compile", broken)
    await executor.warm_up()
    assert executor._stub_code.wait_idle(timeout=10)
    assert not _compiled(executor, "tools.shop.stock")
    r = await executor.execute(f"{IMPORT}\nresult = await stock(sku='A1')")
    assert r.error is None and r.result == 7, r.error
    assert executor._stub_code.wait_idle(timeout=10)  # a refused module is not queued again
    await executor.aclose()
