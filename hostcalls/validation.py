"""Parameter validation with pydantic, from a tool's definition.

Function tools validate against their real annotations (so an Enum or a
pydantic model arrives as one); declared tools against their JSON Schema.
Validation is strict as JSON is: no "5" for an int, no 1 for a bool, but an
int is a fine float.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any, Literal, Union

from ptc.catalog import Binding, ToolDefinition
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}


class ParameterError(ValueError):
    """Parameters do not match the definition; the message names them."""


def type_from_schema(schema: Any, name: str = "Object") -> Any:
    """A Python type that validates like the JSON Schema (the parts tools use)."""
    if not isinstance(schema, dict):
        return Any
    if "const" in schema:
        return Literal[schema["const"]]
    if "enum" in schema and schema["enum"]:
        return Literal[tuple(schema["enum"])]
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            options = tuple(type_from_schema(s, name) for s in schema[combinator])
            return Union[options] if options else Any  # noqa: UP007 - built at run time
    kind = schema.get("type")
    if isinstance(kind, list):
        return Union[tuple(type_from_schema({**schema, "type": k}, name) for k in kind)]  # noqa: UP007
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return list[type_from_schema(schema.get("items"), name + "Item")]  # type: ignore[misc]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if not properties:
            extra = schema.get("additionalProperties")
            return dict[str, type_from_schema(extra, name + "Value") if isinstance(extra, dict) else Any]  # type: ignore[misc]
        required = set(schema.get("required", []))
        fields = {
            key: (type_from_schema(sub, name + key.title()), ... if key in required else sub.get("default"))
            for key, sub in properties.items()
        }
        extra_mode = "forbid" if schema.get("additionalProperties") is False else "allow"
        return create_model(name, __config__=ConfigDict(extra=extra_mode, strict=True), **fields)  # type: ignore[call-overload]
    return Any


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
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
        if self.kwargs and binding is not None:
            hints = typing.get_type_hints(binding.handler, include_extras=True)
            for param in inspect.signature(binding.handler).parameters.values():
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    continue
                default = ... if param.default is inspect.Parameter.empty else param.default
                fields[param.name] = (hints.get(param.name, Any), default)
        else:
            for p in tool.parameters:
                default = ... if p.required else p.default
                fields[p.name] = (type_from_schema(p.schema_dict(), _model_name(tool.name, p.name)), default)
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
        values = {name: getattr(model, name) for name in type(model).model_fields}
        return values if self.kwargs else {k: _dump(v) for k, v in values.items()}


def _model_name(tool: str, suffix: str) -> str:
    return "".join(part.title() for part in tool.replace("-", "_").replace(".", "_").split("_")) + suffix.title()


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
