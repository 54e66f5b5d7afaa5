"""The one schema pipeline: JSON Schema documents made safe to read, in time linear in their size.

Every schema ptc reads (a declared parameter's, an MCP server's input and
output schemas, the JSON Schema pydantic derives from a function's
signature) goes through `normalize` once, and stubs, the API reference and
validation read only its output. Schemas come from upstream and are hostile
input; the contract:

* References are kept, never inlined: every `$ref` becomes
  `#/$defs/<name>`, and the definitions it names sit in the document's
  `$defs` (only those referenced). A pointer into the document's body
  (`#`, `#/properties/a`, zod's habit) is hoisted into `$defs` like any
  other, so a subschema plus `$defs` is a document of its own. Each target
  is walked once, so a "wide and deep" schema (definitions that each refer
  to the next twice) costs its size, not 2**depth; a recursive schema is a
  definition that refers to itself.
* A `$ref` that is not a local JSON pointer (a URL, an anchor, `$dynamicRef`)
  or points nowhere is dropped (its siblings stay), so nothing is fetched
  and nothing fails to resolve later; `$id`, `$anchor` and `$schema` go too
  (they would move the base pointers resolve against).
* A definition that refers to itself "in place" (through `allOf`, `anyOf`,
  `not`, ... or a bare `$ref`, not through a property or an item) would
  never end when checked: that reference is dropped. So is an in-place
  reference that would make checking one value visit more than
  MAX_IN_PLACE schema nodes (`allOf` diamonds grow like the inlining bomb).
* Once MAX_NODES schema nodes are walked, further references are dropped;
  anything nested deeper than MAX_DEPTH becomes `{}`.
* Draft-07 tuples (`items: [...]`) and draft-04 boolean
  `exclusiveMinimum`/`exclusiveMaximum` are rewritten in 2020-12 terms;
  everything else is kept as written (data such as `enum` and `default` by
  reference, not copied), and checked against the 2020-12 metaschema by
  whoever validates with it.

Each cut is reported once as a note (stubs list them), so what became `Any`
is said. The walk knows which keywords hold subschemas: a property named
`$ref` or `definitions`, or a `default` that looks like a reference, is data.

`link` turns a normalized document into a graph of plain dicts whose
references are the definitions themselves (a recursive schema is a cycle),
which is what the stub renderer and the validator walk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

MAX_NODES = 20_000
MAX_IN_PLACE = 2_000
MAX_DEPTH = 64
_MAX_NAME = 60

# Keywords whose value is one subschema, a list of them, or a map of names to them; "in place" ones
# apply to the value itself (a cycle through them never ends), the others to its parts.
_ONE = frozenset({"additionalProperties", "unevaluatedItems", "unevaluatedProperties", "contains", "propertyNames"})
_ONE |= frozenset({"additionalItems", "not", "if", "then", "else"})
_LISTS = frozenset({"prefixItems", "allOf", "anyOf", "oneOf"})
_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_IN_PLACE = frozenset({"not", "if", "then", "else", "allOf", "anyOf", "oneOf", "dependentSchemas"})
_DROPPED = frozenset({"$defs", "definitions", "$id", "$anchor", "$dynamicAnchor", "$schema", "$vocabulary"})
_DROPPED |= frozenset({"$recursiveAnchor"})
_DYNAMIC = frozenset({"$dynamicRef", "$recursiveRef"})
_DEFS = "#/$defs/"
_MISSING = object()


@dataclass
class Normalized:
    """A normalized document, and what had to be cut (as sentences for a docstring)."""

    schema: Any
    notes: list[str] = field(default_factory=list)


@dataclass
class Split:
    """An object schema's properties, each a normalized document of its own (sharing one `$defs` object)."""

    properties: dict[str, Any]
    required: set[str]
    notes: list[str]


