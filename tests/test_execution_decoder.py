"""The msgspec fast path of ``POST /v1/executions`` answers exactly as the pydantic model does.

``heurmetrics.server.execution_decoder`` may only *accept less*: whatever it decodes must be
accepted by :class:`~heurmetrics.server.models.ExecutionBatchIn` with the same values, and
everything else is answered by the pydantic path. Checked three ways:

- hand-picked hostile values (a trailing newline in a name, NaN, 1e400, a huge integer, a lone
  surrogate, NUL, booleans and strings for numbers, duplicate keys, unknown fields, odd UUID and
  time spellings): the decoder either refuses them or decodes what pydantic decodes;
- a property over generated items (valid and hostile values mixed) at the decoder level;
- the whole route, differentially: two exporters on two databases get the same generated
  bodies, one with the fast path and one with it switched off; every answer (status and body)
  and every counter must be the same.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from heurmetrics.config import Settings
from heurmetrics.errors import InvalidEvent
from heurmetrics.metrics import definitions as d
from heurmetrics.server import execution_decoder as decoder
from heurmetrics.server.app import create_app
from heurmetrics.server.models import ExecutionBatchIn
from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine
from heurmetrics.validation import check_execution_values, check_label_value
from tests.e2e_helpers import samples

EID = "12345678-1234-1234-1234-123456789abc"


def fast_accepts(body: bytes) -> list[dict[str, Any]] | None:
    """The items as the fast path would use them, or None when it would fall back.

    The route's own checks after the decode: names (check_label_value), the execution values
    (the builder's check_execution_values) and ``started_at`` (the pydantic field validator).
    """
    items = decoder.decode(body)
    if items is None:
        return None
    out = []
    for item in items:
        values = decoder.as_dict(item)
        try:
            check_label_value("rule", item.rule)
            check_label_value("rule_version", item.rule_version)
            check_execution_values(
                item.status, item.mode, item.duration_seconds, item.outcome, item.signal, item.confidence,
                item.error_type,
            )  # fmt: skip
            if item.started_at is not None:
                values["started_at"] = decoder.start_time(item.started_at)
        except (InvalidEvent, ValidationError):
            return None
        out.append(values)
    return out


def pydantic_items(body: bytes) -> list[dict[str, Any]] | None:
    try:
        batch = ExecutionBatchIn.model_validate_json(body)
    except ValidationError:
        return None
    out = []
    for item in batch.executions:
        values = item.model_dump()
        if values["started_at"] is not None:
            values["started_at"] = values["started_at"].timestamp()
        out.append(values)
    return out


def assert_fast_is_a_subset(body: bytes) -> None:
    fast = fast_accepts(body)
    if fast is None:
        return
    slow = pydantic_items(body)
    assert slow is not None, f"the fast path accepted what pydantic refuses: {body[:300]!r}"
    assert len(fast) == len(slow)
    for f, s in zip(fast, slow, strict=True):
        assert f == s
        for name in ("duration_seconds", "signal", "confidence"):  # same types too (1 vs 1.0)
            assert type(f[name]) is type(s[name])
        for name in ("signal", "confidence"):
            assert f[name] is None or math.isfinite(f[name])


def body(**fields: Any) -> bytes:
    item = {"rule": "r", "rule_version": "1", "duration_seconds": 0.5, **fields}
    return json.dumps({"executions": [item]}).encode()


HOSTILE: list[bytes] = [
    body(),
    body(rule="r\n"),
    body(rule_version="1\n"),
    body(outcome="up\n"),
    body(rule="-r"),
    body(rule="r" * 64),
    body(rule="r" * 65),
    body(rule="é"),
    body(rule=""),
    body(duration_seconds=1),
    body(duration_seconds=-0.0),
    body(duration_seconds=86400),
    body(duration_seconds=86400.000001),
    body(duration_seconds=True),
    body(duration_seconds="0.5"),
    body(duration_seconds=None),
    body(signal=True),
    body(signal=10**400),
    body(signal=-(10**30)),
    body(confidence=1),
    body(confidence=1.0000001),
    body(confidence=-0.0),
    body(status="ok "),
    body(status="OK"),
    body(mode="live", status="error", error_type="ValueError"),
    body(error_type="x" * 128),
    body(error_type="x" * 129),
    body(error_type="nul\u0000byte"),
    body(error_type="é" * 128),
    body(event_id=EID),
    body(event_id=EID.upper()),
    body(event_id=EID.replace("-", "")),
    body(event_id="{" + EID + "}"),
    body(event_id="urn:uuid:" + EID),
    body(event_id=EID[:-1]),
    body(event_id=1),
    body(backtest_run_id=EID),
    body(backtest_run_id=""),
    body(started_at="2026-01-01T00:00:00Z"),
    body(started_at="2026-01-01T00:00:00.123456789+02:00"),
    body(started_at="2026-01-01T00:00:00"),
    body(started_at="2026-01-01 00:00:00Z"),
    body(started_at="2026-01-01t00:00:00z"),
    body(started_at="2026-02-30T00:00:00Z"),
    body(started_at="2026-01-01T24:00:00Z"),
    body(started_at="2026-01-01T23:59:60Z"),
    body(started_at="2026-01-01T00:00:00+24:00"),
    body(started_at="2026-01-01T00:00:00Z\n"),
    body(started_at=1767225600),
    body(unknown=1),
    b'{"executions": [{"rule": "r", "rule": "s", "rule_version": "1", "duration_seconds": 0.5}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 0.5}], "executions": []}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": NaN}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 1e400}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 0.5, "signal": Infinity}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 0.5, "error_type": "\\ud800"}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 0.5, "error_type": "\xff"}]}',
    b'{"executions": [{"rule": "r", "rule_version": "1", "duration_seconds": 0.5}]} trailing',
    b'\xef\xbb\xbf{"executions": []}',
    b' {"executions": []} ',
    b'{"executions": null}',
    b'{"executions": {}}',
    b"{}",
    b"[]",
    b"",
]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_values_are_refused_by_the_fast_path_or_decoded_as_pydantic_does(raw: bytes) -> None:
    assert_fast_is_a_subset(raw)


def test_the_fast_path_takes_the_ordinary_batch() -> None:
    """The point of it: a plain batch (ids, no start times, mixed values) is decoded, not refused."""
    items = [
        {"event_id": str(uuid.uuid4()), "rule": "r", "rule_version": "1", "duration_seconds": 0.01 * i,
         "status": "ok", "outcome": "bullish", "signal": 0.5, "confidence": 0.1 * (i % 10), "mode": "paper"}
        for i in range(50)
    ]  # fmt: skip
    raw = json.dumps({"executions": items}).encode()
    assert fast_accepts(raw) is not None
    assert_fast_is_a_subset(raw)


def _values() -> dict[str, st.SearchStrategy[Any]]:
    hostile = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=70), st.just([]), st.just({})
    )
    name = st.one_of(st.sampled_from(["r", "1", "a.b:c+d-e_f", "x" * 64, "x" * 65, "r\n", " r"]), hostile)
    number = st.one_of(st.floats(), st.integers(min_value=-(10**20), max_value=10**20), hostile)
    uid = st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: str(u).upper()),
                    hostile)  # fmt: skip
    when = st.one_of(
        st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
        st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z"]),
        hostile,
    )
    return {
        "event_id": uid, "rule": name, "rule_version": name, "started_at": when, "duration_seconds": number,
        "status": st.one_of(st.sampled_from(d.EXECUTION_STATUSES), hostile),
        "outcome": name, "signal": number, "confidence": number,
        "mode": st.one_of(st.sampled_from(d.EXECUTION_MODES), hostile),
        "error_type": st.one_of(st.text(max_size=130), hostile), "backtest_run_id": uid,
        "unknown": hostile,
    }  # fmt: skip


@st.composite
def items(draw: st.DrawFn) -> dict[str, Any]:
    values = _values()
    item: dict[str, Any] = {"rule": "r", "rule_version": "1", "duration_seconds": 0.5}
    for field in draw(st.lists(st.sampled_from(sorted(values)), max_size=4, unique=True)):
        item[field] = draw(values[field])
    for field in draw(st.lists(st.sampled_from(["rule", "rule_version", "duration_seconds"]), max_size=1)):
        del item[field]
    return item


def encode(batch: list[dict[str, Any]]) -> bytes:
    return json.dumps({"executions": batch}, allow_nan=True).encode()


@settings(max_examples=400, deadline=None)
@given(st.lists(items(), min_size=1, max_size=3))
def test_the_fast_path_never_accepts_what_pydantic_refuses(batch: list[dict[str, Any]]) -> None:
    assert_fast_is_a_subset(encode(batch))


# --- the whole route, fast path on and off -----------------------------------------------------------
@pytest.fixture
def two_exporters(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient]]:
    with ExitStack() as stack:
        clients = []
        for name in ("fast", "pydantic"):
            url = f"sqlite:///{tmp_path / name}.db"
            engine = create_store_engine(url)
            migrations.upgrade(engine)
            engine.dispose()
            app = create_app(Settings(database_url=url, performance_snapshot_seconds=0))
            client = stack.enter_context(TestClient(app))
            assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 201
            clients.append(client)
        yield clients[0], clients[1]


def _ingested(client: TestClient) -> dict[tuple[str, str], float]:
    return {
        (s.labels[d.KIND], s.labels[d.RESULT]): s.value for s in samples(client.get("/metrics").text, d.INGESTED_EVENTS)
    }


def _answers_alike(fast: TestClient, slow: TestClient, raw: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    a = fast.post("/v1/executions", content=raw, headers=headers)
    with mock.patch.object(decoder, "decode", lambda _body: None):  # the pydantic path only
        b = slow.post("/v1/executions", content=raw, headers=headers)
    assert (a.status_code, a.json()) == (b.status_code, b.json()), raw[:300]
    assert a.status_code < 500


def test_the_route_answers_and_counts_alike_with_and_without_the_fast_path(
    two_exporters: tuple[TestClient, TestClient],
) -> None:
    fast, slow = two_exporters
    for raw in HOSTILE:
        _answers_alike(fast, slow, raw)
    ok = body(event_id=str(uuid.uuid4()))
    for _ in range(2):  # stored, then a re-sent duplicate
        _answers_alike(fast, slow, ok)
    unknown = json.dumps({"executions": [
        {"rule": "r", "rule_version": "1", "duration_seconds": 0.1},
        {"rule": "r", "rule_version": "2", "duration_seconds": 0.1},
        {"rule": "r", "rule_version": "1", "duration_seconds": 0.1, "started_at": "not a time"},
    ]}).encode()  # fmt: skip
    _answers_alike(fast, slow, unknown)  # pydantic's 422 comes before the unknown version's 404
    assert _ingested(fast) == _ingested(slow)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(items(), min_size=1, max_size=3))
    def generated(batch: list[dict[str, Any]]) -> None:
        _answers_alike(fast, slow, encode(batch))

    generated()
    assert _ingested(fast) == _ingested(slow)
