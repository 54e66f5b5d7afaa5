"""The tool catalog: definitions (pydantic, the public edge) and their handlers.

A parameter's type is kept as JSON Schema, the lingua franca of tool
definitions (MCP speaks it natively): `ToolParameter(type="integer")` is
shorthand for `{"type": "integer"}`, and `schema=` takes any JSON Schema, a
document of its own (its `$ref`s resolve against it). Stubs, the API
reference and parameter validation are all derived from it, through
`ptc.schemas`.

A plain function's tool has one pydantic model of its arguments (as the MCP
SDK's `func_metadata` builds): its JSON Schema is the definition's, and the
router validates calls with the same model, so the two cannot disagree.
"""

from __future__ import annotations

import hashlib
import inspect
import keyword
import re
import typing
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model, field_validator
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaWarningKind

from ptc.errors import PROGRAM_ERROR_NAMES
from ptc.policy import Policy
from ptc.schemas import normalize, normalize_properties, schema_type, split_object

ToolType = Literal["function", "mcp", "worker", "a2a"]
# Names a stub's function body uses: a parameter or tool of that name would shadow them.
_F = TypeVar("_F", bound=Callable[..., Any])
_RESERVED = frozenset({"idempotency_key", "_call", "_tool"})
# Names the `tools` package itself holds: a domain of that name would hide them (or they it).
_PACKAGE_NAMES = frozenset({"DOMAINS", "call_tool", "search_tools", "describe_tool"})
MAX_PYTHON_NAME = 60  # a tool's Python name is also a file name (tools/<domain>/<name>.py): 255 bytes at most


def is_identifier(name: str) -> bool:
    """Whether `name` can be written as itself in Python source and mean itself.

    `str.isidentifier()` (never a regex: `$` also matches before a trailing
    newline), not a keyword, and unchanged by NFKC normalization (Python
    normalizes identifiers, so `ﬁle` written in source would be `file`).
    """
    return (
        isinstance(name, str)
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and unicodedata.normalize("NFKC", name) == name
    )


def python_name(name: str) -> str:
    """A valid, non-keyword Python identifier for a tool or parameter name.

    `get-weather` -> `get_weather`, `list.files` -> `list_files`, `class` ->
    `class_`, `2fa` -> `_2fa`. The original name is what the backend receives.
    Whatever the name holds (newlines, quotes, NULs, surrogates, characters
    NFKC would change), the result passes `is_identifier`; names the stub's
    own code uses (`_call`, `idempotency_key`) and dunders get a trailing `_`.
    A name longer than MAX_PYTHON_NAME characters is cut, and a hash of the
    whole name keeps cut names apart.
    """
    cleaned = "".join(c if _identifier_char(c) else "_" for c in name)
    if not cleaned or not cleaned[0].isidentifier():  # a digit (or a continue-only mark) cannot start one
        cleaned = "_" + cleaned
    if not (cleaned.isidentifier() and unicodedata.normalize("NFKC", cleaned) == cleaned):
        cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in cleaned)  # marks combined
    if _dunder(cleaned):  # `__init__` would be the domain package's own module
        cleaned = cleaned.rstrip("_") + "_"
    if keyword.iskeyword(cleaned) or cleaned in _RESERVED:
        cleaned += "_"
    if len(cleaned) > MAX_PYTHON_NAME:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = cleaned[: MAX_PYTHON_NAME - 9] + "_" + digest
        if not is_identifier(cleaned):  # the cut split a character sequence NFKC combines
            cleaned = "_" + digest
    return cleaned


def _dunder(name: str) -> bool:
    return len(name) > 2 and name.startswith("__") and name.endswith("__")


def _identifier_char(char: str) -> bool:
    return ("_" + char).isidentifier() and unicodedata.normalize("NFKC", char) == char


def _unicode_text(value: str, what: str) -> str:
    """A name the frame codec can carry (it is sent in every call): UTF-8, so no lone surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not valid Unicode text (it holds a lone surrogate)") from None
    return value


class ToolParameter(BaseModel):
    """One parameter of a tool."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    type: str = "string"
    description: str = ""
    required: bool = True
    default: Any = None
    enum: list[Any] | None = None
    items: dict[str, Any] | None = Field(None, description="JSON Schema of an array's items")
    properties: list[ToolParameter] | None = Field(None, description="fields of an object parameter")
    nullable: bool = False
    keyword_only: bool = Field(False, description="the stub takes it by keyword only (after `*`)")
    json_schema_: dict[str, Any] | None = Field(
        None, alias="schema", description="full JSON Schema; wins over the above"
    )

    @field_validator("name")
    @classmethod
    def _name_is_text(cls, value: str) -> str:
        return _unicode_text(value, "parameter name")

    def schema_dict(self) -> dict[str, Any]:
        """This parameter's JSON Schema."""
        if self.json_schema_ is not None:
            schema = dict(self.json_schema_)
        else:
            schema = {"type": self.type}
            if self.enum is not None:
                schema["enum"] = list(self.enum)
            if self.items is not None:
                schema["items"] = self.items
            if self.properties is not None:
                schema["properties"] = {p.name: p.schema_dict() for p in self.properties}
                schema["required"] = [p.name for p in self.properties if p.required]
            if self.nullable:
                schema = {"anyOf": [schema, {"type": "null"}]}
        if self.description and "description" not in schema:
            schema["description"] = self.description
        if not self.required and self.default is not None and "default" not in schema:
            schema["default"] = self.default
        return schema

    @property
    def python_name(self) -> str:
        return python_name(self.name)


