"""Persistence benchmark: sustained executions/s written by the SDK path against raw bulk loads.

    .venv/bin/python benchmarks/bench_persistence.py [--quick] [--events N] [--sqlite-events N] [--reps R]
                                                     [--no-sqlite] [--no-postgres] [--extra]

PostgreSQL (``HEURMETRICS_BENCH_POSTGRES_URL``, default the local trust-auth server
``postgresql+psycopg://root@127.0.0.1:5432/test``): a scratch database ``bench_<random>`` is
created, migrated with the real migrations (``heurmetrics.store.migrations.upgrade``), and dropped
at the end. Baseline tables are created next to ``heuristic_executions``:

    raw_executions       LIKE heuristic_executions INCLUDING ALL, plus the real table's foreign
                         keys and INSERT triggers read from the catalog (LIKE copies neither):
                         the same shape, constraints, indexes and insert-time checks
    raw_executions_nofk  LIKE heuristic_executions INCLUDING ALL (no foreign key), for information

Paths, each writing ``events`` executions (one rule version, status ok, outcome bullish,
confidence 0.7, log-uniform durations) in batches of 5,000 rows, one transaction per batch:

    SDK: record_execution x N + flush
                                 record_execution() x N then flush(); timed from the first record
                                 to the return of flush() (the caller thread and the writer thread
                                 share the GIL, as in a real runner)
    SDK: record_executions x N/5000 + flush
                                 the batch API, one call per 5,000 items (dicts built before
                                 timing, as the baseline's events are), then flush()
    raw COPY, same rows, whole run
                                 THE BASELINE of the SDK paths: psycopg 3 binary COPY of the same
                                 kind of rows into raw_executions, 5,000 per transaction, building
                                 each row tuple inline (what a hand-written bulk loader does)
    Ingest.write_executions      pre-built ExecutionEvent batches (ids generated like the SDK's)
    SqlStore.insert_executions   the same kind of batches (ids of their own), without Ingest's dedup
                                 and metric updates
    raw COPY, same rows          the baseline of the batch paths, timed batch by batch
    raw COPY, no FK              the same into raw_executions_nofk (information)
    raw COPY, pre-built tuples   row tuples built before timing: the pure COPY ceiling (information,
                                 only with --extra; into a third table of the same shape)

Scheduling. An SDK run cannot be cut into batches, so each repetition brackets the two SDK runs
(in a random order) with whole raw COPY runs: COPY, SDK a, COPY, SDK b, COPY, every run on empty
tables; an SDK run's paired ratio is the mean of the two COPY runs around it over its own time, so
a burst of load from a neighbour on this shared machine affects both sides. Then the batch paths
run *interleaved at batch level*: batch i of every batch path, in a shuffled order, then batch
i+1, ... Row counts are checked after every run. Each whole run also reports CPU time per event
from /proc: the caller thread (``time.thread_time``), the SDK's writer thread, the process's
other threads, and the PostgreSQL backends of the scratch database (``pg_stat_activity`` pids),
and every repetition prints the 1-minute load average.

SQLite (information): the SDK Recorder and SqlStore.insert_executions against a raw ``sqlite3``
``executemany`` INSERT of the same rows (same value encoding as SQLAlchemy's: hex uuid, ISO
datetime text with microseconds) into ``raw_executions``, a copy of the real table's DDL and
indexes in the same file, with the engine's pragmas (WAL, synchronous=FULL, foreign keys on), one
commit per 5,000 rows; scheduled the same way.

``heuristic_executions`` is append-only (triggers refuse UPDATE/DELETE/TRUNCATE; they never fire on
INSERT). To start every phase on empty tables the benchmark empties them untimed: on PostgreSQL
from a separate session with ``session_replication_role = replica`` (needs a superuser), on SQLite
by dropping and recreating the triggers around the DELETE (in its own temporary file).

Reported: best and median events/s per path and two ratios to the baseline's throughput: best run
against best run (best-of-N: on a shared machine the best run is the least disturbed one) and the
median of the paired ratios (per repetition, or per bracketed run). The target line says PASS
only when both reach 0.80x.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import (
    libpq_url,
    median,
    print_environment,
    print_table,
    scratch_postgres,
    sigterm_as_exit,
)
from prometheus_client import CollectorRegistry

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.ids import EventIds
from heurmetrics.ingest import Ingest
from heurmetrics.metrics.pipeline import PipelineMetrics
from heurmetrics.sdk.recorder import Recorder
from heurmetrics.store import migrations
from heurmetrics.store.codes import MODE_CODES, STATUS_CODES
from heurmetrics.store.engine import create_store_engine
from heurmetrics.store.executions import _EXECUTION_COLUMNS, _EXECUTION_PG_TYPES, _execution_tuple
from heurmetrics.store.sql_store import SqlStore

BATCH = 5000
# The same column order and binary COPY types as the store: the baseline differs only in the path.
COLUMNS = _EXECUTION_COLUMNS
PG_TYPES = _EXECUTION_PG_TYPES
BASELINE = "raw COPY, same rows (baseline)"
WHOLE_BASELINE = "raw COPY, same rows, whole run (baseline)"
SDK_SINGLE = "SDK: record_execution x N + flush"
SDK_BATCH = "SDK: record_executions x N/5000 + flush"
SQLITE_BASELINE = "raw sqlite3 executemany (baseline)"


def durations(n: int, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    lo, hi = math.log(1e-4), math.log(1.0)
    return [math.exp(rng.uniform(lo, hi)) for _ in range(n)]


def build_events(rv: RuleVersion, durs: Sequence[float]) -> list[ExecutionEvent]:
    """Events exactly as Recorder.record_execution builds them (SDK ids: counted at record time)."""
    ids = EventIds()
    now = time.time()
    return [
        ExecutionEvent(
            ids.next(), rv, now - 3600 + i * 0.001, dur, "ok", "bullish", None, 0.7, "live", None, None
        )
        for i, dur in enumerate(durs)
    ]


def batches(events: list[ExecutionEvent]) -> list[list[ExecutionEvent]]:
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads, from /proc (0 elsewhere)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class CpuMeter:
    """CPU seconds of this process, of the SDK's writer thread and of the database's server backends."""

    def __init__(self, backend_pids: Callable[[], list[int]]) -> None:
        self._backend_pids = backend_pids

    def sample(self) -> tuple[float, float, float]:
        writer = next((t.native_id for t in threading.enumerate() if t.name == "heurmetrics-writer"), None)
        pids = self._backend_pids()
        return (
            proc_cpu(os.getpid()),
            proc_cpu(os.getpid(), writer) if writer is not None else 0.0,
            sum(proc_cpu(p) for p in pids),
        )


def run_recorder(rec: Recorder, rv: RuleVersion, durs: Sequence[float]) -> tuple[float, float, float]:
    """record_execution x N then flush(): (total seconds, of which the record loop, caller thread CPU)."""
    record = rec.record_execution

    def loop() -> None:
        call, version = record, rv  # locals, not closure cells, in the timed loop
        for dur in durs:
            call(version, duration_seconds=dur, status="ok", outcome="bullish", confidence=0.7)

    return _timed_then_flushed(rec, loop)


def batch_items(durs: Sequence[float]) -> list[list[dict[str, object]]]:
    """The runner's evaluations as record_executions items, in calls of BATCH (built before timing)."""
    items: list[dict[str, object]] = [
        {"duration_seconds": dur, "status": "ok", "outcome": "bullish", "confidence": 0.7} for dur in durs
    ]
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def run_recorder_batches(
    rec: Recorder, rv: RuleVersion, calls: Sequence[Sequence[dict[str, object]]]
) -> tuple[float, float, float]:
    """record_executions per call of BATCH items, then flush(): as :func:`run_recorder`."""
    record = rec.record_executions

    def loop() -> None:
        call, version = record, rv
        for items in calls:
            call(version, items)

    return _timed_then_flushed(rec, loop)


