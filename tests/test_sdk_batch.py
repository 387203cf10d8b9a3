"""``Recorder.record_executions``: many executions of one version in one call, all or nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from heurmetrics import InvalidEvent, Recorder, RuleVersion
from heurmetrics.metrics import definitions as d
from tests.test_sdk import total

EXECUTIONS = d.HEURISTIC_EXECUTIONS.sample_name


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="tester") as recorder:
        yield recorder


@pytest.fixture
def rv(rec: Recorder) -> RuleVersion:
    return rec.register_rule_version("range_bias", "1.0.0")


def test_a_batch_is_stored_and_counted_like_single_records(rec: Recorder, rv: RuleVersion) -> None:
    run_id = uuid.uuid4()
    own = uuid.uuid4()
    items: list[dict[str, Any]] = [
        {"duration_seconds": 0.001 * (i % 5), "outcome": ("bullish", "bearish")[i % 2], "confidence": 0.5}
        for i in range(2000)
    ]
    items += [{"duration_seconds": 0.2, "status": "error", "error_type": "ValueError", "mode": "paper"}]
    items += [{"duration_seconds": 0.01, "event_id": own, "started_at": 1.7e9}]
    ids = rec.record_executions(rv, items, mode="backtest", backtest_run_id=run_id)
    assert len(ids) == len(items) == len(set(ids)) and ids[-1] == own
    assert rec.flush(timeout=60).complete
    assert rec.store.count_executions() == len(items)
    assert total(rec, EXECUTIONS) == len(items)
    assert total(rec, EXECUTIONS, mode="backtest", outcome="bearish") == 1000
    assert total(rec, EXECUTIONS, mode="paper", status="error") == 1
    # Re-sending the caller's own execution unchanged (start time included: docs/storage.md) neither
    # stores nor counts it again.
    rec.record_executions(rv, [{"duration_seconds": 0.01, "event_id": own, "started_at": 1.7e9}])
    assert rec.flush(timeout=30).complete
    assert rec.store.count_executions() == len(items) and total(rec, EXECUTIONS) == len(items)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"duration_seconds": -1.0}, "executions[2].duration_seconds"),
        ({"duration_seconds": 0.1, "confidence": 1.5}, "executions[2].confidence"),
        ({"duration_seconds": 0.1, "mode": "prod"}, "executions[2].mode"),
        ({"status": "ok"}, "executions[2].duration_seconds"),
        ({"duration_seconds": 0.1, "colour": "red"}, "executions[2].colour"),
        ({"duration_seconds": 0.1, "event_id": "nope"}, "executions[2].event_id"),
        ("not a mapping", "executions[2].item"),
    ],
)
def test_one_bad_item_refuses_the_whole_batch_naming_it(rec: Recorder, rv: RuleVersion, bad: Any, field: str) -> None:
    good = {"duration_seconds": 0.01, "outcome": "bullish"}
    with pytest.raises(InvalidEvent) as info:
        rec.record_executions(rv, [good, good, bad, good])
    assert info.value.field == field
    assert rec.flush(timeout=30).complete
    assert rec.store.count_executions() == 0 and total(rec, EXECUTIONS) == 0


def test_a_batch_needs_a_registered_version(rec: Recorder) -> None:
    with pytest.raises(InvalidEvent, match="rule_version"):
        rec.record_executions("range_bias@1.0.0", [{"duration_seconds": 0.1}])  # type: ignore[arg-type]


def test_a_callers_id_without_a_start_time_stays_one_row_when_resent(rec: Recorder, rv: RuleVersion) -> None:
    own = uuid.uuid4()
    for _ in range(3):  # the caller's own retries: no started_at, so each gets another default
        rec.record_executions(rv, [{"duration_seconds": 0.01, "event_id": own}])
        assert rec.flush(timeout=30).complete
    assert rec.store.count_executions() == 1 and total(rec, EXECUTIONS) == 1


def test_a_batch_is_one_metrics_update_and_one_queue_step(
    rec: Recorder, rv: RuleVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    updates: list[int] = []
    observe_one, observe_many = rec.metrics.observe_execution, rec.metrics.observe_executions

    def one(event: Any) -> None:
        updates.append(1)
        observe_one(event)

    def many(events: Any) -> None:
        events = list(events)
        updates.append(len(events))
        observe_many(events)

    monkeypatch.setattr(rec.metrics, "observe_execution", one)
    monkeypatch.setattr(rec.metrics, "observe_executions", many)
    own = uuid.uuid4()
    items: list[dict[str, Any]] = [{"duration_seconds": 0.002, "outcome": "bullish"} for _ in range(700)]
    items.append({"duration_seconds": 0.002, "event_id": own, "started_at": 1.7e9})
    rec.record_executions(rv, items, mode="backtest")
    # One update for the 700 SDK ids; the caller's id is counted once stored, by the writer.
    assert updates[0] == 700
    assert rec.flush(timeout=30).complete
    assert rec.store.count_executions() == 701 and total(rec, EXECUTIONS) == 701


def test_a_batch_past_a_full_queue_keeps_a_prefix_and_counts_the_rest_as_dropped(migrated_url: str) -> None:
    with Recorder(migrated_url, max_queue=100, full_policy="drop") as rec:
        rv = rec.register_rule_version("range_bias", "1.0.0")
        writer = rec._writer
        writer._take = lambda: None  # type: ignore[method-assign]  # the writer takes nothing while we look
        ids = rec.record_executions(rv, [{"duration_seconds": 0.001 * i} for i in range(250)])
        queued = [e.event_id for e in writer.queue]  # type: ignore[union-attr]
        del writer._take  # the class's method again
        assert len(ids) == 250
        assert queued == ids[:100]  # the accepted part is the batch's prefix, in order
        result = rec.flush(timeout=30)
        assert result.complete and result.dropped == 150
        assert rec.store.count_executions() == 100
        assert total(rec, EXECUTIONS) == 100  # counts equal rows: the dropped ones are not counted
        dropped = d.DROPPED_EVENTS.sample_name
        assert total(rec, dropped, reason="queue_full") == 150


def test_the_collector_is_left_as_it_was_also_when_a_batch_is_refused(rec: Recorder, rv: RuleVersion) -> None:
    import gc

    assert gc.isenabled()
    rec.record_executions(rv, [{"duration_seconds": 0.01}])
    assert gc.isenabled()
    with pytest.raises(InvalidEvent):
        rec.record_executions(rv, [{"duration_seconds": 0.01}, {"duration_seconds": -1.0}])
    assert gc.isenabled()
    gc.disable()  # the caller's own choice is kept
    try:
        rec.record_executions(rv, [{"duration_seconds": 0.01}])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert rec.flush(timeout=30).complete and rec.store.count_executions() == 2
