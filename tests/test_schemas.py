"""One schema pipeline: constraints enforced, recursion typed, hostile schemas bounded (real executor and guest).

Declared and MCP tools are checked with jsonschema against their whole
schema (`minimum`, `pattern`, `format`, `maxLength`, `$ref`s at any depth);
a function tool's one argument model gives both its schema and its
validation; a recursive schema is a TypedDict naming itself; a hostile
schema (catastrophic pattern, reference loop, huge enum, invalid keywords)
fails at most its own tool, and never stalls the host.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import mcp_types
import pytest
from pydantic import BaseModel, Field

from ptc import Limits, Policy, ProgrammaticToolExecutor, ToolCatalog, ToolDefinition, ToolParameter
from ptc.hostcalls.backends.mcp.tools import definitions_from_mcp
from ptc.hostcalls.calls.validation import ParameterError, Validator
from ptc.stubgen import render_stubs

SERVER = Path(__file__).parent / "mcp_servers" / "constrained.py"
LIMITS = Limits(timeout=15)

CATCH = """
from tools.{domain} import {name}
from tools import ToolError
try:
    result = ["ok", await {name}({args})]
except ToolError as e:
    result = [type(e).__name__, str(e)]
"""


async def call(executor: ProgrammaticToolExecutor, domain: str, name: str, args: str) -> list[Any]:
    """[outcome, value or message] of one call from a real program."""
    r = await executor.execute(CATCH.format(domain=domain, name=name, args=args))
    assert r.error is None, r.error
    return r.result


def declared(name: str, *parameters: ToolParameter, domain: str = "d") -> ToolDefinition:
    return ToolDefinition(name=name, domain=domain, parameters=list(parameters))


# -- declared tools: the whole JSON Schema is enforced ---------------------------------------------
def declared_catalog() -> ToolCatalog:
    catalog = ToolCatalog()
    echo = lambda payload: payload  # noqa: E731 - the handler returns what it was given
    catalog.add_tool(declared("count", ToolParameter(name="n", schema={"type": "integer", "minimum": 1})), echo)
    catalog.add_tool(
        declared(
            "register",
            ToolParameter(name="code", schema={"type": "string", "pattern": "^[A-Z]{3}$"}),
            ToolParameter(name="email", schema={"type": "string", "format": "email"}, required=False),
            ToolParameter(name="nick", schema={"type": "string", "maxLength": 5}, required=False, default="anon"),
        ),
        echo,
    )
    filters = {
        "$defs": {"Limit": {"type": "integer", "minimum": 1}},
        "type": "object",
        "properties": {"limit": {"$ref": "#/$defs/Limit"}, "tags": {"type": "array", "uniqueItems": True}},
        "additionalProperties": False,
    }
    catalog.add_tool(declared("search", ToolParameter(name="filters", schema=filters)), echo)
    catalog.add_tool(declared("scale", ToolParameter(name="x", type="number"), ToolParameter(name="k", type="integer")))
    catalog.bind("scale", echo)
    return catalog


@pytest.fixture(scope="module")
def declared_tools() -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(declared_catalog(), limits=LIMITS)


async def test_minimum_is_enforced_through_a_program_call(declared_tools):
    """`{"type": "integer", "minimum": 1}` accepted 0 before: only the type was checked."""
    outcome, message = await call(declared_tools, "d", "count", "n=0")
    assert outcome == "ToolValidationError"
    assert "parameter 'n'" in message and "less than the minimum of 1" in message
    assert await call(declared_tools, "d", "count", "n=1") == ["ok", {"n": 1}]


@pytest.mark.parametrize(
    "args, fragment",
    [
        ("code='abc'", "parameter 'code': 'abc' does not match '^[A-Z]{3}$'"),
        ("code='ABC', email='nobody'", "parameter 'email': 'nobody' is not a 'email'"),
        ("code='ABC', nick='too long'", "parameter 'nick': 'too long' is too long"),
    ],
)
async def test_pattern_format_and_max_length_are_enforced(declared_tools, args, fragment):
    outcome, message = await call(declared_tools, "d", "register", args)
    assert outcome == "ToolValidationError" and fragment in message, message


async def test_valid_calls_get_their_defaults(declared_tools):
    outcome, payload = await call(declared_tools, "d", "register", "code='ABC', email='a@b.c'")
    assert outcome == "ok" and payload == {"code": "ABC", "email": "a@b.c", "nick": "anon"}


async def test_references_are_followed_and_errors_name_the_path(declared_tools):
    outcome, message = await call(declared_tools, "d", "search", "filters={'limit': 0}")
    assert outcome == "ToolValidationError"
    assert "parameter 'filters.limit': 0 is less than the minimum of 1" in message
    outcome, message = await call(declared_tools, "d", "search", "filters={'limit': 2, 'tags': ['a', 'a']}")
    assert "parameter 'filters.tags'" in message and "non-unique" in message
    outcome, message = await call(declared_tools, "d", "search", "filters={'limit': 2, 'other': 1}")
    assert "'other' was unexpected" in message
    assert await call(declared_tools, "d", "search", "filters={'limit': 2}") == ["ok", {"filters": {"limit": 2}}]


@pytest.mark.parametrize("args", ["x=1, k='5'", "x=1, k=1.0", "x=1, k=True", "x='1', k=1", "x=True, k=1"])
async def test_declared_types_are_strict_as_json(declared_tools, args):
    """No "5" for an integer, no 1.0 or True either (as a function tool's pydantic model has it)."""
    outcome, _ = await call(declared_tools, "d", "scale", args)
    assert outcome == "ToolValidationError"


async def test_an_int_is_a_fine_number(declared_tools):
    assert await call(declared_tools, "d", "scale", "x=1, k=2") == ["ok", {"x": 1, "k": 2}]


def test_unknown_and_missing_parameters_are_named():
    validator = Validator(declared_catalog().get("register"), None)
    with pytest.raises(ParameterError, match="unknown parameter 'codes'.*missing required parameter 'code'"):
        validator({"codes": "ABC"})


# -- MCP tools: the server's schema, checked before the server is called ---------------------------
@pytest.fixture(scope="module")
async def shop():
    async with ProgrammaticToolExecutor(
        mcp_servers={"shop": f"{sys.executable} {SERVER}"}, limits=LIMITS, policy=Policy(timeout=5)
    ) as executor:
        yield executor


@pytest.mark.parametrize(
    "args, fragment",
    [
        ("sku='abc'", "parameter 'sku': 'abc' does not match"),
        ("sku='ABC-123', quantity=0", "parameter 'quantity': 0 is less than the minimum of 1"),
        ("sku='ABC-123', quantity=11", "parameter 'quantity': 11 is greater than the maximum of 10"),
        ("sku='ABC-123', contact='not an address'", "parameter 'contact': 'not an address' is not a 'email'"),
        ("sku='ABC-123', contact='a@b.c' * 20", "parameter 'contact'"),
    ],
)
async def test_mcp_constraints_are_checked_before_the_server_is_called(shop, args, fragment):
    """The server would refuse most of these itself (as a ToolError); the email format it would accept."""
    r = await shop.execute(CATCH.format(domain="shop", name="reserve", args=args))
    outcome, message = r.result
    assert outcome == "ToolValidationError" and fragment in message, message
    assert r.tool_calls[0].error.type == "ToolValidationError"


async def test_a_valid_mcp_call_reaches_the_server(shop):
    result = await call(shop, "shop", "reserve", "sku='ABC-123', quantity=2")
    assert result == ["ok", "2 x ABC-123 for ops@example.com"]


# -- function tools: one model gives the schema and the validation ---------------------------------
class Node(BaseModel):
    name: str
    children: list[Node] = []


def function_catalog() -> ToolCatalog:
    catalog = ToolCatalog()

    @catalog.tool(domain="f")
    def take(n: int = Field(5, ge=1), m: Annotated[int, Field(le=3)] = 2) -> list[int]:
        """Constraints in a Field default and in Annotated.

        Args:
            n: how many
        """
        return [n, m]

    @catalog.tool(domain="f")
    def size(tree: Node) -> int:
        """How many nodes a tree has (the handler gets a real Node)."""
        assert isinstance(tree, Node)
        return 1 + sum(size(child) for child in tree.children)

    return catalog


def test_a_function_tools_schema_is_its_argument_models():
    catalog = function_catalog()
    model = catalog.binding("take").arguments
    assert model is not None
    published = {p.name: p.schema_dict() for p in catalog.get("take").parameters}
    properties = model.model_json_schema(by_alias=True)["properties"]
    assert published == {name: {k: v for k, v in s.items() if k != "title"} for name, s in properties.items()}
    assert published["n"] == {"type": "integer", "minimum": 1, "default": 5, "description": "how many"}
    assert published["m"] == {"type": "integer", "maximum": 3, "default": 2}
    assert [p.default for p in catalog.get("take").parameters] == [5, 2]


async def test_a_function_tool_validates_with_the_same_model():
    """A `Field(5, ge=1)` default was a FieldInfo object to the old definition, and its bound unchecked."""
    executor = ProgrammaticToolExecutor(function_catalog(), limits=LIMITS)
    assert await call(executor, "f", "take", "") == ["ok", [5, 2]]
    outcome, message = await call(executor, "f", "take", "n=0")
    assert outcome == "ToolValidationError" and "'n'" in message and "greater than or equal to 1" in message
    outcome, message = await call(executor, "f", "take", "m=4")
    assert outcome == "ToolValidationError" and "'m'" in message


# -- recursive schemas: a TypedDict naming itself --------------------------------------------------
TREE = {"name": "root", "children": [{"name": "a", "children": [{"name": "b"}]}, {"name": "c"}]}

HINTS = """
import typing
from tools.{domain} import {name}
from tools.{domain}.{name} import {cls}
hints = typing.get_type_hints({cls})
result = [await {name}(tree={tree!r}), {{k: str(v) for k, v in hints.items()}}]
"""


async def test_a_recursive_model_renders_as_a_typeddict_that_refers_to_itself():
    catalog = function_catalog()
    stub = render_stubs(catalog)["tools.f.size"]
    assert "class Node(TypedDict, total=False):" in stub
    assert "    children: list[Node]\n" in stub and "recursive" not in stub
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS)
    r = await executor.execute(HINTS.format(domain="f", name="size", cls="Node", tree=TREE))
    assert r.error is None, r.error
    count, hints = r.result
    assert count == 4
    assert hints["children"] == "list[tools.f.size.Node]"  # resolved in the sandbox: the class itself


