"""The package's import graph keeps its layers: kernels below services, and no import cycles.

Every import counts, wherever it is written (module level, inside a function, under
``TYPE_CHECKING``): a cycle hidden in a function is still a cycle the next refactor trips on.
The graph is built from the source with ``ast``, so no module is imported to check it.
The generated protobuf packages (``quartet/*/v1``) are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "quartet"

def _modules(root: Path) -> dict[str, Path]:
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if "v1" in parts[:-1]:
            continue
        name = ".".join(parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: Iterable[str]) -> set[str]:
    """The package modules an import statement names: the longest known prefix of each dotted name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        # ``from pkg import name`` imports the submodule pkg.name when there is one.
        names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
    found = set()
    for name in names:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _targets(name, is_package, node, modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.add(frozenset(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def _show(components: Iterable[frozenset[str]]) -> str:
    return "\n".join(" <-> ".join(sorted(c)) for c in sorted(components, key=sorted))


def test_the_graph_sees_the_package(graph: dict[str, set[str]]) -> None:
    # A broken walk (wrong root, every file skipped) would pass the checks below vacuously.
    assert "quartet.services.engine.runner" in graph
    assert "quartet.services.engine.runner.base" in graph["quartet.services.engine.runner.native"]
    assert not any(".v1." in name or name.endswith(".v1") for name in graph)


def test_cycles_are_found() -> None:
    found = cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}})
    assert found == {frozenset({"a", "b", "c"})}


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    found = cycles(graph)
    assert not found, (
        "import cycles; give what the modules share one home below them (a base or types module):\n" + _show(found)
    )


def test_kernels_do_not_import_services(graph: dict[str, set[str]]) -> None:
    bad = sorted(
        name
        for name, targets in graph.items()
        if name.startswith("quartet.kernels") and any(t.startswith("quartet.services") for t in targets)
    )
    assert not bad, f"kernels must not depend on the services; these import quartet.services: {bad}"


def test_the_package_never_imports_the_benchmarks() -> None:
    # benchmarks/ is the checkout's, never installed: an import of it works in a checkout and
    # breaks every installed copy.
    bad = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            bad += [f"{path.relative_to(ROOT.parent)}: {n}" for n in names if n.split(".")[0] == "benchmarks"]
    assert not bad, bad
