"""Declared and MCP tools' parameters, checked with jsonschema (Draft 2020-12).

A tool's input schema (`ToolDefinition.input_schema()`, normalized by
`ptc.schemas`) is checked against the 2020-12 metaschema once, when the
checker is built: an invalid schema raises SchemaError there, so that tool,
and only it, fails (the router says ptc could not build a validator from
its schema). The metaschema is used as one graph (`_metaschema`: its
vocabularies' properties merged, its references followed): the same
verdicts as jsonschema's `check_schema`, ten times faster (its reference
lookups cost ~150 us per schema node: 0.27 s for a 300-level bomb, 0.02 s
here). Calls are then checked against the linked graph
(`ptc.schemas.link`): a `$ref` is the definition itself, so references cost
nothing per call, and nothing is ever resolved or fetched.

The schema is hostile (upstream); the instance is program data (plain, at
most the codec's 64 levels deep, within the frame limit). Keywords whose
stock implementation can take more than linear time are replaced:

* `pattern`: `ptc.hostcalls.calls.patterns` (bounded cost, else not run);
* `patternProperties`: a regex that is not linear makes that object's
  `patternProperties`, `additionalProperties` and `unevaluatedProperties`
  unchecked (jsonschema runs those regexes on every key, in three places);
* `uniqueItems`: canonical forms hashed, not every pair compared;
* `enum`: a long one looked up in a set of canonical forms.

`integer` means an int (not 1.0), as pydantic's strict mode has it for
function tools. `format` is checked where jsonschema can with what is
installed (email, ipv4, ipv6, date, uuid, idn-hostname, ...); other formats
are annotations, as 2020-12 makes them by default. `regex` is not checked,
in values or in schemas: compiling is Python's parser running over the text
(a program's megabyte, or a JS-only pattern that is not invalid, only not
run).
"""

from __future__ import annotations

import functools
import reprlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

from jsonschema import Draft202012Validator, FormatChecker, SchemaError, ValidationError, validators
from jsonschema_specifications import REGISTRY

from ptc.hostcalls.calls.patterns import compiled
from ptc.schemas import link

_LONG_ENUM = 16
_KEY_LENGTH = 10_000  # a patternProperties regex must be affordable on keys this long
_MESSAGE = 300
_FORMATS = FormatChecker([name for name in Draft202012Validator.FORMAT_CHECKER.checkers if name != "regex"])
_STOCK_ENUM = Draft202012Validator.VALIDATORS["enum"]


class _Enum(list[Any]):
    """A long enum with a set of its values' canonical forms (only in linked graphs, never in definitions)."""

    def __init__(self, values: list[Any], keys: frozenset[Any]) -> None:
        super().__init__(values)
        self.keys = keys


