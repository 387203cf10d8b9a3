"""Outcome resolution: was a directional signal right after a horizon?

A **signal** is an ``ok`` execution with a direction (:func:`signal_direction`): outcome
``bullish`` (+1) or ``bearish`` (-1); for any other outcome except ``neutral`` / ``no_signal``,
the sign of ``signal``. A **resolution** records, for one execution and one horizon (1h, 4h, 1d),
the *realised return*, signed by the direction (positive = the signal was right), and whether it
was *correct* (realised return > 0; a zero move is not a hit). Resolutions are append-only and
idempotent on (``event_id``, ``horizon``).

Two ways to resolve:

- **reported** (``Recorder.resolve``, ``POST /v1/resolutions``): the caller says what happened
  (e.g. the trade closed at +0.8 %).
- **prices** (:func:`resolve_against_prices`, ``Recorder.resolve_from_prices``): from a close-price
  series; price at the signal = last close at or before the signal time ``t`` (the signal's own
  bar); price at the horizon = the **first close at or after** ``t + horizon``. Because the
  horizon is never shorter than the bar interval (shorter ones are refused with
  :class:`HorizonTooShort`), that is always a later bar than the signal's own: a signal is never
  scored on its own bar. On daily bars a Friday signal at 1d resolves on Monday's close (the
  first bar at or after Saturday), one before a holiday on the next trading day. A signal whose
  ``t + horizon`` lies after the last price stays **unresolved** (never a miss) until later
  prices arrive. The bar interval is the median spacing of the price timestamps. The walk-forward
  runner uses the same function for its expectation, so live and backtest hit ratios are
  measured identically.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from heurmetrics.domain import NON_DIRECTIONAL_OUTCOMES
from heurmetrics.errors import InvalidEvent
from heurmetrics.metrics import definitions as d
from heurmetrics.store.live import LIVE_MODES, ResolutionResult
from heurmetrics.validation import check_finite

if TYPE_CHECKING:
    from heurmetrics.store.sql_store import SqlStore

#: Horizon label → seconds, for the bounded set in :data:`heurmetrics.metrics.definitions.RESOLUTION_HORIZONS`.
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def duration_seconds(label: str) -> int:
    """Seconds of a duration label such as ``"4h"`` or ``"7d"`` (units m, h, d)."""
    number, unit = label[:-1], label[-1:]
    if not number.isdigit() or unit not in _UNIT_SECONDS:
        raise ValueError(f"{label!r} is not a duration like 1h, 4h, 1d")
    return int(number) * _UNIT_SECONDS[unit]


HORIZON_SECONDS: dict[str, int] = {h: duration_seconds(h) for h in d.RESOLUTION_HORIZONS}
METHOD_REPORTED = "reported"
METHOD_PRICES = "prices"


def horizon_seconds(horizon: str) -> int:
    """Seconds of a horizon label; :class:`InvalidEvent` for a label outside the known set."""
    seconds = HORIZON_SECONDS.get(horizon) if isinstance(horizon, str) else None
    if seconds is None:
        raise InvalidEvent("horizon", f"{horizon!r} is not one of {', '.join(d.RESOLUTION_HORIZONS)}")
    return seconds


def signal_direction(outcome: str | None, signal: float | None, status: str = "ok") -> int:
    """+1, -1 or 0 (no directional signal) for one execution; see the module docstring."""
    if status != "ok":
        return 0
    if outcome == "bullish":
        return 1
    if outcome == "bearish":
        return -1
    if outcome in NON_DIRECTIONAL_OUTCOMES or signal is None or not math.isfinite(signal) or signal == 0:
        return 0
    return 1 if signal > 0 else -1


@dataclass(frozen=True, slots=True)
class Resolution:
    """One resolution row (``execution_resolutions``)."""

    event_id: uuid.UUID
    horizon: str
    realized_return: float | None
    correct: bool | None
    resolved_at: datetime
    method: str = METHOD_REPORTED
    price_at_signal: float | None = None
    price_at_horizon: float | None = None

    @property
    def horizon_seconds(self) -> int:
        return HORIZON_SECONDS[self.horizon]


def make_resolution(
    event_id: uuid.UUID | str,
    *,
    horizon: str = "1h",
    realized_return: float | None = None,
    correct: bool | None = None,
    resolved_at: datetime | None = None,
) -> Resolution:
    """Validate a reported resolution. At least one of ``realized_return`` / ``correct`` is needed;
    ``correct`` defaults to ``realized_return > 0``. Raises :class:`InvalidEvent` naming the field."""
    if isinstance(event_id, uuid.UUID):
        eid = event_id
    else:
        try:
            eid = uuid.UUID(str(event_id))
        except ValueError:
            raise InvalidEvent("event_id", f"{str(event_id)[:64]!r} is not a UUID") from None
    horizon_seconds(horizon)
    if realized_return is None and correct is None:
        raise InvalidEvent("realized_return", "give realized_return, correct, or both")
    value = None if realized_return is None else check_finite("realized_return", realized_return, low=-1e6, high=1e6)
    if correct is not None and not isinstance(correct, bool | np.bool_):
        raise InvalidEvent("correct", f"must be a bool, got {type(correct).__name__}")
    hit = bool(correct) if correct is not None else (value is not None and value > 0)
    when = resolved_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise InvalidEvent("resolved_at", "naive datetime: pass a timezone-aware time (e.g. UTC)")
    return Resolution(eid, horizon, value, hit, when, METHOD_REPORTED)


@dataclass(frozen=True, slots=True)
class PriceResolution:
    """Vectorised result of :func:`resolve_against_prices` (arrays aligned with the input signals)."""

    resolvable: np.ndarray  # bool
    price_at_signal: np.ndarray
    price_at_horizon: np.ndarray
    realized_return: np.ndarray  # direction-signed; NaN where not resolvable
    correct: np.ndarray  # bool; meaningful where resolvable


class HorizonTooShort(ValueError):
    """A horizon shorter than the bar interval: its price would be the signal's own bar."""

    def __init__(self, horizon: str, bar_seconds: float) -> None:
        super().__init__(
            f"horizon {horizon} is shorter than the bar interval of the prices "
            f"({_describe_seconds(bar_seconds)}): it would score signals on their own bar. "
            "Use a horizon of at least one bar, or finer-grained prices."
        )
        self.horizon = horizon
        self.bar_seconds = bar_seconds


