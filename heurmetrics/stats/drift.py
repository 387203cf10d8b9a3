"""Live hit ratio against the backtest's: a two-sample exact test and FDR control across versions.

The backtest's hit ratio is an *estimate* (from as few as a few dozen out-of-sample signals), not
a known probability: testing live hits against it as if it were known (a one-sample binomial
test) raises false alarms far above the nominal level (11-68 % at alpha = 0.01 in simulation). So
both sides are samples: ``k1`` hits of ``n1`` live signals and ``k0`` of ``n0`` backtest signals,
H0: both come from the same hit probability p (unknown).

**Fisher's exact test**, two-sided. Conditional on the total number of hits ``m = k0 + k1``, the
live hits follow a hypergeometric law that does not depend on p:
``P(k1 = x | m) = C(m, x) C(n0 + n1 - m, n1 - x) / C(n0 + n1, n1)``; the p-value is the total
probability of every ``x`` no more likely than the observed one (the "minimum likelihood" rule
of ``scipy.stats.fisher_exact``, with the same 1e-7 relative tolerance). Because the law is exact
for every m, the false-alarm rate is at most alpha for every p, n0 and n1 — no nuisance parameter,
no large-sample approximation. The price is some conservatism at small samples (power table in
``docs/live-performance.md``).

Below :data:`MIN_BACKTEST_SIGNALS` backtest or :data:`MIN_LIVE_SIGNALS` live signals no p-value
is reported (``p_value`` None): the test would be valid but nearly powerless, and an "n/a" says
so more honestly than a p-value of 1.

**Benjamini-Hochberg** adjusted p-values (``q``): with m tested versions and p-values sorted
ascending ``p_(1) <= … <= p_(m)``, ``q_(i) = min_{j >= i} min(1, m p_(j) / j)``. Flagging every
version with ``q < alpha`` keeps the expected share of false discoveries among the flagged versions
at most alpha (independent or positively dependent tests; Benjamini & Hochberg 1995).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

#: Fewer resolved backtest (out-of-sample) signals than this: no p-value.
MIN_BACKTEST_SIGNALS = 30
#: Fewer resolved live signals than this: no p-value.
MIN_LIVE_SIGNALS = 10
#: Relative tolerance when comparing point probabilities (the one ``scipy.stats.fisher_exact`` uses).
_RELATIVE_TOLERANCE = 1 + 1e-7
METHOD = "fisher_exact_two_sided"


@dataclass(frozen=True, slots=True)
class DriftTest:
    """Result of :func:`hit_ratio_drift_test`. ``p_value`` is None when a side is too small
    (``reason`` says which)."""

    live_hits: int
    live_n: int
    backtest_hits: int
    backtest_n: int
    p_value: float | None
    reason: str | None = None
    method: str = METHOD

    @property
    def live_hit_ratio(self) -> float | None:
        return self.live_hits / self.live_n if self.live_n else None

    @property
    def backtest_hit_ratio(self) -> float | None:
        return self.backtest_hits / self.backtest_n if self.backtest_n else None


def hit_ratio_drift_test(
    live_hits: int,
    live_n: int,
    backtest_hits: int,
    backtest_n: int,
    *,
    min_live: int = MIN_LIVE_SIGNALS,
    min_backtest: int = MIN_BACKTEST_SIGNALS,
) -> DriftTest:
    """Two-sided Fisher exact test of live hits against backtest hits (see the module docstring).

    Raises ``TypeError`` / ``ValueError`` for counts that are not integers with
    ``0 <= hits <= n``.
    """
    _check_counts("live", live_hits, live_n)
    _check_counts("backtest", backtest_hits, backtest_n)
    reason = None
    if backtest_n < min_backtest:
        reason = f"{backtest_n} backtest signals < {min_backtest}"
    elif live_n < min_live:
        reason = f"{live_n} live signals < {min_live}"
    if reason is not None:
        return DriftTest(int(live_hits), int(live_n), int(backtest_hits), int(backtest_n), None, reason)
    table = [[live_hits, live_n - live_hits], [backtest_hits, backtest_n - backtest_hits]]
    p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    return DriftTest(int(live_hits), int(live_n), int(backtest_hits), int(backtest_n), min(1.0, p_value))


def fisher_p_value_table(backtest_n: int, live_n: int) -> np.ndarray:
    """Every two-sided Fisher p-value for given sample sizes, as ``table[m, x]`` = p-value of
    ``x`` live hits when the two samples have ``m`` hits in total (NaN where impossible).

    Used to simulate the test's calibration cheaply (one table per (n0, n1), then look-ups);
    equal to :func:`hit_ratio_drift_test` (the tests check it against SciPy).
    """
    n0, n1 = int(backtest_n), int(live_n)
    total = n0 + n1
    m = np.arange(total + 1)[:, None]
    x = np.arange(n1 + 1)[None, :]
    possible = (x <= m) & (n1 - x <= total - m)
    with np.errstate(invalid="ignore"):
        log_pmf = _log_comb(m, x) + _log_comb(total - m, n1 - x) - _log_comb(np.array(total), np.array(n1))
    pmf = np.where(possible, np.exp(np.where(possible, log_pmf, -np.inf)), np.nan)
    out = np.full(pmf.shape, np.nan)
    for row in range(total + 1):
        values = pmf[row][possible[row]]
        ordered = np.sort(values)
        cumulative = np.cumsum(ordered)
        position = np.searchsorted(ordered, values * _RELATIVE_TOLERANCE, side="right") - 1
        out[row, possible[row]] = np.minimum(1.0, cumulative[position])
    return out


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values, in the input order; None / NaN entries stay None and
    do not count among the m tests."""
    tested = [(i, float(p)) for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    out: list[float | None] = [None] * len(p_values)
    if not tested:
        return out
    for i, p in tested:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value {p!r} at position {i} is not in [0, 1]")
    order = sorted(tested, key=lambda item: item[1])
    m = len(order)
    running = 1.0
    for rank in range(m, 0, -1):
        index, p = order[rank - 1]
        running = min(running, m * p / rank)
        out[index] = min(1.0, running)
    return out


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return np.asarray(special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1))