def normalize(schema: Any) -> Normalized:
    """One document, normalized (see the module docstring); idempotent."""
    walk = _Normalizer()
    root = walk.document(schema, "the schema")
    return Normalized(walk.attach(root), walk.notes)


def normalize_properties(documents: Mapping[str, Any]) -> Normalized:
    """An object schema whose properties are `documents`, each read as a document of its own
    (its `$ref`s resolve against it), as one normalized document with one `$defs`.

    Definitions shared between documents (the same object, as `split_object` leaves them) are
    walked once, so a tool's parameters cost their size, not their number times their `$defs`.
    """
    walk = _Normalizer()
    properties = {name: walk.document(doc, f"parameter {name!r}") for name, doc in documents.items()}
    return Normalized(walk.attach({"type": "object", "properties": properties}), walk.notes)


def split_object(schema: Any) -> Split:
    """The properties and required names of an object schema (a tool's input), each property
    normalized and, if it refers to definitions, given the document's `$defs` (one shared object)."""
    normalized = normalize(schema)
    root = normalized.schema if isinstance(normalized.schema, dict) else {}
    defs = root.get("$defs", {})
    body = root
    for _ in range(8):  # the body may be a reference (`{"$ref": "#/$defs/Args"}`)
        ref = body.get("$ref")
        if "properties" in body or not isinstance(ref, str) or not isinstance(defs.get(ref[len(_DEFS) :]), dict):
            break
        body = defs[ref[len(_DEFS) :]]
    properties = body.get("properties")
    required = body.get("required")
    split = {}
    for name, sub in properties.items() if isinstance(properties, dict) else ():
        sub = sub if isinstance(sub, dict) else {} if sub is not False else {"not": {}}
        split[name] = {**sub, "$defs": defs} if defs and _refers(sub) else sub
    names = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    return Split(split, names, normalized.notes)


def schema_type(schema: Any) -> str:
    """A normalized document's `type` when it is one name (following a bare reference), else "object"."""
    node = schema
    defs = schema.get("$defs", {}) if isinstance(schema, dict) else {}
    for _ in range(8):
        if not isinstance(node, dict):
            break
        kind = node.get("type")
        if isinstance(kind, str):
            return kind
        ref = node.get("$ref")
        node = defs.get(ref[len(_DEFS) :]) if isinstance(ref, str) and ref.startswith(_DEFS) else None
    return "object"


# -- walking ---------------------------------------------------------------------------
def _shape(key: str, value: Any) -> str:
    """How `value` holds subschemas under keyword `key`: "one", "list", "map" or "" (data)."""
    if key == "items":  # a schema, or a draft-07 tuple of them
        return "list" if isinstance(value, list) else "one"
    if key in _ONE:
        return "one"
    if key in _LISTS:
        return "list" if isinstance(value, list) else ""
    if key in _MAPS:
        return "map" if isinstance(value, dict) else ""
    return ""


