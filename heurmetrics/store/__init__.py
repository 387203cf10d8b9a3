"""The database: the only package that imports SQLAlchemy or a driver (migrations aside).

:class:`heurmetrics.store.sql_store.SqlStore` is the way in; it composes one store per concern
(``versions``, ``executions``, ``backtests``, ``live``, ``audit``, ``chain``, ``maintenance``) and
turns driver errors into domain errors (:mod:`heurmetrics.store.errors`). The store imports
nothing above it: only :mod:`heurmetrics.domain`, :mod:`heurmetrics.errors`,
:mod:`heurmetrics.config`, :mod:`heurmetrics.canonical` and the pure :mod:`heurmetrics.hashchain`
and :mod:`heurmetrics.buckets` (``tests/test_store_boundary.py`` checks it).
"""
