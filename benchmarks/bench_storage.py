"""Storage at volume (issue 10): bytes per execution, query latency over months, retention, rollup cost.

Three sections, each in a scratch PostgreSQL database of its own (dropped at the end):

``bytes``   100,000 executions, total relation size (heap + indexes + TOAST, every partition) per row.
            *before*: the revision-0003 table (text status/mode, ``ingested_at``, three indexes),
            loaded by COPY with the values the SDK records; *after*: head, recorded through the SDK
            ``Recorder`` (background writer, batches of 5,000), plus the same rows by COPY as a
            cross-check. The rollup table's size is shown apart.
``volume``  N executions (default 20 M) spread evenly over the 6 full months before the current
            one, 200 rule versions, 70 % live / 10 % paper / 20 % backtest, loaded by binary COPY
            straight into the monthly partitions, rollups built per partition with the same
            GROUP BY as the migration. Then the p95 (wall clock, client side) of every dashboard
            SQL panel that reads executions (all versions selected; 24 h and 30 day windows), of
            ``audit executions`` for one version (24 h, 30 days; counts only and with 100 rows),
            and one retention run dropping the oldest month.
``ingest``  ``SqlStore.insert_executions`` three ways, batches interleaved in one run: the shipped
            path (the writer's lock and watermark read; the roll-up job run whenever the event
            time closes a minute, serially in the same thread, so its cost counts), every batch
            rolling up all its rows in its own transaction (no watermark, SQLite's way), and no
            rollups at all (the baseline). ``--ingest-versions 200`` spreads executions over 200
            versions with mixed statuses, modes and outcomes (the label set decides how many
            rollup rows a batch touches).

Run from the repository root::

    .venv/bin/python benchmarks/bench_storage.py                  # everything (20 M rows: long)
    .venv/bin/python benchmarks/bench_storage.py --section volume --events 5000000
    .venv/bin/python benchmarks/bench_storage.py --section ingest --ingest-versions 200 --ingest-batch 1000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg
from _common import libpq_url, postgres_admin_url, print_environment, print_table, scratch_postgres
from sqlalchemy import text

from heurmetrics.audit import queries
from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.ids import EventIds
from heurmetrics.monitoring import sqlq
from heurmetrics.monitoring.config import MonitoringConfig
from heurmetrics.monitoring.dash_rule_versions import (
    EXECUTIONS_PER_VERSION_SQL,
    LIVE_VS_BACKTEST_SQL,
    versions_sql,
)
from heurmetrics.sdk.recorder import Recorder
from heurmetrics.store import digests, migrations, partitions, retention, rollup_job, rollups
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.executions import _EXECUTION_COLUMNS, _EXECUTION_PG_TYPES, SqlExecutions
from heurmetrics.store.sql_store import SqlStore

OLD_COLUMNS = ("event_id", "rule_version_id", "started_at", "duration_seconds", "status", "outcome", "signal",
               "confidence", "mode", "error_type", "backtest_run_id", "ingested_at")
OLD_TYPES = ("uuid", "int4", "timestamptz", "float8", "text", "text", "float8", "float8", "text", "text", "uuid",
             "timestamptz")


def p95(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def relation_bytes(conn: psycopg.Connection[Any], table: str) -> int:
    """Total size of ``table``: every partition (if partitioned) with indexes and TOAST."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(%s::regclass)) "
        "FROM pg_partition_tree(%s::regclass)",
        (table, table),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _register(url: str, n: int) -> list[RuleVersion]:
    store = SqlStore.open(url)
    try:
        return [
            store.register_rule_version(f"rule_{i // 2:03d}", f"1.{i % 2}.0", params={"i": i}, source="src",
                                        created_by="bench")[0]
            for i in range(n)
        ]
    finally:
        store.close()


