"""Hostile input: Schemathesis drives every operation of the OpenAPI schema, in-process over ASGI.

Each operation runs against a freshly migrated SQLite database holding one registered rule
version, twice: with no API token configured, and with one (every case is sent with the right
``Authorization: Bearer`` header and again without it, which must be a documented 401).

Checked on every response: no 5xx, a documented status code, a documented content type, a body
(and headers) that match the documented schema. Generated cases mix positive and negative data;
about half are steered to the registered rule version so that executions, backtests, audit reads
and lifecycle transitions reach the store instead of stopping at "unknown rule version" (those
must be a documented 4xx, never a 5xx).

Examples are limited and derandomized, so the run is fast and reproducible.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from heurmetrics.config import Settings
from heurmetrics.server.app import create_app
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine

RULE, VERSION = "sma.cross", "1.0.0"
#: Examples per operation and token mode; raise it locally for a deeper hunt.
EXAMPLES = int(os.environ.get("HEURMETRICS_SCHEMATHESIS_EXAMPLES", "20"))
TOKEN = "schemathesis-token"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _load_schema() -> Any:
    """The OpenAPI document, read once at collection from an app on a throwaway database."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'schema.db'}"
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        app = create_app(Settings(database_url=url, api_token=None, performance_snapshot_seconds=0))
        document = app.openapi()
        app.state.ingest.store.close()
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = app  # calls go in-process over ASGI; each test passes its own app
    return loaded


schema = _load_schema()


@dataclass
class Target:
    app: Any
    token: str | None


@pytest.fixture(params=["open", "token"])
def target(request: pytest.FixtureRequest, sqlite_url: str) -> Iterator[Target]:
    """A fresh app on a migrated SQLite database holding the rule version RULE@VERSION."""
    engine = create_store_engine(sqlite_url)
    migrations.upgrade(engine)
    engine.dispose()
    token = TOKEN if request.param == "token" else None
    app = create_app(Settings(database_url=sqlite_url, api_token=token, metrics_cache_seconds=0))
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    response = TestClient(app).post(  # no lifespan here: it would close the store on exit
        "/v1/rule-versions",
        json={"rule": RULE, "version": VERSION, "params": {"fast": 5}, "source": "sma"},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    yield Target(app, token)
    app.state.ingest.store.close()


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


@schema.parametrize()
@schema.given(steer=st.booleans())
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any, steer: bool, target: Target) -> None:
    if steer:
        _steer(case)
    if target.token is None or not case.operation.definition.raw.get("security"):
        case.call_and_validate(app=target.app, checks=CHECKS)
        return
    case.call_and_validate(app=target.app, headers={"Authorization": f"Bearer {target.token}"}, checks=CHECKS)
    # The same case without the token: refused before anything else, and documented.
    response = case.call(app=target.app, headers={"Authorization": ""})
    if response.status_code != 401:
        # FastAPI parses a JSON body before it runs dependencies, so a body that is not JSON at all
        # is refused as invalid (422, no state touched) before the token is looked at; a body too
        # large is refused by the middleware, before routing.
        not_json = response.status_code == 422 and "invalid JSON" in response.text
        assert not_json or response.status_code == 413, (response.status_code, response.text)
    case.validate_response(response, checks=CHECKS)
