"""Keyword-only parameters in stubs (`ToolParameter(keyword_only=True)`): rendered after `*`, and checked so."""

import ast

import pytest

from ptc import ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolParameter
from ptc.errors import StubError
from ptc.stubgen import render_stubs
from ptc.stubgen.render import build_stub
from ptc.stubgen.verify import verify_tool_module


def catalog() -> ToolCatalog:
    catalog = ToolCatalog()
    catalog.add_tool(
        ToolDefinition(
            name="ask",
            domain="kw",
            parameters=[
                ToolParameter(name="mode", type="string", required=False, default="fast", keyword_only=True),
                ToolParameter(name="question", type="string"),
                ToolParameter(name="tries", type="integer", keyword_only=True),  # required, keyword-only
                ToolParameter(name="note", type="string", required=False),
            ],
        ),
        handler=lambda payload: payload,
    )
    return catalog


def test_keyword_only_parameters_come_after_the_star():
    source = render_stubs(catalog())["tools.kw.ask"]
    assert (
        "async def ask(question: str, note: str | None = None, *, tries: int, mode: str = 'fast', "
        "idempotency_key: str | None = None) -> Any:" in source
    )
    assert "could not be rendered" not in source  # the full stub passed its check


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("*, tries: int, ", "tries: int, *, "),  # a keyword-only parameter made positional
        ("note: str | None = None, *, ", "*, note: str | None = None, "),  # and the other way
        ("mode: str = 'fast', idempotency_key", "idempotency_key: str | None = None, mode"),
        ("mode: str = 'fast'", "mode: str = __import__('os').name"),
    ],
)
def test_the_check_knows_which_parameters_are_keyword_only(old, new):
    stub = build_stub(next(iter(catalog())))
    source = render_stubs(catalog())[stub.module]
    doc = ast.get_docstring(ast.parse(source), clean=False)
    verify_tool_module(source, stub, doc)
    assert old in source
    with pytest.raises(StubError):
        verify_tool_module(source.replace(old, new, 1), stub, doc)


async def test_a_program_passes_them_by_keyword():
    async with ProgrammaticToolExecutor(catalog()) as executor:
        r = await executor.execute("from tools.kw import ask\nresult = await ask('why', tries=2)")
    assert r.error is None and r.result == {"question": "why", "tries": 2, "mode": "fast", "note": None}
