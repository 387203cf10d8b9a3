"""Small-sample statistics for hit ratios: the Wilson score interval.

Well-calibrated for small samples, unlike the normal approximation ``p ± 1.96·√(p(1-p)/n)``,
which collapses to a zero-width interval at 0 or n hits and covers badly below n ≈ 30. The tests
check it against ``scipy.stats``. The drift test lives in :mod:`heurmetrics.stats`.
"""

from __future__ import annotations

import math

import numpy as np


def wilson_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``hits / n``.

    Returns ``(low, high)`` within [0, 1]; ``(nan, nan)`` when ``n == 0``. ``confidence`` is the
    two-sided coverage (0.95 → z = 1.95996…).
    """
    _check_counts(hits, n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if n == 0:
        return math.nan, math.nan
    z = _normal_quantile(0.5 + confidence / 2.0)
    p = hits / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _check_counts(hits: int, n: int) -> None:
    if isinstance(hits, bool) or isinstance(n, bool) or not isinstance(hits, int | np.integer):
        raise TypeError("hits and n must be integers")
    if not isinstance(n, int | np.integer) or n < 0 or not 0 <= hits <= n:
        raise ValueError(f"need 0 <= hits <= n, got hits={hits!r}, n={n!r}")


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, refined by one Newton step)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
         -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
         -1.328068155288572e01)  # fmt: skip
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
         4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    low = 0.02425
    if q < low:
        r = math.sqrt(-2 * math.log(q))
        x = (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
        )
    elif q <= 1 - low:
        s = q - 0.5
        r = s * s
        x = (
            (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
            * s
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
        )
    else:
        r = math.sqrt(-2 * math.log(1 - q))
        x = -(((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
        )
    error = 0.5 * math.erfc(-x / math.sqrt(2)) - q
    return x - error * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
