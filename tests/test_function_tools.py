"""Plain functions as tools: definitions from signatures, validation, stubs."""

import enum
from typing import Literal

import pytest
from typing_extensions import TypedDict

from ptc import ProgrammaticToolExecutor, ToolCatalog
from ptc.stubgen import render_stubs


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Point(TypedDict):
    x: float
    y: float


class Stats(TypedDict):
    count: int
    mean: float


catalog = ToolCatalog(source="mathlib", version="2.0")
seen: dict = {}


@catalog.tool(domain="math")
def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Args:
        a: The first addend
        b: The second addend
    """
    return a + b


@catalog.tool(domain="math")
async def describe(values: list[float], label: str | None = None) -> Stats:
    """Summarise numbers.

    Args:
        values: The numbers to summarise,
            one or more.
        label: An optional label
    """
    return {"count": len(values), "mean": sum(values) / len(values)}


@catalog.tool(domain="geo")
def paint(point: Point, color: Color, mode: Literal["fill", "stroke"] = "fill") -> dict:
    """Paint a point."""
    seen["paint"] = (point, color, mode)
    return {"x": point["x"], "color": color.value, "mode": mode}


@pytest.fixture(scope="module")
def executor():
    return ProgrammaticToolExecutor(catalog, timeout=10)


def test_definition_from_signature_and_docstring():
    add_def = catalog.get("add")
    assert add_def.type == "function" and add_def.domain == "math"
    assert add_def.description == "Add two integers."
    a, b = add_def.parameters
    assert (a.name, a.type, a.required, a.description) == ("a", "integer", True, "The first addend")
    assert (b.name, b.required, b.default) == ("b", False, 2)
    assert add_def.output_schema == {"type": "integer"}
    values = catalog.get("describe").parameters[0]
    assert values.description == "The numbers to summarise, one or more."
    assert values.schema_dict()["items"] == {"type": "number"}


def test_stub_types_cover_arrays_objects_enums_optionals_and_returns():
    stubs = render_stubs(catalog)
    describe = stubs["tools.math.describe"]
    assert (
        "async def describe(values: list[float], label: str | None = None, *, idempotency_key: str | None = None) -> Stats:"
        in describe
    )
    assert "class Stats(TypedDict, total=False):" in describe and "count: Required[int]" in describe
    paint = stubs["tools.geo.paint"]
    assert "color: Literal['red', 'blue']" in paint
    assert "mode: Literal['fill', 'stroke'] = 'fill'" in paint
    assert "class Point(TypedDict" in paint and "x: Required[float]" in paint
    add = stubs["tools.math.add"]
    assert "async def add(a: int, b: int = 2, *, idempotency_key: str | None = None) -> int:" in add
    for source in stubs.values():
        compile(source, "stub", "exec")


async def test_sync_and_async_functions_run(executor):
    r = await executor.execute(
        "from tools.math import add, describe\n[await add(a=40), await add(1, 2), await describe(values=[1, 2, 3])]"
    )
    assert r.error is None, r.error
    assert r.result == [42, 3, {"count": 3, "mean": 2.0}]


async def test_function_receives_typed_values(executor):
    r = await executor.execute("from tools.geo import paint\nawait paint(point={'x': 1, 'y': 2.5}, color='blue')")
    assert r.result == {"x": 1.0, "color": "blue", "mode": "fill"}
    point, color, mode = seen["paint"]
    assert color is Color.BLUE and point == {"x": 1.0, "y": 2.5} and mode == "fill"


@pytest.mark.parametrize(
    "call, names",
    [
        ("add()", ["missing", "a"]),
        ("add(1, c=3)", ["unknown", "c"]),
        ("add(1, 2, 3)", ["positional"]),
        ("add(a='1')", ["a"]),
        ("add(a=1.5)", ["a"]),
        ("add(a=True)", ["a"]),
        ("describe(values='abc')", ["values"]),
        ("describe(values=[1, 'x'])", ["values"]),
        ("paint(point={'x': 1}, color='red')", ["point", "y"]),
        ("paint(point={'x': 1, 'y': 2}, color='green')", ["color"]),
        ("paint(point={'x': 1, 'y': 2}, color='red', mode='both')", ["mode"]),
    ],
)
async def test_validation_errors_name_the_parameter(executor, call, names):
    module = "geo" if call.startswith("paint") else "math"
    name = call.split("(")[0]
    r = await executor.execute(
        f"from tools.{module} import {name}\nfrom tools import ToolValidationError, ToolError\n"
        f"try:\n    await {call}\nexcept ToolValidationError as e:\n    result = [str(e), isinstance(e, ToolError)]"
    )
    assert r.error is None, r.error
    message, is_tool_error = r.result
    assert is_tool_error
    for n in names:
        assert n in message
    assert r.tool_calls[0].error.type == "ToolValidationError"


async def test_unknown_parameter_is_rejected_before_the_tool_runs(executor):
    r = await executor.execute(
        "from tools import _call, ToolValidationError\n"
        "try:\n    await _call('add', {'a': 1, 'c': 3})\nexcept ToolValidationError as e:\n    result = str(e)"
    )
    assert "unknown parameter 'c'" in r.result


def test_weird_names_get_python_names():
    from ptc import ToolDefinition, ToolParameter

    cat = ToolCatalog()
    cat.add_tool(
        ToolDefinition(name="get-weather", domain="web", parameters=[ToolParameter(name="class", type="string")])
    )
    cat.add_tool(ToolDefinition(name="list.files", domain="web"))
    stubs = render_stubs(cat)
    assert "async def get_weather(class_: str," in stubs["tools.web.get_weather"]
    assert "_call('get-weather', {'class': class_}" in stubs["tools.web.get_weather"]
    assert "tools.web.list_files" in stubs
    with pytest.raises(ValueError):
        cat.add_tool(ToolDefinition(name="get_weather", domain="web"))
