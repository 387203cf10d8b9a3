"""Small PromQL text builders shared by the rule and the dashboard generators.

Every metric and label name comes from :mod:`heurmetrics.metrics.definitions`; the only names
written here are Prometheus' own (``up``, ``job``, ``instance``, ``le``). Label *values* that the
queries filter on are looked up in the bounded value sets of ``definitions`` through
:func:`member`, so a renamed status or mode fails at import time instead of silently matching
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from heurmetrics.metrics import definitions as d

# --- Prometheus' own names (not heurmetrics metrics, so not in definitions) -------------------
#: The per-target health series every Prometheus scrape produces.
UP = "up"
#: Target labels Prometheus attaches to every scraped series.
JOB = "job"
INSTANCE = "instance"
#: The bucket boundary label of classic histograms.
LE = "le"


def member(values: Iterable[str], value: str) -> str:
    """Return ``value`` after checking it belongs to a bounded label-value set of ``definitions``."""
    allowed = tuple(values)
    if value not in allowed:
        raise ValueError(f"{value!r} is not one of {allowed!r} (heurmetrics.metrics.definitions)")
    return value


STATUS_OK = member(d.EXECUTION_STATUSES, "ok")
MODE_BACKTEST = member(d.EXECUTION_MODES, "backtest")
BACKTEST_FAILED = member(d.BACKTEST_STATUSES, "failed")
BACKTEST_COMPLETED = member(d.BACKTEST_STATUSES, "completed")
OUTCOME_NO_SIGNAL = member(d.WELL_KNOWN_OUTCOMES, "no_signal")

#: The labels that identify a rule version on every per-version series.
RULE_VERSION_LABELS: tuple[str, str] = (d.RULE, d.RULE_VERSION)


def quote(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def eq(label: str, value: str) -> str:
    """``label="value"``."""
    return f"{label}={quote(value)}"


def ne(label: str, value: str) -> str:
    """``label!="value"``."""
    return f"{label}!={quote(value)}"


def rx(label: str, pattern: str) -> str:
    """``label=~"pattern"``; the pattern is inserted verbatim (it may be a Grafana variable like ``$rule``)."""
    return f'{label}=~"{pattern}"'


def matchers(*parts: str) -> str:
    """Join matcher strings, skipping empty ones (config selectors may be empty)."""
    return ", ".join(p.strip() for p in parts if p and p.strip())


def sel(metric: str, *parts: str) -> str:
    """A vector selector ``metric{m1, m2}``; bare ``metric`` when there is no matcher."""
    inner = matchers(*parts)
    return f"{metric}{{{inner}}}" if inner else metric


def by(*labels: str) -> str:
    """An aggregation clause ``by (a, b)``."""
    return f"by ({', '.join(labels)})"


def on(*labels: str) -> str:
    """A vector-matching clause ``on (a, b)``."""
    return f"on ({', '.join(labels)})"


def counter(spec: d.MetricSpec) -> str:
    """The sample name of a counter family (``…_total``)."""
    if spec.kind != "counter":
        raise ValueError(f"{spec.name} is a {spec.kind}, not a counter")
    return spec.sample_name


def gauge(spec: d.MetricSpec) -> str:
    """The sample name of a gauge or info family."""
    if spec.kind not in ("gauge", "info"):
        raise ValueError(f"{spec.name} is a {spec.kind}, not a gauge")
    return spec.sample_name


def store_gauge(spec: d.MetricSpec, *parts: str) -> str:
    """A store-derived gauge de-duplicated over exporter replicas: ``max by (its labels) (…)``.

    Every replica reads the same store and exports the same value, each under its own target
    labels (``instance``, and ``pod`` etc. with Kubernetes discovery). Aggregating *by the family's
    own labels* drops all target labels at once, so N replicas give one series, never N.
    """
    if spec.source != "store" or spec.kind not in ("gauge", "info"):
        raise ValueError(f"{spec.name} is not a store-derived gauge")
    return f"max {by(*spec.labels)} ({sel(gauge(spec), *parts)})"


def _histogram_series(spec: d.MetricSpec, suffix: str) -> str:
    if spec.kind != "histogram":
        raise ValueError(f"{spec.name} is a {spec.kind}, not a histogram")
    name = f"{spec.name}{suffix}"
    if name not in spec.series_names():
        raise ValueError(f"{name} is not a series of {spec.name}")
    return name


def bucket(spec: d.MetricSpec) -> str:
    """The ``…_bucket`` series of a histogram family."""
    return _histogram_series(spec, "_bucket")


def hist_sum(spec: d.MetricSpec) -> str:
    """The ``…_sum`` series of a histogram family."""
    return _histogram_series(spec, "_sum")


def hist_count(spec: d.MetricSpec) -> str:
    """The ``…_count`` series of a histogram family."""
    return _histogram_series(spec, "_count")


def labels_template(label: str) -> str:
    """An alert-template reference to a label: ``{{ $labels.rule }}``."""
    return "{{ $labels." + label + " }}"
