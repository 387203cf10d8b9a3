"""Load benchmark of the exporter: executions through ``POST /v1/executions`` on loopback.

    .venv/bin/python benchmarks/bench_load.py [--total 1000000] [--batch 1000] [--concurrency 8]
                                             [--profile] [--breakdown] [--database-url URL]

Starts ``heurmetrics serve`` (one uvicorn process, as the CLI runs it) on a scratch PostgreSQL
database (created on the server of ``HEURMETRICS_BENCH_POSTGRES_URL`` /
``HEURMETRICS_TEST_POSTGRES_URL``, dropped afterwards; or ``--database-url`` of a database at
head), registers one rule version, then posts ``total`` executions in batches of ``batch`` from
``concurrency`` asyncio workers sharing one ``httpx.AsyncClient``. Request bodies are encoded
before the clock starts, so the client's JSON encoding is not in the measurement (the client
still shares the machine's cores with the server and PostgreSQL).

Reported: throughput (acknowledged executions per second of wall time), batch latency p50, p95,
p99 and max (request sent → response read), errors (anything but 202; target 0), the server's
peak resident memory (``VmHWM`` of /proc/<pid>/status; target < 300 MB), and the rows in the
store, which must equal the acknowledged executions. Targets: ≥ 50,000 executions/s, p95 < 200 ms.

``--memory`` also prints what holds the exporter's idle memory: the resident set of fresh
Python processes after importing each layer the exporter loads (interpreter, numpy, pandas,
pyarrow, SQLAlchemy + psycopg, FastAPI + uvicorn + pydantic, prometheus_client, the whole
exporter app), so the peak can be read as "imports" + "working set of the requests in flight".

``--profile`` samples the server with py-spy (``pip install py-spy`` into the venv) during the
run (``--gil``: only the thread holding the GIL, i.e. where the one Python core goes) and prints
the functions with the most samples and the share of each step of a request. ``--breakdown``
times the server-side steps of one request in-process afterwards (see :func:`breakdown`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
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
from _common import (
    print_environment,
    print_table,
    scratch_postgres,
    sigterm_as_exit,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url

from heurmetrics.store import migrations
from heurmetrics.store.engine import create_store_engine

TARGET_THROUGHPUT = 50_000
TARGET_P95_SECONDS = 0.200
TARGET_RSS_MB = 300


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    stack: ExitStack, url: str, log_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``heurmetrics serve`` on a free loopback port, logging to ``log_path``; it is stopped
    (terminate, then kill, each wait bounded) when ``stack`` closes. Returns the process and URL."""
    port = free_port()
    exe = Path(sys.executable).parent / "heurmetrics"
    if env is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEURMETRICS_")}
    log = stack.enter_context(log_path.open("w"))  # closed after the server has stopped
    proc = subprocess.Popen(
        [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
         "--database-url", url],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    stack.callback(stop)
    return proc, f"http://127.0.0.1:{port}"


def wait_healthy(proc: subprocess.Popen[bytes], base: str, log_path: Path, timeout: float = 60) -> None:
    """Wait until ``GET /healthz`` answers 200 (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            print(log_path.read_text()[-3000:])
            raise SystemExit(f"heurmetrics serve exited with {proc.returncode} (log: {log_path})")
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"heurmetrics serve did not start (log: {log_path})")
        time.sleep(0.2)


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each local PostgreSQL backend serving ``database``, by pid."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            if f" {database} " not in (entry / "cmdline").read_text().replace("\0", " "):
                continue
            out[int(entry.name)] = cpu_seconds(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots by the processes alive at the second one."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def build_bodies(total: int, batch: int) -> list[bytes]:
    outcomes = ("bullish", "bearish", "neutral", "no_signal")
    modes = ("live", "paper")
    bodies = []
    for b in range(0, total, batch):
        items = []
        for i in range(b, min(b + batch, total)):
            items.append(
                {
                    "event_id": str(uuid.uuid4()),
                    "rule": "load_rule",
                    "rule_version": "1.0.0",
                    "duration_seconds": (i % 50) / 1000,
                    "status": "ok",
                    "outcome": outcomes[i % 4],
                    "signal": 0.5,
                    "confidence": (i % 11) / 10,
                    "mode": modes[i % 2],
                }
            )
        bodies.append(json.dumps({"executions": items}).encode())
    return bodies


async def post_all(
    base: str, bodies: list[bytes], concurrency: int
) -> tuple[list[float], int, collections.Counter[str]]:
    """Post every body; returns (latencies, acknowledged executions, errors by kind)."""
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    acked = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal acked
            while True:
                try:
                    body = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/executions", content=body, headers={"Content-Type": "application/json"}
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if response.status_code == 202:
                    acked += response.json()["accepted"]
                else:
                    errors[f"HTTP {response.status_code}"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, acked, errors


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarise_profile(raw: Path, top: int = 15) -> None:
    """Top functions of a py-spy ``--format raw`` (collapsed stacks) file."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        print("py-spy recorded no samples")
        return
    rows = [[f[:110], f"{n / total:.1%}"] for f, n in own.most_common(top)]
    print_table(["function (own samples; py-spy, all server threads)", "share"], rows,
                title=f"Server profile: {total:,} samples, by own time")
    rows = []
    for label, needle in PROFILE_STEPS:
        n = sum(c for f, c in inclusive.items() if needle in f)
        rows.append([label, f"{n / total:.1%}"])
    print_table(["step of POST /v1/executions (inclusive samples)", "share"], rows,
                title="Server profile by step (a sample counts once per step whose frame is on its stack)")


#: Frames that mark the steps of one request (substring of py-spy's "function (file:line)").
PROFILE_STEPS = (
    ("request body: json.loads (FastAPI reads and decodes the body)", "JSONDecoder.decode"),
    ("request body: pydantic validation of the decoded dict", "TypeAdapter.validate_python"),
    ("handler post_executions (all of it)", "post_executions (heurmetrics/server/routes/executions.py"),
    ("  Ingest.make_execution (per-item validation, event build)", "make_execution (heurmetrics/ingest/service.py"),
    ("  Ingest.write_executions (store + counting)", "write_executions (heurmetrics/ingest/service.py"),
    ("    SqlExecutions._insert_executions_pg (COPY, INSERT..SELECT, RETURNING)", "_insert_executions_pg"),
    ("    psycopg waiting for the server", "Connection.wait (psycopg"),
    ("    PipelineMetrics.observe_execution", "observe_execution"),
    ("response serialisation", "serialize_response"),
    ("threadpool hand-off (anyio worker threads waiting/notifying)", "Condition."),
    ("event loop idle (epoll)", "EpollSelector.select"),
)


def breakdown(url: str, batch: int) -> None:
    """The server-side steps of one request, timed in this process (best of 7, per execution).

    What ``post_executions`` does, piece by piece, on the same database: FastAPI's body path
    (``json.loads`` then pydantic validation of the dict), the raw-JSON alternative
    (``model_validate_json`` on the body bytes), the per-item ``Ingest.make_execution``, and
    ``Ingest.write_executions`` (COPY, INSERT … SELECT … ON CONFLICT … RETURNING, commit, counting)
    with its CPU time in this process and its wall time (which includes PostgreSQL and the commit).
    """
    import timeit

    from prometheus_client import CollectorRegistry
    from pydantic import TypeAdapter

    from heurmetrics.ingest import Ingest
    from heurmetrics.metrics.pipeline import PipelineMetrics
    from heurmetrics.server.models import ExecutionBatchIn
    from heurmetrics.store.sql_store import SqlStore

    body = build_bodies(batch, batch)[0]
    adapter = TypeAdapter(ExecutionBatchIn)
    store = SqlStore.open(url)
    ingest = Ingest(store, PipelineMetrics(CollectorRegistry()))
    rv = ingest.rule_version("load_rule", "1.0.0")
    parsed = ExecutionBatchIn.model_validate_json(body)

    def make() -> list[Any]:
        return [
            ingest.make_execution(
                rv, duration_seconds=i.duration_seconds, status=i.status, outcome=i.outcome, signal=i.signal,
                confidence=i.confidence, mode=i.mode, started_at=None, error_type=i.error_type,
                event_id=uuid.uuid4(), backtest_run_id=i.backtest_run_id,
            )
            for i in parsed.executions
        ]

    def best(fn: Any, number: int = 10) -> float:
        return min(timeit.repeat(fn, number=number, repeat=7)) / number / batch * 1e6

    rows = [
        ["json.loads(body) (FastAPI reads the body)", f"{best(lambda: json.loads(body)):.2f}"],
        ["TypeAdapter.validate_python(dict) (FastAPI validates it)",
         f"{best(lambda: adapter.validate_python(json.loads(body))) - best(lambda: json.loads(body)):.2f}"],
        ["  both together (FastAPI's path today)", f"{best(lambda: adapter.validate_python(json.loads(body))):.2f}"],
        ["ExecutionBatchIn.model_validate_json(body) (alternative)",
         f"{best(lambda: ExecutionBatchIn.model_validate_json(body)):.2f}"],
        ["Ingest.make_execution per item", f"{best(make):.2f}"],
    ]
    walls, cpus = [], []
    for _ in range(7):
        events = make()
        t0, c0 = time.perf_counter(), time.process_time()
        ingest.write_executions(events)
        walls.append((time.perf_counter() - t0) / batch * 1e6)
        cpus.append((time.process_time() - c0) / batch * 1e6)
    rows.append(["Ingest.write_executions: CPU in the Python process", f"{min(cpus):.2f}"])
    rows.append(["Ingest.write_executions: wall (incl. PostgreSQL, commit)", f"{min(walls):.2f}"])
    store.close()
    print_table(["server-side step (in-process, best of 7)", "us/execution"], rows,
                title=f"Breakdown of one POST /v1/executions of {batch:,} executions")


def executions_counted(base: str) -> float:
    """``heuristic_executions_total`` summed over its series, from the exporter's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from heurmetrics.metrics import definitions as d

    page = httpx.get(f"{base}/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == d.HEURISTIC_EXECUTIONS.sample_name
    )


#: Import layers of the exporter, cumulative: what its idle resident memory is made of.
MEMORY_LAYERS = (
    ("python interpreter", ""),
    ("+ numpy", "import numpy"),
    ("+ pyarrow (pandas imports it when installed)", "import pyarrow"),
    ("+ pandas", "import pandas"),
    ("+ SQLAlchemy, psycopg, alembic", "import sqlalchemy, psycopg, alembic.command"),
    ("+ FastAPI, uvicorn, pydantic", "import fastapi, uvicorn, pydantic"),
    ("+ prometheus_client", "import prometheus_client"),
    ("+ heurmetrics exporter app and CLI", "import heurmetrics.server.app, heurmetrics.cli"),
)


def memory_breakdown() -> None:
    """Resident memory of fresh interpreters after each import layer (see the module doc)."""
    rows = []
    code = ""
    previous = 0.0
    for name, statement in MEMORY_LAYERS:
        code += statement + "\n"
        probe = code + (
            "for line in open('/proc/self/status'):\n"
            "    if line.startswith('VmRSS:'): print(int(line.split()[1]))\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        mb = int(out.split()[-1]) / 1024
        rows.append([name, f"{mb:.0f} MB", f"+{mb - previous:.0f} MB"])
        previous = mb
    print_table(["layer (cumulative imports)", "RSS", "added"], rows, title="What the exporter's idle memory holds")


def run(args: argparse.Namespace, url: str) -> int:
    engine = create_store_engine(url)
    migrations.upgrade(engine)
    log = Path(tempfile.mkdtemp(prefix="bench_load_")) / "serve.log"
    with ExitStack() as stack:
        proc, base = start_serve(stack, url, log)
        wait_healthy(proc, base, log)
        response = httpx.post(f"{base}/v1/rule-versions", json={"rule": "load_rule", "version": "1.0.0"}, timeout=30)
        response.raise_for_status()

        print(f"encoding {args.total:,} executions in batches of {args.batch:,} ...", flush=True)
        bodies = build_bodies(args.total, args.batch)
        warm = build_bodies(min(args.batch * 5, args.total), args.batch)
        asyncio.run(post_all(base, warm, min(args.concurrency, len(warm))))  # warm-up: caches, pool, COPY path
        rss_before = proc_status_kb(proc.pid, "VmRSS")

        profiler = None
        raw = log.with_name("profile.raw")
        if args.profile:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            profiler = subprocess.Popen(
                [py_spy, "record", "--pid", str(proc.pid), "--format", "raw", "--output", str(raw),
                 "--rate", "200", "--nonblocking", "--gil"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            time.sleep(1.0)
        database = make_url(url).database or ""
        cpu0 = (cpu_seconds(proc.pid), postgres_cpu(database), time.process_time())
        started = time.perf_counter()
        latencies, acked, errors = asyncio.run(post_all(base, bodies, args.concurrency))
        elapsed = time.perf_counter() - started
        cpu = (
            cpu_seconds(proc.pid) - cpu0[0],
            cpu_delta(cpu0[1], postgres_cpu(database)),
            time.process_time() - cpu0[2],
        )
        backends = len(postgres_cpu(database))
        if profiler is not None:
            profiler.send_signal(2)  # SIGINT: py-spy writes its output and exits
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                profiler.kill()
        peak_kb = proc_status_kb(proc.pid, "VmHWM")
        rss_after = proc_status_kb(proc.pid, "VmRSS")
        counted = executions_counted(base)
        with engine.connect() as conn:
            rows = int(conn.execute(text("SELECT count(*) FROM heuristic_executions")).scalar_one())
        engine.dispose()
        warm_rows = sum(len(json.loads(b)["executions"]) for b in warm)

    throughput = acked / elapsed
    p50, p95, p99 = (percentile(latencies, q) for q in (50, 95, 99))
    print_table(
        ["measure", "value", "target"],
        [
            ["executions posted", f"{args.total:,}", ""],
            ["batch size / concurrency", f"{args.batch:,} / {args.concurrency}", ""],
            ["wall time", f"{elapsed:.1f} s", ""],
            ["throughput (acknowledged)", f"{throughput:,.0f} /s", f">= {TARGET_THROUGHPUT:,} /s"],
            ["batch latency p50", f"{p50 * 1000:.0f} ms", ""],
            ["batch latency p95", f"{p95 * 1000:.0f} ms", f"< {TARGET_P95_SECONDS * 1000:.0f} ms"],
            ["batch latency p99", f"{p99 * 1000:.0f} ms", ""],
            ["batch latency max", f"{max(latencies, default=float('nan')) * 1000:.0f} ms", ""],
            ["errors", str(sum(errors.values())) + (f" {dict(errors)}" if errors else ""), "0"],
            ["server peak RSS (VmHWM)", f"{peak_kb / 1024:.0f} MB", f"< {TARGET_RSS_MB} MB"],
            ["server RSS before / after", f"{rss_before / 1024:.0f} / {rss_after / 1024:.0f} MB", ""],
            ["rows in store (minus warm-up)", f"{rows - warm_rows:,}", f"= acknowledged ({acked:,})"],
            ["heuristic_executions_total (with warm-up)", f"{counted:,.0f}", f"= rows ({rows:,})"],
            ["CPU: server process", f"{cpu[0]:.1f} s ({cpu[0] / elapsed:.2f} cores, "
             f"{cpu[0] / max(acked, 1) * 1e6:.0f} us/execution)", ""],
            ["CPU: PostgreSQL backends of the database", f"{cpu[1]:.1f} s ({cpu[1] / elapsed:.2f} cores, "
             f"{cpu[1] / max(acked, 1) * 1e6:.0f} us/execution; {backends} backends at the end)", ""],
            ["CPU: this load client", f"{cpu[2]:.1f} s ({cpu[2] / elapsed:.2f} cores)", ""],
        ],
        title="Load: POST /v1/executions on loopback against heurmetrics serve (PostgreSQL)",
    )
    ok = (
        not errors
        and rows - warm_rows == acked == args.total
        and throughput >= TARGET_THROUGHPUT
        and p95 < TARGET_P95_SECONDS
        and peak_kb / 1024 < TARGET_RSS_MB
    )
    correct = not errors and rows - warm_rows == acked and counted == rows
    print(f"correctness (no errors, rows = acknowledged): {'OK' if correct else 'FAILED'}; "
          f"all targets met: {'yes' if ok else 'no'}")
    if args.breakdown:
        breakdown(url, args.batch)
    if args.memory:
        memory_breakdown()
    if args.profile and raw.exists():
        summarise_profile(raw)
    elif args.profile:
        print("py-spy produced no profile (is it installed, and may this user ptrace?)")
    return 0 if correct else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--total", type=int, default=1_000_000, help="executions to post (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=1000, help="executions per request (default 1,000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy")
    parser.add_argument("--breakdown", action="store_true", help="time the server-side steps in-process")
    parser.add_argument("--memory", action="store_true", help="print what holds the exporter's idle memory")
    parser.add_argument("--database-url", help="use this PostgreSQL database (at head) instead of a scratch one")
    args = parser.parse_args()
    print_environment(
        "bench_load: POST /v1/executions",
        {"total": f"{args.total:,}", "batch": f"{args.batch:,}", "concurrency": str(args.concurrency),
         "uvicorn": _version("uvicorn"), "fastapi": _version("fastapi"), "pydantic": _version("pydantic")},
    )
    with sigterm_as_exit():
        if args.database_url:
            return run(args, args.database_url)
        with scratch_postgres() as url:
            return run(args, url)


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


if __name__ == "__main__":
    raise SystemExit(main())
