"""Print the shape of heurmetrics' import graph: cycles, the store boundary, the largest modules.

    .venv/bin/python benchmarks/import_graph.py

The layer rules themselves are enforced by import-linter (``[tool.importlinter]`` in pyproject.toml,
run by ``make lint``); this script reports the figures quoted in docs/architecture.md and in
closing notes: import cycles between packages and between modules, which modules outside
``heurmetrics/store/`` import a database library, and the modules over the ~400-line guideline.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
DATABASE_LIBRARIES = ("sqlalchemy", "psycopg", "alembic")
LINE_GUIDELINE = 400


def package_of(module: str) -> str:
    """``heurmetrics.sdk.recorder`` → ``heurmetrics.sdk``; top-level modules stand for themselves."""
    return ".".join(module.split(".")[:2])


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the import cycles (components with more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[set[str]] = []
    counter = itertools.count()
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = next(counter)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = next(counter)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def main() -> None:
    graph = grimp.build_graph("heurmetrics", include_external_packages=True)
    ours = sorted(m for m in graph.modules if m.startswith("heurmetrics"))
    module_edges = {
        m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("heurmetrics")} for m in ours
    }
    package_edges: dict[str, set[str]] = {}
    for importer, imported in ((m, i) for m, targets in module_edges.items() for i in targets):
        if package_of(importer) != package_of(imported):
            package_edges.setdefault(package_of(importer), set()).add(package_of(imported))

    package_cycles = strongly_connected(package_edges)
    module_cycles = strongly_connected(module_edges)
    print(f"modules: {len(ours)}")
    print(f"package-level cycles: {len(package_cycles)}")
    for cycle in package_cycles:
        print("   ", " ↔ ".join(sorted(cycle)))
    largest = max((len(c) for c in module_cycles), default=0)
    print(f"module-level cycles: {len(module_cycles)} (largest: {largest} modules)")
    for cycle in sorted(module_cycles, key=len, reverse=True):
        print("   ", ", ".join(sorted(cycle)))
    outside = sorted(
        m
        for m in ours
        if not m.startswith("heurmetrics.store")
        and any(i.split(".")[0] in DATABASE_LIBRARIES for i in graph.find_modules_directly_imported_by(m))
    )
    print(f"modules outside heurmetrics/store importing {'/'.join(DATABASE_LIBRARIES)}: {len(outside)}")
    for module in outside:
        print("   ", module)
    sizes = sorted(
        ((sum(1 for _ in path.open()), path.relative_to(ROOT)) for path in (ROOT / "heurmetrics").rglob("*.py")),
        reverse=True,
    )
    large = [(n, p) for n, p in sizes if n > LINE_GUIDELINE]
    print(f"modules over {LINE_GUIDELINE} lines: {len(large)}")
    for n, path in large:
        print(f"    {n:5d}  {path}")
    print("largest modules:", ", ".join(f"{p} ({n})" for n, p in sizes[:5]))


if __name__ == "__main__":
    main()
