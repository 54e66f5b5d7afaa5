"""JSON Schema -> Python annotations and TypedDict definitions for stubs.

What a schema says that Python typing cannot (patterns, `not`, tuple-like
`prefixItems`, ...) falls back to `Any`/`dict[str, Any]`, and the fallback is
reported so the stub's docstring can say so.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def class_name(*parts: str) -> str:
    words = [w for part in parts for w in re.split(r"[^A-Za-z0-9]+", part) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Value"
    return "_" + name if name[0].isdigit() else name


@dataclass
class TypedDictDef:
    name: str
    description: str
    fields: list[tuple[str, str, bool, str]]  # (key, annotation, required, description)

    def shape(self) -> str:
        """`{key: type, optional?: type}`, compact for prompts."""
        return "{" + ", ".join(f"{k}{'' if req else '?'}: {a}" for k, a, req, _ in self.fields) + "}"

    @property
    def class_syntax(self) -> bool:
        return all(_IDENT.match(key) and not keyword.iskeyword(key) for key, *_ in self.fields)


@dataclass
class TypeRenderer:
    """Renders annotations, collecting the TypedDicts they need and what fell back to Any."""

    classes: list[TypedDictDef] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)
    _depth: int = 0

    def annotation(self, schema: Any, hint: str) -> str:
        if not isinstance(schema, dict) or not schema:
            return "Any"
        if self._depth > 12:
            self.fallbacks.append(f"{hint}: nested too deeply, typed as Any")
            return "Any"
        self._depth += 1
        try:
            return self._annotation(schema, hint)
        finally:
            self._depth -= 1

    def _annotation(self, schema: dict[str, Any], hint: str) -> str:
        if "const" in schema:
            return f"Literal[{schema['const']!r}]"
        if "enum" in schema and isinstance(schema["enum"], list) and schema["enum"]:
            values = [v for v in schema["enum"] if v is None or isinstance(v, (str, int, float, bool))]
            literal = (
                f"Literal[{', '.join(repr(v) for v in values if v is not None)}]"
                if any(v is not None for v in values)
                else "None"
            )
            return f"{literal} | None" if None in values and literal != "None" else literal
        for combinator in ("anyOf", "oneOf"):
            if isinstance(schema.get(combinator), list):
                return self._union([self.annotation(s, hint) for s in schema[combinator]])
        if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            return self.annotation(schema["allOf"][0], hint)
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._union([self.annotation({**schema, "type": k}, hint) for k in kind])
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.annotation(items, hint + 'Item')}]" if isinstance(items, dict) else "list[Any]"
        if kind == "object" or "properties" in schema:
            return self._object(schema, hint)
        if kind is None and not any(k in schema for k in ("allOf", "not", "$ref")):
            return "Any"
        self.fallbacks.append(f"{hint}: schema not expressible as a Python type, typed as Any")
        return "Any"

    def _object(self, schema: dict[str, Any], hint: str) -> str:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties:
            extra = schema.get("additionalProperties")
            value = self.annotation(extra, hint + "Value") if isinstance(extra, dict) else "Any"
            return f"dict[str, {value}]"
        title = schema.get("title")
        name = class_name(title if isinstance(title, str) and title.isidentifier() else hint)
        while name in self._names:
            name += "_"
        self._names.add(name)
        required = set(schema.get("required") or [])
        fields = [
            (key, self.annotation(sub, hint + class_name(key)), key in required, _describe(sub))
            for key, sub in properties.items()
        ]
        self.classes.append(TypedDictDef(name, str(schema.get("description", "")), fields))
        return name

    @staticmethod
    def _union(options: list[str]) -> str:
        unique: list[str] = []
        for option in options:
            for part in option.split(" | ") if "[" not in option else [option]:
                if part not in unique:
                    unique.append(part)
        if "Any" in unique:
            return "Any"
        if "None" in unique:  # Optional last, as people write it
            unique = [u for u in unique if u != "None"] + ["None"]
        return " | ".join(unique) or "Any"


def _describe(schema: Any) -> str:
    return str(schema.get("description", "")) if isinstance(schema, dict) else ""
