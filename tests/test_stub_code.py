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


async def test_a_module_imported_once_is_served_compiled_and_behaves_the_same(executor):
    first = await executor.execute(SEEN)  # from source: the modules it imports are queued
    assert first.error is None, first.error
    assert executor._stub_code.wait_idle()
    assert all(_compiled(executor, m) for m in ("tools", "tools.shop", "tools.shop.stock"))
    assert not _compiled(executor, "tools.shop.refund")  # never imported: never compiled
    later = await executor.execute(SEEN)
    assert later.error is None and later.result == first.result, (first.result, later.result)
    assert later.result[3][0] == "ToolValidationError"
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
hints = typing.get_type_hints(Node)
result = [
    await size(tree={'name': 'r', 'children': [{'name': 'a'}]}),
    {k: str(v) for k, v in hints.items()},
    repr(Node), sorted(SizeInput.__required_keys__), 'Node' in dir(module),
    str(typing.get_type_hints(size)['tree']), before,
]
"""


async def test_a_compiled_tool_module_makes_its_types_on_first_use_and_they_are_the_same():
    from test_schemas import function_catalog

    executor = ProgrammaticToolExecutor(function_catalog(), limits=Limits(timeout=10))
    from_source = await executor.execute(TYPES)
    assert from_source.error is None, from_source.error
    assert executor._stub_code.wait_idle() and _compiled(executor, "tools.f.size")
    compiled = await executor.execute(TYPES)
    assert compiled.error is None, compiled.error
    assert compiled.result[:-1] == from_source.result[:-1], (from_source.result, compiled.result)
    assert compiled.result[1]["children"] == "list[tools.f.size.Node]"
    assert compiled.result[2] == "<class 'tools.f.size.Node'>"
    assert from_source.result[-1] == ["Node", "SizeInput"] and compiled.result[-1] == []  # made on first use
    await executor.aclose()