def recursive_mcp_tool() -> mcp_types.Tool:
    """A tree whose key is not an identifier: the functional TypedDict form, with a forward reference."""
    node = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "child-nodes": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
        "required": ["name"],
    }
    schema = {"$defs": {"Node": node}, "type": "object", "properties": {"tree": {"$ref": "#/$defs/Node"}}}
    return mcp_types.Tool(name="weigh", input_schema=schema)


async def test_a_recursive_mcp_schema_renders_as_a_typeddict_that_refers_to_itself():
    ((definition, _, _),) = definitions_from_mcp("m", [recursive_mcp_tool()])
    assert definition.notes == []
    catalog = ToolCatalog()
    catalog.add_tool(definition, handler=lambda payload: _weight(payload["tree"]))
    stub = render_stubs(catalog)["tools.m.weigh"]
    assert "Node = TypedDict('Node', {'name': Required[str], 'child-nodes': 'list[Node]'}, total=False)" in stub
    tree = {"name": "r", "child-nodes": [{"name": "a", "child-nodes": [{"name": "b"}]}]}
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS)
    r = await executor.execute(HINTS.format(domain="m", name="weigh", cls="Node", tree=tree))
    assert r.error is None, r.error
    assert r.result == [3, {"name": "<class 'str'>", "child-nodes": "list[tools.m.weigh.Node]"}]
    outcome, message = await call(executor, "m", "weigh", "tree={'name': 'r', 'child-nodes': [{'name': 1}]}")
    assert outcome == "ToolValidationError" and "parameter 'tree.child-nodes.0.name'" in message


