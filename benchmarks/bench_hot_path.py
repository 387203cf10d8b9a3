"""Hot-path benchmark: ``Recorder.record_execution`` against naive prometheus_client code.

    .venv/bin/python benchmarks/bench_hot_path.py [--quick] [--calls N] [--reps R] [--no-profile]

What is timed: a tight loop of ``calls`` calls, per variant, repeated ``reps`` times with the
variants interleaved (in a different order each repetition). Reported per variant: best and
median µs per call, and the ratio to each naive baseline as the median of the per-repetition
ratios (both sides measured seconds apart in the same process, so machine noise mostly cancels).

Variants
  naive 2 metrics   c.labels(rule, version, mode, status, outcome).inc();
                    h.labels(rule, version, mode).observe(d)
                    (a Counter and a Histogram built from heurmetrics.metrics.definitions: same
                    names, label names and buckets as the real ones, on their own registry)
  naive 3 metrics   the same plus the confidence Histogram: ...; hc.labels(rule, version, mode).observe(0.7)
                    (what record_execution updates for this call, so the like-for-like baseline)
  recorder, writer deferred
                    rec.record_execution(rv, duration_seconds=d, status="ok", outcome="bullish",
                    confidence=0.7): validation, Prometheus update, enqueue. The background writer
                    never runs during the loop (see below): this is the per-call cost of the hot
                    path itself.
  recorder, writer live (SQLite)
                    the same call on a Recorder with the default writer settings (batch 5000, 50 ms)
                    writing to a SQLite file: the wall time per call includes the time the calling
                    thread waits for the GIL while the writer thread converts and inserts batches.
                    The backlog left at the end of the loop is flushed untimed; "incl. flush" adds it.

How the writer is kept out of the deferred loop: the delivery thread
(``heurmetrics.sdk.delivery.DeliveryLoop._run``) takes a batch whenever it is awake and the queue
is non-empty; it only sleeps, in ``_idle()`` on ``_wake.wait(flush_interval)``, after a cycle that
moved nothing. ``put()`` never sets ``_wake`` (unless the queue is full); ``flush()``/``close()``
do. A Recorder built with ``flush_interval=3600`` therefore sleeps through the timed loop once it
has gone idle (the script flushes and waits 30 ms before timing). The script checks it: the queue
must have grown by exactly ``calls`` during the loop, else the repetition is discarded and
reported. The queue is then cleared untimed (those events are not written: the persistence
benchmark measures writing). No product code is patched.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import pstats
import random
import re
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, print_environment, print_table
from prometheus_client import CollectorRegistry, Counter, Histogram

from heurmetrics.domain import ExecutionEvent, RuleVersion
from heurmetrics.metrics import definitions as d
from heurmetrics.sdk.recorder import Recorder
from heurmetrics.validation import check_execution

RULE, VERSION, MODE, STATUS, OUTCOME, CONFIDENCE = "range_bias", "1.0.0", "live", "ok", "bullish", 0.7

NAIVE2 = "naive 2 metrics (counter + duration hist)"
NAIVE3 = "naive 3 metrics (+ confidence hist)"
DEFERRED = "recorder, writer deferred"
LIVE = "recorder, writer live (SQLite)"


def durations(n: int, seed: int = 7) -> list[float]:
    """Log-uniform 100 us .. 1 s: every duration bucket is hit, like real rule latencies."""
    rng = random.Random(seed)
    lo, hi = math.log(1e-4), math.log(1.0)
    return [math.exp(rng.uniform(lo, hi)) for _ in range(n)]


def naive_metrics() -> tuple[Counter, Histogram, Histogram]:
    registry = CollectorRegistry()

    def make(spec: d.MetricSpec, cls: type) -> object:
        kwargs: dict[str, object] = {"labelnames": spec.labels, "registry": registry}
        if spec.buckets is not None:
            # prometheus_client needs one finite bound; an only-+Inf histogram (the confidence
            # family's series budget) gets 1.0, which every confidence (0-1) falls under anyway.
            kwargs["buckets"] = spec.buckets or (1.0,)
        return cls(spec.name, spec.documentation, **kwargs)

    return (
        make(d.HEURISTIC_EXECUTIONS, Counter),  # type: ignore[return-value]
        make(d.HEURISTIC_EXECUTION_DURATION, Histogram),
        make(d.HEURISTIC_EXECUTION_CONFIDENCE, Histogram),
    )


# --- the timed loops (each binds what it uses to locals, like a careful caller would) ----------
def loop_naive2(c: Counter, h: Histogram, durs: list[float]) -> float:
    rule, version, mode, status, outcome = RULE, VERSION, MODE, STATUS, OUTCOME
    clabels, hlabels = c.labels, h.labels
    t0 = time.perf_counter_ns()
    for dur in durs:
        clabels(rule, version, mode, status, outcome).inc()
        hlabels(rule, version).observe(dur)  # duration: (rule, rule_version), the series budget
    return (time.perf_counter_ns() - t0) / 1e3 / len(durs)


def loop_naive3(c: Counter, h: Histogram, hc: Histogram, durs: list[float]) -> float:
    rule, version, mode, status, outcome, conf = RULE, VERSION, MODE, STATUS, OUTCOME, CONFIDENCE
    clabels, hlabels, hclabels = c.labels, h.labels, hc.labels
    t0 = time.perf_counter_ns()
    for dur in durs:
        clabels(rule, version, mode, status, outcome).inc()
        hlabels(rule, version).observe(dur)  # duration: (rule, rule_version), the series budget
        hclabels(rule, version, mode).observe(conf)
    return (time.perf_counter_ns() - t0) / 1e3 / len(durs)


def loop_recorder(rec: Recorder, rv: RuleVersion, durs: list[float]) -> float:
    record, status, outcome, conf = rec.record_execution, STATUS, OUTCOME, CONFIDENCE
    t0 = time.perf_counter_ns()
    for dur in durs:
        record(rv, duration_seconds=dur, status=status, outcome=outcome, confidence=conf)
    return (time.perf_counter_ns() - t0) / 1e3 / len(durs)


def wait_until_idle(rec: Recorder, timeout: float = 10.0) -> None:
    """Flush, then give the writer thread time to go back to sleep on its empty queue."""
    rec.flush(timeout)
    time.sleep(0.03)


# --- profiling -------------------------------------------------------------------------------
def profile_recorder(rec: Recorder, rv: RuleVersion, durs: list[float]) -> None:
    profiler = cProfile.Profile()
    record, status, outcome, conf = rec.record_execution, STATUS, OUTCOME, CONFIDENCE
    gc.collect()
    profiler.enable()
    for dur in durs:
        record(rv, duration_seconds=dur, status=status, outcome=outcome, confidence=conf)
    profiler.disable()
    rec._writer.queue.clear()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (filename, lineno, func), (_cc, ncalls, tottime, cumtime, _callers) in entries[:15]:
        if not lineno:
            where = "built-in"
        elif filename.startswith("<"):
            where = "code generated by exec: a dataclass __init__ or namedtuple __new__"
        else:
            where = f"{Path(filename).parent.name}/{Path(filename).name}:{lineno}"
        if "_lsprof" in func:
            continue  # the profiler's own disable() call
        func = re.sub(r" at 0x[0-9a-f]+", "", func)
        rows.append(
            [
                f"{func} ({where})",
                ncalls // len(durs) if ncalls >= len(durs) else f"{ncalls / len(durs):.2f}",
                f"{tottime / len(durs) * 1e6:.3f}",
                f"{cumtime / len(durs) * 1e6:.3f}",
                f"{tottime / total:.0%}",
            ]
        )
    print_table(
        ["function (cProfile, sorted by own time)", "calls/rec", "own µs/rec", "cum µs/rec", "own %"],
        rows,
        title=f"cProfile of {len(durs):,} record_execution calls (writer deferred; cProfile inflates "
        "small calls, read the shares, not the absolute times)",
    )


def breakdown(rec: Recorder, rv: RuleVersion, number: int) -> None:
    """Each step of record_execution timed on its own (best of 5 timeit runs, ns per call).

    Uses only names that are stable across the product's implementations; the inside of the
    metric update is shown by the cProfile table above.
    """
    metrics = rec.metrics
    ids = rec._ids
    event = ExecutionEvent(
        ids.next(), rv, time.time(), 0.004, STATUS, OUTCOME, None, CONFIDENCE, MODE, None, None
    )
    metrics.observe_execution(event)
    env: dict[str, object] = {
        "rec": rec,
        "rv": rv,
        "check_execution": check_execution,
        "time": time,
        "ids": ids,
        "ExecutionEvent": ExecutionEvent,
        "metrics": metrics,
        "event": event,
        "put": rec._writer.put,
        "str": str,
    }
    steps: list[tuple[str, str, bool]] = [  # (label, statement, part of the sum)
        (
            "record_execution (whole call)",
            "rec.record_execution(rv, duration_seconds=0.004, status='ok', outcome='bullish', confidence=0.7)",
            False,
        ),
        (
            "  check_execution(...)",
            "check_execution(status='ok', mode='live', duration_seconds=0.004, outcome='bullish', signal=None, "
            "confidence=0.7, error_type=None)",
            True,
        ),
        ("  time.time() (default started_at)", "time.time()", True),
        ("  EventIds.next()", "ids.next()", True),
        (
            "  ExecutionEvent(...) (11 args)",
            "ExecutionEvent(event.event_id, rv, 1.0, 0.004, 'ok', 'bullish', None, 0.7, 'live', None, None)",
            True,
        ),
        ("  metrics.observe_execution(event)", "metrics.observe_execution(event)", True),
        ("  writer.put(event) (bounded deque append)", "put(event)", True),
        ("for scale: str(event_id) (one exemplar string)", "str(event.event_id)", False),
    ]
    results: dict[str, float] = {}
    for label, stmt, _part in steps:
        results[label] = min(timeit.repeat(stmt, globals=env, number=number, repeat=5)) / number * 1e9
        rec._writer.queue.clear()
    whole = results[steps[0][0]]
    parts = sum(results[label] for label, _s, part in steps if part)
    rows = [[label, f"{results[label]:.0f}", f"{results[label] / whole:.0%}"] for label, _s, _p in steps]
    rows.append(["sum of the indented steps", f"{parts:.0f}", f"{parts / whole:.0%}"])
    rows.append(
        [
            "rest: call with keyword arguments, checks, branches",
            f"{whole - parts:.0f}",
            f"{(whole - parts) / whole:.0%}",
        ]
    )
    print_table(
        ["step (timeit, best of 5, writer deferred)", "ns/call", "% of call"],
        rows,
        title="Cost breakdown of record_execution (each step in isolation)",
    )


# --- main ------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and repetitions (~15 s)")
    parser.add_argument("--calls", type=int, help="calls per timed loop (default 30000, quick 10000)")
    parser.add_argument("--reps", type=int, help="repetitions per variant (default 11, quick 5)")
    parser.add_argument("--live-calls", type=int, help="calls per live-writer loop (default 100000, quick 40000)")
    parser.add_argument("--live-reps", type=int, help="live-writer repetitions (default 5, quick 3)")
    parser.add_argument("--no-profile", action="store_true", help="skip cProfile and the step breakdown")
    args = parser.parse_args()
    calls = args.calls or (10_000 if args.quick else 30_000)
    reps = args.reps or (5 if args.quick else 11)
    live_calls = args.live_calls or (40_000 if args.quick else 100_000)
    live_reps = args.live_reps or (3 if args.quick else 5)

    print_environment(
        "heurmetrics hot-path benchmark",
        {
            "calls x reps": f"{calls:,} x {reps} (live writer: {live_calls:,} x {live_reps})",
            "GIL switch interval": f"{sys.getswitchinterval() * 1e3:g} ms",
        },
    )
    durs = durations(calls)
    live_durs = durations(live_calls, seed=11)
    c, h, hc = naive_metrics()

    with tempfile.TemporaryDirectory(prefix="hm-bench-") as tmp:
        deferred = Recorder(f"sqlite:///{tmp}/deferred.db", flush_interval=3600.0, batch_size=10**9)
        live = Recorder(f"sqlite:///{tmp}/live.db")  # the defaults: batch 5000, flush every 50 ms
        try:
            rv_d = deferred.register_rule_version(RULE, VERSION, params={"window": 24}, source="src")
            rv_l = live.register_rule_version(RULE, VERSION, params={"window": 24}, source="src")
            # Warm-up: create every child and cache, run each loop once untimed.
            loop_naive2(c, h, durs[:2000])
            loop_naive3(c, h, hc, durs[:2000])
            loop_recorder(deferred, rv_d, durs[:2000])
            loop_recorder(live, rv_l, durs[:2000])
            wait_until_idle(deferred)
            wait_until_idle(live)

            # Phase 1: the hot path itself (writer deferred) against both baselines, interleaved.
            samples: dict[str, list[float]] = {k: [] for k in (NAIVE2, NAIVE3, DEFERRED)}
            discarded = 0
            order = [NAIVE2, NAIVE3, DEFERRED]
            rng = random.Random(1)
            for _rep in range(reps):
                rng.shuffle(order)
                rep: dict[str, float] = {}
                for variant in order:
                    gc.collect()
                    if variant == NAIVE2:
                        rep[variant] = loop_naive2(c, h, durs)
                    elif variant == NAIVE3:
                        rep[variant] = loop_naive3(c, h, hc, durs)
                    else:
                        before = len(deferred._writer.queue)
                        rep[variant] = loop_recorder(deferred, rv_d, durs)
                        grew = len(deferred._writer.queue) - before
                        deferred._writer.queue.clear()
                        if grew != calls:  # the writer woke up and drained during the loop
                            discarded += 1
                            rep.pop(variant)
                if len(rep) == len(order):
                    for k, v in rep.items():
                        samples[k].append(v)

            # Phase 2: the same call with the writer live (SQLite), each run paired with fresh
            # baseline runs; the backlog left by the loop is flushed untimed ("incl. flush" adds it).
            live_loop: list[float] = []
            live_total: list[float] = []
            written_during: list[float] = []
            pair2: list[float] = []
            pair3: list[float] = []
            for _rep in range(live_reps):
                gc.collect()
                per_call = loop_recorder(live, rv_l, live_durs)
                backlog = len(live._writer.queue)
                t0 = time.perf_counter()
                live.flush()
                flush_us = (time.perf_counter() - t0) * 1e6 / live_calls
                time.sleep(0.03)
                live_loop.append(per_call)
                live_total.append(per_call + flush_us)
                written_during.append(1 - backlog / live_calls)
                gc.collect()
                pair2.append(loop_naive2(c, h, durs))
                gc.collect()
                pair3.append(loop_naive3(c, h, hc, durs))

            counted = deferred.registry.get_sample_value(
                "heuristic_executions_total",
                {"rule": RULE, "rule_version": VERSION, "mode": MODE, "status": STATUS, "outcome": OUTCOME},
            )
            rows = []
            for variant, values in samples.items():
                r2 = median([v / b for v, b in zip(values, samples[NAIVE2], strict=True)])
                r3 = median([v / b for v, b in zip(values, samples[NAIVE3], strict=True)])
                rows.append([variant, f"{min(values):.2f}", f"{median(values):.2f}", f"{r2:.2f}x", f"{r3:.2f}x"])
            for label, values in ((LIVE, live_loop), (LIVE.replace(")", ", incl. flush)"), live_total)):
                rows.append(
                    [
                        label,
                        f"{min(values):.2f}",
                        f"{median(values):.2f}",
                        f"{median([v / b for v, b in zip(values, pair2, strict=True)]):.2f}x",
                        f"{median([v / b for v, b in zip(values, pair3, strict=True)]):.2f}x",
                    ]
                )
            print_table(
                ["variant", "best µs/call", "median µs/call", "vs naive 2", "vs naive 3"],
                rows,
                title=f"Per-call cost ({len(samples[NAIVE2])} valid repetitions of {calls:,} calls; live writer: "
                f"{live_reps} x {live_calls:,} calls; ratio = median of per-repetition ratios)",
            )
            print(
                f"live writer: {median(written_during):.0%} of the events were already written to SQLite "
                "when the loop ended (median), so the writer really ran during the timed loop."
            )
            if discarded:
                print(f"WARNING: {discarded} repetition(s) discarded: the deferred writer drained during the loop.")
            print(
                f"sanity: heuristic_executions_total on the deferred recorder = {counted:,.0f} "
                f"(calls made: {2000 + reps * calls:,})\n"
            )

            r2 = median([v / b for v, b in zip(samples[DEFERRED], samples[NAIVE2], strict=True)])
            r3 = median([v / b for v, b in zip(samples[DEFERRED], samples[NAIVE3], strict=True)])
            print_table(
                ["target (hot path = writer deferred)", "ratio", "target <= 1.00x", "aim <= 0.75x"],
                [
                    [
                        "vs naive 2 metrics",
                        f"{r2:.2f}x",
                        "PASS" if r2 <= 1.0 else "FAIL",
                        "PASS" if r2 <= 0.75 else "FAIL",
                    ],
                    [
                        "vs naive 3 metrics",
                        f"{r3:.2f}x",
                        "PASS" if r3 <= 1.0 else "FAIL",
                        "PASS" if r3 <= 0.75 else "FAIL",
                    ],
                ],
            )

            if not args.no_profile:
                wait_until_idle(deferred)
                profile_recorder(deferred, rv_d, durs[: min(calls, 20_000)])
                breakdown(deferred, rv_d, number=20_000 if args.quick else 50_000)
        finally:
            deferred._writer.queue.clear()
            deferred.close()
            live.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
