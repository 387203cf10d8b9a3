"""The store boundary: only heurmetrics.store talks to the database, and the store sits below every
other layer (checked on the real import graph with grimp, the library import-linter uses)."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import heurmetrics

#: Packages that are the database: SQLAlchemy, the PostgreSQL driver, the migration tool.
DATABASE_PACKAGES = ("sqlalchemy", "psycopg", "alembic")
#: What the store may import inside heurmetrics: the domain and the pure modules below it.
STORE_MAY_IMPORT = (
    "heurmetrics.store",
    "heurmetrics.domain",
    "heurmetrics.errors",
    "heurmetrics.validation",
    "heurmetrics.config",
    "heurmetrics.canonical",
    "heurmetrics.hashchain",
    "heurmetrics.buckets",
    "heurmetrics.extras",  # names the missing [postgres] extra
)


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("heurmetrics", include_external_packages=True)


def _imports(graph: grimp.ImportGraph, module: str) -> set[str]:
    return set(graph.find_modules_directly_imported_by(module))


def test_only_the_store_imports_the_database(graph: grimp.ImportGraph) -> None:
    offenders = {
        module: sorted(i for i in _imports(graph, module) if i.split(".")[0] in DATABASE_PACKAGES)
        for module in graph.modules
        if module.startswith("heurmetrics") and not module.startswith("heurmetrics.store")
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_store_imports_no_upper_layer(graph: grimp.ImportGraph) -> None:
    store_modules = [m for m in graph.modules if m == "heurmetrics.store" or m.startswith("heurmetrics.store.")]
    assert "heurmetrics.store.sql_store" in store_modules  # the check below ran over the real package
    offenders = {
        module: sorted(
            i for i in _imports(graph, module)
            if i.startswith("heurmetrics") and not any(i == ok or i.startswith(ok + ".") for ok in STORE_MAY_IMPORT)
        )
        for module in store_modules
    }
    assert {m: i for m, i in offenders.items() if i} == {}


def test_nothing_below_the_store_reaches_back_into_it(graph: grimp.ImportGraph) -> None:
    """The pure modules the store uses must not import the store (no cycle through them)."""
    for below in STORE_MAY_IMPORT[1:]:
        if below in graph.modules:
            chain = graph.find_shortest_chain(importer=below, imported="heurmetrics.store.sql_store")
            assert chain is None, f"{below} reaches the store: {' -> '.join(chain or ())}"


def test_the_insert_dialect_is_chosen_in_one_place() -> None:
    """``INSERT … ON CONFLICT`` constructs of PostgreSQL and SQLite are imported only by store/dialect.py."""
    package = Path(heurmetrics.__file__).parent
    importers = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module in ("sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.sqlite")
                and any(alias.name == "insert" for alias in node.names)
            ):
                importers.add(path.relative_to(package).as_posix())
    assert importers == {"store/dialect.py"}
