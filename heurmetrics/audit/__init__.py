"""Audit trail of rule versions: lifecycle events, the hash chain, point-in-time reads, export.

The pure logic (policy, folding, verifying); every function receives the store
(:class:`heurmetrics.store.sql_store.SqlStore`), which holds the SQL. Modules (import them directly):

- :mod:`heurmetrics.audit.chain` — the hash chain over versions and lifecycle events: ``verify``
  and ``head`` (layout and hashing in :mod:`heurmetrics.hashchain`, the append lock in
  :mod:`heurmetrics.store.chain`).
- :mod:`heurmetrics.audit.lifecycle` — registration, the transitions (propose, approve, activate,
  retire, roll back) and the policy they enforce.
- :mod:`heurmetrics.audit.queries` — read models: versions, history, who was active when, diffs,
  executions and flagged live executions.
- :mod:`heurmetrics.audit.export` — files for an auditor's own tools.
- :mod:`heurmetrics.cli.audit` — ``heurmetrics audit …``.

See ``docs/audit.md``.
"""