def _check_counts(side: str, hits: int, n: int) -> None:
    for name, value in ((f"{side}_hits", hits), (f"{side}_n", n)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if n < 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= {side}_hits <= {side}_n, got {side}_hits={hits}, {side}_n={n}")


@dataclass(frozen=True, slots=True)
class CalibrationCell:
    """Simulated false-alarm rate (same p on both sides) and power (live p + ``shift``)."""

    p: float
    backtest_n: int
    live_n: int
    false_alarm_rate: float
    power: float


def simulate_calibration(
    ps: Sequence[float] = (0.3, 0.55, 0.8),
    backtest_ns: Sequence[int] = (30, 100, 1000),
    live_ns: Sequence[int] = (50, 200, 1000),
    *,
    alpha: float = 0.01,
    shift: float = 0.10,
    replications: int = 20_000,
    seed: int = 12,
) -> list[CalibrationCell]:
    """The calibration table of ``docs/live-performance.md``: per cell, ``replications`` draws of
    backtest hits ~ Bin(n0, p) and live hits ~ Bin(n1, p) (H0) or Bin(n1, p + shift) (power),
    tested at ``alpha`` with :func:`fisher_p_value_table` (one table per (n0, n1), then look-ups)."""
    rng = np.random.default_rng(seed)
    cells = []
    for n0 in backtest_ns:
        for n1 in live_ns:
            table = fisher_p_value_table(n0, n1)
            for p in ps:
                k0 = rng.binomial(n0, p, replications)
                null = rng.binomial(n1, p, replications)
                shifted = rng.binomial(n1, min(1.0, p + shift), replications)
                cells.append(
                    CalibrationCell(
                        p,
                        n0,
                        n1,
                        float(np.mean(table[k0 + null, null] < alpha)),
                        float(np.mean(table[k0 + shifted, shifted] < alpha)),
                    )
                )
    return cells
