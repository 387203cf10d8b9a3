"""Outcome resolution: the price resolver, the SDK, POST /v1/resolutions, append-only storage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from heurmetrics import InvalidEvent, Recorder, RuleVersion
from heurmetrics.live.resolution import (
    HorizonTooShort,
    horizons_for_bars,
    make_resolution,
    resolve_against_prices,
    signal_direction,
)
from heurmetrics.metrics import definitions as d
from heurmetrics.store.schema import ExecutionResolutionRow
from tests.walkforward_helpers import exporter

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def rec(migrated_url: str) -> Iterator[Recorder]:
    with Recorder(migrated_url, created_by="tester") as recorder:
        yield recorder


@pytest.fixture
def rv(rec: Recorder) -> RuleVersion:
    return rec.register_rule_version("range_bias", "1.0.0", params={"band": 0.02})


def resolutions(rec: Recorder) -> list[ExecutionResolutionRow]:
    with Session(rec.store.engine) as session:
        return list(session.scalars(select(ExecutionResolutionRow).order_by(ExecutionResolutionRow.id)))


@pytest.mark.parametrize(
    ("outcome", "signal", "status", "direction"),
    [
        ("bullish", None, "ok", 1),
        ("bearish", 0.7, "ok", -1),
        ("neutral", 1.0, "ok", 0),
        ("no_signal", -1.0, "ok", 0),
        (None, -0.3, "ok", -1),
        ("breakout", 2.0, "ok", 1),
        (None, 0.0, "ok", 0),
        (None, None, "ok", 0),
        ("bullish", 1.0, "error", 0),
    ],
)
def test_signal_direction(outcome: str | None, signal: float | None, status: str, direction: int) -> None:
    assert signal_direction(outcome, signal, status) == direction


def test_resolve_against_prices_uses_the_first_close_at_or_after_the_horizon() -> None:
    index = pd.date_range("2025-01-01", periods=6, freq="h", tz="UTC")
    close = pd.Series([100.0, 101.0, 99.0, 99.0, np.nan, 104.0], index=index)
    times = pd.DatetimeIndex(
        [index[0] + timedelta(minutes=30), index[2], index[2], index[3], index[5], index[0] - timedelta(hours=1)]
    )
    out = resolve_against_prices(times, np.array([1, -1, 0, 1, 1, 1]), close, "1h")
    assert out.resolvable.tolist() == [True, True, False, True, False, False]
    # 00:30 → price at the signal = 00:00's 100; horizon 01:30 → first close at or after: 02:00's 99.
    assert (out.price_at_signal[0], out.price_at_horizon[0]) == (100.0, 99.0)
    np.testing.assert_allclose(out.realized_return[:2], [-0.01, 0.0])
    assert out.correct.tolist()[:2] == [False, False]  # a zero move is not a hit
    # 03:00 → 04:00 is missing (NaN): the first valid close at or after 04:00 is 05:00's 104.
    assert out.price_at_horizon[3] == 104.0 and out.correct[3]
    # A signal whose horizon the prices do not reach yet, or before the first price, stays open.
    assert np.isnan(out.realized_return[4]) and np.isnan(out.realized_return[5])
    assert not out.correct[4]  # unresolved is not a miss: it is simply not resolvable
    naive = resolve_against_prices(times.tz_localize(None), np.array([1, -1, 0, 1, 1, 1]), close, "1h")
    np.testing.assert_array_equal(naive.resolvable, out.resolvable)  # naive times are UTC


def daily_bars() -> pd.Series:
    """Business-day closes of two weeks with a holiday (Wed 2025-01-08 missing); rising every day."""
    days = pd.bdate_range("2025-01-06", "2025-01-17", tz="UTC").drop(pd.Timestamp("2025-01-08", tz="UTC"))
    return pd.Series(100.0 + np.arange(len(days)), index=days)


@pytest.mark.parametrize("horizon", ["1h", "4h"])
def test_horizons_shorter_than_daily_bars_are_refused(horizon: str) -> None:
    close = daily_bars()
    with pytest.raises(HorizonTooShort, match=f"horizon {horizon} is shorter than the bar interval .*1d"):
        resolve_against_prices(close.index[:3], np.ones(3), close, horizon)
    assert horizons_for_bars(pd.DatetimeIndex(close.index), ("1h", "4h", "1d")) == ("1d",)


def test_daily_bars_at_1d_resolve_on_the_next_trading_day_never_on_their_own_bar() -> None:
    close = daily_bars()
    out = resolve_against_prices(close.index, np.ones(len(close)), close, "1d")
    # Every bar but the last resolves against the next trading day's close (prices rise every
    # day, so every long signal is a hit); the last one has no later bar yet: unresolved, not a miss.
    assert out.resolvable.tolist() == [True] * (len(close) - 1) + [False]
    assert out.correct[:-1].all()
    at_horizon = dict(zip(close.index[:-1], out.price_at_horizon[:-1], strict=True))
    friday = pd.Timestamp("2025-01-10", tz="UTC")
    assert at_horizon[friday] == close[pd.Timestamp("2025-01-13", tz="UTC")]  # Friday → Monday
    before_holiday = pd.Timestamp("2025-01-07", tz="UTC")
    assert at_horizon[before_holiday] == close[pd.Timestamp("2025-01-09", tz="UTC")]  # Tue → Thu
    assert (out.price_at_horizon[:-1] != out.price_at_signal[:-1]).all()


def test_make_resolution_validates_every_field() -> None:
    eid = uuid.uuid4()
    item = make_resolution(str(eid), horizon="4h", realized_return=-0.01)
    assert item.event_id == eid and item.correct is False and item.horizon_seconds == 4 * 3600
    assert make_resolution(eid, correct=True).realized_return is None
    for kwargs, field in (
        ({"horizon": "2h", "correct": True}, "horizon"),
        ({}, "realized_return"),
        ({"realized_return": float("nan")}, "realized_return"),
        ({"correct": 1}, "correct"),
        ({"correct": True, "resolved_at": datetime(2026, 1, 1)}, "resolved_at"),
    ):
        with pytest.raises(InvalidEvent) as info:
            make_resolution(eid, **kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
    with pytest.raises(InvalidEvent, match="UUID"):
        make_resolution("nope", correct=True)


def test_sdk_resolutions_are_append_only_and_idempotent(rec: Recorder, rv: RuleVersion) -> None:
    eid = rec.record_execution(rv, duration_seconds=0.001, outcome="bullish", signal=1.0)
    assert rec.resolve(eid, realized_return=0.02) is True
    assert rec.resolve(eid, realized_return=-0.5) is False  # never overwritten
    assert rec.resolve(eid, horizon="1d", correct=False) is True
    other = uuid.uuid4()  # an execution the writer has not stored yet is fine: no foreign key
    result = rec.resolve_many(
        [{"event_id": other, "realized_return": 0.01}, {"event_id": other, "realized_return": 0.03},
         make_resolution(eid, horizon="4h", correct=True)]
    )  # fmt: skip
    assert (result.accepted, result.duplicates) == (2, 1)
    rows = resolutions(rec)
    assert [(r.horizon, r.realized_return, r.correct, r.method) for r in rows if r.event_id == eid] == [
        ("1h", 0.02, True, "reported"),
        ("1d", None, False, "reported"),
        ("4h", None, True, "reported"),
    ]
    assert all(r.resolved_at.tzinfo is not None and r.horizon_seconds > 0 for r in rows)
    # Append-only in the database itself: UPDATE and DELETE are rejected by triggers.
    for statement in ("UPDATE execution_resolutions SET correct = NULL", "DELETE FROM execution_resolutions"):
        with pytest.raises(DBAPIError, match="append-only"), rec.store.engine.begin() as conn:
            conn.execute(text(statement))
    assert len(resolutions(rec)) == 4


def test_resolve_from_prices_resolves_stored_live_signals_once(rec: Recorder, rv: RuleVersion) -> None:
    index = pd.date_range(NOW - timedelta(hours=8), NOW, freq="h", tz="UTC")
    close = pd.Series(100.0 * (1.01 ** np.arange(len(index))), index=index)  # rises 1 % an hour
    t = [NOW - timedelta(hours=h, minutes=10) for h in (6, 5, 4, 3, 2)]
    ids = {
        "up": rec.record_execution(rv, duration_seconds=0.001, outcome="bullish", started_at=t[0]),
        "down": rec.record_execution(rv, duration_seconds=0.001, outcome="bearish", signal=-1.0, started_at=t[1]),
        "signed": rec.record_execution(rv, duration_seconds=0.001, signal=0.4, mode="paper", started_at=t[2]),
        "neutral": rec.record_execution(rv, duration_seconds=0.001, outcome="neutral", signal=1.0, started_at=t[3]),
        "error": rec.record_execution(rv, duration_seconds=0.001, status="error", started_at=t[3]),
        "backtest": rec.record_execution(
            rv, duration_seconds=0.001, outcome="bullish", mode="backtest", started_at=t[4]
        ),
        "too_recent": rec.record_execution(rv, duration_seconds=0.001, outcome="bullish", started_at=NOW),
    }
    result = rec.resolve_from_prices(close, horizons=("1h", "4h"))
    rows = {(r.event_id, r.horizon): r for r in resolutions(rec)}
    assert result.accepted == len(rows) == 6  # up, down and signed, at 1h and 4h
    # 10 minutes before a bar: priced at the last close before the signal, resolved at the first
    # close at or after signal + horizon — two bars later for 1h, five for 4h.
    assert rows[(ids["up"], "1h")].realized_return == pytest.approx(1.01**2 - 1)
    assert rows[(ids["up"], "1h")].correct and rows[(ids["up"], "1h")].method == "prices"
    assert rows[(ids["down"], "4h")].realized_return == pytest.approx(-(1.01**5 - 1))
    assert not rows[(ids["down"], "4h")].correct
    assert rows[(ids["up"], "1h")].price_at_signal == pytest.approx(close.iloc[1])
    assert {eid for eid, _ in rows} == {ids["up"], ids["down"], ids["signed"]}
    assert rec.resolve_from_prices(close, horizons=("1h", "4h")).accepted == 0  # nothing pending any more
    # Written through the ingest service, so counted like every other write.
    counted = rec.registry.get_sample_value(
        d.INGESTED_EVENTS.sample_name, {d.KIND: d.KIND_RESOLUTION, d.RESULT: "accepted"}
    )
    assert counted == 6


def test_post_resolutions(migrated_url: str) -> None:
    client = exporter(migrated_url)
    assert client.post("/v1/rule-versions", json={"rule": "r", "version": "1"}).status_code == 201
    eid = str(uuid.uuid4())
    batch = {"resolutions": [{"event_id": eid, "realized_return": 0.01}, {"event_id": eid, "horizon": "1d",
                                                                         "correct": False}]}  # fmt: skip
    first = client.post("/v1/resolutions", json=batch)
    assert first.status_code == 202 and first.json() == {"accepted": 2, "duplicates": 0}
    assert client.post("/v1/resolutions", json=batch).json() == {"accepted": 0, "duplicates": 2}
    bad = {"resolutions": [{"event_id": str(uuid.uuid4()), "correct": True}, {"event_id": eid, "horizon": "2h",
                                                                              "correct": True}]}  # fmt: skip
    response = client.post("/v1/resolutions", json=bad)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "resolutions[1].horizon"
    naive = {"resolutions": [{"event_id": eid, "horizon": "4h", "correct": True, "resolved_at": "2026-01-01T00:00"}]}
    assert client.post("/v1/resolutions", json=naive).json()["detail"][0]["field"] == "resolutions[0].resolved_at"
    empty = client.post("/v1/resolutions", json={"resolutions": [{"event_id": eid, "horizon": "4h"}]})
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "resolutions[0].realized_return"
    with client.app.state.ingest.store.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.execute(text("SELECT count(*) FROM execution_resolutions")).scalar_one() == 2


def test_resolving_stored_signals_on_daily_prices_refuses_intraday_horizons(rec: Recorder, rv: RuleVersion) -> None:
    close = daily_bars()
    friday = pd.Timestamp("2025-01-10 00:00", tz="UTC").to_pydatetime()
    eid = rec.record_execution(rv, duration_seconds=0.001, outcome="bullish", started_at=friday)
    with pytest.raises(HorizonTooShort, match="horizon 1h is shorter"):
        rec.resolve_from_prices(close, horizons=("1h",))
    assert resolutions(rec) == []  # nothing half-written
    assert rec.resolve_from_prices(close, horizons=("1d",)).accepted == 1
    (row,) = resolutions(rec)
    assert row.event_id == eid and row.price_at_horizon == close[pd.Timestamp("2025-01-13", tz="UTC")]  # Monday
