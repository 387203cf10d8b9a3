"""Audit trail of rule versions: lifecycle events, the hash chain, point-in-time reads, export.

Modules (import them directly; this package imports nothing so the store can use it freely):

- :mod:`heurmetrics.audit.chain` — the hash chain over versions and lifecycle events, serialised
  appends, ``verify`` and ``head``.
- :mod:`heurmetrics.audit.lifecycle` — registration, the transitions (propose, approve, activate,
  retire, roll back) and the policy they enforce.
- :mod:`heurmetrics.audit.queries` — read models: versions, history, who was active when, diffs,
  executions and flagged live executions.
- :mod:`heurmetrics.audit.export` — files for an auditor's own tools.
- :mod:`heurmetrics.audit.cli` — ``heurmetrics audit …``.

See ``docs/audit.md``.
"""
