"""Parameter validation: one pydantic model for a function tool, jsonschema for the rest.

A function tool is validated by the argument model its definition was
derived from (`ptc.catalog.arguments_model`), so an Enum or a pydantic model
arrives as one and the schema the program saw is the one that judges it;
strict as JSON is: no "5" for an int, no 1 for a bool, but an int is a fine
float. A declared or MCP tool is validated against its JSON Schema by
jsonschema (`ptc.hostcalls.calls.schema_check`: Draft 2020-12, `$ref`s
followed, minimum/pattern/format/... enforced, hostile schemas bounded).

Either way a message names the tool and each parameter at fault
(`parameter 'filters.limit': 0 is less than the minimum of 1`), unknown and
missing parameters included.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from ptc.catalog import Binding, ToolDefinition, arguments_model
from ptc.errors import PtcError

MAX_PROBLEMS = 5


class ParameterError(PtcError, ValueError):
    """Parameters do not match the definition; the message names them."""


class Validator:
    """Validates one tool's parameters and shapes them for its handler.

    Built once per tool and catalog revision (the router caches it): a schema
    that cannot be compiled raises here, and only that tool fails.
    """

    def __init__(self, tool: ToolDefinition, binding: Binding | None) -> None:
        self.tool = tool
        self.kwargs = binding is not None and binding.kwargs
        if binding is not None and binding.kwargs:
            self._model = binding.arguments or arguments_model(binding.handler)
            self._fields = [(name, info.alias or name) for name, info in self._model.model_fields.items()]
        else:
            from ptc.hostcalls.calls.schema_check import SchemaCheck  # jsonschema loads only for such tools

            self._schema = SchemaCheck(tool.input_schema())
            self._defaults = {p.name: None if p.required else p.default for p in tool.parameters}
            self._required = [p.name for p in tool.parameters if p.required]

    def __call__(self, args: Any) -> dict[str, Any]:
        """Validated arguments: kwargs for a function tool, the payload dict for a worker."""
        if not isinstance(args, dict):
            raise ParameterError("parameters must be a mapping of names to values")
        return self._model_call(args) if self.kwargs else self._schema_call(args)

    def _model_call(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            try:
                model = self._model.model_validate_json(json.dumps(args))
            except (TypeError, ValueError) as exc:
                if isinstance(exc, ValidationError):
                    raise
                model = self._model.model_validate(args)  # bytes or non-JSON floats: python mode
        except ValidationError as exc:
            raise ParameterError(_describe(self.tool.name, exc)) from None
        return {name: getattr(model, field) for field, name in self._fields}

    def _schema_call(self, args: dict[str, Any]) -> dict[str, Any]:
        problems = [f"unknown parameter {k!r}" for k in args if k not in self._defaults]
        problems += [f"missing required parameter {k!r}" for k in self._required if k not in args]
        for name, value in args.items():
            if len(problems) >= MAX_PROBLEMS:
                break
            problems += self._schema.problems(name, value, MAX_PROBLEMS - len(problems))
        if problems:
            raise ParameterError(f"{self.tool.name}: " + "; ".join(problems[:MAX_PROBLEMS]))
        return {name: args.get(name, default) for name, default in self._defaults.items()}


def _describe(tool: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:MAX_PROBLEMS]:
        where = ".".join(str(p) for p in error["loc"]) or "parameters"
        if error["type"] == "missing":
            problems.append(f"missing required parameter {where!r}")
        elif error["type"] == "extra_forbidden":
            problems.append(f"unknown parameter {where!r}")
        else:
            problems.append(f"parameter {where!r}: {error['msg']}")
    return f"{tool}: " + "; ".join(problems)