def _timed_then_flushed(rec: Recorder, loop: Callable[[], None]) -> tuple[float, float, float]:
    """Run the record loop, then flush(): (total seconds, of which the loop, caller thread CPU)."""
    c0 = time.thread_time()
    t0 = time.perf_counter()
    loop()
    t1 = time.perf_counter()
    result = rec.flush(120)
    t2 = time.perf_counter()
    if not result.complete:
        raise RuntimeError(f"flush incomplete: {result}")
    return t2 - t0, t1 - t0, time.thread_time() - c0


def report(
    title: str, samples: dict[str, list[float]], baseline: str, n: int, notes: dict[str, str] | None = None
) -> dict[str, tuple[float, float]]:
    """samples: seconds per run. Prints events/s and ratios to the baseline's throughput.

    Returns per path (ratio of the best runs, median of the per-repetition ratios).
    """
    rows = []
    ratios: dict[str, tuple[float, float]] = {}
    base = samples[baseline]
    for path, secs in samples.items():
        rates = [n / s for s in secs]
        best = min(base) / min(secs)  # throughput ratio = inverse time ratio
        paired = median([b / s for s, b in zip(secs, base, strict=True)])
        ratios[path] = (best, paired)
        rows.append(
            [
                path,
                f"{max(rates):,.0f}",
                f"{median(rates):,.0f}",
                f"{min(secs) * 1e6 / n:.2f}",
                f"{best:.2f}x",
                f"{paired:.2f}x",
                (notes or {}).get(path, ""),
            ]
        )
    print_table(
        ["path", "best ev/s", "median ev/s", "best µs/ev", "ratio best", "ratio median", "note"], rows, title=title
    )
    return ratios


