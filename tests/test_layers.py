"""The import graph, by import name: layers that import one way, and no cycles.

ARCHITECTURE.md draws the same layers. Every import of ptc counts, also one
inside a function or under TYPE_CHECKING: a lazy import is still a
dependency, and it is how cycles hide.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom first. A module may import its own layer and the layers below, never above.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "vocabulary",
        [
            r"ptc\.(errors|limits|policy|records|events|results|schemas|catalog|handoff|journal|approvals|telemetry|state|redis_state|loop_thread)",
            r"ptc\.private(\..*)?",
        ],
    ),
    ("stub generation", [r"ptc\.stubgen(\..*)?"]),
    ("wasm boundary", [r"ptc\.hostcalls", r"ptc\.hostcalls\.wasm(\..*)?"]),
    ("tool calls and backends", [r"ptc\.hostcalls\.calls(\..*)?", r"ptc\.hostcalls\.backends(\..*)?"]),
    ("sandbox", [r"ptc\.guest(\..*)?", r"ptc\.(wasm_threads|interrupts|spares|engine|sandbox|replay|stub_code)"]),
    (
        "executor",
        [
            r"ptc\.(tenancy|fleet|audit|budgets|executor|lifecycle|closing|connections|admission|execution|sessions|resume|typecheck|workers)(\..*)?"
        ],
    ),
    (
        "front ends",
        [r"ptc", r"ptc\.(__main__|cli|repl|serve|serve_sessions|demo)", r"ptc\.examples(\..*)?", r"ptc\.ray(\..*)?"],
    ),
]
# Siblings in one layer that must not know each other.
INDEPENDENT = [(r"ptc\.hostcalls\.calls(\..*)?", r"ptc\.hostcalls\.backends(\..*)?")]


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by import name, from pyproject's package-dir."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    modules: dict[str, Path] = {}
    for package, folder in mapping.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            relative = path.relative_to(base)
            if relative.parts[0] == "app":  # guest/app runs inside the sandbox: not part of the host package
                continue
            parts = [p for p in relative.with_suffix("").parts if p != "__init__"]
            name = ".".join([package, *parts])
            if name.split(".")[: len(package.split("."))] == package.split(".") and name not in modules:
                modules[name] = path
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    deps = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name and target.startswith("ptc"):
            deps.add(target)
    return deps


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int:
    matches = [i for i, (_, patterns) in enumerate(LAYERS) if any(re.fullmatch(p, name) for p in patterns)]
    assert matches, f"{name} is in no layer: add it to LAYERS (and to ARCHITECTURE.md)"
    return matches[0]


def test_every_module_has_a_layer() -> None:
    assert len(MODULES) > 30
    for name in MODULES:
        _layer(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_downward(name: str) -> None:
    mine = _layer(name)
    upward = sorted(dep for dep in GRAPH[name] if _layer(dep) > mine)
    assert not upward, f"{name} ({LAYERS[mine][0]}) imports from above: {upward}"


def test_vocabulary_imports_nothing_else_of_ptc() -> None:
    for name, deps in GRAPH.items():
        if _layer(name) == 0:
            assert all(_layer(dep) == 0 for dep in deps), (name, deps)


def test_siblings_stay_apart() -> None:
    for left, right in INDEPENDENT:
        for a, b in ((left, right), (right, left)):
            for name, deps in GRAPH.items():
                if re.fullmatch(a, name):
                    crossing = [d for d in deps if re.fullmatch(b, d)]
                    assert not crossing, f"{name} imports its sibling {crossing}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components over the whole graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for dep in GRAPH[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_the_check_sees_a_violation() -> None:
    """The checker itself: an upward import is caught (a test that cannot fail is no test)."""
    assert _layer("ptc.errors") < _layer("ptc.executor")
    assert "ptc.policy" in GRAPH["ptc.catalog"]  # imports are found, also `from ptc.x import y`
    assert any("ptc.hostcalls.wasm.state" in deps for deps in GRAPH.values())