class ToolDefinition(BaseModel):
    """A tool as the catalog describes it to the program and the router."""

    name: str
    type: ToolType = "function"
    domain: str = "default"
    description: str = ""
    parameters: list[ToolParameter] = Field(default_factory=list)
    output_schema: dict[str, Any] | None = Field(None, description="JSON Schema of the result")
    policy: Policy | None = Field(None, description="overrides the executor's default policy for this tool")
    backend: str | None = Field(None, description="circuit-breaker key; defaults to the tool name (MCP: the server)")
    function: str | None = Field(None, description="the stub's Python name; derived from `name` when unset")
    notes: list[str] = Field(default_factory=list, description="extra lines for the stub's docstring")

    @field_validator("name")
    @classmethod
    def _name_is_text(cls, value: str) -> str:
        return _unicode_text(value, "tool name")

    @field_validator("domain")
    @classmethod
    def _domain_is_identifier(cls, value: str) -> str:
        if not is_identifier(value) or value.startswith("_"):
            raise ValueError(f"domain {value!r} must be a Python identifier (it becomes `tools.{value}`)")
        if value in _PACKAGE_NAMES or value in PROGRAM_ERROR_NAMES:
            raise ValueError(f"domain {value!r} is a name the `tools` package holds itself; pick another")
        return value

    @field_validator("function")
    @classmethod
    def _function_is_identifier(cls, value: str | None) -> str | None:
        if value is not None and (not is_identifier(value) or value in _RESERVED or _dunder(value)):
            raise ValueError(f"function {value!r} must be a Python identifier (it becomes `async def {value}`)")
        return value

    @property
    def python_name(self) -> str:
        return self.function or python_name(self.name)

    @property
    def backend_key(self) -> str:
        return self.backend or self.name

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the parameters object: one normalized document (`ptc.schemas`)."""
        schema = normalize_properties({p.name: p.schema_dict() for p in self.parameters}).schema
        return {**schema, "required": [p.name for p in self.parameters if p.required], "additionalProperties": False}


@dataclass(frozen=True)
class Binding:
    """How the router calls a tool: kwargs (a plain function) or one payload dict (a worker).

    arguments: a function tool's argument model (`arguments_model`), the one its
    definition was derived from; None builds it from the handler when needed.
    """

    handler: Callable[..., Any]
    kwargs: bool
    arguments: type[BaseModel] | None = None


class ToolCatalog:
    """Tool definitions grouped by domain, with the handlers bound to them."""

    def __init__(self, source: str = "default", version: str = "1.0") -> None:
        self.source = source
        self.version = version
        self._tools: dict[str, ToolDefinition] = {}
        self._bindings: dict[str, Binding] = {}
        self._by_python_name: dict[tuple[str, str], str] = {}
        self.revision = 0  # bumped on every change; stubs are rendered per revision

    # -- contents -------------------------------------------------------------
    def add_tool(self, definition: ToolDefinition, handler: Callable[..., Any] | None = None) -> ToolDefinition:
        """Add (or replace) a tool; a handler given here receives one payload dict."""
        key = (definition.domain, definition.python_name)
        clash = self._by_python_name.get(key)
        if clash is not None and clash != definition.name:
            raise ValueError(f"tools {clash!r} and {definition.name!r} would both be tools.{key[0]}.{key[1]}")
        self._tools[definition.name] = definition
        self._by_python_name[key] = definition.name
        if handler is not None:
            self._bindings[definition.name] = Binding(handler, kwargs=False)
        self.revision += 1
        return definition

    def merge(self, other: ToolCatalog) -> None:
        """Add every tool of other, with its handler."""
        for definition in other:
            self.add_tool(definition)
            binding = other.binding(definition.name)
            if binding is not None:
                self._bindings[definition.name] = binding

    def bind(self, name: str, handler: Callable[..., Any], *, kwargs: bool = False) -> None:
        if name not in self._tools:
            raise KeyError(f"no tool named {name!r} in the catalog")
        self._bindings[name] = Binding(handler, kwargs)

    def get(self, name: str) -> ToolDefinition | None:
        return self._tools.get(name)

    def binding(self, name: str) -> Binding | None:
        return self._bindings.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def tools(self) -> Mapping[str, ToolDefinition]:
        """Name -> definition, read-only (a live view: `list(catalog.tools.keys())`)."""
        return MappingProxyType(self._tools)

    def __iter__(self) -> Iterator[ToolDefinition]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def domains(self) -> dict[str, list[ToolDefinition]]:
        grouped: dict[str, list[ToolDefinition]] = {}
        for tool in sorted(self._tools.values(), key=lambda t: (t.domain, t.python_name)):
            grouped.setdefault(tool.domain, []).append(tool)
        return grouped

    # -- plain functions as tools ---------------------------------------------
    @overload
    def tool(self, func: _F, /) -> _F: ...

    @overload
    def tool(
        self,
        func: None = None,
        /,
        *,
        domain: str = "default",
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
    ) -> Callable[[_F], _F]: ...

    def tool(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        domain: str = "default",
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
    ) -> Any:
        """Decorator: a sync or async function becomes a tool (type "function").

        Parameters, types, defaults and descriptions come from the signature
        and the docstring (Google style `Args:`); the return annotation
        becomes the output schema.
        """

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            definition, model = function_tool(fn, domain=domain, name=name, description=description, policy=policy)
            self.add_tool(definition)
            self._bindings[definition.name] = Binding(fn, kwargs=True, arguments=model)
            return fn

        return register(func) if func is not None else register


# -- deriving definitions from signatures ------------------------------------
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION = re.compile(r"^\s*(Returns|Return|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google-style docstring."""
    description: list[str] = []
    params: dict[str, str] = {}
    section = "description"
    current: str | None = None
    arg_indent: int | None = None
    for line in inspect.cleandoc(doc).splitlines() if doc else []:
        if _ARGS_HEADER.match(line):
            section, current, arg_indent = "args", None, None
        elif _SECTION.match(line):
            section, current = "other", None
        elif section == "description":
            description.append(line)
        elif section == "args" and line.strip():
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE.match(line)
            if match and (arg_indent is None or indent <= arg_indent):
                arg_indent = indent
                current = match.group(1).lstrip("*")
                params[current] = match.group(3).strip()
            elif current is not None:
                params[current] = (params[current] + " " + line.strip()).strip()
    return "\n".join(description).strip(), params


