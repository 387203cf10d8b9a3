"""The PostgreSQL batch write of issue 11 keeps its guarantees (real PostgreSQL).

- The delivery claim runs as one autocommit statement: the pooled connection goes back to the
  pool in transaction mode, so the next write on it is still one transaction (a failure in it
  leaves nothing behind).
- The direct COPY has no savepoint any more: a collision rolls the whole transaction back and the
  batch is written through the staging path. Rows, start-time claims, rollups and the delivery
  record then say exactly what was inserted, whatever part of the batch was stored before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.ingest import Ingest
from heurmetrics.store import deliveries
from heurmetrics.store.sql_store import SqlStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStore]:
    from heurmetrics.store import migrations
    from heurmetrics.store.engine import create_store_engine

    engine = create_store_engine(postgres_url)
    migrations.upgrade(engine)
    engine.dispose()
    s = SqlStore.open(postgres_url, pool_size=1, max_overflow=0)  # one pooled connection: the claim's
    yield s
    s.close()


def _events(rv: RuleVersion, n: int) -> list[ExecutionEvent]:
    # Ids without start times: the start-time claims path, as HTTP clients send them.
    return [Ingest.make_execution(rv, duration_seconds=0.01, outcome="up", event_id=uuid.uuid4()) for _ in range(n)]


def _scalar(store: SqlStore, sql: str) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_the_claim_hands_its_connection_back_in_transaction_mode(pg_store: SqlStore) -> None:
    rv = pg_store.register_rule_version("fast", "1", params={}, source="", created_by="t")[0]
    batch = _events(rv, 5)
    key = uuid.uuid4()
    pg_store.insert_executions(batch, delivery=deliveries.stamp(key, [e.event_id for e in batch]))
    (record,) = pg_store.claim_delivery(key, uuid.uuid4())
    assert record.event_ids is None
    with pg_store.engine.connect() as conn:  # the very connection the claim used (pool of one)
        assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
        with pytest.raises(RuntimeError), conn.begin():
            conn.exec_driver_sql("DELETE FROM heuristic_deliveries")
            raise RuntimeError("a write that fails half-way")
    assert _scalar(pg_store, "SELECT count(*) FROM heuristic_deliveries") == 1  # rolled back whole


def test_a_collision_takes_the_staging_path_and_records_exactly_what_it_inserted(pg_store: SqlStore) -> None:
    rv = pg_store.register_rule_version("fast", "2", params={}, source="", created_by="t")[0]
    first = _events(rv, 40)
    assert pg_store.insert_executions(first) == {e.event_id for e in first}
    fresh = _events(rv, 25)
    resent = [*first[10:30], *fresh]  # re-sent ids (their first start time applies) and new ones
    key = uuid.uuid4()
    stamp = deliveries.stamp(key, [e.event_id for e in resent])
    assert pg_store.insert_executions(resent, delivery=stamp) == {e.event_id for e in fresh}
    assert _scalar(pg_store, "SELECT count(*) FROM heuristic_executions") == 65
    assert _scalar(pg_store, "SELECT count(*) FROM execution_start_claims") == 65
    # Rows of this minute are the roll-up job's: run it past them, then every level holds each once.
    from datetime import UTC, datetime, timedelta

    from heurmetrics.store import rollup_job

    rollup_job.advance(pg_store.engine, (datetime.now(UTC) + timedelta(minutes=2)).replace(second=0, microsecond=0))
    for table in ("execution_rollups", "execution_rollups_hour", "execution_rollups_day"):
        assert _scalar(pg_store, f"SELECT sum(executions) FROM {table}") == 65
    (record,) = pg_store.claim_delivery(key, uuid.uuid4())
    assert record.event_ids == {e.event_id for e in fresh}
    # And the same batch once more: nothing new, no record, nothing counted.
    again = deliveries.stamp(uuid.uuid4(), [e.event_id for e in resent])
    assert pg_store.insert_executions(resent, delivery=again) == set()
    assert pg_store.claim_delivery(again.delivery_id, uuid.uuid4()) == []
    assert _scalar(pg_store, "SELECT count(*) FROM heuristic_executions") == 65


def test_the_claims_arrays_are_byte_for_byte_what_psycopg_sends(postgres_url: str) -> None:
    import psycopg
    from psycopg.adapt import PyFormat, Transformer

    from heurmetrics.store import pg_arrays

    ids = [uuid.uuid4() for _ in range(50)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    times = [datetime.fromtimestamp(t, UTC) for t in (946_684_800.0, 1.7e9 + 0.5, 1_764_547_200.999999, 2e9)]
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as conn:
        cursor = conn.cursor()
        pg_arrays.register(cursor)
        for i, t in ((ids, times), (ids[:1], times[:1]), ([], [])):
            expected = Transformer(conn).dump_sequence((i, t), (PyFormat.BINARY, PyFormat.BINARY))
            ours = (pg_arrays.uuid_array(i), pg_arrays.timestamptz_array(cursor, t))
            if i:  # psycopg sends an empty list untyped; ours is an empty typed array
                assert [bytes(b) for b in expected] == [bytes(b) for b in ours]
            # And the server reads them back as the same values.
            cursor.execute("SELECT %b::uuid[], %b::timestamptz[]", ours)
            assert cursor.fetchone() == (i, t)


def test_a_write_refused_half_way_leaves_nothing_and_a_sane_connection(pg_store: SqlStore) -> None:
    from heurmetrics.errors import StoreRejectedData

    rv = pg_store.register_rule_version("fast", "3", params={}, source="", created_by="t")[0]
    good = _events(rv, 5)
    bad = Ingest.make_execution(rv, duration_seconds=0.01, status="error", error_type="ok", event_id=uuid.uuid4())
    bad = bad._replace(error_type="nul\x00byte")  # past the builder: only the database refuses it
    key = uuid.uuid4()
    with pytest.raises(StoreRejectedData):  # after BEGIN, the claims and the record were sent
        pg_store.insert_executions([*good, bad], delivery=deliveries.stamp(key, [e.event_id for e in good]))
    for table in ("heuristic_executions", "execution_start_claims", "heuristic_deliveries", "execution_rollups"):
        assert _scalar(pg_store, f"SELECT count(*) FROM {table}") == 0, table
    with pg_store.engine.connect() as conn:  # the pool's only connection: back in transaction mode
        assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    assert pg_store.insert_executions(good) == {e.event_id for e in good}
