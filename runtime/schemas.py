"""Inline a JSON Schema's `$ref`s, in time and memory linear in its size.

Stubs, the API reference and parameter validation read schemas without
references, so every local `$ref` is inlined here. Schemas come from
upstream (MCP servers, pydantic models) and are hostile input: inlined
naively, an ordinary recursive schema (a tree whose nodes hold nodes) never
ends, and a "wide and deep" one (definitions that each refer to the next
twice) grows exponentially with its depth. So:

* a `$ref` to a definition already being inlined on the current path is a
  recursion: it becomes `{}` (any value);
* once the inlined output holds `MAX_INLINED_NODES` JSON nodes (objects,
  arrays and scalars, data such as enums and defaults included), every
  further `$ref` becomes `{}`;
* anything nested deeper than `MAX_DEPTH` becomes `{}`;
* a `$ref` that is not a local JSON pointer (`#`, `#/$defs/Name`, ...) or
  points nowhere is dropped (its siblings stay).

Each cut is reported once as a note (stubs list them), so what became `Any`
is said. The walk knows which keywords hold subschemas: a property named
`$ref` or `definitions`, or a `default` that looks like a reference, is data
and stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_INLINED_NODES = 5_000
MAX_DEPTH = 64

_SUBSCHEMA = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems", "items"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_DEFINITIONS = frozenset({"$defs", "definitions"})
_MISSING = object()


@dataclass
class Resolved:
    """A schema with its references inlined, and what had to be cut (as sentences for a docstring)."""

    schema: Any
    notes: list[str] = field(default_factory=list)


def resolve_refs(schema: Any, *, max_nodes: int = MAX_INLINED_NODES) -> Resolved:
    """Inline the local `$ref`s of `schema` (a whole document: pointers resolve against it)."""
    resolver = _Resolver(schema, max_nodes)
    return Resolved(resolver.schema(schema, 0), resolver.notes)


class _Resolver:
    def __init__(self, root: Any, max_nodes: int) -> None:
        self.root = root
        self.max_nodes = max_nodes
        self.nodes = 0
        self.notes: list[str] = []
        self._expanding: list[str] = []
        self._sizes: dict[int, int] = {}
        self._noted: set[str] = set()

    def note(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    def schema(self, node: Any, depth: int) -> Any:
        """A subschema, its references inlined."""
        if not isinstance(node, dict):
            return self.data(node)
        if depth > MAX_DEPTH:
            self.note("depth", f"The schema nests deeper than {MAX_DEPTH} levels; deeper values are typed as Any.")
            return {}
        self.nodes += 1
        ref = node.get("$ref")
        is_ref = isinstance(ref, str)
        out = {
            key: self.keyword(key, value, depth)
            for key, value in node.items()
            if key not in _DEFINITIONS and not (is_ref and key == "$ref")
        }
        if not is_ref:
            return out
        return {**self.inline(ref, depth), **out}  # the referring schema's own keywords win

    def keyword(self, key: str, value: Any, depth: int) -> Any:
        if key in _SUBSCHEMA_LISTS and isinstance(value, list):
            self.nodes += 1
            return [self.schema(item, depth + 1) for item in value]
        if key in _SUBSCHEMA:
            return self.schema(value, depth + 1)
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            self.nodes += 1
            return {name: self.schema(sub, depth + 1) for name, sub in value.items()}
        return self.data(value)

    def inline(self, ref: str, depth: int) -> dict[str, Any]:
        target = self.target(ref)
        if not isinstance(target, dict):
            self.note(f"missing:{ref}", f"The reference {ref!r} could not be resolved; it is typed as Any.")
            return {}
        if ref in self._expanding:
            label = _label(ref)
            self.note(f"recursive:{ref}", f"{label} is recursive: its nested {label} values are typed as Any.")
            return {}
        if self.nodes >= self.max_nodes:
            self.note("budget", f"The schema is too large to inline in full ({self.max_nodes} nodes); the rest is Any.")
            return {}
        self._expanding.append(ref)
        try:
            resolved = self.schema(target, depth + 1)
        finally:
            self._expanding.pop()
        return resolved if isinstance(resolved, dict) else {}

    def target(self, ref: str) -> Any:
        """The node a local JSON pointer (`#`, `#/$defs/Node`) names, or _MISSING."""
        if ref != "#" and not ref.startswith("#/"):
            return _MISSING
        node = self.root
        for part in ref[2:].split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return _MISSING
        return node

    def data(self, value: Any) -> Any:
        """A value that is not a schema (an enum, a default, an unknown keyword): kept, and counted."""
        self.nodes += self.size(value)
        return value

    def size(self, value: Any) -> int:
        """How many JSON nodes `value` holds (memoized: inlining repeats the same objects)."""
        if not isinstance(value, (dict, list)):
            return 1
        known = self._sizes.get(id(value))
        if known is not None:
            return known
        total, stack = 0, [value]
        while stack:  # iterative: data may nest deeper than Python recursion allows
            item = stack.pop()
            total += 1
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        self._sizes[id(value)] = total
        return total


def _label(ref: str) -> str:
    """`#/$defs/Node` -> `Node`; `#` -> `the schema`."""
    name = ref.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
    return repr(name) if ref != "#" else "the schema"