async def test_mutually_recursive_definitions_import_in_any_order():
    """`B` (a union, so no class of its own) names `A` before `A` is defined; `C` reuses `B` inside `A`."""
    schema = {
        "$defs": {
            "A": {"type": "object", "properties": {"x-1": {"$ref": "#/$defs/B"}, "y": {"$ref": "#/$defs/C"}}},
            "B": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]},
            "C": {"type": "object", "properties": {"z-1": {"$ref": "#/$defs/B"}}},
        },
        "type": "object",
        "properties": {"tree": {"$ref": "#/$defs/A"}},
    }
    ((definition, _, _),) = definitions_from_mcp("m", [mcp_types.Tool(name="mutual", input_schema=schema)])
    catalog = ToolCatalog()
    catalog.add_tool(definition, handler=lambda payload: 1)
    stub = render_stubs(catalog)["tools.m.mutual"]
    assert "C = TypedDict('C', {'z-1': 'A | None'}, total=False)" in stub
    executor = ProgrammaticToolExecutor(catalog, limits=LIMITS)
    r = await executor.execute(HINTS.format(domain="m", name="mutual", cls="C", tree={"y": {"z-1": {"x-1": None}}}))
    assert r.error is None, r.error
    assert r.result == [1, {"z-1": "tools.m.mutual.A | None"}]


