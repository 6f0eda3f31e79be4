"""The library's imports point one way: no module imports one that imports it back.

Every `import` and `from tripletlib ... import` of each module, at module level or inside a
function, is an edge of the graph; the graph of tripletlib must be acyclic, and `runs` (run
folders) must not depend on `training` (the recipe that writes them).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tripletlib"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "tripletlib":
                names.update(f"tripletlib.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    return {
        name.split(".")[1]
        for name in names
        if name.startswith("tripletlib.") and name.split(".")[1] in modules
    } - {path.stem}


def import_graph() -> dict[str, set[str]]:
    return {path.stem: imported_modules(path) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target] if target in path else [module, target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def test_the_import_graph_of_tripletlib_is_acyclic():
    graph = import_graph()
    assert {"training", "runs", "models", "data"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_runs_does_not_import_training():
    graph = import_graph()
    reachable, stack = set(), ["runs"]
    while stack:
        for target in graph[stack.pop()]:
            if target not in reachable:
                reachable.add(target)
                stack.append(target)
    assert "training" not in reachable and "training" not in graph["runs"]


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
