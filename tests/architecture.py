"""The package's import rules, checked with ``ast``: layers import downwards only, no cycles.

A rule names a package (``saeval.spec``) and what its modules must not import, counting every
import outside ``if TYPE_CHECKING:`` (imports inside functions count too: they run). Cycles count
every import, also those under ``if TYPE_CHECKING:``: a circle held together by typing-only or
function-level imports is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

HEAVY = ("torch", "transformers", "lm_eval", "sae_lens")
# layer -> (forbidden saeval packages, forbidden third-party packages at module level)
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "records": (("spec", "steering", "run", "analysis", "demo", "cli"), HEAVY),
    "spec": (("steering", "run", "analysis", "demo", "cli"), HEAVY),
    "steering": (("run", "analysis", "demo", "cli"), ()),
    "analysis": (("spec", "steering", "demo", "cli", "run"), ("torch",)),
    "run": (("demo", "cli"), ()),
}


def imports(tree: ast.AST, typing: bool = False) -> Iterator[tuple[int, str, bool]]:
    """(line, module, at module level) of every import not under ``if TYPE_CHECKING`` (with
    ``typing``, of those under it too)."""

    def walk(nodes: Iterable[ast.AST], top: bool) -> Iterator[tuple[int, str, bool]]:
        for child in nodes:
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from walk([*child.body, *child.orelse] if typing else child.orelse, top)
            elif isinstance(child, ast.Import):
                yield from ((child.lineno, alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names = [f"{child.module}.{alias.name}" for alias in child.names]
                yield from ((child.lineno, name, top) for name in [child.module, *names])
            else:
                inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                yield from walk(ast.iter_child_nodes(child), inner)

    yield from walk(ast.iter_child_nodes(tree), True)


def module_name(root: Path, path: Path) -> str:
    """``saeval/spec/catalog.py`` -> ``saeval.spec.catalog``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def violations(root: Path) -> list[str]:
    """Every broken rule under the package at ``root``, as ``file:line: rule``."""
    package = root.name
    found: list[str] = []
    modules = {module_name(root, path): path for path in sorted(root.rglob("*.py"))}
    for name, path in modules.items():
        layer = name.split(".")[1] if name.count(".") >= 1 else ""
        banned, heavy = RULES.get(layer, ((), ()))
        for line, target, top in imports(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path}:{line}"
            inner = target.split(".")
            if inner[0] == package and len(inner) > 1 and inner[1] in banned:
                found.append(f"{where}: {layer} must not import {package}.{inner[1]}")
            if top and inner[0] in heavy:
                found.append(f"{where}: {layer} must not import {inner[0]} at module level")
    found = list(dict.fromkeys(found))  # `from a.b import c` names a.b and a.b.c
    return found + [
        f"{modules[cycle[0]]}: import cycle {' -> '.join(cycle)}"
        for cycle in cycles(import_graph(modules))
    ]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere (in functions, under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = {target for _, target, _ in imports(tree, typing=True)}
        graph[name] = {target for target in targets if target in modules and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each module that lies on one (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found