def _subschemas(node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(keyword, subschema) for every subschema directly under `node`."""
    for key, value in node.items():
        shape = _shape(key, value)
        if shape == "one":
            yield key, value
        elif shape == "list":
            yield from ((key, item) for item in value)
        elif shape == "map":
            yield from ((key, sub) for sub in value.values())


def _map(node: dict[str, Any], fn: Callable[[str, Any], Any]) -> dict[str, Any]:
    """`node` with `fn(keyword, subschema)` in place of each subschema; other values kept as they are."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        shape = _shape(key, value)
        if shape == "one":
            out[key] = fn(key, value)
        elif shape == "list":
            out[key] = [fn(key, item) for item in value]
        elif shape == "map":
            out[key] = {name: fn(key, sub) for name, sub in value.items()}
        else:
            out[key] = value
    return out


def _refers(node: Any) -> bool:
    """Whether a normalized subschema holds a `$ref` (walked without recursion: it may be deep)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "$ref" in item:
                return True
            stack.extend(sub for _, sub in _subschemas(item))
    return False


@dataclass
class _Edge:
    """An in-place reference: the node holding it, and the definition it names."""

    node: dict[str, Any]
    target: str


class _Normalizer:
    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.notes: list[str] = []
        self._noted: set[str] = set()
        self._names: dict[int, str] = {}  # id(target) -> its definition name (targets live as long as the walk)
        self._queue: list[tuple[str, Any, Any]] = []  # (name, target, the document it is in)
        self._edges: dict[str, list[_Edge]] = {}
        self._local: dict[str, int] = {}  # owner -> schema nodes it checks in place
        self.nodes = 0

    def note(self, key: str, text: str) -> None:
        if key not in self._noted:
            self._noted.add(key)
            self.notes.append(text)

    def document(self, root: Any, owner: str) -> Any:
        """A document's root, normalized; its references are queued and walked by `attach`."""
        return self.schema(root, root, 0, owner, in_place=True)

    def attach(self, root: Any) -> Any:
        """Walk every queued definition, make in-place references finite, and put `$defs` on `root`."""
        while self._queue:
            name, target, doc = self._queue.pop()
            if isinstance(target, bool):
                target = {} if target else {"not": {}}
            self.defs[name] = self.schema(target, doc, 0, name, in_place=True)
        self._bound_in_place()
        if not self.defs or not isinstance(root, dict):
            return root
        return {**root, "$defs": self.defs}

    def schema(self, node: Any, doc: Any, depth: int, owner: str, in_place: bool) -> Any:
        if not isinstance(node, dict):
            return node  # a boolean schema, or not a schema (the metaschema check says so)
        if depth > MAX_DEPTH:
            self.note("depth", f"The schema nests deeper than {MAX_DEPTH} levels; deeper values are typed as Any.")
            return {}
        self.nodes += 1
        if in_place:
            self._local[owner] = self._local.get(owner, 0) + 1

        def sub(keyword: str, value: Any) -> Any:
            return self.schema(value, doc, depth + 1, owner, in_place and keyword in _IN_PLACE)

        out = _map({k: v for k, v in node.items() if k not in _DROPPED and k != "$ref"}, sub)
        for key in _DYNAMIC & node.keys():
            del out[key]
            self.note("dynamic", f"A {key} cannot be followed; what it names is typed as Any.")
        if isinstance(out.get("items"), list):  # a draft-07 tuple
            out.setdefault("prefixItems", out.pop("items"))
            if "additionalItems" in out:
                out["items"] = out.pop("additionalItems")
        for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(bound), bool):  # draft-04
                if out.pop(bound) and inclusive in out:
                    out[bound] = out.pop(inclusive)
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = self.reference(ref, doc)
            if name is not None:
                out = {"$ref": _DEFS + name, **out}
                if in_place:
                    self._edges.setdefault(owner, []).append(_Edge(out, name))
        elif "$ref" in node:
            out["$ref"] = ref  # not a string: the metaschema check refuses it
        return out

    def reference(self, ref: str, doc: Any) -> str | None:
        """The definition name `ref` becomes (its target queued the first time), or None: dropped."""
        target = _target(doc, ref)
        if target is _MISSING:
            self.note(f"missing:{ref}", f"The reference {ref!r} could not be resolved; it is typed as Any.")
            return None
        known = self._names.get(id(target))
        if known is not None:
            return known
        if self.nodes >= MAX_NODES:
            self.note("budget", f"The schema is too large to read in full ({MAX_NODES} nodes); the rest is Any.")
            return None
        name = self._unique(_label(ref))
        self._names[id(target)] = name
        self.defs[name] = None  # keeps the order references were met in
        self._queue.append((name, target, doc))
        return name

    def _unique(self, label: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:_MAX_NAME] or "Def"
        name, n = base, 1
        while name in self.defs:
            n += 1
            name = f"{base}_{n}"
        return name

    def _bound_in_place(self) -> None:
        """Drop in-place references that close a cycle or make one check visit over MAX_IN_PLACE nodes.

        Depth-first over owners (definitions and documents), iteratively: a chain
        of definitions may be longer than Python's recursion allows.
        """
        state: dict[str, int] = {}  # 1: on the path, 2: done
        cost: dict[str, int] = {}
        for start in list(self._local):
            if start in state:
                continue
            state[start], cost[start] = 1, self._local.get(start, 0)
            stack: list[tuple[str, Iterator[_Edge], _Edge | None]] = [(start, iter(self._edges.get(start, [])), None)]
            while stack:
                owner, edges, _ = stack[-1]
                for edge in edges:
                    seen = state.get(edge.target, 0)
                    if seen == 0:
                        state[edge.target], cost[edge.target] = 1, self._local.get(edge.target, 0)
                        stack.append((edge.target, iter(self._edges.get(edge.target, [])), edge))
                        break
                    if seen == 1:
                        self._cut(edge, f"{edge.target!r} refers to itself without an object or array between")
                    else:
                        self._add(owner, edge, cost)
                else:
                    _, _, entry = stack.pop()
                    state[owner] = 2
                    if stack and entry is not None:
                        self._add(stack[-1][0], entry, cost)

    def _add(self, owner: str, edge: _Edge, cost: dict[str, int]) -> None:
        total = cost[owner] + cost.get(edge.target, 0)
        if total > MAX_IN_PLACE:
            self._cut(edge, f"checking {edge.target!r} in place would visit more than {MAX_IN_PLACE} schemas")
        else:
            cost[owner] = total

    def _cut(self, edge: _Edge, why: str) -> None:
        edge.node.pop("$ref", None)
        self.note(f"cut:{edge.target}", f"{why[0].upper()}{why[1:]}: that reference is typed as Any.")