# --- PostgreSQL ------------------------------------------------------------------------------
def copy_foreign_keys_and_insert_triggers(conn: psycopg.Connection, source: str, target: str) -> list[str]:
    """Give ``target`` the foreign keys and INSERT triggers of ``source`` (LIKE copies neither).

    Read from the catalog, so the baseline keeps the real table's shape if the schema changes.
    """
    added = []
    for (definition,) in conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
        (source,),
    ).fetchall():
        conn.execute(f"ALTER TABLE {target} ADD {definition}")
        added.append(f"ADD {definition}")
    for name, definition in conn.execute(
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = %s::regclass AND NOT tgisinternal AND (tgtype & 4) <> 0",  # 4 = fires on INSERT
        (source,),
    ).fetchall():
        statement = definition.replace(f"TRIGGER {name} ", f"TRIGGER {name}_{target} ", 1)
        statement = statement.replace(f" ON public.{source} ", f" ON {target} ", 1).replace(
            f" ON {source} ", f" ON {target} ", 1
        )
        conn.execute(statement)
        added.append(statement)
    return added or ["(nothing: no foreign keys or INSERT triggers)"]


class Budget:
    """Stops starting new repetitions when the next one would overrun the script's time budget."""

    def __init__(self, seconds: float) -> None:
        self.start = time.monotonic()
        self.seconds = seconds

    def allows(self, until_fraction: float, last_rep: float) -> bool:
        """True if a repetition as long as ``last_rep`` ends before ``until_fraction`` of the budget."""
        return time.monotonic() - self.start + last_rep <= self.seconds * until_fraction


def interleaved(fns: dict[str, Callable[[int], object]], n_batches: int, rng: random.Random) -> dict[str, float]:
    """Run batch ``i`` of every path, in a shuffled order, for each ``i``; total seconds per path.

    Interleaving at batch level means a burst of load from a neighbour slows every path alike.
    """
    totals = dict.fromkeys(fns, 0.0)
    order = list(fns)
    gc.collect()
    for i in range(n_batches):
        rng.shuffle(order)
        for path in order:
            t0 = time.perf_counter()
            fns[path](i)
            totals[path] += time.perf_counter() - t0
    return totals


