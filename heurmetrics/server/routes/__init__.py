"""The exporter's routes, one router per concern, each built by a ``build_router`` function.

=====================  ==========================================================
``health``             ``GET /healthz``, ``GET /readyz``
``exposition``         ``GET /metrics`` (Prometheus text / OpenMetrics)
``rule_versions``      ``POST /v1/rule-versions``
``executions``         ``POST /v1/executions``
``backtests``          ``POST /v1/backtests``, ``POST /v1/backtests/failed``
``walkforward``        ``POST /v1/walk-forward``
``resolutions``        ``POST /v1/resolutions``
``audit``              audit reads and lifecycle transitions under ``/v1``
=====================  ==========================================================

Routes raise domain errors (:mod:`heurmetrics.errors`) or :class:`~heurmetrics.server.errors.Refusal`
and never build an error answer themselves: :mod:`heurmetrics.server.errors` answers, counts and
logs every refusal.
"""