def _weight(tree: dict[str, Any]) -> int:
    return 1 + sum(_weight(child) for child in tree.get("child-nodes", []))


# -- hostile schemas: bounded, and only their own tool fails ---------------------------------------
def hostile_catalog() -> ToolCatalog:
    catalog = ToolCatalog()
    echo = lambda payload: payload  # noqa: E731
    evil = {"type": "string", "pattern": "^(a+)+$"}
    catalog.add_tool(declared("evil", ToolParameter(name="s", schema=evil), domain="h"), echo)
    slow = {"type": "string", "pattern": "[a-z]+x"}  # quadratic in an unanchored search
    catalog.add_tool(declared("slow", ToolParameter(name="s", schema=slow), domain="h"), echo)
    invalid = {"type": "integer", "minimum": "one"}
    catalog.add_tool(declared("invalid", ToolParameter(name="n", schema=invalid), domain="h"), echo)
    loops = {"A": {"$ref": "#/$defs/A"}, "B": {"allOf": [{"$ref": "#/$defs/B"}]}}
    loop = {"$defs": loops, "anyOf": [{"$ref": "#/$defs/A"}, {"$ref": "#/$defs/B"}]}
    catalog.add_tool(declared("loop", ToolParameter(name="v", schema=loop), domain="h"), echo)
    remote = {"$ref": "https://schemas.invalid/evil.json", "type": "integer"}
    catalog.add_tool(declared("remote", ToolParameter(name="v", schema=remote), domain="h"), echo)
    huge = {"enum": [f"v{i}" for i in range(100_000)]}
    catalog.add_tool(declared("huge", ToolParameter(name="v", schema=huge), domain="h"), echo)
    unique = {"type": "array", "uniqueItems": True}
    catalog.add_tool(declared("unique", ToolParameter(name="v", schema=unique), domain="h"), echo)
    return catalog


@pytest.fixture(scope="module")
def hostile_tools() -> ProgrammaticToolExecutor:
    return ProgrammaticToolExecutor(hostile_catalog(), limits=Limits(timeout=15, max_frame_bytes=4 << 20))


async def test_a_catastrophic_pattern_is_not_run(hostile_tools):
    started = time.perf_counter()
    assert await call(hostile_tools, "h", "evil", "s='a' * 40 + '!'") == ["ok", {"s": "a" * 40 + "!"}]
    assert time.perf_counter() - started < 5  # `re` would take longer than the universe has


async def test_a_polynomial_pattern_runs_only_where_it_is_cheap(hostile_tools):
    outcome, message = await call(hostile_tools, "h", "slow", "s='a' * 100")
    assert outcome == "ToolValidationError" and "does not match" in message
    started = time.perf_counter()
    assert (await call(hostile_tools, "h", "slow", "s='a' * 1_000_000"))[0] == "ok"  # too long to check: left
    assert time.perf_counter() - started < 5


