"""JSON Schema -> Python annotations and TypedDict definitions for stubs.

The renderer reads linked schemas (`ptc.schemas.link`): a definition is one
node wherever it is referred to, so it is rendered once (a "wide and deep"
schema costs its size), and a recursive definition is a TypedDict whose
fields name itself (`left: Node | None`). Recursion through a definition
that is not an object (a union of itself and null, ...) has no class to
name, so its inner uses are `Any`.

What a schema says that Python typing cannot (patterns, `not`, tuple-like
`prefixItems`, ...) falls back to `Any`/`dict[str, Any]`, and the fallback is
reported so the stub's docstring can say so.

Annotations are source code, so nothing of the schema reaches them as
written: class names are built from ASCII words (`class_name`) and never
shadow the stub's own names, Literal values are `literal()`s, and keys that
are not plain identifiers make the TypedDict use the functional form, where
they are `repr`s. The work is linear in the schema's size (each node is
rendered once, at most `MAX_CLASSES` TypedDicts per stub).

A field that names a class defined after its own (a recursive one) is
written as a string in the functional form, whose annotations are evaluated
when the module runs; the class form needs none (`from __future__ import
annotations`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ptc.catalog import is_identifier
from ptc.stubgen.text import clean_lines, literal

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
MAX_CLASSES = 100
MAX_LITERALS = 200
_PYTHON_TYPES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "None"}
MAX_CLASS_NAME = 60  # longer names are cut (TypeRenderer makes cut names unique)
MAX_NOTES = 20
# Names a tool module binds or its annotations use: a TypedDict of that name would shadow them.
RESERVED_NAMES = frozenset(
    {"Any", "Literal", "NotRequired", "Required", "TypedDict", "None", "True", "False", "annotations"}
    | {"str", "int", "float", "bool", "list", "dict"}
)


def class_name(*parts: str) -> str:
    """An ASCII CamelCase name from the words of `parts` (never a keyword once made unique by TypeRenderer)."""
    words = [w for part in parts for w in re.split(r"[^A-Za-z0-9]+", part) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words)[:MAX_CLASS_NAME] or "Value"
    return "_" + name if name[0].isdigit() else name


@dataclass
class TypedDictDef:
    name: str
    description: str
    fields: list[tuple[str, str, bool, str]]  # (key, annotation, required, description)
    forward: frozenset[str] = frozenset()  # keys whose annotation names a class defined after this one

    def shape(self) -> str:
        """`{key: type, optional?: type}`, compact for prompts (a key that is not an identifier as its repr)."""
        return "{" + ", ".join(f"{_key(k)}{'' if req else '?'}: {a}" for k, a, req, _ in self.fields) + "}"

    @property
    def doc(self) -> str:
        """The text the class's docstring reads as (its schema's description)."""
        return clean_lines(self.description)

    @property
    def class_syntax(self) -> bool:
        """Whether every key can be written as a class-body name: an identifier that means itself
        (not mangled: no leading `__`)."""
        return all(is_identifier(key) and not key.startswith("__") for key, *_ in self.fields)


def _key(key: str) -> str:
    return key if is_identifier(key) else repr(key)


@dataclass
class TypeRenderer:
    """Renders annotations, collecting the TypedDicts they need and what fell back to Any.

    reserved: names the module already binds (its function, typing names):
    TypedDicts get other names. definitions: id(node) -> name of the linked
    schemas' definitions (`Linked.names`; `use` adds more).
    """

    classes: list[TypedDictDef] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    reserved: frozenset[str] = frozenset()
    definitions: dict[int, str] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)
    _depth: int = 0
    _done: dict[int, tuple[str, frozenset[str]]] = field(default_factory=dict)  # definition -> (annotation, forward)
    _open: dict[int, str | None] = field(default_factory=dict)  # definitions being rendered -> their class, once named
    _naming: int | None = None  # the definition whose own object, if it is one, names its class
    _forward: list[str] = field(default_factory=list)  # classes named before they were defined, in order

    def __post_init__(self) -> None:
        self._names |= RESERVED_NAMES | self.reserved

    def fallback(self, note: str) -> None:
        """Record what fell back to Any (each note once, at most MAX_NOTES of them)."""
        if note in self.fallbacks:
            return
        if len(self.fallbacks) < MAX_NOTES:
            self.fallbacks.append(note)
        elif len(self.fallbacks) == MAX_NOTES:
            self.fallbacks.append("... and more values typed as Any")

    def use(self, definitions: dict[int, str]) -> None:
        """Read the definitions of another linked schema too (a tool's output beside its input)."""
        self.definitions.update(definitions)

    def annotation(self, schema: Any, hint: str) -> str:
        if not isinstance(schema, dict) or not schema:
            return "Any"
        if self._depth > 12:
            self.fallback(f"{hint}: nested too deeply, typed as Any")
            return "Any"
        self._depth += 1
        try:
            if id(schema) in self.definitions:
                return self._definition(schema)
            return self._annotation(schema, hint)
        finally:
            self._depth -= 1

    def _definition(self, schema: dict[str, Any]) -> str:
        """A definition's annotation: rendered once, and by its class name inside itself."""
        key = id(schema)
        if key in self._done:
            result, forward = self._done[key]
            self._forward.extend(forward & set(self._open.values()))  # still a forward reference here
            return result
        if key in self._open:
            named = self._open[key]
            if named is None:
                self.fallback(f"{self.definitions[key]!r} is recursive: its nested values are typed as Any")
                return "Any"
            self._forward.append(named)
            return named
        self._open[key], self._naming = None, key
        start = len(self._forward)
        try:
            result = self._annotation(schema, self.definitions[key])
        finally:
            del self._open[key]
        self._done[key] = (result, frozenset(self._forward[start:]))
        return result

    def _annotation(self, schema: dict[str, Any], hint: str) -> str:
        if "const" in schema:
            value = literal(schema["const"])
            if value is not None and not isinstance(schema["const"], (list, dict)):
                return f"Literal[{value}]" if schema["const"] is not None else "None"
            self.fallback(f"{hint}: a constant Python typing cannot spell, typed as Any")
            return "Any"
        enum = self._enum(schema, hint)
        if enum is not None:
            return enum
        for combinator in ("anyOf", "oneOf"):
            if isinstance(schema.get(combinator), list):
                return self._union([self.annotation(s, hint) for s in schema[combinator]])
        if isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            return self.annotation(schema["allOf"][0], hint)
        kind = schema.get("type")
        if isinstance(kind, list):  # each type once: `["object", "object"]` must not render a subtree twice
            kinds = list(dict.fromkeys(k for k in kind if isinstance(k, str)))
            return self._union([self.annotation({**schema, "type": k}, hint) for k in kinds])
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            return f"list[{self.annotation(items, hint + 'Item')}]" if isinstance(items, dict) else "list[Any]"
        if kind == "object" or "properties" in schema:
            return self._object(schema, hint)
        if kind is None and not any(k in schema for k in ("allOf", "not", "$ref")):
            return "Any"
        self.fallback(f"{hint}: schema not expressible as a Python type, typed as Any")
        return "Any"

    def _enum(self, schema: dict[str, Any], hint: str) -> str | None:
        """`Literal[...]` of the enum's values, or None when it has none a Literal can hold."""
        values = schema.get("enum")
        if not isinstance(values, list) or not values:
            return None
        if len(values) > MAX_LITERALS:  # a huge enum would make a huge stub: its values' types instead
            self.fallback(f"{hint}: one of {len(values)} values, too many to spell as a Literal")
            return self._union([_PYTHON_TYPES.get(type(v), "Any") for v in values])
        shown: list[str] = []
        nullable = False
        for value in values:
            if value is None:
                nullable = True
            elif isinstance(value, (str, int, float, bool)):
                source = literal(value)
                if source is not None and source not in shown:
                    shown.append(source)
        if len(shown) + nullable < len(values):
            self.fallback(f"{hint}: some enum values cannot be spelled as a Literal and are left out")
        if not shown:
            return "None" if nullable else None
        return f"Literal[{', '.join(shown)}]" + (" | None" if nullable else "")

    def _object(self, schema: dict[str, Any], hint: str) -> str:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties:
            extra = schema.get("additionalProperties")
            value = self.annotation(extra, hint + "Value") if isinstance(extra, dict) else "Any"
            return f"dict[str, {value}]"
        if len(self.classes) >= MAX_CLASSES:
            self.fallback(f"{hint}: more than {MAX_CLASSES} nested object types, typed as dict[str, Any]")
            return "dict[str, Any]"
        title = schema.get("title")
        name = class_name(title if isinstance(title, str) and title.isidentifier() else hint)
        while name in self._names:
            name += "_"
        self._names.add(name)
        if self._naming == id(schema):  # a definition that is this object: inside itself, it is this class
            self._open[id(schema)], self._naming = name, None
        required = schema.get("required")
        required = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        fields, forward = [], set()
        for key, sub in properties.items():
            before = len(self._forward)
            fields.append((key, self.annotation(sub, hint + class_name(key)), key in required, _describe(sub)))
            if len(self._forward) != before:
                forward.add(key)
        description = schema.get("description")
        self.classes.append(
            TypedDictDef(name, description if isinstance(description, str) else "", fields, frozenset(forward))
        )
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
    description = schema.get("description", "") if isinstance(schema, dict) else ""
    return description if isinstance(description, str) else ""
