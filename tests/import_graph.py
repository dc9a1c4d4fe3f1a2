"""kitae's import graph, read from the source with ``ast`` (nothing is imported).

Every ``import kitae...`` / ``from kitae... import ...`` becomes an :class:`Edge`, whether it runs
when the module is imported (``module_level``) or only when a function is called, and whether it
sits under ``if TYPE_CHECKING:``. ``from kitae.pkg import name`` points at ``kitae.pkg.name``
when that is a module, else at ``kitae.pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "kitae"


class Edge(NamedTuple):
    """One import of a kitae module by a kitae module."""

    importer: str
    imported: str
    module_level: bool
    type_checking: bool
    line: int


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    """``kitae/checkpoint/saving.py -> "kitae.checkpoint.saving"``, ``kitae/cli/__init__.py ->
    "kitae.cli"``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def read_sources(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """The source of every module of the package, by dotted module name."""
    return {module_name(p, package_dir): p.read_text() for p in sorted(package_dir.rglob("*.py"))}


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(
    importer: str, node: ast.AST, modules: set[str], in_function: bool, type_checking: bool
) -> Iterator[Edge]:
    for child in ast.iter_child_nodes(node):
        function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        checking = type_checking or (isinstance(child, ast.If) and _is_type_checking(child.test))
        targets: list[str] = []
        if isinstance(child, ast.Import):
            targets = [a.name for a in child.names]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            targets = [f"{child.module}.{a.name}" for a in child.names]
        resolved = {_resolve(t, modules) for t in targets if t.startswith("kitae")}
        for target in sorted(resolved - {None, importer}):
            yield Edge(importer, target, not in_function, type_checking, child.lineno)
        yield from _imports(importer, child, modules, function, checking)


def import_edges(sources: dict[str, str]) -> list[Edge]:
    """Every import between the modules of ``sources`` (module name -> source text)."""
    modules = set(sources)
    edges: list[Edge] = []
    for name, source in sources.items():
        edges.extend(_imports(name, ast.parse(source), modules, False, False))
    return edges


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of two or more modules that import one another, directly or through others
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def graph_of(edges: list[Edge], *, module_level_only: bool) -> dict[str, set[str]]:
    """``importer -> {imported}``, leaving out ``TYPE_CHECKING`` imports (and, with
    ``module_level_only``, the imports inside functions)."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.type_checking or (module_level_only and not edge.module_level):
            continue
        graph.setdefault(edge.importer, set()).add(edge.imported)
    return graph
