"""``rule.version.performance``: outcome resolution, live-versus-backtest drift, snapshots.

- :mod:`heurmetrics.live.resolution` — signals, resolutions, the price resolver (pure), and
  :func:`~heurmetrics.live.resolution.resolve_pending` (stored signals against a price series);
- :mod:`heurmetrics.live.stats` — Wilson interval and exact binomial test (pure);
- the SQL side (``execution_resolutions``, ``rule_version_performance``) is
  :mod:`heurmetrics.store.live` (``SqlStore.live``);
- :mod:`heurmetrics.live.snapshot` — computing and appending snapshots, periodic thread;
- :mod:`heurmetrics.cli.live` — ``heurmetrics live …``.

See ``docs/live-performance.md``.
"""
