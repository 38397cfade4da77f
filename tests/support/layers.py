"""The layer order of orch, and a checker that finds every import against it (docs/architecture.md).

Layers, bottom first. A module may import from its own layer and the layers below it, never from a layer above:
the agent is standalone (it runs on boards), and each layer of the workstation side builds on the ones below.
Imports are read with `ast` at every level (module level, inside functions and methods, under
`if TYPE_CHECKING:`), absolute and relative alike.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("agent", ("agent",)),
    ("foundation", ("orchestrator", "orchestrator.errors", "orchestrator.yamlfile")),
    ("core", ("orchestrator.artifacts", "orchestrator.datasets", "orchestrator.models", "orchestrator.runtimes")),
    ("recipes", ("orchestrator.recipes",)),
    ("builder", ("orchestrator.builder",)),
    ("results", ("orchestrator.results",)),
    ("fleet", ("orchestrator.fleet",)),
    ("application", ("orchestrator.lab", "orchestrator.dashboards")),
    ("interface", ("orchestrator.cli", "orchestrator.ui")),
]
PACKAGES = ("agent", "orchestrator")
# Names that stand for themselves only, not for everything under them (the package of the workstation side).
EXACT = {"orchestrator"}


@dataclass(frozen=True)
class Import:
    """One import statement: the module that imports, the module it names, and where."""

    importer: str
    target: str
    path: Path
    line: int
    module_level: bool

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.target}"


def modules(root: Path) -> dict[str, Path]:
    """Every module of PACKAGES under root, by dotted name (a package by its own name)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(root: Path) -> Iterator[Import]:
    """Every import of a project module by a project module, at any depth of the code."""
    known = modules(root)
    for name, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        top = set(map(id, tree.body))
        is_package = path.name == "__init__.py"
        seen = set()
        for node in ast.walk(tree):
            for target in _targets(node, name, is_package):
                found = Import(name, _module_of(target, known), path, node.lineno, id(node) in top)
                if target.split(".")[0] in PACKAGES and found not in seen:
                    seen.add(found)
                    yield found


def _targets(node: ast.AST, importer: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        parts = importer.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def _module_of(target: str, known: dict[str, Path]) -> str:
    """The longest known module a dotted import target names (`from a.b import c` may name module a.b.c)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return target


def layer_of(module: str) -> int:
    """The index in LAYERS of the layer a module belongs to (its longest matching prefix)."""
    best, index = -1, -1
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix not in EXACT and module.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, index = len(prefix), position
    if index < 0:
        raise LookupError(f"module {module} is in no layer: add it to LAYERS (tests/support/layers.py)")
    return index


def upward_imports(root: Path) -> list[str]:
    """Every import from a lower layer of a higher one, as `file:line: a imports b (layer x -> y)`."""
    found = []
    for item in imports(root):
        own, theirs = layer_of(item.importer), layer_of(item.target)
        if theirs > own:
            found.append(f"{item} ({LAYERS[own][0]} -> {LAYERS[theirs][0]})")
    return found


def module_cycles(root: Path) -> list[list[str]]:
    """Cycles among module-level imports (Tarjan's strongly connected components of more than one module)."""
    graph: dict[str, set[str]] = {name: set() for name in modules(root)}
    for item in imports(root):
        if item.module_level and item.target in graph and item.target != item.importer:
            graph[item.importer].add(item.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in graph:
        if node not in index:
            visit(node)
    return cycles
