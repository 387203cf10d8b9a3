"""``rule.version.performance``: outcome resolution, live-versus-backtest drift, snapshots.

- :mod:`heurmetrics.performance.resolution` — signals, resolutions, the price resolver (pure);
- :mod:`heurmetrics.performance.stats` — Wilson interval and exact binomial test (pure);
- :mod:`heurmetrics.performance.store` — the SQL side (``execution_resolutions``,
  ``rule_version_performance``);
- :mod:`heurmetrics.performance.snapshot` — computing and appending snapshots, periodic thread;
- :mod:`heurmetrics.performance.cli` — ``heurmetrics performance …``.

See ``docs/performance.md``.
"""
