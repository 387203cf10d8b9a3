"""What a scrape of ``/metrics`` reads besides the ingest counters: gauges derived from the store
(rule versions, latest backtests, live performance), cached per refresh, and the exposition page
that renders them with the registry (text or OpenMetrics)."""