def _canonical(value: Any) -> Any:
    """A hashable form equal for JSON-equal values (1 == 1.0, True != 1), as jsonschema's `equal`."""
    if value is None or isinstance(value, bool):
        return ("const", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, (list, tuple)):
        return ("array", tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        return ("object", frozenset((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, bytes):
        return ("bytes", value)
    raise TypeError(f"not plain data: {type(value).__name__}")


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    checked = compiled(pattern)
    if checked is not None and checked.search(instance) is False:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{reprlib.repr(instance)} has non-unique elements")
            return
        seen.add(key)


def _enum(validator: Any, enums: Any, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if not isinstance(enums, _Enum):
        yield from _STOCK_ENUM(validator, enums, instance, schema)
    elif _canonical(instance) not in enums.keys:
        shown = ", ".join(repr(v) for v in enums[:10])
        yield ValidationError(f"{instance!r} is not one of [{shown}, ...] ({len(enums)} values)")


_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
_TYPE_NAMES = frozenset({"string", "integer", "number", "boolean", "null", "array", "object"})
_ANNOTATIONS = frozenset({"type", "title", "description", "default", "examples", "deprecated", "$comment"})
_Checker = validators.extend(
    Draft202012Validator, {"pattern": _pattern, "uniqueItems": _unique_items, "enum": _enum}, type_checker=_TYPES
)


def _harden(node: dict[str, Any]) -> dict[str, Any]:
    """A linked node with the keywords above made safe to run (see the module docstring)."""
    regexes = node.get("patternProperties")
    if isinstance(regexes, dict) and not all(_linear(p) for p in regexes):
        for keyword in ("patternProperties", "additionalProperties", "unevaluatedProperties"):
            node.pop(keyword, None)
    values = node.get("enum")
    if isinstance(values, list) and len(values) > _LONG_ENUM:
        try:
            node["enum"] = _Enum(values, frozenset(_canonical(v) for v in values))
        except (TypeError, RecursionError):
            pass  # values that are not plain data: the stock comparison
    return node


def _only_type(schema: Any) -> str | None:
    """The type a schema names if that is all it checks (`{"type": "string", "description": ...}`)."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, str) and kind in _TYPE_NAMES and schema.keys() <= _ANNOTATIONS:
        return kind
    return None


def _linear(pattern: Any) -> bool:
    checked = compiled(pattern) if isinstance(pattern, str) else None
    return checked is not None and checked.degree <= 1 and checked.affordable(_KEY_LENGTH)


@functools.cache
def _metaschema() -> Draft202012Validator:
    """A validator of the 2020-12 metaschema without references: every vocabulary is `type` and
    `properties` (so they merge into one), `$ref`s are local to a vocabulary, and `$dynamicRef: #meta`
    is the whole metaschema again."""
    root = Draft202012Validator.META_SCHEMA
    merged: dict[str, Any] = {"type": ["object", "boolean"], "properties": {}}

    def follow(node: Any, vocabulary: dict[str, Any]) -> Any:
        if isinstance(node, list):
            return [follow(item, vocabulary) for item in node]
        if not isinstance(node, dict):
            return node
        if node.get("$dynamicRef") == "#meta":
            return merged
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return follow(vocabulary["$defs"][ref[len("#/$defs/") :]], vocabulary)
        return {key: follow(value, vocabulary) for key, value in node.items() if key != "$comment"}

    for part in root["allOf"]:
        vocabulary = REGISTRY.contents(urljoin(root["$id"], part["$ref"]))
        merged["properties"].update(follow(vocabulary["properties"], vocabulary))
    merged["properties"].update(follow(root["properties"], root))
    return Draft202012Validator(merged, format_checker=_FORMATS)


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless `schema` is valid under the 2020-12 metaschema (patterns not compiled)."""
    for error in _metaschema().iter_errors(schema):
        raise SchemaError.create_from(error)


class SchemaCheck:
    """One tool's parameter schemas, compiled: `problems(name, value)` lists what is wrong with a value."""

    def __init__(self, input_schema: dict[str, Any]) -> None:
        check_schema(input_schema)  # SchemaError: this tool fails
        linked = link(input_schema, _harden).root
        properties = linked.get("properties", {}) if isinstance(linked, dict) else {}
        self._checkers = {name: _Checker(schema, format_checker=_FORMATS) for name, schema in properties.items()}
        self._types = {name: kind for name, schema in properties.items() if (kind := _only_type(schema))}

    def problems(self, name: str, value: Any, limit: int = 5) -> list[str]:
        """At most `limit` sentences, each naming the parameter (`parameter 'a.b': ...`); [] when valid."""
        checker = self._checkers.get(name)
        kind = self._types.get(name)
        if checker is None or (kind is not None and _TYPES.is_type(value, kind)):
            return []  # a schema that only names a type: jsonschema's own type check, without its overhead
        found: list[str] = []
        try:
            for error in checker.iter_errors(value):
                where = ".".join([name, *(str(p) for p in error.absolute_path)])
                found.append(f"parameter {where!r}: {_message(error)}")
                if len(found) >= limit:
                    break
        except (RecursionError, TypeError, ValueError, OverflowError) as exc:  # a schema or value past its bounds
            found.append(f"parameter {name!r} could not be checked against its schema ({type(exc).__name__})")
        return found


def _message(error: ValidationError) -> str:
    """jsonschema's sentence, its value cut short, and for `anyOf`/`oneOf` what each option said."""
    text = error.message
    if len(text) > _MESSAGE:
        full = repr(error.instance)
        text = reprlib.repr(error.instance) + text[len(full) :] if text.startswith(full) else text
        text = text[:_MESSAGE] + ("..." if len(text) > _MESSAGE else "")
    reasons = list(dict.fromkeys(_reason(e) for e in (error.context or [])[:3]))
    return f"{text} ({'; '.join(reasons)})" if reasons else text


def _reason(error: ValidationError) -> str:
    where = ".".join(str(p) for p in error.relative_path)
    return f"{where}: {_message(error)}" if where else _message(error)
