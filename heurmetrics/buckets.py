"""Histogram bucket bounds shared by the Prometheus series and the store's rollup columns.

A module of its own, below both: :mod:`heurmetrics.metrics.definitions` exposes the bounds with
every other metric definition (its single source of truth for names, labels and buckets), and
:mod:`heurmetrics.store` derives the ``execution_rollups`` bucket columns from the same tuple
without importing the metrics layer.
"""

from __future__ import annotations

from typing import Final

#: Rule latency: 100 us to 10 s. Rules run in milliseconds (the app budget was 300 ms for a chart
#: analysis), so the default web buckets (5 ms..10 s) would put every fast rule in one bucket.
#: 0.3 is a boundary on purpose: the latency budget must be a bucket edge for an exact SLO ratio.
EXECUTION_DURATION_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
