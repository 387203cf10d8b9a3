"""Hostile input: Schemathesis drives every operation of the OpenAPI schema, in-process over ASGI.

Every operation runs against a freshly migrated SQLite database holding one registered rule
version, twice: with no API token configured (the schema then has no security requirement), and
with one (every case is sent with the right ``Authorization: Bearer`` header and again without
it, which must be a documented 401).

**All** of Schemathesis' checks run on every response (no 5xx, documented status, content type,
headers and body; schema-valid data accepted; schema-violating data rejected; authentication not
ignored; …). Generated cases mix positive and negative data, and about a third carry an edge-case
string (NUL, right-to-left marks, 3,000 characters, a lone surrogate, …) in a text field. Failures
do not stop the run: every distinct failure of an operation is collected and reported together
(``--continue-on-failure``).

What the test adds to a plain Schemathesis run, and why:

- positive cases are made consistent across fields, which JSON Schema cannot express (as many
  equity values as timestamps, increasing timestamps, fold windows in order, hits <= signals, a
  trial return matrix with one equal-length row per equity period and n_trials >= its columns);
  the schema's descriptions state these rules and the server answers 422 naming the field;
- ``date-time`` values are drawn from 2000-01-01 to yesterday: event times must be plausible
  (after 2000, not in the future), a rule relative to *now* that a schema cannot state;
- about half the positive cases name the registered rule version, so that executions, backtests,
  audit reads and lifecycle transitions reach the store instead of stopping at 404.

``HEURMETRICS_SCHEMATHESIS_EXAMPLES`` sets the examples per operation and token mode (CI: 15);
raise it (e.g. 500) for a deeper hunt. Generation is derandomized, so a run is reproducible.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from heurmetrics.config import Settings
from heurmetrics.server.app import create_app
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine

RULE, VERSION = "sma.cross", "1.0.0"
EXAMPLES = int(os.environ.get("HEURMETRICS_SCHEMATHESIS_EXAMPLES", "15"))
TOKEN = "schemathesis-token"
#: Strings that broke servers before: NUL (PostgreSQL text), bidi controls, long values, a lone
#: surrogate (no database stores it), a trailing newline (Python's ``$``), path tricks.
EDGE_STRINGS = (
    "\x00",
    "rule\x00name",
    "\u202eevil\u200f",
    "x" * 3000,
    "a" * 65,
    "\ud800",
    "sma.cross\n",
    " ",
    "../../etc/passwd",
    "%00",
    "😀",
    "1.0.0@1.0.0",
)
_EARLIEST = datetime(2000, 1, 2)
_LATEST = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=1)

schemathesis.openapi.format(
    "date-time",
    st.datetimes(min_value=_EARLIEST, max_value=_LATEST, timezones=st.just(UTC)).map(
        lambda t: t.isoformat().replace("+00:00", "Z")
    ),
)


def _migrated(url: str) -> None:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    engine.dispose()


def _app(url: str, token: str | None) -> Any:
    return create_app(
        Settings(database_url=url, api_token=token, metrics_cache_seconds=0, performance_snapshot_seconds=0)
    )


def _load_schema(token: str | None) -> Any:
    """The OpenAPI document the server publishes in this token mode, read once at collection."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'schema.db'}"
        _migrated(url)
        app = _app(url, token)
        document = app.openapi()
        app.state.ingest.store.close()
    return schemathesis.openapi.from_dict(document)


SCHEMAS = {"open": _load_schema(None), "token": _load_schema(TOKEN)}
OPERATIONS = [(mode, result.ok().label) for mode, schema in SCHEMAS.items() for result in schema.get_all_operations()]