def bar_interval_seconds(index: pd.DatetimeIndex) -> float | None:
    """Median spacing of a sorted time index in seconds; None with fewer than two timestamps."""
    if len(index) < 2:
        return None
    steps = np.diff(index.as_unit("ns").asi8) / 1e9
    return float(np.median(steps))


def horizons_for_bars(index: pd.DatetimeIndex, horizons: Sequence[str]) -> tuple[str, ...]:
    """The ``horizons`` no shorter than the bar interval of ``index`` (all when it is unknown)."""
    interval = bar_interval_seconds(index)
    return tuple(h for h in horizons if interval is None or horizon_seconds(h) >= interval)


def resolve_against_prices(
    signal_times: pd.DatetimeIndex | Sequence[datetime],
    directions: np.ndarray | Sequence[int],
    close: pd.Series,
    horizon: str,
) -> PriceResolution:
    """Resolve signals against a close-price series (see the module docstring).

    ``signal_times`` and ``close.index`` are compared as UTC (naive values are taken as UTC).
    A signal is resolvable when its direction is non-zero, a finite positive close exists at or
    before its time, and a close exists at or after ``time + horizon``. Raises
    :class:`HorizonTooShort` when ``horizon`` is shorter than the bar interval of ``close``.
    """
    seconds = horizon_seconds(horizon)
    times = _utc_index(pd.DatetimeIndex(list(signal_times)))
    direction = np.asarray(directions, dtype=np.float64)
    if direction.shape != (len(times),):
        raise ValueError("directions must have one value per signal time")
    prices = _clean_close(close)
    interval = bar_interval_seconds(pd.DatetimeIndex(prices.index))
    if interval is not None and seconds < interval:
        raise HorizonTooShort(horizon, interval)
    n = len(times)
    p0 = np.full(n, np.nan)
    p1 = np.full(n, np.nan)
    if len(prices) and n:
        px = prices.to_numpy(dtype=np.float64)
        at = prices.index.searchsorted(times, side="right") - 1
        # First bar at or after t + horizon; past the last bar = not resolvable (yet).
        later = prices.index.searchsorted(times + pd.Timedelta(seconds=seconds), side="left")
        ok0 = at >= 0
        p0[ok0] = px[at[ok0]]
        ok1 = later < len(px)
        p1[ok1] = px[later[ok1]]
    resolvable = (direction != 0) & np.isfinite(p0) & np.isfinite(p1) & (p0 > 0)
    with np.errstate(all="ignore"):
        realized = np.where(resolvable, direction * (p1 / p0 - 1.0), np.nan)
    correct = resolvable & (realized > 0)
    return PriceResolution(resolvable, p0, p1, realized, correct)


