"""Exporter replicas: CPU per execution and throughput of 1 and N ``heurmetrics serve`` processes.

    .venv/bin/python benchmarks/bench_replicas.py [--total 200000] [--batch 1000] [--concurrency 8]
                                                 [--replicas 1 2]

For each replica count, starts that many ``heurmetrics serve`` processes on one scratch
PostgreSQL database (as bench_load does for one), registers a rule version, and posts ``total``
executions with mixed statuses, outcomes and modes in batches of ``batch``; ``concurrency``
asyncio workers are spread evenly over the replicas (each worker posts to one replica, the way
``ExporterClient`` round robin spreads batches). Bodies are encoded before the clock starts.

Reported per replica count: wall executions/s, batch latency p50/p95, the exporter processes'
CPU time per execution (from ``/proc/<pid>/stat``: user + system, summed over the replicas; this
is what a replica costs, independent of how busy the shared machine is), PostgreSQL backends' CPU
per execution, and rows == acknowledged.

On a 2-core machine two replicas compete with PostgreSQL and the load client for the same cores:
expect the CPU per execution to stay flat (the cost of a replica) and the wall rate to rise only
as far as idle cores allow.

``--phases`` instead splits the exporter's CPU per execution by phase, in this process and without
HTTP: the route's work (msgspec decode, the events, ``Ingest.write_executions``) on a scratch
PostgreSQL database, with ``time.process_time`` timers wrapped around the store's and the
ingest's steps (the timers add well under 0.1 µs per execution).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from _common import print_environment, print_table, scratch_postgres, sigterm_as_exit
from bench_load import cpu_delta, cpu_seconds, percentile, post_all, postgres_cpu, start_serve, wait_healthy
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine

RULE, VERSION = "replica_rule", "1.0.0"


def mixed_bodies(total: int, batch: int) -> list[bytes]:
    """Request bodies of mixed status (ok/error/timeout), outcome and mode (live/paper/backtest)."""
    outcomes = ("bullish", "bearish", "neutral", "no_signal")
    modes = ("live", "paper", "backtest")
    bodies = []
    for start in range(0, total, batch):
        items = []
        for i in range(start, min(start + batch, total)):
            item: dict[str, object] = {
                "event_id": str(uuid.uuid4()),
                "rule": RULE,
                "rule_version": VERSION,
                "duration_seconds": (i % 50) / 1000,
                "mode": modes[i % 3],
            }
            if i % 17 == 0:
                item.update(status="error", error_type="ValueError")
            elif i % 23 == 0:
                item.update(status="timeout")
            else:
                item.update(status="ok", outcome=outcomes[i % 4], signal=0.5, confidence=(i % 11) / 10)
            items.append(item)
        bodies.append(json.dumps({"executions": items}).encode())
    return bodies


def start_replicas(stack: ExitStack, url: str, n: int) -> list[tuple[subprocess.Popen[bytes], str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEURMETRICS_")}
    env["HEURMETRICS_PERFORMANCE_SNAPSHOT_SECONDS"] = "0"
    logs = Path(tempfile.mkdtemp(prefix="bench_replicas_"))
    out = [start_serve(stack, url, logs / f"serve-{i}.log", env) for i in range(n)]  # all start at once
    for i, (proc, base) in enumerate(out):
        wait_healthy(proc, base, logs / f"serve-{i}.log")
    return out


async def post_spread(bases: list[str], bodies: list[bytes], concurrency: int) -> tuple[list[float], int, int]:
    """Bodies dealt round robin to the replicas, ``concurrency`` workers split evenly among them."""
    shares = [bodies[i :: len(bases)] for i in range(len(bases))]
    per = max(1, concurrency // len(bases))
    results = await asyncio.gather(*(post_all(base, share, per) for base, share in zip(bases, shares, strict=True)))
    latencies = [lat for r in results for lat in r[0]]
    return latencies, sum(r[1] for r in results), sum(sum(r[2].values()) for r in results)


def measure(url: str, n: int, args: argparse.Namespace) -> list[str]:
    engine = create_store_engine(url)
    count = text("SELECT count(*) FROM heuristic_executions")  # the table is append-only: count the growth
    with engine.connect() as conn:
        rows_before = int(conn.execute(count).scalar_one())
    with ExitStack() as stack:
        replicas = start_replicas(stack, url, n)
        bases = [base for _proc, base in replicas]
        httpx.post(f"{bases[0]}/v1/rule-versions", json={"rule": RULE, "version": VERSION}, timeout=30)
        bodies = mixed_bodies(args.total, args.batch)
        warm = mixed_bodies(args.batch * 4 * n, args.batch)
        asyncio.run(post_spread(bases, warm, args.concurrency))  # caches, pools, COPY path on every replica
        database = make_url(url).database or ""
        pids = [proc.pid for proc, _base in replicas]
        cpu0 = (sum(cpu_seconds(p) for p in pids), postgres_cpu(database))
        started = time.perf_counter()
        latencies, acked, errors = asyncio.run(post_spread(bases, bodies, args.concurrency))
        elapsed = time.perf_counter() - started
        server_cpu = sum(cpu_seconds(p) for p in pids) - cpu0[0]
        pg_cpu = cpu_delta(cpu0[1], postgres_cpu(database))
    with engine.connect() as conn:
        rows = int(conn.execute(count).scalar_one()) - rows_before
    engine.dispose()
    rows -= sum(len(json.loads(b)["executions"]) for b in warm)
    return [
        str(n),
        f"{acked / elapsed:,.0f}",
        f"{percentile(latencies, 50) * 1000:.0f}",
        f"{percentile(latencies, 95) * 1000:.0f}",
        f"{server_cpu / max(acked, 1) * 1e6:.1f}",
        f"{server_cpu / elapsed:.2f}",
        f"{pg_cpu / max(acked, 1) * 1e6:.1f}",
        f"{errors}",
        "yes" if rows == acked == args.total else f"NO ({rows:,} rows, {acked:,} acked)",
    ]


def phases(url: str, total: int) -> list[list[str]]:
    """CPU per execution of each phase of the route's work, in this process (see the module doc)."""
    from prometheus_client import CollectorRegistry

    from heurmetrics.execution_builder import build_execution
    from heurmetrics.ids import uuid7
    from heurmetrics.ingest import Ingest
    from heurmetrics.metrics.pipeline import PipelineMetrics
    from heurmetrics.server import execution_decoder
    from heurmetrics.store import executions as ex
    from heurmetrics.store.sql_store import SqlStore

    gc.freeze()  # as `serve` does (heurmetrics.cli.main.tune_gc_for_serving)
    gc.set_threshold(20_000)
    spent: collections.defaultdict[str, float] = collections.defaultdict(float)

    def timed(name: str, f: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - started

        return wrapper

    store = SqlStore.open(url)
    ingest = Ingest(store, PipelineMetrics(CollectorRegistry()))
    ingest.register_rule_version(RULE, VERSION)
    store.executions.insert_executions = timed("store write, whole", store.executions.insert_executions)  # type: ignore[method-assign]
    steps = (("  rows", "_rows"), ("  start-time claims", "_send_start_claims"),
             ("  late rows' rollups (below the watermark)", "_roll_up_late"))  # fmt: skip
    for name, attr in steps:  # on this store's instance only
        setattr(store.executions, attr, timed(name, getattr(store.executions, attr)))
    copy_rows = ex._copy_rows
    ex._copy_rows = timed("  COPY (format + send)", copy_rows)
    ingest.claims.settle = timed("claim + metrics (Claims.settle)", ingest.claims.settle)  # type: ignore[method-assign]
    ingest.metrics.observe_executions = timed("  metrics", ingest.metrics.observe_executions)  # type: ignore[method-assign]

    def route(body: bytes) -> None:  # the route's fast path (heurmetrics.server.routes.executions)
        t0 = time.process_time()
        items = execution_decoder.decode(body)
        assert items is not None
        t1 = time.process_time()
        versions: dict[tuple[str, str], Any] = {}
        events = []
        for i in items:
            key = (i.rule, i.rule_version)
            rv = versions.get(key)
            if rv is None:
                rv = versions[key] = ingest.rule_version(*key)
            events.append(build_execution(
                rv, i.duration_seconds, i.status, i.outcome, i.signal, i.confidence, i.mode, None, i.error_type,
                i.event_id, i.backtest_run_id, uuid7,
            ))  # fmt: skip
        t2 = time.process_time()
        ingest.write_executions(events)
        spent["write_executions, whole"] += time.process_time() - t2
        spent["msgspec decode"] += t1 - t0
        spent["events (lookups, build_execution)"] += t2 - t1

    try:
        for body in mixed_bodies(5000, 1000):  # warm: caches, pool, partitions
            route(body)
        spent.clear()
        bodies = mixed_bodies(total, 1000)
        started = time.process_time()
        for body in bodies:
            route(body)
        whole = time.process_time() - started
    finally:
        ex._copy_rows = copy_rows
        store.close()
    order = ["msgspec decode", "events (lookups, build_execution)", "write_executions, whole", "store write, whole",
             "  rows", "  start-time claims", "  COPY (format + send)", "  late rows' rollups (below the watermark)",
             "claim + metrics (Claims.settle)", "  metrics"]  # fmt: skip
    out = [[name, f"{spent[name] / total * 1e6:.2f}"] for name in order]
    return [*out, ["total (in process, no HTTP)", f"{whole / total * 1e6:.2f}"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=200_000, help="executions per run (default 200,000)")
    parser.add_argument("--batch", type=int, default=1000, help="executions per request (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight in all (default 8)")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2], help="replica counts (default 1 2)")
    parser.add_argument("--phases", action="store_true", help="CPU per execution by phase, in process, no HTTP")
    args = parser.parse_args()
    if args.phases:
        with sigterm_as_exit(), scratch_postgres() as url:
            engine = create_store_engine(url)
            migrations.upgrade(engine)
            engine.dispose()
            rows = phases(url, args.total)
        print_table(["phase", "CPU us/execution"], rows, title=f"the route's work, {args.total:,} mixed executions")
        return 0
    print_environment(
        "bench_replicas: N exporter replicas on one PostgreSQL database",
        {"total": f"{args.total:,}", "batch": f"{args.batch:,}", "concurrency": str(args.concurrency)},
    )
    with sigterm_as_exit(), scratch_postgres() as url:
        engine = create_store_engine(url)
        migrations.upgrade(engine)
        engine.dispose()
        rows = [measure(url, n, args) for n in args.replicas]
    print_table(
        [
            "replicas",
            "executions/s (wall)",
            "batch p50 ms",
            "batch p95 ms",
            "exporter CPU us/execution",
            "exporter cores busy",
            "PostgreSQL CPU us/execution",
            "errors",
            "rows = acked",
        ],
        rows,
        title="POST /v1/executions, mixed statuses/outcomes/modes, spread over N replicas",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