def _target(doc: Any, ref: str) -> Any:
    """The node a local JSON pointer (`#`, `#/$defs/Node`, percent-encoded or not) names, or _MISSING."""
    if not ref.startswith("#"):
        return _MISSING
    pointer = unquote(ref[1:])
    if pointer and not pointer.startswith("/"):
        return _MISSING  # an anchor
    node = doc
    for part in pointer.split("/")[1:] if pointer else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node if isinstance(node, (dict, bool)) else _MISSING


def _label(ref: str) -> str:
    """`#/$defs/Node` -> `Node`; `#` -> `Root`."""
    part = unquote(ref[1:]).rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
    return part if ref not in ("#", "#/") else "Root"


# -- linking ---------------------------------------------------------------------------
@dataclass
class Linked:
    """A normalized document as a graph: each `$ref` is the definition it names (shared, cycles allowed).

    roots: the linked root; names: id(node) -> definition name, for the nodes that are definitions.
    A reference with siblings becomes `allOf: [definition, ...]` beside them.
    """

    root: Any
    names: dict[int, str]


def link(schema: Any, adapt: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Linked:
    """The graph of a normalized document; `adapt(node)` (optional) may replace each linked node's keywords."""
    defs = schema.get("$defs") if isinstance(schema, dict) else None
    defs = defs if isinstance(defs, dict) else {}
    linked: dict[str, dict[str, Any]] = {name: {} for name in defs}

    def walk(node: Any, top: bool = False) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        target = linked.get(ref[len(_DEFS) :]) if isinstance(ref, str) and ref.startswith(_DEFS) else None
        if target is not None and len(node) == 1 and not top:
            return target
        out = _map({k: v for k, v in node.items() if k not in ("$ref", "$defs")}, lambda _, sub: walk(sub))
        if target is not None:
            out["allOf"] = [target, *out.get("allOf", [])]
        return adapt(out) if adapt is not None else out

    for name, content in defs.items():
        linked[name].update(walk(content, top=True) if isinstance(content, dict) else {})
    return Linked(walk(schema), {id(node): name for name, node in linked.items()})
