"""``rule.version.performance``: outcome resolution, live-versus-backtest drift, snapshots.

- :mod:`heurmetrics.live.resolution` — signals, resolutions, the price resolver (pure);
- :mod:`heurmetrics.live.stats` — Wilson interval and exact binomial test (pure);
- :mod:`heurmetrics.live.store` — the SQL side (``execution_resolutions``,
  ``rule_version_performance``);
- :mod:`heurmetrics.live.snapshot` — computing and appending snapshots, periodic thread;
- :mod:`heurmetrics.live.cli` — ``heurmetrics live …``.

See ``docs/live-performance.md``.
"""