def copy_rows(conn: psycopg.Connection, table: str, rows: Sequence[tuple[object, ...]]) -> None:
    with conn.cursor().copy(f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(PG_TYPES)
        write = copy.write_row
        for row in rows:
            write(row)
    conn.commit()


# The baseline copies exactly the rows the store writes (same tuple builder; the second argument,
# kept for the call sites below, is unused: rows carry no ingestion stamp any more).
def pg_row(e: ExecutionEvent, _now: object = None) -> tuple[object, ...]:
    return _execution_tuple(e)


def postgres_section(n: int, reps: int, extra: bool, budget: Budget) -> dict[str, tuple[float, float]]:
    with scratch_postgres() as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        conn = psycopg.connect(libpq_url(url))
        server = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
        print(f"PostgreSQL {server} (synchronous_commit={sync}), scratch database {conn.info.dbname}\n")
        raw_tables = ["raw_executions", "raw_executions_nofk"] + (["raw_executions_prebuilt"] if extra else [])
        for table in raw_tables:
            conn.execute(f"CREATE TABLE {table} (LIKE heuristic_executions INCLUDING ALL)")
        same_shape = copy_foreign_keys_and_insert_triggers(conn, "heuristic_executions", "raw_executions")
        if extra:
            copy_foreign_keys_and_insert_triggers(conn, "heuristic_executions", "raw_executions_prebuilt")
        conn.commit()
        print(
            "raw_executions = LIKE heuristic_executions INCLUDING ALL, plus:\n    " + "\n    ".join(same_shape) + "\n"
        )
        # heuristic_executions is append-only (statement triggers refuse UPDATE, DELETE, TRUNCATE).
        # Between runs the tables are emptied from a separate session whose triggers are off
        # (session_replication_role = replica, superuser only); the timed sessions are untouched.
        reset = psycopg.connect(libpq_url(url), autocommit=True)
        reset.execute("SET session_replication_role = replica")

        def empty_tables() -> None:
            reset.execute(f"TRUNCATE heuristic_executions, execution_rollups, {', '.join(raw_tables)}")

        def count(table: str) -> int:
            value = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # type: ignore[index]
            conn.commit()
            return int(value)

        store = SqlStore.open(url)
        ingest = Ingest(store, PipelineMetrics(CollectorRegistry()))
        rv, _ = ingest.register_rule_version("range_bias", "1.0.0", params={"window": 24}, source="src")
        rec = Recorder(url)  # defaults: batch 5000, flush interval 50 ms
        durs = durations(n)
        # Ingest and SqlStore both write heuristic_executions: each gets events of its own (fresh
        # SDK ids); the raw paths write their own tables and reuse the Ingest events.
        ingest_batches = batches(build_events(rv, durs))
        store_batches = batches(build_events(rv, durs))
        now0 = datetime.now(UTC)
        prebuilt = [[pg_row(e, now0) for e in batch] for batch in ingest_batches] if extra else []

        batch_paths: dict[str, Callable[[int], object]] = {
            "Ingest.write_executions": lambda i: ingest.write_executions(ingest_batches[i], uncounted=()),
            "SqlStore.insert_executions": lambda i: store.insert_executions(store_batches[i]),
            BASELINE: lambda i: copy_rows(
                conn, "raw_executions", [pg_row(e, datetime.now(UTC)) for e in ingest_batches[i]]
            ),
            "raw COPY, no FK": lambda i: copy_rows(
                conn, "raw_executions_nofk", [pg_row(e, datetime.now(UTC)) for e in ingest_batches[i]]
            ),
        }
        if extra:
            batch_paths["raw COPY, pre-built tuples"] = lambda i: copy_rows(
                conn, "raw_executions_prebuilt", prebuilt[i]
            )
        calls = batch_items(durs)
        samples: dict[str, list[float]] = {p: [] for p in batch_paths}
        whole = WholeRuns()
        backends = CpuMeter(
            lambda: [
                int(pid)
                for (pid,) in reset.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            ]
        )

        def copy_whole() -> None:
            for batch in ingest_batches:
                copy_rows(conn, "raw_executions", [pg_row(e) for e in batch])

        def timed(path: str, run: Callable[[], tuple[float, float, float]], table: str) -> float:
            empty_tables()
            gc.collect()
            before = backends.sample()
            total, loop, caller = run()
            after = backends.sample()
            if count(table) != n:
                raise RuntimeError(f"{path}: {count(table)} rows written to {table}, expected {n}")
            whole.add(path, total, loop, caller, before, after)
            return total

        def copy_run() -> tuple[float, float, float]:
            c0 = time.thread_time()
            t0 = time.perf_counter()
            copy_whole()
            return time.perf_counter() - t0, 0.0, time.thread_time() - c0

        sdk_runs: dict[str, Callable[[], tuple[float, float, float]]] = {
            SDK_SINGLE: lambda: run_recorder(rec, rv, durs),
            SDK_BATCH: lambda: run_recorder_batches(rec, rv, calls),
        }
        rng = random.Random(3)
        try:
            # Warm-up (untimed): connections, the staging table, psycopg's adapters, the writer.
            for fn in batch_paths.values():
                fn(0)
            rec.record_executions(rv, calls[0])
            rec.flush(60)
            last_rep = 0.0
            for rep in range(reps):
                if rep >= 2 and not budget.allows(0.65, last_rep):
                    print(f"  (stopped after {rep} repetitions to stay within the time budget)", file=sys.stderr)
                    break
                rep_start = time.monotonic()
                load = os.getloadavg()[0]
                # Whole runs, bracketed: COPY, SDK a, COPY, SDK b, COPY (a, b in a random order);
                # each SDK run's paired baseline is the mean of the two COPY runs around it.
                order = list(sdk_runs)
                rng.shuffle(order)
                copies = [timed(WHOLE_BASELINE, copy_run, "raw_executions")]
                for path in order:
                    secs = timed(path, sdk_runs[path], "heuristic_executions")
                    copies.append(timed(WHOLE_BASELINE, copy_run, "raw_executions"))
                    whole.paired[path].append((copies[-2] + copies[-1]) / 2 / secs)
                # The batch paths, interleaved at batch level.
                empty_tables()
                for path, secs in interleaved(batch_paths, len(ingest_batches), rng).items():
                    samples[path].append(secs)
                written = {t: count(t) for t in ("heuristic_executions", *raw_tables)}
                expected = {"heuristic_executions": 2 * n, **dict.fromkeys(raw_tables, n)}
                if written != expected:
                    raise RuntimeError(f"rows written {written}, expected {expected}")
                whole.loads.append((load, os.getloadavg()[0]))
                last_rep = time.monotonic() - rep_start
                print(
                    f"  postgres repetition {rep + 1}/{reps} done ({last_rep:.0f} s, load {load:.2f})", file=sys.stderr
                )
        finally:
            rec.close()
            store.close()
            conn.close()
            reset.close()
        whole.report(n)
        notes = {
            "raw COPY, no FK": "information",
            "raw COPY, pre-built tuples": "information (no row building)",
        }
        ratios = report(
            f"PostgreSQL, batch paths interleaved at batch level: {n:,} executions, batches of {BATCH:,}, "
            f"{len(samples[BASELINE])} repetitions",
            samples,
            BASELINE,
            n,
            notes,
        )
        for path in sdk_runs:
            ratios[path] = whole.ratios(path)
        return ratios


class WholeRuns:
    """Whole-run samples (an SDK run cannot be cut into batches): seconds, CPU split, paired ratios."""

    def __init__(self) -> None:
        self.secs: dict[str, list[float]] = {WHOLE_BASELINE: [], SDK_SINGLE: [], SDK_BATCH: []}
        self.loop: dict[str, list[float]] = {p: [] for p in self.secs}
        self.cpu: dict[str, list[tuple[float, float, float, float]]] = {p: [] for p in self.secs}
        self.paired: dict[str, list[float]] = {SDK_SINGLE: [], SDK_BATCH: []}
        self.loads: list[tuple[float, float]] = []

    def add(
        self,
        path: str,
        total: float,
        loop: float,
        caller: float,
        before: tuple[float, float, float],
        after: tuple[float, float, float],
    ) -> None:
        self.secs[path].append(total)
        self.loop[path].append(loop)
        process, writer, backends = (a - b for a, b in zip(after, before, strict=True))
        self.cpu[path].append((caller, writer, backends, process - caller - writer))

    def ratios(self, path: str) -> tuple[float, float]:
        return min(self.secs[WHOLE_BASELINE]) / min(self.secs[path]), median(self.paired[path])

    def report(self, n: int) -> None:
        rows = []
        for path, secs in self.secs.items():
            best, paired = (1.0, 1.0) if path == WHOLE_BASELINE else self.ratios(path)
            cpu = [statistics.median(c[i] for c in self.cpu[path]) * 1e6 / n for i in range(4)]
            loop = f"{median(self.loop[path]) * 1e6 / n:.2f}" if path != WHOLE_BASELINE else "-"
            rows.append(
                [
                    path,
                    len(secs),
                    f"{n / min(secs):,.0f}",
                    f"{n / median(secs):,.0f}",
                    f"{best:.2f}x",
                    f"{paired:.2f}x",
                    loop,
                    f"{cpu[0]:.2f}",
                    f"{cpu[1]:.2f}" if path != WHOLE_BASELINE else "-",
                    f"{cpu[3]:.2f}",
                    f"{cpu[2]:.2f}",
                ]
            )
        loads = ", ".join(f"{a:.1f}-{b:.1f}" for a, b in self.loads)
        print_table(
            [
                "whole run",
                "runs",
                "best ev/s",
                "median ev/s",
                "ratio best",
                "ratio paired median",
                "record µs/ev",
                "CPU caller thread µs/ev",
                "writer thread",
                "other (process - caller - writer)",
                "PostgreSQL",
            ],
            rows,
            title=(
                f"PostgreSQL, whole runs of {n:,} executions (COPY, SDK, COPY, SDK, COPY per repetition; CPU: "
                f"medians from /proc; 1-min load average per repetition: {loads})"
            ),
        )


# --- SQLite ----------------------------------------------------------------------------------
def sqlite_section(n: int, reps: int, budget: Budget) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory(prefix="hm-bench-") as tmp:
        path = f"{tmp}/bench.db"
        rec = Recorder(f"sqlite:///{path}")  # creates and migrates the file
        rv = rec.register_rule_version("range_bias", "1.0.0", params={"window": 24}, source="src")
        store = SqlStore.open(f"sqlite:///{path}")
        raw = sqlite3.connect(path, timeout=30, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            raw.execute(f"PRAGMA {pragma}")
        for (sql,) in raw.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'heuristic_executions' AND type IN ('table', 'index') "
            "AND sql IS NOT NULL"
        ).fetchall():
            raw.execute(sql.replace("heuristic_executions", "raw_executions"))
        # The real table is append-only (DELETE triggers; they do not fire on INSERT): to empty it
        # between runs the triggers are dropped and recreated around the DELETE.
        triggers = raw.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name IN ('heuristic_executions', 'execution_rollups') "
            "AND type = 'trigger'"
        ).fetchall()

        def empty_tables() -> None:
            raw.execute("BEGIN")
            for name, _sql in triggers:
                raw.execute(f'DROP TRIGGER "{name}"')
            raw.execute("DELETE FROM heuristic_executions")
            raw.execute("DELETE FROM execution_rollups")
            for _name, sql in triggers:
                raw.execute(sql)
            raw.execute("DELETE FROM raw_executions")
            raw.execute("COMMIT")
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")

        durs = durations(n)
        event_batches = batches(build_events(rv, durs))
        insert = f"INSERT INTO raw_executions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"

        def raw_executemany(i: int) -> None:
            rows = [
                (
                    datetime.fromtimestamp(e.started_at, UTC).replace(tzinfo=None).isoformat(" ", "microseconds"),
                    e.event_id.hex,
                    e.duration_seconds,
                    e.signal,
                    e.confidence,
                    e.rule_version.id,
                    STATUS_CODES[e.status],
                    MODE_CODES[e.mode],
                    e.outcome,
                    e.error_type,
                    None if e.backtest_run_id is None else e.backtest_run_id.hex,
                )
                for e in event_batches[i]
            ]
            raw.execute("BEGIN")
            raw.executemany(insert, rows)
            raw.execute("COMMIT")

        def count(table: str) -> int:
            return int(raw.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

        batch_paths: dict[str, Callable[[int], object]] = {
            "SqlStore.insert_executions": lambda i: store.insert_executions(event_batches[i]),
            SQLITE_BASELINE: raw_executemany,
        }
        recorder_path = "SDK Recorder (record N + flush)"
        samples: dict[str, list[float]] = {recorder_path: [], **{p: [] for p in batch_paths}}
        record_loop: list[float] = []
        rng = random.Random(5)
        try:
            last_rep = 0.0
            for rep in range(reps):
                if rep >= 2 and not budget.allows(0.95, last_rep):
                    print(f"  (stopped after {rep} repetitions to stay within the time budget)", file=sys.stderr)
                    break
                rep_start = time.monotonic()
                phases = ["recorder", "batches"]
                rng.shuffle(phases)
                for phase in phases:
                    empty_tables()
                    if phase == "recorder":
                        gc.collect()
                        total, loop, _cpu = run_recorder(rec, rv, durs)
                        samples[recorder_path].append(total)
                        record_loop.append(loop)
                        written, expected = count("heuristic_executions"), n
                    else:
                        for name, secs in interleaved(batch_paths, len(event_batches), rng).items():
                            samples[name].append(secs)
                        written, expected = count("heuristic_executions") + count("raw_executions"), 2 * n
                    if written != expected:
                        raise RuntimeError(f"{phase}: {written} rows written, expected {expected}")
                last_rep = time.monotonic() - rep_start
                print(f"  sqlite repetition {rep + 1}/{reps} done ({last_rep:.0f} s)", file=sys.stderr)
        finally:
            rec.close()
            store.close()
            raw.close()
        notes = {recorder_path: f"record loop alone: {median(record_loop) * 1e6 / n:.2f} µs/ev"}
        return report(
            f"SQLite (information): {n:,} executions, batches of {BATCH:,}, {len(record_loop)} repetitions",
            samples,
            SQLITE_BASELINE,
            n,
            notes,
        )


def verdict(best: float, paired: float) -> str:
    if best >= 0.8 and paired >= 0.8:
        return "PASS"
    return "PASS on best-of-N only" if best >= 0.8 else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and repetitions (~20 s)")
    parser.add_argument("--events", type=int, help="executions per path (default 200000, quick 50000)")
    parser.add_argument("--sqlite-events", type=int, help="executions per SQLite path (default 50000, quick 20000)")
    parser.add_argument("--reps", type=int, help="repetitions (default 6, quick 4)")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite section")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL section")
    parser.add_argument(
        "--budget",
        type=float,
        help="seconds: no new repetition starts if it would end later (default 150, quick 60; at least 2 run)",
    )
    parser.add_argument(
        "--extra",
        action="store_true",
        help="also time a raw COPY of pre-built tuples (the pure COPY ceiling; adds ~15 s)",
    )
    args = parser.parse_args()
    n = args.events or (50_000 if args.quick else 200_000)
    n_sqlite = args.sqlite_events or (20_000 if args.quick else 50_000)
    reps = args.reps or (4 if args.quick else 6)
    print_environment("heurmetrics persistence benchmark", {"events x reps": f"{n:,} x {reps}"})
    with sigterm_as_exit():
        budget = Budget(args.budget or (60.0 if args.quick else 150.0))
        pg = None if args.no_postgres else postgres_section(n, reps, args.extra, budget)
        sq = None if args.no_sqlite else sqlite_section(n_sqlite, reps, budget)
    rows = []
    for label, key in (
        ("SDK, record_execution x N + flush", SDK_SINGLE),
        ("SDK, record_executions + flush", SDK_BATCH),
        ("Ingest.write_executions", "Ingest.write_executions"),
        ("SqlStore.insert_executions", "SqlStore.insert_executions"),
    ):
        if pg is None:
            break
        best, paired = pg[key]
        rows.append(
            [f"PostgreSQL: {label} / raw COPY", f"{best:.2f}x", f"{paired:.2f}x", verdict(best, paired)]
        )
    if sq is not None:
        for label, key in (
            ("SDK Recorder", "SDK Recorder (record N + flush)"),
            ("SqlStore.insert_executions", "SqlStore.insert_executions"),
        ):
            best, paired = sq[key]
            rows.append([f"SQLite: {label} / raw executemany", f"{best:.2f}x", f"{paired:.2f}x", "info"])
    print_table(["throughput ratio (higher is better)", "best-of-N", "median (paired)", "target >= 0.80x"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
