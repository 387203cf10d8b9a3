"""Performance snapshots: a rule version's live behaviour per window, against its backtest.

For every rule version and window ``w`` ∈ {1h, 1d, 7d} ending at the snapshot time ``T``, over the
executions of modes ``live`` and ``paper`` that **started in [T - w, T)**:

- executions, errors (status error/timeout), error ratio, p50 / p95 duration, signal ratio
  (directional signals / ok executions), mean confidence;
- hit statistics at the snapshot's horizon ``h`` (1h by default) from ``execution_resolutions``:
  resolved signals ``n``, hits ``k``, hit ratio ``k / n`` with its 95 % Wilson interval, mean
  realised return. Signals of the last ``h`` of the window are usually not resolved yet;
- the **expectation**: hit ratio ``p0`` and mean return per signal of the out-of-sample signals of
  the version's latest completed walk-forward run, resolved at the same horizon against the
  backtest's prices (``backtest_runs.config.walk_forward.expectation[h]``);
- the **drift test**: live hits ``k1`` of ``n1`` against the expectation's ``k0`` of ``n0`` as two
  samples, Fisher's exact test, two-sided (:func:`heurmetrics.stats.hit_ratio_drift_test`):
  ``drift_p_value``. No p-value (NULL) below 30 backtest or 10 live resolved signals, or without
  an expectation. The backtest's hit ratio is an estimate, not a known p0: a one-sample test
  against it raised false alarms far above alpha;
- **false-discovery control**: the p-values of all versions of one snapshot and window are
  adjusted by Benjamini-Hochberg (``drift_adjusted_p_value``), and ``drifted = adjusted < alpha``
  (default 0.01) — at most a share alpha of the flagged versions are expected to be false alarms.

Snapshots are appended to ``rule_version_performance``; nothing is updated. A version with no
activity in the longest window gets no rows, except once after activity stops (so its gauges fall
to zero instead of freezing at the last active values).
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from heurmetrics.domain import RuleVersion
from heurmetrics.live.resolution import duration_seconds, horizon_seconds
from heurmetrics.live.stats import wilson_interval
from heurmetrics.metrics import definitions as d
from heurmetrics.stats import MIN_BACKTEST_SIGNALS, MIN_LIVE_SIGNALS, benjamini_hochberg, hit_ratio_drift_test
from heurmetrics.store.live import LIVE_MODES, SqlLiveStore
from heurmetrics.store.sql_store import SqlStore

log = logging.getLogger(__name__)

#: An expectation from fewer backtest signals is too uncertain to test live hits against.
MIN_EXPECTATION_SIGNALS = MIN_BACKTEST_SIGNALS
#: Window label → length.
WINDOW_LENGTHS: dict[str, timedelta] = {w: timedelta(seconds=duration_seconds(w)) for w in d.PERFORMANCE_WINDOWS}


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the latest walk-forward run of a version expects at one horizon."""

    run_id: uuid.UUID
    signals: int
    hit_ratio: float | None
    mean_return: float | None
    hits: int | None = None

    @property
    def hit_count(self) -> int | None:
        """Hits as stored, else recovered from the ratio (stored ratios are ``hits / signals``)."""
        if self.hits is not None:
            return self.hits
        return None if self.hit_ratio is None else round(self.hit_ratio * self.signals)


@dataclass(frozen=True)
class PerformanceSnapshot:
    """One row of ``rule_version_performance`` (plus the rule and version names)."""

    rule: str
    version: str
    rule_version_id: int
    time_window: str
    window_start: datetime
    computed_at: datetime
    horizon: str
    modes: str
    executions: int
    errors: int
    error_ratio: float | None
    latency_p50_seconds: float | None
    latency_p95_seconds: float | None
    signals: int
    signal_ratio: float | None
    mean_confidence: float | None
    resolved: int
    hits: int
    hit_ratio: float | None
    hit_ratio_low: float | None
    hit_ratio_high: float | None
    mean_realized_return: float | None
    expected_hit_ratio: float | None
    expected_return_per_signal: float | None
    expectation_signals: int | None
    expectation_run_id: uuid.UUID | None
    drift_p_value: float | None
    drifted: bool | None
    alpha: float
    drift_adjusted_p_value: float | None = None

    def row(self) -> dict[str, Any]:
        """The column values to insert."""
        values = asdict(self)
        del values["rule"], values["version"]
        return values