# --- bytes per row ---------------------------------------------------------------------------
def bytes_section(n: int) -> list[tuple[str, ...]]:
    rows_out: list[tuple[str, ...]] = []
    with scratch_postgres() as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine, "0003")
        engine.dispose()
        with psycopg.connect(libpq_url(url)) as conn:
            conn.execute("INSERT INTO rules (id, name, created_at) VALUES (1, 'range_bias', now())")
            conn.execute("INSERT INTO rule_versions (id, rule_id, version, content_hash, params, source, created_at, "
                         "created_by, chain_position, prev_hash, row_hash) "
                         "VALUES (1, 1, '1.0.0', 'h', '{}', 's', now(), 'b', 1, 'p', 'r')")
            ids, now = EventIds(), datetime.now(UTC)
            with conn.cursor().copy(f"COPY heuristic_executions ({', '.join(OLD_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                                    ) as copy:
                copy.set_types(OLD_TYPES)
                for i in range(n):
                    t = now - timedelta(seconds=(n - i) * 0.001)
                    copy.write_row((ids.next(), 1, t, 0.004, "ok", "bullish", 1.0, 0.7, "live", None, None, now))
            conn.commit()
            size = relation_bytes(conn, "heuristic_executions")
            rows_out.append(("before (0003), COPY", f"{n:,}", f"{size:,}", f"{size / n:.1f}", "-"))
    with scratch_postgres() as url:
        rec = Recorder(url)
        rv = rec.register_rule_version("range_bias", "1.0.0", params={}, source="src")
        for _ in range(n):
            rec.record_execution(rv, duration_seconds=0.004, outcome="bullish", signal=1.0, confidence=0.7)
        assert rec.flush(timeout=300).complete
        rec.close()
        with psycopg.connect(libpq_url(url)) as conn:
            size = relation_bytes(conn, "heuristic_executions")
            rolled = relation_bytes(conn, "execution_rollups")
            count = conn.execute("SELECT count(*) FROM heuristic_executions").fetchone()[0]  # type: ignore[index]
            rows_out.append(("after (head), SDK Recorder", f"{count:,}", f"{size:,}", f"{size / count:.1f}",
                             f"{rolled:,}"))
            ids, now = EventIds(), datetime.now(UTC)
            conn.execute("CREATE TABLE copy_check (LIKE heuristic_executions INCLUDING ALL) "
                         "PARTITION BY RANGE (started_at)")
            lo, hi = partitions.bounds(now, "monthly")
            conn.execute(f"CREATE TABLE copy_check_p PARTITION OF copy_check FOR VALUES FROM ('{lo.isoformat()}') "
                         f"TO ('{hi.isoformat()}')")
            conn.execute("ALTER INDEX copy_check_p_pkey SET (fillfactor = 100)")  # as partitions.create_partition_sql
            conn.execute("CREATE TABLE copy_check_d PARTITION OF copy_check DEFAULT")
            with conn.cursor().copy(f"COPY copy_check ({', '.join(_EXECUTION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                                    ) as copy:
                copy.set_types(_EXECUTION_PG_TYPES)
                for i in range(n):
                    t = now - timedelta(seconds=(n - i) * 0.001)
                    copy.write_row((t, ids.next(), 0.004, 1.0, 0.7, rv.id, 1, 1, "bullish", None, None))
            conn.commit()
            size = relation_bytes(conn, "copy_check")
            rows_out.append(("after (head), COPY cross-check", f"{n:,}", f"{size:,}", f"{size / n:.1f}", "-"))
    return rows_out


# --- volume ----------------------------------------------------------------------------------
def _months(count: int) -> list[tuple[datetime, datetime]]:
    start, _ = partitions.bounds(datetime.now(UTC), "monthly")
    out = []
    for _ in range(count):
        prev = partitions.bounds(start - timedelta(days=1), "monthly")
        out.insert(0, prev)
        start = prev[0]
    return out


def _load(url: str, versions: list[RuleVersion], months: list[tuple[datetime, datetime]], n: int) -> float:
    """COPY ``n`` executions into the monthly partitions; returns seconds spent."""
    rng = random.Random(10)
    durations = [rng.lognormvariate(math.log(0.003), 1.0) for _ in range(4096)]
    outcomes = ["bullish", "bearish", "neutral", None]
    vids = [v.id for v in versions]
    modes = [MODE_CODES["live"]] * 7 + [MODE_CODES["paper"]] + [MODE_CODES["backtest"]] * 2
    ok, error = STATUS_CODES["ok"], STATUS_CODES["error"]
    per_month = n // len(months)
    t0 = time.perf_counter()
    with psycopg.connect(libpq_url(url)) as conn:
        for lo, hi in months:
            name = partitions.partition_name(lo, "monthly")
            step = (hi - lo) / per_month
            ids = EventIds()
            with conn.cursor().copy(f"COPY {name} ({', '.join(_EXECUTION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
                                    ) as copy:
                copy.set_types(_EXECUTION_PG_TYPES)
                write = copy.write_row
                for i in range(per_month):
                    r = rng.random()
                    write((lo + step * i, ids.next(), durations[i & 4095], 1.0 if r < 0.5 else None, r,
                           vids[i % len(vids)], error if r < 0.01 else ok, modes[i % 10], outcomes[i & 3], None,
                           None))
            conn.execute(
                f"INSERT INTO execution_rollups ({', '.join(rollups.COLUMNS)}) {rollups.rebuild_select(name)}"
            )
            month = f"WHERE bucket_start >= '{lo.isoformat()}' AND bucket_start < '{hi.isoformat()}'"
            for level in ("hour", "day"):
                conn.execute(
                    f"INSERT INTO {rollups.LEVEL_TABLES[level]} ({', '.join(rollups.COLUMNS)}) "
                    f"{rollups.coarsen_select(level, where=month)}"
                )
            conn.commit()
            print(f"  loaded {name}: {per_month:,} rows ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


def _render(sql: str, start: datetime, end: datetime, rules: list[str], versions: list[str]) -> str:
    """Grafana's macros and multi-value variables, as Grafana's PostgreSQL data source expands them."""
    def listed(values: list[str]) -> str:
        return ", ".join(sqlq.lit(v) for v in values)

    out = sql.replace("$__timeFrom()", f"'{start.isoformat()}'").replace("$__timeTo()", f"'{end.isoformat()}'")
    return out.replace(f"${'rule_version'}", listed(versions)).replace(f"${'rule'}", listed(rules))


def _timed(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm (plans, caches)
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return p95(samples) * 1000


@contextlib.contextmanager
def _kept_postgres() -> Iterator[str]:
    """A database ``bench_keep_<random>`` that is not dropped (measure it again with --reuse-database)."""
    from sqlalchemy.engine import make_url

    url = make_url(postgres_admin_url())
    name = f"bench_keep_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(libpq_url(url.render_as_string(hide_password=False)), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    kept = url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    print(f"(database kept: --reuse-database {kept})", file=sys.stderr)
    yield kept


def volume_section(
    n: int, reps: int, reuse: str | None, keep: bool = False, load_only: bool = False, digest: str = digests.FAST
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """Load (unless ``reuse`` names a database loaded by an earlier run) and measure."""
    if reuse is not None:
        return _measure(reuse, reps, load_s=None, digest=digest)
    with (_kept_postgres() if keep else scratch_postgres()) as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        versions = _register(url, 200)
        months = _months(6)
        partitions.create_ranges(engine, months[0][0], months[-1][1], "monthly")
        engine.dispose()
        load_s = _load(url, versions, months, n)
        if load_only:
            return [("loaded", f"{n:,} executions in {load_s:.0f} s into {url}")], []
        return _measure(url, reps, load_s, digest)


def _measure(
    url: str, reps: int, load_s: float | None, digest: str = digests.FAST
) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    engine = create_store_engine(url)
    store = SqlStore(engine)
    versions = store.list_rule_versions()
    with engine.connect() as conn:
        months = [(s, e) for s, e in partitions.covered_ranges(conn)
                  if conn.execute(text("SELECT EXISTS (SELECT 1 FROM execution_rollups WHERE bucket_start >= :s "
                                       "AND bucket_start < :e)"), {"s": s, "e": e}).scalar()]
    with psycopg.connect(libpq_url(url)) as conn:
        stored = int(conn.execute("SELECT count(*) FROM heuristic_executions").fetchone()[0])  # type: ignore[index]
        size = relation_bytes(conn, "heuristic_executions")
        rolled = int(conn.execute("SELECT count(*) FROM execution_rollups").fetchone()[0])  # type: ignore[index]
        rolled_size = relation_bytes(conn, "execution_rollups")
    loaded = "loaded by an earlier run" if load_s is None else f"in {load_s:.0f} s incl. rollups"
    info = [
        ("executions (COPY into partitions)", f"{stored:,} {loaded}"),
        ("months / rule versions", f"{len(months)} / {len(versions)}"),
        ("heuristic_executions size", f"{size / 1e9:.2f} GB ({size / stored:.0f} B/row)"),
        ("execution_rollups",
         f"{rolled:,} rows, {rolled_size / 1e9:.2f} GB ({rolled_size / max(rolled, 1):.0f} B/row)"),
    ]
    # An unaligned end (as "now" is in Grafana): ranges cut through days, hours and minutes, so the
    # panels read every rollup level, edges included.
    end = months[-1][1] - timedelta(hours=7, minutes=13, seconds=17)
    rules = sorted({v.rule for v in versions})
    names = sorted({v.version for v in versions})
    panels = {
        "Versions (last live execution)": versions_sql(MonitoringConfig()),
        "Live vs backtest": LIVE_VS_BACKTEST_SQL,
        "Executions per version": EXECUTIONS_PER_VERSION_SQL,
    }
    results: list[tuple[str, ...]] = []
    raw = psycopg.connect(libpq_url(url), autocommit=True)
    v = versions[17]
    for window_name, window in (("24 h", timedelta(hours=24)), ("30 days", timedelta(days=30))):
        start = end - window
        for title, sql in panels.items():
            rendered = _render(sql, start, end, rules, names)
            ms = _timed(lambda q=rendered: raw.execute(q).fetchall(), reps)
            results.append((f"panel: {title}", window_name, f"{ms:.1f}"))
        for rows in (0, 100):
            def audit(r: int = rows, s: datetime = start) -> object:
                return queries.executions(store, v.rule, v.version, start=s, end=end, rows=r)

            ms = _timed(audit, reps)
            results.append((f"audit executions {v.key}" + (f" --rows {rows}" if rows else ""), window_name,
                            f"{ms:.1f}"))
    raw.close()
    policy = retention.Policy({m: datetime.now(UTC) - months[1][0] for m in MODE_CODES})
    t = time.perf_counter()
    due = retention.plan(engine, policy)
    plan_ms = (time.perf_counter() - t) * 1000
    results.append(("retention plan (--dry-run: partitions, rows, modes present)", "-", f"{plan_ms:.0f}"))
    t = time.perf_counter()
    dropped = [retention.drop_partition(engine, c, policy, actor="bench", digest=digest) for c in due[:1]]
    retention_ms = (time.perf_counter() - t) * 1000
    results.append((
        f"retention --digest {digest}: drop {', '.join(d.partition_name for d in dropped)} "
        f"({sum(d.row_count for d in dropped):,} rows; verify + digest + chain + detach + drop)", "-",
        f"{retention_ms:.0f}",
    ))
    # Where a retention run's time goes, measured apart on the next month (not dropped).
    nxt = months[len(dropped)] if len(months) > len(dropped) else None
    if nxt is not None:
        name = partitions.partition_name(nxt[0], "monthly")
        scans = []
        for algorithm in digests.ALGORITHMS:  # each digest on the same month, apart
            with engine.connect() as conn:
                t = time.perf_counter()
                counts, _digest = retention.scan(conn, name, algorithm)
                scans.append((algorithm, (time.perf_counter() - t) * 1000))
        with engine.connect() as conn:
            t = time.perf_counter()
            rolled_counts = rollups.counts_per_version(conn, nxt[0], nxt[1])
            rolled_ms = (time.perf_counter() - t) * 1000
        assert {str(k): v for k, v in rolled_counts.items()} == counts
        for algorithm, scan_ms in scans:
            results.append((f"  of which: {name} counts per version + {algorithm} digest", "-", f"{scan_ms:.0f}"))
        results.append(("  of which: rollup counts per version over the month (day level)", "-", f"{rolled_ms:.0f}"))
    engine.dispose()
    return info, results


# --- ingest cost of the rollups --------------------------------------------------------------
class _NoRollupExecutions(SqlExecutions):
    """The insert path with no rollup work at all: no lock, no watermark, no aggregation, no upserts."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._roll_up = rollup_job.Schedule(engine, interval=math.inf)

    @staticmethod
    def _request_watermark(reader: Any) -> None:
        reader.execute("SELECT NULL")  # the shipped path's statement slot, without the lock

    def _roll_up_late(self, *_args: Any) -> None:
        return None


class _SameTransactionExecutions(_NoRollupExecutions):
    """Every batch rolls up all its new rows in its own transaction (no watermark: SQLite's way)."""

    def _roll_up_late(self, cursor: Any, events: Any, rows: Any, new: Any, _through: Any) -> None:
        SqlExecutions._roll_up_late(self, cursor, events, rows, new, None)


class _JobExecutions(SqlExecutions):
    """The shipped path (watermark under the writers' lock, late rows only), with the roll-up job run
    whenever the event time closes a minute instead of on the wall clock, and for the rest at
    :meth:`finish`."""

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._roll_up = rollup_job.Schedule(engine, interval=math.inf)
        self.closed: datetime | None = None

    def insert_executions(self, events: Sequence[ExecutionEvent], **kwargs: Any) -> set[uuid.UUID]:
        new = super().insert_executions(events, **kwargs)
        closed = datetime.fromtimestamp(max(e.started_at for e in events), UTC).replace(second=0, microsecond=0)
        if self.closed is not None and closed > self.closed:
            rollup_job.advance(self.engine, closed)
        self.closed = closed
        return new

    def finish(self) -> None:
        assert self.closed is not None
        rollup_job.advance(self.engine, self.closed + timedelta(minutes=1))


def _store_with(url: str, executions: type[SqlExecutions]) -> SqlStore:
    store = SqlStore.open(url)
    store.executions = executions(store.engine)
    return store


def ingest_section(n: int, batch: int, n_versions: int = 1, rate: float = 2000.0) -> list[tuple[str, ...]]:
    """Executions/s of the insert path with and without rollups; ``n_versions`` spread over mixed
    statuses, modes and outcomes at ``rate`` executions per second of event time (the label set
    decides how many rollup rows a batch touches)."""
    with scratch_postgres() as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        versions = _register(url, n_versions)
        job_name = "writer (late rows) + roll-up job per closed minute (shipped)"
        stores = {"same transaction, every row": _store_with(url, _SameTransactionExecutions),
                  "without rollups": _store_with(url, _NoRollupExecutions),
                  job_name: _store_with(url, _JobExecutions)}
        job = stores[job_name].executions
        assert isinstance(job, _JobExecutions)
        ids, rng = EventIds(), random.Random(4)
        outcomes = ["bullish", "bearish", "neutral", None]

        def events(k: int, t0: float) -> list[ExecutionEvent]:
            if n_versions == 1:  # one label set per outcome: the cheapest case for the rollups
                return [ExecutionEvent(ids.next(), versions[0], t0 + (k * batch + i) / rate, rng.lognormvariate(-6, 1),
                                       "ok", outcomes[i & 3], 1.0, 0.7, "live", None, None) for i in range(batch)]
            return [ExecutionEvent(ids.next(), versions[rng.randrange(n_versions)], t0 + (k * batch + i) / rate,
                                   rng.lognormvariate(-6, 1), "error" if i % 9 == 0 else "ok",
                                   None if i % 9 == 0 else outcomes[rng.randrange(4)], 1.0, 0.7,
                                   "backtest" if i % 3 == 0 else "live", "ValueError" if i % 9 == 0 else None, None)
                    for i in range(batch)]

        # Each path writes its own days (the job reads back only its own rows), warm-up an hour before.
        start = {name: time.time() - 30 * 86400 + i * 86400 for i, name in enumerate(stores)}
        n_batches = n // batch
        work = {name: [events(k, start[name]) for k in range(n_batches)] for name in stores}
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:  # the job path starts at the watermark
            conn.execute("UPDATE rollup_watermark SET through = %s",
                         (datetime.fromtimestamp(start[job_name], UTC).replace(second=0, microsecond=0),))
        for name, store in stores.items():  # warm-up: connections, staging, plans, partitions (late rows)
            store.insert_executions(events(0, start[name] - 3600))
        backends = {name: _backend_pid(store) for name, store in stores.items()}
        samples: dict[str, list[float]] = {name: [] for name in stores}
        cpu = dict.fromkeys(stores, 0.0)  # client thread + the path's PostgreSQL backend, seconds

        def timed(name: str, call: Callable[[], object]) -> float:
            c0, b0, t = time.thread_time(), _cpu_seconds(backends[name]), time.perf_counter()
            call()
            wall = time.perf_counter() - t
            cpu[name] += time.thread_time() - c0 + _cpu_seconds(backends[name]) - b0
            return wall

        for k in range(n_batches):  # interleaved, rotating order: same conditions for every path
            order = list(stores)
            order = order[k % len(order):] + order[: k % len(order)]
            for name in order:
                samples[name].append(timed(name, lambda: stores[name].insert_executions(work[name][k])))  # noqa: B023
        samples[job_name][-1] += timed(job_name, job.finish)  # the job's share of the last, still open minute
        with psycopg.connect(libpq_url(url)) as conn:  # every path's rows are in the rollups exactly once
            raw = conn.execute("SELECT count(*) FROM heuristic_executions").fetchone()[0]
            rolled = conn.execute("SELECT sum(executions) FROM execution_rollups").fetchone()[0]
            if raw - rolled != (n_batches + 1) * batch:  # the rows of the path without rollups, warm-up included
                raise SystemExit(f"rollups do not cover the rows: raw {raw}, rolled up {rolled}")
        for store in stores.values():
            store.close()

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    base, base_median = sum(samples["without rollups"]) / n_batches, median(samples["without rollups"])
    rows = []
    for name, s in samples.items():
        mean = sum(s) / n_batches
        # The job's cost falls on the batches that close a minute: only its mean is meaningful.
        per_batch = "-" if name == job_name else f"{batch / median(s):,.0f}"
        ratio = "-" if name == job_name else f"{base_median / median(s):.2f}x"
        per_event = cpu[name] / (n_batches * batch) * 1e6
        rows.append((name, f"{batch / mean:,.0f}", per_batch, f"{base / mean:.2f}x", ratio, f"{per_event:.2f}",
                     f"{cpu['without rollups'] / cpu[name]:.2f}x"))
    return rows


def _backend_pid(store: SqlStore) -> int:
    """The PostgreSQL backend of the store's (one, reused) pooled connection: used one call at a time."""
    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a local process so far (/proc; 10 ms ticks, summed over many calls)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", choices=("all", "bytes", "volume", "ingest"), default="all")
    parser.add_argument("--events", type=int, default=20_000_000, help="volume section: executions (default 20 M)")
    parser.add_argument("--reps", type=int, default=20, help="volume section: repetitions per query")
    parser.add_argument("--reuse-database", help="volume section: measure a database a previous run loaded "
                        "(kept when that run was killed); its oldest month is dropped by the retention run")
    parser.add_argument("--digest", choices=tuple(digests.ALGORITHMS), default=digests.FAST,
                        help="volume section: content digest of the retention run (both are timed on the next month)")
    parser.add_argument("--keep-database", action="store_true", help="volume section: keep the loaded database")
    parser.add_argument("--load-only", action="store_true", help="volume section: load (and keep), do not measure")
    parser.add_argument("--ingest-events", type=int, default=200_000, help="ingest section: executions per path")
    parser.add_argument("--ingest-versions", type=int, default=1,
                        help="ingest section: rule versions, with mixed status/mode/outcome when > 1")
    parser.add_argument("--ingest-batch", type=int, default=5000, help="ingest section: executions per batch")
    args = parser.parse_args()
    print_environment("bench_storage", {"events": f"{args.events:,}"})
    if args.section in ("all", "bytes"):
        print_table(("table", "rows", "bytes", "bytes/row", "rollup bytes"), bytes_section(100_000),
                    title="Bytes per execution row (heap + indexes + TOAST, all partitions)")
    if args.section in ("all", "ingest"):
        print_table(("path", "mean ev/s", "median-batch ev/s", "mean vs without", "median vs without",
                     "CPU µs/ev (client+backend)", "CPU vs without"),
                    ingest_section(args.ingest_events, args.ingest_batch, args.ingest_versions),
                    title=f"Ingest cost of the rollups (PostgreSQL, batches of {args.ingest_batch:,}, "
                          f"{args.ingest_versions} rule version(s), interleaved)")
    if args.section in ("all", "volume"):
        info, results = volume_section(args.events, args.reps, args.reuse_database,
                                       keep=args.keep_database or args.load_only, load_only=args.load_only,
                                       digest=args.digest)
        print_table(("", ""), info, title="Volume")
        print_table(("query", "window", "p95 ms"), results, title=f"Latency at volume ({args.reps} repetitions)")
    print(json.dumps({"done": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