@dataclass(frozen=True, slots=True)
class SignalStats:
    """Hit statistics of a set of resolved signals at one horizon."""

    horizon: str
    signals: int  #: resolved directional signals (the sample size)
    hits: int  #: of which correct
    mean_return: float | None  #: mean direction-signed realised return; None without signals

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.signals if self.signals else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "signals": self.signals,
            "hits": self.hits,
            "hit_ratio": self.hit_ratio,
            "mean_return": self.mean_return,
        }


def signal_stats(horizon: str, realized: np.ndarray, correct: np.ndarray) -> SignalStats:
    """Stats over resolved signals (``realized`` finite where resolved)."""
    mask = np.isfinite(realized)
    n = int(mask.sum())
    hits = int(np.asarray(correct, dtype=bool)[mask].sum())
    mean = float(realized[mask].mean()) if n else None
    return SignalStats(horizon, n, hits, mean)


def _describe_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g} s"


def _utc_index(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def _clean_close(close: pd.Series) -> pd.Series:
    if not isinstance(close, pd.Series) or not isinstance(close.index, pd.DatetimeIndex):
        raise TypeError("close must be a pandas Series indexed by time (a DatetimeIndex)")
    if not close.index.is_monotonic_increasing:
        raise ValueError("close prices must be in time order")
    values = pd.to_numeric(close, errors="coerce").astype("float64")
    values = values[np.isfinite(values.to_numpy())]
    values.index = _utc_index(pd.DatetimeIndex(values.index))
    return values


def resolve_pending(
    store: SqlStore,
    close: pd.Series,
    *,
    horizons: Sequence[str] = ("1h",),
    modes: Sequence[str] = LIVE_MODES,
    rule_version_ids: Sequence[int] | None = None,
    write: Callable[[Sequence[Resolution]], ResolutionResult] | None = None,
) -> ResolutionResult:
    """Resolve every stored, unresolved directional signal that ``close`` covers, per horizon.

    ``write`` stores each horizon's resolutions: the ingest service's ``resolve`` (which counts
    them), as ``Recorder.resolve_from_prices`` and ``heurmetrics live resolve`` pass it; without
    it they go to the store uncounted.

    A signal at time ``t`` is covered when ``close`` has a price at or before ``t`` and reaches
    ``t + horizon`` (see :func:`~heurmetrics.live.resolution.resolve_against_prices`);
    uncovered ones stay pending for a later call. ``close`` should be the instrument the rules
    trade (one series per call: filter with ``rule_version_ids`` when rules trade different ones).
    """
    prices = close.dropna()
    if prices.empty:
        return ResolutionResult(0, 0)
    index = pd.DatetimeIndex(prices.index)
    first = (index[0].tz_localize("UTC") if index.tz is None else index[0].tz_convert("UTC")).to_pydatetime()
    last = (index[-1].tz_localize("UTC") if index.tz is None else index[-1].tz_convert("UTC")).to_pydatetime()
    pstore = store.live
    accepted = duplicates = 0
    now = datetime.now(UTC)
    for horizon in horizons:
        seconds = horizon_seconds(horizon)
        pending = pstore.pending_signals(
            horizon,
            since=first,
            until=last - timedelta(seconds=seconds),
            modes=modes,
            rule_version_ids=rule_version_ids,
        )
        if not pending:
            continue
        directions = np.array([signal_direction(p.outcome, p.signal) for p in pending], dtype=np.float64)
        resolved = resolve_against_prices([p.started_at for p in pending], directions, close, horizon)
        items = [
            Resolution(
                event_id=p.event_id,
                horizon=horizon,
                realized_return=float(resolved.realized_return[i]),
                correct=bool(resolved.correct[i]),
                resolved_at=now,
                method=METHOD_PRICES,
                price_at_signal=float(resolved.price_at_signal[i]),
                price_at_horizon=float(resolved.price_at_horizon[i]),
            )
            for i, p in enumerate(pending)
            if resolved.resolvable[i] and math.isfinite(resolved.realized_return[i])
        ]
        result = (write or pstore.insert_resolutions)(items)
        accepted += result.accepted
        duplicates += result.duplicates
    return ResolutionResult(accepted, duplicates)
