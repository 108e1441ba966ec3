"""The layers of the tree: services talk over HTTP and Celery, never by importing each other.

Walks every import statement (module level and inside functions) of the source tree:
- a service imports only itself and ``libs/`` (``corral_common``);
- nothing under ``libs/`` imports a service or the ``corral`` command;
- only the command (``cli/``), the top floor, may import services;
- no two modules import each other, directly or round a longer loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"corral_api", "corral_inference", "corral_registry", "corral_auth", "corral_websearch"}
LIBS = {"corral_common"}
CLI = {"corral_cli"}


def package_roots(root: Path = ROOT) -> dict[str, Path]:
    """Top-level package name -> its folder, for every package of the source tree."""
    found = {}
    for parent in ("libs", "services", "."):
        for init in sorted((root / parent).glob("*/corral_*/__init__.py")):
            found[init.parent.name] = init.parent
    return found


def module_name(path: Path, package_dir: Path) -> str:
    """Dotted module name of a file inside a package folder."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules(roots: dict[str, Path]) -> dict[str, Path]:
    """Every module of the source tree (tests and migrations' generated scripts included as code)."""
    modules = {}
    for package_dir in roots.values():
        for path in package_dir.rglob("*.py"):
            modules[module_name(path, package_dir)] = path
    return modules


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The corral modules one file imports (``from pkg import mod`` counts as importing pkg.mod)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(module, node, path.name == "__init__.py")
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(subs or {target})
    return {name for name in found if name.split(".")[0].startswith("corral_")}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the corral modules it imports."""
    modules = source_modules(package_roots(root))
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Imports that cross a layer the wrong way."""
    problems = []
    for module, targets in sorted(graph.items()):
        top = module.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if other == top or other in LIBS:
                continue
            if top in SERVICES and other in SERVICES:
                problems.append(f"service {module} imports another service: {target}")
            elif top in LIBS:
                problems.append(f"library {module} imports {target}")
            elif top in SERVICES and other in CLI:
                problems.append(f"service {module} imports the command: {target}")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each a loop of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_walker_sees_the_whole_tree():
    graph = import_graph()
    tops = {module.split(".")[0] for module in graph}
    assert tops >= SERVICES | LIBS | CLI
    assert "corral_common.digest" in graph["corral_api.routes.native"] or any(
        t.startswith("corral_common") for t in graph["corral_api.routes.native"])


def test_no_service_imports_another_and_libs_import_no_service():
    assert layer_violations(import_graph()) == []


def test_no_two_modules_import_each_other():
    assert import_cycles(import_graph()) == []


@pytest.mark.parametrize("graph, expected", [
    ({"corral_api.a": {"corral_registry.b"}, "corral_registry.b": set()},
     ["service corral_api.a imports another service: corral_registry.b"]),
    ({"corral_common.x": {"corral_auth.y"}, "corral_auth.y": set()}, ["library corral_common.x imports corral_auth.y"]),
    ({"corral_cli.main": {"corral_auth.admin"}, "corral_auth.admin": {"corral_common.env"}}, []),
])
def test_layer_rules_catch_what_they_should(graph, expected):
    assert layer_violations(graph) == expected


def test_cycle_finder_sees_a_loop_of_three():
    graph = {"corral_cli.a": {"corral_cli.b"}, "corral_cli.b": {"corral_cli.c"}, "corral_cli.c": {"corral_cli.a"},
             "corral_cli.d": {"corral_cli.a"}}
    assert import_cycles(graph) == [["corral_cli.a", "corral_cli.b", "corral_cli.c"]]
