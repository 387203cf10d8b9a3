"""Property tests (Hypothesis) of the SDK's public functions against real databases.

* ``Recorder.record_execution`` and ``ExporterClient.record_execution`` with anything their types
  allow (floats including NaN/inf/huge ints, any text including NUL and lone surrogates, None,
  naive and aware datetimes, UUIDs): each call either records or raises ``InvalidEvent``; never
  another exception, never a partial write (rows and counters equal the accepted calls, and the
  writer never chokes on an accepted value).
* Duplicate event ids within one batch are stored and counted once.
* One rule version registered concurrently from two processes: both succeed, one row (and with
  different content: exactly one wins, the other gets ``VersionConflict``).
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from sqlalchemy import text

from heurmetrics import InvalidEvent, Recorder, VersionConflict
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.http_client import ExporterClient
from heurmetrics.store.engine import create_store_engine

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)

# --- strategies ------------------------------------------------------------------------------------
any_char = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00\n\t "))
any_text = st.text(any_char, max_size=80)
huge_ints = st.integers(min_value=-(2**1100), max_value=2**1100)
any_number = st.one_of(st.floats(), st.integers(min_value=-(2**64), max_value=2**64), huge_ints)
now = time.time()
plausible_times = st.floats(min_value=946_684_800.0, max_value=now - 1)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


execution_kwargs = st.fixed_dictionaries(
    {
        "duration_seconds": st.one_of(st.floats(min_value=0, max_value=5), any_number),
        "status": st.one_of(st.sampled_from(d.EXECUTION_STATUSES), any_text),
        "mode": st.one_of(st.sampled_from(d.EXECUTION_MODES), any_text),
    },
    optional={
        "outcome": _maybe(st.one_of(st.sampled_from(d.WELL_KNOWN_OUTCOMES), any_text)),
        "signal": _maybe(any_number),
        "confidence": _maybe(st.one_of(st.floats(min_value=0, max_value=1), any_number)),
        "started_at": _maybe(
            st.one_of(
                plausible_times,
                any_number,
                st.datetimes(timezones=st.just(UTC)),
                st.datetimes(),  # naive: refused
                st.datetimes(
                    min_value=datetime(2001, 1, 1), max_value=datetime(2025, 1, 1), timezones=st.just(UTC)
                ),
            )
        ),
        "error_type": _maybe(any_text),
        "event_id": _maybe(st.uuids()),
        "backtest_run_id": _maybe(st.uuids()),
    },
)


def executions_total(registry: CollectorRegistry) -> float:
    return sum(
        s.value for f in registry.collect() for s in f.samples if s.name == d.HEURISTIC_EXECUTIONS.sample_name
    )


def row_count(url: str) -> int:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM heuristic_executions")).scalar_one())
    finally:
        engine.dispose()


# --- record_execution: records or InvalidEvent, nothing else, nothing partial ------------------------
def test_record_execution_records_or_rejects_cleanly(migrated_url: str) -> None:
    with Recorder(migrated_url, created_by="hypothesis") as rec:
        rv = rec.register_rule_version("prop_rule", "1.0.0")
        accepted: set[uuid.UUID] = set()
        rejected = 0

        @SETTINGS
        @given(kwargs=execution_kwargs)
        def record(kwargs: dict[str, Any]) -> None:
            nonlocal rejected
            queued = len(rec._writer.queue)
            try:
                event_id = rec.record_execution(rv, **kwargs)
            except InvalidEvent as exc:
                assert exc.field and exc.message
                assert len(rec._writer.queue) <= queued  # nothing enqueued
                rejected += 1
                return
            accepted.add(event_id)

        record()
        result = rec.flush(timeout=60)
        assert result.complete and result.dropped == 0, result  # no accepted value chokes the writer
        assert accepted and rejected
        assert rec.store.count_executions() == len(accepted)
        assert executions_total(rec.registry) == len(accepted)


def test_http_client_records_or_rejects_without_sending_anything() -> None:
    sent: list[bytes] = []

    def handler(request: Any) -> Any:
        import httpx

        sent.append(request.content)
        return httpx.Response(202, json={"accepted": 0, "duplicates": 0})

    import httpx

    client = ExporterClient("http://exporter.invalid", transport=httpx.MockTransport(handler), flush_interval=3600)
    accepted = 0
    try:

        @SETTINGS
        @given(kwargs=execution_kwargs, rule=st.one_of(st.just("r1"), any_text))
        def record(kwargs: dict[str, Any], rule: str) -> None:
            nonlocal accepted
            try:
                client.record_execution(rule, "1.0.0", **kwargs)
            except InvalidEvent:
                return
            accepted += 1

        record()
        assert not sent  # record_execution never touches the network
        assert client.flush(timeout=30).complete
        import json

        assert sum(len(json.loads(body)["executions"]) for body in sent) == accepted
    finally:
        client.close(timeout=5)


# --- duplicate event ids in one batch ----------------------------------------------------------------
def test_duplicate_event_ids_in_one_batch_are_stored_and_counted_once(migrated_url: str) -> None:
    pool = [uuid.uuid4() for _ in range(40)]
    # flush_interval=3600: the writer sleeps until flush(), so each example's events form one batch.
    with Recorder(migrated_url, flush_interval=3600) as rec:
        rv = rec.register_rule_version("dup_rule", "1.0.0")
        stored: set[uuid.UUID] = set()

        @SETTINGS
        @given(ids=st.lists(st.sampled_from(pool), min_size=1, max_size=60), fresh=st.integers(0, 5))
        def record(ids: list[uuid.UUID], fresh: int) -> None:
            for event_id in ids:
                rec.record_execution(rv, duration_seconds=0.001, outcome="neutral", event_id=event_id)
            for _ in range(fresh):
                stored.add(rec.record_execution(rv, duration_seconds=0.001))
            assert rec.flush(timeout=30).complete
            stored.update(ids)
            assert rec.store.count_executions() == len(stored)
            assert executions_total(rec.registry) == len(stored)

        record()


# --- a version registered concurrently from two processes ---------------------------------------------
_recorders: dict[str, Recorder] = {}


def _register_at(url: str, start_at: float, rule: str, version: str, params: dict[str, Any]) -> tuple[str, Any]:
    """Runs in a pool process: register at ``start_at`` (wall clock) so both processes race."""
    rec = _recorders.get(url)
    if rec is None:
        rec = _recorders[url] = Recorder(url, created_by="racer")
    time.sleep(max(0.0, start_at - time.time()))
    try:
        rv = rec.register_rule_version(rule, version, params=params, source="def rule(): ...")
    except VersionConflict as exc:
        return "conflict", exc.existing_hash
    except Exception as exc:  # returned as text: an exception object may not survive pickling
        return "error", f"{type(exc).__name__}: {exc}"
    return "ok", (rv.id, rv.content_hash)


json_params = st.dictionaries(
    st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=8),
    st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(st.characters(exclude_characters="\x00"), max_size=10),
              st.none()),
    max_size=4,
)


@pytest.fixture(scope="module")
def racers() -> Iterator[Any]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        yield pool
        pool.terminate()


@pytest.mark.postgres
def test_a_version_registered_concurrently_from_two_processes(postgres_url: str, racers: Any) -> None:
    from heurmetrics.store import migrations

    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    versions = itertools.count()

    @settings(SETTINGS, max_examples=10)
    @given(params=json_params, other=json_params)
    def race(params: dict[str, Any], other: dict[str, Any]) -> None:
        version = f"1.{next(versions)}"
        start_at = time.time() + 0.15
        same = racers.starmap_async(_register_at, [(postgres_url, start_at, "race", version, params)] * 2).get(60)
        assert [kind for kind, _ in same] == ["ok", "ok"], same
        assert same[0][1] == same[1][1]  # same id, same hash

        conflicting = f"2.{next(versions)}"
        start_at = time.time() + 0.15
        outcome = racers.starmap_async(
            _register_at,
            [(postgres_url, start_at, "race", conflicting, params), (postgres_url, start_at, "race", conflicting,
                                                                      {**other, "__other": True})],
        ).get(60)
        assert sorted(kind for kind, _ in outcome) == ["conflict", "ok"], outcome  # exactly one wins
        with engine.connect() as conn:
            for v in (version, conflicting):
                n = conn.execute(
                    text("SELECT count(*) FROM rule_versions v JOIN rules r ON r.id = v.rule_id "
                         "WHERE r.name = 'race' AND v.version = :v"),
                    {"v": v},
                ).scalar_one()
                assert n == 1

    try:
        race()
    finally:
        engine.dispose()


def test_started_at_edge_values_are_rejected_with_invalid_event(sqlite_url: str) -> None:
    """Regression cases Hypothesis found or might: huge ints and far-away aware datetimes."""
    with Recorder(sqlite_url) as rec:
        rv = rec.register_rule_version("edge", "1")
        for value in (10**400, -(10**400), float("nan"), datetime.min.replace(tzinfo=UTC),
                      datetime.now(UTC) + timedelta(days=1)):
            with pytest.raises(InvalidEvent):
                rec.record_execution(rv, duration_seconds=0.001, started_at=value)  # type: ignore[arg-type]
        with pytest.raises(InvalidEvent):
            rec.record_execution(rv, duration_seconds=0.001, error_type="bad \udc80 decode")
        with pytest.raises(InvalidEvent):
            rec.register_rule_version("edge", "2", params={"k": "\ud800"})
        assert rec.flush(10).complete