def expectation_of(config: dict[str, Any], run_id: uuid.UUID, horizon: str) -> Expectation | None:
    """The expectation stored in a walk-forward run's config, or None when it has none."""
    stats = ((config.get("walk_forward") or {}).get("expectation") or {}).get(horizon)
    if not isinstance(stats, dict):
        return None
    signals = stats.get("signals")
    if not isinstance(signals, int) or signals <= 0:
        return None
    hit_ratio = _number(stats.get("hit_ratio"))
    hits = stats.get("hits")
    count = hits if isinstance(hits, int) and not isinstance(hits, bool) and 0 <= hits <= signals else None
    return Expectation(run_id, signals, hit_ratio, _number(stats.get("mean_return")), count)


def compute_snapshot(
    pstore: SqlLiveStore,
    rv: RuleVersion,
    window: str,
    *,
    now: datetime,
    horizon: str = d.DEFAULT_PERFORMANCE_HORIZON,
    alpha: float = d.DRIFT_ALPHA,
    modes: Sequence[str] = LIVE_MODES,
    expectation: Expectation | None = None,
    min_expectation_signals: int = MIN_EXPECTATION_SIGNALS,
    min_live_signals: int = MIN_LIVE_SIGNALS,
) -> PerformanceSnapshot:
    """One version's snapshot over ``[now - window, now)``; see the module docstring. The
    adjusted p-value needs the other versions: :func:`take_snapshot` fills it in (here, and for
    a single tested version, it equals the p-value)."""
    start = now - WINDOW_LENGTHS[window]
    ex = pstore.execution_stats(rv.id, start, now, modes)
    res = pstore.resolution_stats(rv.id, start, now, horizon, modes)
    low, high = wilson_interval(res.hits, res.resolved) if res.resolved else (None, None)
    p0 = expectation.hit_ratio if expectation is not None else None
    p_value = None
    k0 = expectation.hit_count if expectation is not None else None
    if expectation is not None and k0 is not None:
        p_value = hit_ratio_drift_test(
            res.hits,
            res.resolved,
            k0,
            expectation.signals,
            min_live=min_live_signals,
            min_backtest=min_expectation_signals,
        ).p_value
    return PerformanceSnapshot(
        rule=rv.rule,
        version=rv.version,
        rule_version_id=rv.id,
        time_window=window,
        window_start=start,
        computed_at=now,
        horizon=horizon,
        modes=",".join(modes),
        executions=ex.executions,
        errors=ex.errors,
        error_ratio=ex.errors / ex.executions if ex.executions else None,
        latency_p50_seconds=ex.latency_p50_seconds,
        latency_p95_seconds=ex.latency_p95_seconds,
        signals=ex.signals,
        signal_ratio=ex.signals / ex.ok if ex.ok else None,
        mean_confidence=ex.mean_confidence,
        resolved=res.resolved,
        hits=res.hits,
        hit_ratio=res.hits / res.resolved if res.resolved else None,
        hit_ratio_low=low,
        hit_ratio_high=high,
        mean_realized_return=res.mean_realized_return,
        expected_hit_ratio=p0,
        expected_return_per_signal=expectation.mean_return if expectation is not None else None,
        expectation_signals=expectation.signals if expectation is not None else None,
        expectation_run_id=expectation.run_id if expectation is not None else None,
        drift_p_value=None if p_value is None or math.isnan(p_value) else p_value,
        drifted=None if p_value is None or math.isnan(p_value) else bool(p_value < alpha),
        alpha=alpha,
        drift_adjusted_p_value=None if p_value is None or math.isnan(p_value) else p_value,
    )


