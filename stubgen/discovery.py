"""One discovery surface over every backend: rank and describe functions, MCP tools and A2A skills together.

Used by `executor.search_tools` / `describe_tool`, by `from tools import
search_tools, describe_tool` inside the sandbox (answered by the host from the
caller's own catalog) and by `ptc serve`'s tools of the same names.

Ranking is Okapi BM25 (k1 = 1.2, b = 0.75, the usual constants) over each
tool's words: its name (camelCase and snake_case split), domain, description,
and its parameters' names and descriptions, with the name's and domain's
words counted twice (what a tool is called says more than what its text
mentions). Words are lowercased and a plural's "s" dropped, so "orders"
finds `get_order`. The index is built once per catalog revision, linear in
the catalog's text. A query is the caller's (a program's) text: it is cut to
MAX_QUERY characters and `limit` to 1..MAX_LIMIT.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ptc.catalog import ToolCatalog, ToolDefinition
from ptc.stubgen.render import ResultCaps, build_stub, render_tool_module
from ptc.stubgen.text import md_inline

MAX_QUERY = 1000
MAX_LIMIT = 50
_K1, _B = 1.2, 0.75
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_KINDS = {"function": "function", "worker": "function", "mcp": "mcp", "a2a": "a2a"}


def words(text: str) -> list[str]:
    """Lowercased words of `text`, identifiers split (getTeamBudget, get_team_budget: get team budget)."""
    found = []
    for word in _WORD.findall(text):
        word = word.lower()
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


def _text_of(tool: ToolDefinition) -> list[str]:
    name = words(f"{tool.name} {tool.python_name} {tool.domain}")
    rest = words(tool.description)
    for parameter in tool.parameters:
        rest += words(f"{parameter.name} {parameter.description or ''}")
    return name + name + rest


@dataclass(frozen=True)
class _Index:
    revision: int
    tools: list[ToolDefinition]
    counts: list[Counter[str]]
    lengths: list[int]
    document_frequency: Counter[str]
    average: float

    @classmethod
    def build(cls, catalog: ToolCatalog) -> _Index:
        tools = sorted(catalog, key=lambda t: (t.domain, t.python_name))
        counts = [Counter(_text_of(tool)) for tool in tools]
        lengths = [sum(c.values()) for c in counts]
        frequency: Counter[str] = Counter()
        for c in counts:
            frequency.update(c.keys())
        return cls(catalog.revision, tools, counts, lengths, frequency, (sum(lengths) / len(tools)) if tools else 0.0)

    def rank(self, query: list[str]) -> list[tuple[float, ToolDefinition]]:
        n = len(self.tools)
        scored = []
        for tool, count, length in zip(self.tools, self.counts, self.lengths, strict=True):
            score = 0.0
            for word in set(query):
                tf = count.get(word, 0)
                if tf:
                    df = self.document_frequency[word]
                    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                    score += idf * tf * (_K1 + 1) / (tf + _K1 * (1 - _B + _B * length / (self.average or 1)))
            if score > 0 or not query:
                scored.append((score, tool))
        scored.sort(key=lambda pair: -pair[0])  # stable: equal scores stay in (domain, name) order
        return scored


_indexes: weakref.WeakKeyDictionary[ToolCatalog, _Index] = weakref.WeakKeyDictionary()  # rebuilt per revision
_lock = threading.Lock()


def _index(catalog: ToolCatalog) -> _Index:
    with _lock:
        index = _indexes.get(catalog)
        if index is None or index.revision != catalog.revision:
            index = _indexes[catalog] = _Index.build(catalog)
        return index


def entry(tool: ToolDefinition) -> dict[str, Any]:
    """What a search shows of one tool: enough to import and call it."""
    stub = build_stub(tool)
    return {
        "name": f"{tool.domain}.{tool.python_name}",
        "domain": tool.domain,
        "kind": _KINDS.get(tool.type, tool.type),
        "signature": f"async def {stub.function}({stub.signature}) -> {stub.returns}",
        "summary": md_inline(stub.summary),
        "import": f"from tools.{tool.domain} import {tool.python_name}",
    }


def search_tools(catalog: ToolCatalog, query: str, limit: int = 10) -> list[dict[str, Any]]:
    """The tools best matching `query` (by BM25 over names, descriptions and parameters), best first."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    return [entry(tool) for _, tool in _index(catalog).rank(words(str(query)[:MAX_QUERY]))[:limit]]


def find_tool(catalog: ToolCatalog, name: str) -> ToolDefinition | None:
    """A tool by its name, its Python name, `domain.name` or `tools.domain.name`."""
    for tool in catalog:
        if name in (tool.name, tool.python_name, f"{tool.domain}.{tool.python_name}"):
            return tool
        if name == f"tools.{tool.domain}.{tool.python_name}":
            return tool
    return None


def describe_tool(catalog: ToolCatalog, name: str, result_caps: ResultCaps | None = None) -> dict[str, Any] | None:
    """One tool in full: its search entry, plus its stub module's source (signature, types, docstring;
    with `result_caps`, the executor's result cap for it, as its served stub says)."""
    tool = find_tool(catalog, str(name)[:MAX_QUERY])
    if tool is None:
        return None
    stub = build_stub(tool, result_caps(tool.name) if result_caps else None)
    return {**entry(tool), "stub": render_tool_module(stub, catalog.source, catalog.version)}