@pytest.fixture
def served(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[tuple[Any, str | None]]:
    """A fresh app on a migrated SQLite database holding the rule version RULE@VERSION."""
    mode = request.node.callspec.params["mode"]
    token = TOKEN if mode == "token" else None
    _migrated(sqlite_url)
    app = _app(sqlite_url, token)
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    response = TestClient(app).post(  # no lifespan here: it would close the store on exit
        "/v1/rule-versions",
        json={"rule": RULE, "version": VERSION, "params": {"fast": 5}, "source": "sma"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    yield app, token
    app.state.ingest.store.close()


@pytest.mark.parametrize(("mode", "label"), OPERATIONS, ids=[f"{label} [{mode}]" for mode, label in OPERATIONS])
def test_operation_conforms_to_its_schema(mode: str, label: str, served: tuple[Any, str | None]) -> None:
    app, token = served
    SCHEMAS[mode].app = app  # checks that send extra requests (e.g. without auth) go here too
    operation = SCHEMAS[mode].find_operation_by_label(label)
    assert operation is not None
    failures: dict[str, str] = {}
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy, steer=st.booleans(), edge=st.none() | st.none() | st.sampled_from(EDGE_STRINGS))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any, steer: bool, edge: str | None) -> None:
        try:
            _exercise(case, app, token, steer=steer, edge=edge)
        except (Exception, BaseExceptionGroup) as exc:  # continue on failure: collect each distinct one
            text = str(exc) or type(exc).__name__
            failures.setdefault(text.split("Reproduce with")[0][:400], text)

    exercise()
    assert not failures, f"{len(failures)} distinct failure(s):\n\n" + "\n\n".join(failures.values())


def _exercise(case: Any, app: Any, token: str | None, *, steer: bool, edge: str | None) -> None:
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    excluded = []
    if positive:
        _make_consistent(case.body)
        if steer:
            _steer(case)
    if edge is not None and _inject(case, edge):
        # The case is now whatever the edge string makes of it: no claim about acceptance,
        # but every other check (no 5xx, documented answers) still holds.
        excluded = [positive_data_acceptance, negative_data_rejection]
    headers = {"Authorization": f"Bearer {token}"} if token else None
    case.call_and_validate(app=app, headers=headers, excluded_checks=excluded)
    if token is None or not case.operation.definition.raw.get("security"):
        return
    # The same case without the token: refused before anything else, and documented.
    response = case.call(app=app, headers={"Authorization": ""})
    if response.status_code != 401:
        # FastAPI parses a JSON body before it runs dependencies, so a body that is not JSON at all
        # is refused as invalid (422, no state touched) before the token is looked at; a body too
        # large is refused by the middleware, before routing.
        # A path no route matches (an edge string in it) is 404 before any route runs; unknown or
        # repeated query parameters are refused by an app-wide check, before the route's own.
        not_json = response.status_code == 422 and "invalid JSON" in response.text
        bad_query = response.status_code == 422 and response.json()["detail"][0]["field"].startswith("query.")
        no_route = response.status_code == 404 and response.json() == {"error": "not_found", "detail": "Not Found"}
        assert not_json or bad_query or no_route or response.status_code == 413, (response.status_code, response.text)
    case.validate_response(response, excluded_checks=[positive_data_acceptance, negative_data_rejection])


def _steer(case: Any) -> None:
    """Point the case at the registered rule version wherever it names one."""
    if case.path_parameters:
        if "rule" in case.path_parameters:
            case.path_parameters["rule"] = RULE
        if "version" in case.path_parameters:
            case.path_parameters["version"] = VERSION
    body = case.body
    items = body.get("executions") if isinstance(body, dict) else None
    for item in [body, *(items if isinstance(items, list) else [])]:
        if isinstance(item, dict):
            if "rule" in item:
                item["rule"] = RULE
            if "rule_version" in item:
                item["rule_version"] = VERSION


def _inject(case: Any, edge: str) -> bool:
    """Put ``edge`` into the first text field of the case (path, query, then body)."""
    urlsafe = edge.isascii() or edge.encode("utf-8", "surrogatepass").decode("utf-8", "replace") == edge
    for container in (case.path_parameters, case.query):
        if container and urlsafe:  # a lone surrogate cannot even be put in a URL
            for key, value in container.items():
                if isinstance(value, str):
                    container[key] = edge
                    return True
    body = case.body
    for item in [body, *(body.get("executions") or [] if isinstance(body, dict) else [])]:
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, str):
                    item[key] = edge
                    return True
    return False


def _make_consistent(node: Any) -> None:
    """Repair the cross-field rules of a schema-valid body (see the module docstring)."""
    if isinstance(node, list):
        for item in node:
            _make_consistent(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _make_consistent(value)
    timestamps, values = node.get("timestamps"), node.get("values")
    if isinstance(timestamps, list) and isinstance(values, list):
        unique = sorted({_instant(t): t for t in timestamps}.items())
        n = min(len(unique), len(values))
        node["timestamps"] = [text for _, text in unique[:n]]
        node["values"] = values[:n]
    if isinstance(node.get("folds"), list):
        base = datetime(2020, 1, 1, tzinfo=UTC)
        for i, fold in enumerate(node["folds"]):
            if isinstance(fold, dict):
                start = base + timedelta(days=10 * i)
                fold["fold_index"] = i
                for name, days in (
                    ("in_sample_start", 0),
                    ("in_sample_end", 5),
                    ("out_of_sample_start", 6),
                    ("out_of_sample_end", 9),
                ):
                    fold[name] = (start + timedelta(days=days)).isoformat()
    signals, hits = node.get("signals"), node.get("hits")
    if isinstance(signals, int | float) and isinstance(hits, int | float):
        node["hits"] = min(hits, signals)
    _consistent_trials(node)


def _consistent_trials(node: dict[str, Any]) -> None:
    """A walk-forward body's trial return matrix: one row per period of ``equity``, all as wide
    as the narrowest, and ``n_trials`` at least that width."""
    inputs, equity = node.get("overfitting"), node.get("equity")
    if not (isinstance(inputs, dict) and isinstance(inputs.get("trial_returns"), list) and isinstance(equity, dict)):
        return
    rows = [r for r in inputs["trial_returns"] if isinstance(r, list) and len(r) >= 2]
    periods = len(equity.get("timestamps") or []) - 1
    if not rows or periods < 1:
        inputs.pop("trial_returns")
        return
    width = min(len(r) for r in rows)
    inputs["trial_returns"] = [rows[i % len(rows)][:width] for i in range(periods)]
    if isinstance(inputs.get("n_trials"), int | float) and inputs["n_trials"] < width:
        inputs["n_trials"] = width


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