def adjust_for_multiple_versions(snapshots: Sequence[PerformanceSnapshot]) -> list[PerformanceSnapshot]:
    """Benjamini-Hochberg across the versions of each window: ``drift_adjusted_p_value`` and
    ``drifted = adjusted < alpha`` (order kept)."""
    out = list(snapshots)
    for window in {s.time_window for s in out}:
        positions = [i for i, s in enumerate(out) if s.time_window == window]
        adjusted = benjamini_hochberg([out[i].drift_p_value for i in positions])
        for i, q in zip(positions, adjusted, strict=True):
            out[i] = replace(out[i], drift_adjusted_p_value=q, drifted=None if q is None else bool(q < out[i].alpha))
    return out


def take_snapshot(
    store: SqlStore,
    *,
    now: datetime | None = None,
    horizon: str = d.DEFAULT_PERFORMANCE_HORIZON,
    alpha: float = d.DRIFT_ALPHA,
    windows: Sequence[str] = d.PERFORMANCE_WINDOWS,
    modes: Sequence[str] = LIVE_MODES,
    rule_versions: Sequence[RuleVersion] | None = None,
    min_expectation_signals: int = MIN_EXPECTATION_SIGNALS,
    min_live_signals: int = MIN_LIVE_SIGNALS,
) -> list[PerformanceSnapshot]:
    """Compute and append a snapshot of every (active) rule version and window; returns them.

    A version is active when it has an execution or resolution in the longest window, or when its
    previous snapshot showed activity (one last row of zeros). Raises ``ValueError`` for an
    unknown window or horizon or an ``alpha`` outside (0, 1).
    """
    horizon_seconds(horizon)
    for window in windows:
        if window not in WINDOW_LENGTHS:
            raise ValueError(f"unknown window {window!r}: use {', '.join(d.PERFORMANCE_WINDOWS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    pstore = store.live
    versions = list(rule_versions) if rule_versions is not None else store.list_rule_versions()
    stored = pstore.latest_snapshots(horizon, windows=d.PERFORMANCE_WINDOWS)
    previous = {(row["rule_version_id"], row["time_window"]): row for row in stored}
    longest = max(windows, key=lambda w: WINDOW_LENGTHS[w])
    snapshots: list[PerformanceSnapshot] = []
    for rv in versions:
        latest = pstore.latest_walk_forward(rv.id)
        expectation = expectation_of(latest[1], latest[0], horizon) if latest is not None else None
        options: dict[str, Any] = {
            "now": now,
            "horizon": horizon,
            "alpha": alpha,
            "modes": modes,
            "expectation": expectation,
            "min_expectation_signals": min_expectation_signals,
            "min_live_signals": min_live_signals,
        }
        probe = compute_snapshot(pstore, rv, longest, **options)
        was_active = any(
            (row := previous.get((rv.id, w))) is not None and (row["executions"] or row["resolved"]) for w in windows
        )
        if not (probe.executions or probe.resolved or was_active):
            continue
        for window in windows:
            snapshots.append(probe if window == longest else compute_snapshot(pstore, rv, window, **options))
    snapshots = adjust_for_multiple_versions(snapshots)
    pstore.insert_snapshots([s.row() for s in snapshots])
    return snapshots


class PeriodicSnapshots:
    """Takes a snapshot every ``interval_seconds`` in a daemon thread (for ``heurmetrics serve``).

    ``start()`` returns self; ``stop()`` ends the thread (waits up to ``timeout``). A failing
    snapshot is logged and retried at the next tick; the first one runs right after ``start()``.
    """

    def __init__(self, store: SqlStore, *, interval_seconds: float = 60.0, **options: Any) -> None:
        if not interval_seconds > 0:
            raise ValueError("interval_seconds must be > 0")
        self._store = store
        self._interval = float(interval_seconds)
        self._options = options
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heurmetrics-performance-snapshots", daemon=True)
        self.last_success: datetime | None = None
        self.last_error: str | None = None

    def start(self) -> PeriodicSnapshots:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                take_snapshot(self._store, **self._options)
                self.last_success = datetime.now(UTC)
                self.last_error = None
            except Exception as exc:  # keep ticking: the next snapshot may succeed
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("performance snapshot failed: %s", self.last_error)
            self._stop.wait(self._interval)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
