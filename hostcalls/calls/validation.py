"""Parameter validation with pydantic, from a tool's definition.

Function tools validate against their real annotations (so an Enum or a
pydantic model arrives as one); declared tools against their JSON Schema.
Validation is strict as JSON is: no "5" for an int, no 1 for a bool, but an
int is a fine float.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ptc.catalog import Binding, ToolDefinition
from ptc.errors import PtcError

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


class ParameterError(PtcError, ValueError):
    """Parameters do not match the definition; the message names them."""


MAX_MODELS = 200  # pydantic models one tool's parameters may build; deeper objects validate as plain dicts


def type_from_schema(schema: Any, name: str = "Object") -> Any:
    """A Python type that validates like the JSON Schema (the parts tools use).

    Linear in the schema's size: each node is read once, a `type` list's
    repeats are ignored, and past MAX_MODELS object models the rest are
    `dict[str, Any]` (the backend still validates them). Property names are
    aliases of generated field names, so any name (`_id`, `model_config`,
    `a-b`) validates as itself.
    """
    return _Types().of(schema, name)


class _Types:
    def __init__(self) -> None:
        self.models = 0

    def of(self, schema: Any, name: str) -> Any:
        if not isinstance(schema, dict):
            return Any
        if "const" in schema:
            return _literal([schema["const"]])
        if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
            return _literal(schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            if isinstance(schema.get(combinator), list):
                options = tuple(dict.fromkeys(self.of(s, name) for s in schema[combinator]))
                return Union[options] if options else Any  # noqa: UP007 - built at run time
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = list(dict.fromkeys(k for k in kind if isinstance(k, str)))
            options = tuple(dict.fromkeys(self.of({**schema, "type": k}, name) for k in kinds))
            return Union[options] if options else Any  # noqa: UP007
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            return list[self.of(schema.get("items"), name + "Item")]  # type: ignore[misc]
        if kind == "object" or "properties" in schema:
            return self.object(schema, name)
        return Any

    def object(self, schema: dict[str, Any], name: str) -> Any:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties:
            extra = schema.get("additionalProperties")
            return dict[str, self.of(extra, name + "Value") if isinstance(extra, dict) else Any]  # type: ignore[misc]
        if self.models >= MAX_MODELS:
            return dict[str, Any]
        self.models += 1
        required = schema.get("required")
        required = set(r for r in required if isinstance(r, str)) if isinstance(required, list) else set()
        fields = {
            f"f{i}": (
                self.of(sub, name + _title(key)),
                Field(... if key in required else (sub.get("default") if isinstance(sub, dict) else None), alias=key),
            )
            for i, (key, sub) in enumerate(properties.items())
        }
        extra_mode = "forbid" if schema.get("additionalProperties") is False else "allow"
        return create_model(name, __config__=ConfigDict(extra=extra_mode, strict=True), **fields)  # type: ignore[call-overload]


def _literal(values: list[Any]) -> Any:
    """`Literal[values]`, or Any when a value cannot be one (a dict, a list, nan): the backend checks those."""
    if not all(v is None or type(v) in (str, int, float, bool) for v in values) or any(v != v for v in values):
        return Any
    return Literal[tuple(values)]


def _title(key: str) -> str:
    return "".join(c for c in key.title() if c.isascii() and c.isalnum())[:60] or "Field"


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, exclude_unset=True)  # as sent: no nulls for fields left out
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


class Validator:
    """Validates one tool's parameters and shapes them for its handler."""

    def __init__(self, tool: ToolDefinition, binding: Binding | None) -> None:
        self.tool = tool
        self.kwargs = binding is not None and binding.kwargs
        fields: dict[str, Any] = {}
        names: list[str] = []  # each field is `p<i>`, aliased to its parameter's name (which may be `_id`)
        if self.kwargs and binding is not None:
            hints = typing.get_type_hints(binding.handler, include_extras=True)
            for param in inspect.signature(binding.handler).parameters.values():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                default = ... if param.default is inspect.Parameter.empty else param.default
                fields[f"p{len(names)}"] = (hints.get(param.name, Any), Field(default, alias=param.name))
                names.append(param.name)
        else:
            types = _Types()
            for p in tool.parameters:
                default = ... if p.required else p.default
                kind = types.of(p.schema_dict(), _model_name(tool.name, p.name))
                fields[f"p{len(names)}"] = (kind, Field(default, alias=p.name))
                names.append(p.name)
        self._names = names
        self._model = create_model(  # type: ignore[call-overload]
            _model_name(tool.name, "Params"), __config__=ConfigDict(extra="forbid", strict=True), **fields
        )

    def __call__(self, args: Any) -> dict[str, Any]:
        """Validated arguments: kwargs for a function tool, the payload dict for a worker."""
        if not isinstance(args, dict):
            raise ParameterError("parameters must be a mapping of names to values")
        try:
            try:
                model = self._model.model_validate_json(json.dumps(args))
            except (TypeError, ValueError) as exc:
                if isinstance(exc, ValidationError):
                    raise
                model = self._model.model_validate(args)  # bytes or non-JSON floats: python mode
        except ValidationError as exc:
            raise ParameterError(_describe(self.tool.name, exc)) from None
        values = {name: getattr(model, f"p{i}") for i, name in enumerate(self._names)}
        return values if self.kwargs else {k: _dump(v) for k, v in values.items()}


def _model_name(tool: str, suffix: str) -> str:
    """A class name for pydantic from a tool's name (any text: NULs and the like are dropped)."""
    return "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", tool))[:60] + _title(suffix)


def _describe(tool: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "parameters"
        if error["type"] == "missing":
            problems.append(f"missing required parameter '{where}'")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown parameter '{where}'")
        else:
            problems.append(f"parameter '{where}': {error['msg']}")
    return f"{tool}: " + "; ".join(problems)