async def test_an_invalid_schema_fails_only_its_own_tool(hostile_tools):
    outcome, message = await call(hostile_tools, "h", "invalid", "n=1")
    assert outcome == "ToolError" and "could not build a validator from its schema" in message
    assert await call(hostile_tools, "h", "slow", "s='ax'") == ["ok", {"s": "ax"}]


async def test_reference_loops_and_remote_references_are_cut(hostile_tools):
    assert await call(hostile_tools, "h", "loop", "v=[1]") == ["ok", {"v": [1]}]
    assert await call(hostile_tools, "h", "remote", "v=1") == ["ok", {"v": 1}]  # nothing is fetched
    assert (await call(hostile_tools, "h", "remote", "v='x'"))[0] == "ToolValidationError"  # its siblings stay


async def test_huge_enums_and_unique_items_are_checked_in_linear_time(hostile_tools):
    started = time.perf_counter()
    assert await call(hostile_tools, "h", "huge", "v='v99999'") == ["ok", {"v": "v99999"}]
    outcome, message = await call(hostile_tools, "h", "huge", "v='nope'")
    assert outcome == "ToolValidationError" and "(100000 values)" in message
    items = "[{'i': i} for i in range(50_000)]"
    assert (await call(hostile_tools, "h", "unique", f"v={items}"))[0] == "ok"
    assert (await call(hostile_tools, "h", "unique", f"v={items} + [{{'i': 0}}]"))[0] == "ToolValidationError"
    assert time.perf_counter() - started < 10


def wide_and_deep(levels: int, keyword: str) -> dict[str, Any]:
    """Each definition refers to the next twice: 2**levels nodes if inlined, or checked, naively."""
    defs: dict[str, Any] = {f"D{levels}": {"type": "integer"}}
    for i in range(levels):
        twice = [{"$ref": f"#/$defs/D{i + 1}"}, {"$ref": f"#/$defs/D{i + 1}"}]
        defs[f"D{i}"] = (
            {"type": "object", "properties": dict(zip("ab", twice, strict=True))}
            if keyword == "properties"
            else {keyword: twice}
        )
    return {"$defs": defs, "type": "object", "properties": {"value": {"$ref": "#/$defs/D0"}}, "required": ["value"]}


@pytest.mark.parametrize("keyword", ["properties", "allOf", "anyOf"])
def test_a_wide_and_deep_schema_is_discovered_rendered_and_checked_fast(keyword):
    """40 levels: discovery, stubs and a call's check each visit each definition once."""
    started = time.perf_counter()
    ((definition, _, _),) = definitions_from_mcp(
        "w", [mcp_types.Tool(name="t", input_schema=wide_and_deep(40, keyword))]
    )
    catalog = ToolCatalog()
    catalog.add_tool(definition)
    render_stubs(catalog)
    validator = Validator(definition, None)
    value = {"a": {"b": {"a": {}}}} if keyword == "properties" else 1
    assert validator({"value": value}) == {"value": value}
    elapsed = time.perf_counter() - started
    assert elapsed < 1, elapsed
    assert len(definition.model_dump_json()) < 100_000


def test_normalized_schemas_hoist_every_local_pointer_and_keep_data_as_data():
    from ptc.schemas import normalize, split_object

    zod = {  # zod-to-json-schema's default: a repeated subschema is a pointer into the body
        "type": "object",
        "properties": {
            "billing": {"type": "object", "properties": {"zip": {"type": "string"}}},
            "shipping": {"$ref": "#/properties/billing"},
            "$ref": {"type": "string", "default": {"$ref": "#/nowhere"}},
        },
    }
    split = split_object(zod)
    assert split.properties["shipping"] == {
        "$ref": "#/$defs/billing",
        "$defs": {"billing": zod["properties"]["billing"]},
    }
    assert split.properties["$ref"] == {"type": "string", "default": {"$ref": "#/nowhere"}}  # a property, and data
    assert split.notes == []
    again = normalize(normalize(zod).schema).schema
    assert again == normalize(zod).schema  # idempotent
