"""SQL fragments shared by the PostgreSQL panels.

Table and column names are the documented store contract of :mod:`heurmetrics.store.schema`;
every column is qualified with its table alias (``r`` rules, ``rv`` rule_versions, ``ro``
execution_rollups, ``br`` backtest_runs, ``bf`` backtest_folds, ``ep`` equity_points) so the
consistency test can check each one against ``Base.metadata``. Status and mode literals come from
the bounded value sets of :mod:`heurmetrics.metrics.definitions`, turned into the stored codes of
:mod:`heurmetrics.store.codes`.

Execution panels read the rollups (exact aggregates per minute, hour and day), never raw
``heuristic_executions``, through ``execution_rollups_between($__timeFrom(), $__timeTo())``
(:data:`ROLLUPS_IN_RANGE`): whole UTC days from the day level, whole hours from the hour level,
minutes at the edges. Their cost depends on the number of days, edge hours and edge minutes
(at most days + 46 + 118 buckets) times the versions shown, not on the number of executions, and
they still cover ranges whose raw rows retention dropped. A panel's range is the minutes starting
in [from, to): exact at minute resolution. One
exception: the confidence distribution (``dash_executions.CONFIDENCE_SQL``) reads raw rows, since
the rollups keep confidence sums, not deciles; it is empty for ranges retention dropped.
"""

from __future__ import annotations

from grafanalib import core as g

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring import panels as p
from heurmetrics.monitoring.promql import (
    BACKTEST_COMPLETED,
    BACKTEST_FAILED,
    MODE_BACKTEST,
    OUTCOME_NO_SIGNAL,
    STATUS_OK,
)
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.schema import BacktestRunRow

RUN_ID_VAR = "run_id"


def lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


#: Joins from a table with a ``rule_version_id`` (alias given) to the version and its rule.
def version_join(alias: str) -> str:
    return f"JOIN rule_versions AS rv ON rv.id = {alias}.rule_version_id\nJOIN rules AS r ON r.id = rv.rule_id"


#: The dashboard's rule / rule_version selection (multi-value variables expand to quoted lists).
VERSION_FILTER = f"r.name IN (${p.RULE_VAR}) AND rv.version IN (${p.RULE_VERSION_VAR})"
#: The run chosen in the ``run_id`` variable; NULL (no rows, no error) while none is selected.
SELECTED_RUN = f"NULLIF('${RUN_ID_VAR}', '')::uuid"

#: The rollup rows (row type of ``execution_rollups``) covering the dashboard's time range exactly,
#: read from days, hours and edge minutes (the SQL function of migration 0007).
ROLLUPS_IN_RANGE = "execution_rollups_between($__timeFrom(), $__timeTo())"
#: The same range on the minute level (``bucket_start`` is a minute), for first/last-minute probes.
MINUTE_IN_RANGE = "ro.bucket_start >= $__timeFrom() AND ro.bucket_start < $__timeTo()"


def live(alias: str) -> str:
    """Rows of ``alias`` (rollups or raw executions) that are not backtest-mode."""
    return f"{alias}.mode <> {MODE_CODES[MODE_BACKTEST]}"


LIVE = live("ro")
#: Modes that count as live use (everything but backtest).
LIVE_MODES = tuple(code for name, code in MODE_CODES.items() if name != MODE_BACKTEST)
BACKTEST_MODE = f"ro.mode = {MODE_CODES[MODE_BACKTEST]}"
FAILED_EXECUTION = f"ro.status <> {STATUS_CODES[STATUS_OK]}"
OK_EXECUTION = f"ro.status = {STATUS_CODES[STATUS_OK]}"
COMPLETED_RUN = f"br.status = {lit(BACKTEST_COMPLETED)}"
FAILED_RUN = f"br.status = {lit(BACKTEST_FAILED)}"
#: An execution that produced a signal (an outcome other than none / "none" / "no_signal"; the
#: rollups store a missing outcome as '').
SIGNAL = f"ro.outcome NOT IN ('', {lit(d.NO_OUTCOME)}, {lit(OUTCOME_NO_SIGNAL)})"


def last_execution(version_id: str, modes: tuple[int, ...]) -> str:
    """Minute of the version's last execution in ``modes``: one probe of the rollups' key per mode."""
    probes = ", ".join(
        f"(SELECT max(ro.bucket_start) FROM execution_rollups AS ro "
        f"WHERE ro.rule_version_id = {version_id} AND ro.mode = {code})"
        for code in modes
    )
    return f"GREATEST({probes})"


def executions_where(condition: str) -> str:
    """Executions (from the rollups) matching ``condition``."""
    return f"sum(ro.executions) FILTER (WHERE {condition})"


def share(condition: str, scope: str) -> str:
    """Share of the executions in ``scope`` that match ``condition`` (NULL when there are none)."""
    return f"{executions_where(f'({condition}) AND {scope}')}::float8 / NULLIF({executions_where(scope)}, 0)"

#: Headline metric keys read from the per-fold metrics JSON: the suite's keys, mirrored by the
#: headline columns of ``backtest_runs`` (checked against the schema at import).
FOLD_METRICS: tuple[str, ...] = ("sharpe", "total_return", "max_drawdown")
for _key in FOLD_METRICS:
    if _key not in BacktestRunRow.__table__.c:
        raise RuntimeError(f"backtest_runs has no headline column {_key!r}")


def version_variables() -> list[g.Template]:
    """``rule`` and ``rule_version`` variables from PostgreSQL: every registered version, retired too."""
    return [
        p.query_variable(p.RULE_VAR, "Rule", "SELECT r.name FROM rules AS r ORDER BY r.name", p.POSTGRES_DS),
        p.query_variable(
            p.RULE_VERSION_VAR,
            "Rule version",
            f"SELECT DISTINCT rv.version FROM rule_versions AS rv JOIN rules AS r ON r.id = rv.rule_id "
            f"WHERE r.name IN (${p.RULE_VAR}) ORDER BY rv.version",
            p.POSTGRES_DS,
        ),
    ]