class _Untitled(GenerateJsonSchema):
    """Argument schemas without a title per field (`"title": "A"` says nothing a stub could use)
    and without a warning for a default JSON cannot hold (the stub leaves such defaults to the tool)."""

    ignored_warning_kinds: set[JsonSchemaWarningKind] = {"skipped-choice", "non-serializable-default"}  # noqa: RUF012

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def schema_of(annotation: Any) -> dict[str, Any]:
    """JSON Schema of a Python annotation, normalized (a recursive model refers to itself in `$defs`)."""
    return _schema_and_notes(annotation)[0]


def _schema_and_notes(annotation: Any) -> tuple[dict[str, Any], list[str]]:
    normalized = normalize(TypeAdapter(annotation).json_schema(schema_generator=_Untitled))
    return normalized.schema, normalized.notes


def arguments_model(fn: Callable[..., Any], descriptions: dict[str, str] | None = None) -> type[BaseModel]:
    """One pydantic model of `fn`'s parameters: its JSON Schema is the tool's, and it validates calls.

    Strict, as JSON is (no "5" for an int, no 1 for a bool; an int is a fine
    float) and closed (an unknown parameter is an error). Each field is
    `p<i>`, aliased to its parameter's name, so any name (`_id`,
    `model_config`) is a field like any other. `*args` and `**kwargs` are not
    parameters a program can pass.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    descriptions = descriptions or {}
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        named = Field(alias=param.name, description=descriptions.get(param.name) or None)
        default = ... if param.default is inspect.Parameter.empty else param.default  # a Field(...) default merges
        fields[f"p{len(fields)}"] = (Annotated[hints.get(param.name, Any), named], default)
    name = "".join(c for c in getattr(fn, "__name__", "") if c.isascii() and c.isalnum())[:60]
    return create_model(
        f"{name.title() or 'Tool'}Arguments",
        __config__=ConfigDict(extra="forbid", strict=True, populate_by_name=False),
        **fields,
    )


def function_tool(
    fn: Callable[..., Any],
    *,
    domain: str = "default",
    name: str | None = None,
    description: str | None = None,
    policy: Policy | None = None,
) -> tuple[ToolDefinition, type[BaseModel]]:
    """A plain function's definition and argument model (`arguments_model`), the definition derived
    from the model's JSON Schema: what the stub shows is what the router checks."""
    doc_description, doc_params = parse_docstring(inspect.getdoc(fn) or "")
    model = arguments_model(fn, doc_params)
    split = split_object(model.model_json_schema(by_alias=True, schema_generator=_Untitled))
    notes = list(split.notes)
    parameters = []
    for field_name, info in model.model_fields.items():
        param = info.alias or field_name
        schema = split.properties.get(param, {})
        parameters.append(
            ToolParameter(
                name=param,
                type=schema_type(schema),
                description=doc_params.get(param, ""),
                required=info.is_required(),
                default=None if info.is_required() else info.default,
                schema=schema,
            )
        )
    output_schema = None
    returns = typing.get_type_hints(fn, include_extras=True).get("return", Any)
    if returns not in (Any, None, type(None)):
        output_schema, cut = _schema_and_notes(returns)
        notes.extend(n for n in cut if n not in notes)
    definition = ToolDefinition(
        name=name or fn.__name__,
        type="function",
        domain=domain,
        description=description if description is not None else doc_description,
        parameters=parameters,
        output_schema=output_schema,
        policy=policy,
        notes=notes,
    )
    return definition, model
