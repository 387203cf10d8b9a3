"""The one monitoring configuration object: every threshold, window, ``for:`` and selector.

The alert rules, the recording rules and the dashboards are all generated from a single
:class:`MonitoringConfig`. Its defaults come from :mod:`heurmetrics.metrics.definitions` where
a budget exists there (latency budget, success objective). SREs change single values without
forking the generated files: a YAML file given to ``heurmetrics alerts build --config FILE`` (and
``heurmetrics dashboards build --config FILE``) is merged over the defaults::

    runbook_base_url: https://runbooks.example.com/heurmetrics/runbooks.md
    selectors:
      exporter: 'job="heurmetrics-prod"'
    alerts:
      HeuristicExecutionLatencyHigh:
        threshold_seconds: 0.5
        for: 30m
      BacktestStale:
        enabled: false

Keys are the YAML names shown by :func:`describe`; alert sections are keyed by alert name. An
unknown alert, an unknown key, a value of the wrong type, a malformed duration or selector all
raise :class:`ConfigError` naming the offending path, so a typo never silently keeps a default.

Rule-version lifecycle (note A): "active" versions are selected by
:attr:`LifecycleConfig.active_version_matchers`, matchers on ``rule_version_info``. Its default
follows the metric definitions: ``status="active"`` once ``rule_version_info`` has the lifecycle
``status`` label, empty before. Empty means "every executing version counts as active" for the
alerts, and "not registered at all" for the *executions of versions that are not active* panels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from heurmetrics.metrics import definitions as d
from heurmetrics.monitoring.promql import JOB, MODE_BACKTEST, eq, member, ne

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = get_args(Severity)

#: Where ``runbook_url`` annotations point by default; set ``runbook_base_url`` to where your
#: copy of ``docs/runbooks.md`` is served (a rendered Git forge page keeps the anchors).
DEFAULT_RUNBOOK_BASE_URL = "https://github.com/heurmetrics/heurmetrics/blob/main/docs/runbooks.md"

# --- alert names (CamelCase, one shared first word per area) ------------------------------------
ERROR_BUDGET_BURN = "HeuristicExecutionErrorBudgetBurn"
LATENCY_HIGH = "HeuristicExecutionLatencyHigh"
EXECUTIONS_ABSENT = "HeuristicExecutionsAbsent"
BACKTEST_FAILED = "BacktestFailed"
BACKTEST_STALE = "BacktestStale"
PERFORMANCE_DRIFT = "RuleVersionPerformanceDrift"
BACKTEST_OVERFITTING = "BacktestOverfitting"
EXPORTER_DOWN = "HeurmetricsExporterDown"
EXPORTER_REPLICA_DOWN = "HeurmetricsExporterReplicaDown"
STORE_WRITE_ERRORS = "HeurmetricsStoreWriteErrors"
EVENTS_DROPPED = "HeurmetricsEventsDropped"
WRITER_BACKLOG = "HeurmetricsWriterBacklog"

# --- stable dashboard uids (alerts link to them through dashboard_url) -----------------------
EXECUTIONS_DASHBOARD_UID = "heurmetrics-executions"
BACKTESTS_DASHBOARD_UID = "heurmetrics-backtests"
RULE_VERSIONS_DASHBOARD_UID = "heurmetrics-rule-versions"


class ConfigError(ValueError):
    """A monitoring configuration (defaults or user overrides) is invalid; the message names where."""


# --- value checks -----------------------------------------------------------------------------
_DURATION_UNITS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_DURATION_RE = re.compile(r"^(?:\d+(?:ms|y|w|d|h|m|s))+$")
_DURATION_PART_RE = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_MATCHER = r'\s*[A-Za-z_][A-Za-z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
_MATCHERS_RE = re.compile(rf"^(?:{_MATCHER}(?:,{_MATCHER})*,?)?\s*$")


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (``90s``, ``1h30m``, ``3d``); :class:`ValueError` if malformed."""
    if not isinstance(text, str) or not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m, 3d)")
    return float(sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(text)))


def check_matchers(text: str) -> str:
    """Return ``text`` if it is a comma-separated list of PromQL label matchers (or empty)."""
    if not isinstance(text, str) or not _MATCHERS_RE.match(text):
        raise ValueError(f"{text!r} is not a list of PromQL label matchers (e.g. 'job=\"heurmetrics\"')")
    return text.strip().rstrip(",").strip()


def _duration(default: str, yaml_name: str | None = None) -> Any:
    meta: dict[str, object] = {"duration": True}
    if yaml_name:
        meta["yaml"] = yaml_name
    return field(default=default, metadata=meta)


def _matchers(default: str = "") -> Any:
    return field(default=default, metadata={"matchers": True})


class _Checked:
    """Mixin: validate duration / matcher / severity fields after construction (and ``replace``)."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("duration"):
                duration_seconds(value)
            if f.metadata.get("matchers"):
                object.__setattr__(self, f.name, check_matchers(value))
            if f.name == "severity" and value not in SEVERITIES:
                raise ValueError(f"severity {value!r} is not one of {', '.join(SEVERITIES)}")
        self._check()

    def _check(self) -> None:
        """Cross-field checks of a subclass."""


# --- selectors ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selectors(_Checked):
    """PromQL matchers inserted into every generated query."""

    #: Selects the exporter's scrape target: ``up{…}`` and the self-monitoring series.
    exporter: str = _matchers(eq(JOB, "heurmetrics"))
    #: Extra matchers on every heuristic / backtest series (e.g. ``env="prod"``); empty = none.
    series: str = _matchers("")
    #: The executions that count as production traffic (SLO, absence, "in use"): backtest-mode
    #: executions come in bursts and are judged by the backtest alerts instead.
    live_executions: str = _matchers(ne(d.MODE, MODE_BACKTEST))


#: The lifecycle status of an active version (label ``status`` of ``rule_version_info``).
ACTIVE_STATUS = "active"


def default_active_version_matchers() -> str:
    """``status="active"`` when ``rule_version_info`` carries the lifecycle status label, else ``""``.

    Note A: the label arrives with the rule-version lifecycle issue. The default follows
    :mod:`heurmetrics.metrics.definitions`, so the generated files switch over when the label is
    defined, without a config change.
    """
    if d.STATUS not in d.RULE_VERSION_INFO.labels:
        return ""
    statuses: tuple[str, ...] = getattr(d, "RULE_VERSION_STATUSES", (ACTIVE_STATUS,))
    return eq(d.STATUS, member(statuses, ACTIVE_STATUS))


@dataclass(frozen=True)
class LifecycleConfig(_Checked):
    """Which rule versions are "active" (note A)."""

    #: Matchers on ``rule_version_info`` selecting active versions. Empty (no status label): the
    #: alerts treat every executing version as active, and the "not active" panels show executions
    #: of versions without any ``rule_version_info`` series (unregistered). With the status label:
    #: ``status="active"`` (see :func:`default_active_version_matchers`); add ``env`` matchers here.
    active_version_matchers: str = field(default_factory=default_active_version_matchers, metadata={"matchers": True})
    #: A version counts as *in use* when it executed (live selector) within this window.
    in_use_lookback: str = _duration("1d")


# --- alerts -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AlertConfig(_Checked):
    """What every alert has: a switch, extra labels and extra matchers on its main series."""

    enabled: bool = True
    #: Extra labels on the alert (routing, team...). ``severity`` is set by its own key.
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Extra PromQL matchers on the alert's main series, e.g. ``rule!~"daily_.*"``.
    selector: str = _matchers("")

    def _check(self) -> None:
        if "severity" in self.labels or "alertname" in self.labels:
            raise ValueError("labels must not set 'severity' or 'alertname' (use the severity key)")


@dataclass(frozen=True)
class SimpleAlertConfig(AlertConfig):
    """An alert with one severity and one ``for:``."""

    severity: Severity = "warning"
    for_: str = _duration("5m", "for")


@dataclass(frozen=True)
class BurnWindow(_Checked):
    """One multi-window condition: both windows must burn faster than ``factor`` times the budget."""

    short: str = field(metadata={"duration": True})
    long: str = field(metadata={"duration": True})
    factor: float = field()

    def _check(self) -> None:
        if duration_seconds(self.short) >= duration_seconds(self.long):
            raise ValueError(f"short window {self.short} must be shorter than long window {self.long}")
        if self.factor <= 0:
            raise ValueError(f"burn-rate factor must be positive, got {self.factor}")


@dataclass(frozen=True)
class BurnTier(_Checked):
    """A set of window pairs that share a severity (page or ticket)."""

    severity: Severity = field()
    for_: str = field(metadata={"duration": True, "yaml": "for"})
    windows: tuple[BurnWindow, ...] = field()

    def _check(self) -> None:
        if not self.windows:
            raise ValueError("a burn-rate tier needs at least one window pair")


@dataclass(frozen=True)
class ErrorBudgetBurnConfig(AlertConfig):
    """Multi-window multi-burn-rate alert on the execution error ratio (status != ok) per rule."""

    #: Share of executions that must succeed (SLO objective); the error budget is 1 - objective.
    objective: float = d.EXECUTION_SUCCESS_OBJECTIVE
    #: Minimum-traffic guard: at least this many executions in the long window of a pair.
    min_executions: float = 10.0
    page: BurnTier = BurnTier("critical", "2m", (BurnWindow("5m", "1h", 14.4), BurnWindow("30m", "6h", 6.0)))
    ticket: BurnTier = BurnTier("warning", "15m", (BurnWindow("2h", "1d", 3.0), BurnWindow("6h", "3d", 1.0)))

    def _check(self) -> None:
        super()._check()
        if not 0.0 < self.objective < 1.0:
            raise ValueError(f"objective must be strictly between 0 and 1, got {self.objective}")
        if self.min_executions < 0:
            raise ValueError("min_executions must not be negative")

    def tiers(self) -> tuple[tuple[str, BurnTier], ...]:
        """``(tier name, tier)`` pairs, page first."""
        return (("page", self.page), ("ticket", self.ticket))

    def windows(self) -> tuple[str, ...]:
        """Every distinct window of every tier, shortest first (one recording rule each)."""
        all_windows = {w for _, tier in self.tiers() for pair in tier.windows for w in (pair.short, pair.long)}
        return tuple(sorted(all_windows, key=duration_seconds))


@dataclass(frozen=True)
class LatencyHighConfig(SimpleAlertConfig):
    """Execution latency quantile above the budget of ``definitions``."""

    quantile: float = 0.95
    threshold_seconds: float = d.EXECUTION_LATENCY_BUDGET_SECONDS
    window: str = _duration("5m")
    for_: str = _duration("15m", "for")

    def _check(self) -> None:
        super()._check()
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be strictly between 0 and 1, got {self.quantile}")


@dataclass(frozen=True)
class ExecutionsAbsentConfig(SimpleAlertConfig):
    """A version that executed regularly in ``lookback`` has not executed for ``quiet``."""

    lookback: str = _duration("6h")
    #: Executions in ``lookback`` that make a version "regular" (12 in 6 h = every 30 min on
    #: average): rules on slow timeframes (1h, 1d bars) never trip a 1 h ``quiet`` window.
    min_executions: float = 12.0
    quiet: str = _duration("1h")
    for_: str = _duration("10m", "for")

    def _check(self) -> None:
        super()._check()
        if duration_seconds(self.quiet) >= duration_seconds(self.lookback):
            raise ValueError(f"quiet ({self.quiet}) must be shorter than lookback ({self.lookback})")


@dataclass(frozen=True)
class BacktestFailedConfig(SimpleAlertConfig):
    """More than ``threshold`` backtest runs of a version failed within ``window``."""

    window: str = _duration("1h")
    threshold: float = 0.0
    for_: str = _duration("0s", "for")


@dataclass(frozen=True)
class BacktestStaleConfig(SimpleAlertConfig):
    """The latest completed backtest of an in-use version is older than ``max_age``."""

    max_age: str = _duration("7d")
    for_: str = _duration("30m", "for")


@dataclass(frozen=True)
class PerformanceDriftConfig(SimpleAlertConfig):
    """A version's live hit ratio disagrees with its walk-forward expectation.

    Reads the ``rule_version_performance_drift_adjusted_p_value`` gauge of the latest performance
    snapshot (Fisher's exact test of live hits against the walk-forward's out-of-sample hits,
    Benjamini-Hochberg adjusted across the versions of the window; NaN, and so never firing,
    while either side has too few resolved signals). Fires when the adjusted p-value of the
    ``window`` snapshot is below ``alpha`` for ``for``.
    """

    window: str = "1d"
    alpha: float = d.DRIFT_ALPHA
    for_: str = _duration("1h", "for")

    def _check(self) -> None:
        super()._check()
        if self.window not in d.EXPORTED_PERFORMANCE_WINDOWS:
            exported = ", ".join(d.EXPORTED_PERFORMANCE_WINDOWS)
            raise ValueError(f"window {self.window!r} is not exported to Prometheus (exported: {exported})")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be strictly between 0 and 1, got {self.alpha}")


@dataclass(frozen=True)
class BacktestOverfittingConfig(SimpleAlertConfig):
    """The latest walk-forward run of a version is probably overfit: its probability of backtest
    overfitting (``backtest_overfitting_pbo_ratio``, CSCV) is above ``threshold``."""

    threshold: float = 0.5
    for_: str = _duration("15m", "for")

    def _check(self) -> None:
        super()._check()
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")


@dataclass(frozen=True)
class ExporterDownConfig(SimpleAlertConfig):
    """Prometheus cannot scrape any exporter replica of a job (``sum by (job) (up) == 0``)."""

    severity: Severity = "critical"


@dataclass(frozen=True)
class ExporterReplicaDownConfig(SimpleAlertConfig):
    """One exporter replica cannot be scraped while others of its job still can.

    A ticket, not a page: runners given several URLs fail over to the replicas that are up, and
    the store keeps every row; only the increments the replica counted since its last scrape are
    lost to Prometheus (docs/scaling.md). With a single replica, :class:`ExporterDownConfig` fires.
    """

    severity: Severity = "warning"


@dataclass(frozen=True)
class StoreWriteErrorsConfig(SimpleAlertConfig):
    """More than ``threshold`` store writes failed within ``window`` (sustained for ``for``)."""

    window: str = _duration("5m")
    threshold: float = 0.0
    for_: str = _duration("10m", "for")


@dataclass(frozen=True)
class EventsDroppedConfig(SimpleAlertConfig):
    """Acknowledged events were dropped: the no-sampling promise is broken. Pages at once."""

    window: str = _duration("5m")
    threshold: float = 0.0
    severity: Severity = "critical"
    for_: str = _duration("0s", "for")


@dataclass(frozen=True)
class WriterBacklogConfig(SimpleAlertConfig):
    """More than ``threshold_events`` events wait in the writer queue for ``for``."""

    threshold_events: float = 10000.0
    for_: str = _duration("10m", "for")


@dataclass(frozen=True)
class AlertsConfig(_Checked):
    """One section per alert, keyed in YAML by the alert name."""

    noun: ClassVar[str] = "alert"

    error_budget_burn: ErrorBudgetBurnConfig = field(
        default_factory=ErrorBudgetBurnConfig, metadata={"yaml": ERROR_BUDGET_BURN}
    )
    latency_high: LatencyHighConfig = field(default_factory=LatencyHighConfig, metadata={"yaml": LATENCY_HIGH})
    executions_absent: ExecutionsAbsentConfig = field(
        default_factory=ExecutionsAbsentConfig, metadata={"yaml": EXECUTIONS_ABSENT}
    )
    backtest_failed: BacktestFailedConfig = field(
        default_factory=BacktestFailedConfig, metadata={"yaml": BACKTEST_FAILED}
    )
    backtest_stale: BacktestStaleConfig = field(default_factory=BacktestStaleConfig, metadata={"yaml": BACKTEST_STALE})
    performance_drift: PerformanceDriftConfig = field(
        default_factory=PerformanceDriftConfig, metadata={"yaml": PERFORMANCE_DRIFT}
    )
    backtest_overfitting: BacktestOverfittingConfig = field(
        default_factory=BacktestOverfittingConfig, metadata={"yaml": BACKTEST_OVERFITTING}
    )
    exporter_down: ExporterDownConfig = field(default_factory=ExporterDownConfig, metadata={"yaml": EXPORTER_DOWN})
    exporter_replica_down: ExporterReplicaDownConfig = field(
        default_factory=ExporterReplicaDownConfig, metadata={"yaml": EXPORTER_REPLICA_DOWN}
    )
    store_write_errors: StoreWriteErrorsConfig = field(
        default_factory=StoreWriteErrorsConfig, metadata={"yaml": STORE_WRITE_ERRORS}
    )
    events_dropped: EventsDroppedConfig = field(default_factory=EventsDroppedConfig, metadata={"yaml": EVENTS_DROPPED})
    writer_backlog: WriterBacklogConfig = field(default_factory=WriterBacklogConfig, metadata={"yaml": WRITER_BACKLOG})

    def by_name(self) -> dict[str, AlertConfig]:
        """Every alert section keyed by alert name, in declaration order."""
        return {_yaml_name(f): getattr(self, f.name) for f in fields(self)}


# --- dashboards -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasourceConfig(_Checked):
    """A Grafana datasource: the provisioned name and uid, also the dashboards' default choice."""

    name: str = field()
    uid: str = field()


@dataclass(frozen=True)
class DashboardsConfig(_Checked):
    """Grafana-side settings of the generated dashboards and provisioning files."""

    prometheus: DatasourceConfig = DatasourceConfig("heurmetrics Prometheus", "heurmetrics-prometheus")
    postgres: DatasourceConfig = DatasourceConfig("heurmetrics PostgreSQL", "heurmetrics-postgres")
    #: Prometheus scrape interval (Grafana derives ``$__rate_interval`` from it).
    scrape_interval: str = _duration("15s")
    refresh: str = _duration("1m")
    #: Grafana folder of the provisioned dashboards and the path the file provider reads.
    folder: str = "heurmetrics"
    provider_path: str = "/var/lib/grafana/dashboards/heurmetrics"


# --- the one object -----------------------------------------------------------------------------
@dataclass(frozen=True)
class MonitoringConfig(_Checked):
    """Everything the rule and dashboard generators read. Immutable; derive with :func:`apply_overrides`."""

    #: ``runbook_url`` = this + ``#`` + lower-cased alert name (an anchor of docs/runbooks.md).
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL
    #: Grafana root URL; when set, alerts get a ``dashboard_url`` annotation.
    grafana_base_url: str = ""
    selectors: Selectors = field(default_factory=Selectors)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    dashboards: DashboardsConfig = field(default_factory=DashboardsConfig)

    def runbook_url(self, alert: str) -> str:
        """The runbook anchor of ``alert``."""
        return f"{self.runbook_base_url}#{alert.lower()}"

    def dashboard_url(self, uid: str) -> str | None:
        """Grafana URL of a dashboard, or ``None`` when ``grafana_base_url`` is unset."""
        if not self.grafana_base_url:
            return None
        return f"{self.grafana_base_url.rstrip('/')}/d/{uid}"


# --- overrides ----------------------------------------------------------------------------------
T = TypeVar("T")


def _yaml_name(f: Field[Any]) -> str:
    return str(f.metadata.get("yaml") or f.name)


def _coerce_scalar(hint: Any, value: object, path: str) -> object:
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            allowed = ", ".join(str(a) for a in get_args(hint))
            raise ConfigError(f"{path}: {value!r} is not one of {allowed}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if origin is Mapping or origin is dict:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(f"{path}: expected a mapping of strings to strings, got {value!r}")
        return dict(value)
    raise ConfigError(f"{path}: cannot override a value of type {hint!r}")  # pragma: no cover


def _build(cls: type[T], value: object, path: str) -> T:
    """A new dataclass instance from a YAML mapping that must give every field without default."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {value!r}")
    by_yaml = {_yaml_name(f): f for f in fields(cls)}  # type: ignore[arg-type]
    hints = get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for key, item in value.items():
        if key not in by_yaml:
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {', '.join(by_yaml)}")
        kwargs[by_yaml[key].name] = _coerce_scalar(hints[by_yaml[key].name], item, f"{path}.{key}")
    missing = [
        k for k, f in by_yaml.items() if f.name not in kwargs and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise ConfigError(f"{path}: missing key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _merge(obj: T, overrides: object, path: str) -> T:
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{path}: expected a mapping, got {overrides!r}")
    noun = getattr(obj, "noun", "key")
    by_yaml = {_yaml_name(f): f for f in fields(obj)}  # type: ignore[arg-type]
    hints = get_type_hints(type(obj))
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        if key not in by_yaml:
            raise ConfigError(f"{path or '(top level)'}: unknown {noun} {key!r}; known {noun}s: {', '.join(by_yaml)}")
        f = by_yaml[key]
        where = f"{path}.{key}" if path else str(key)
        current = getattr(obj, f.name)
        hint = hints[f.name]
        if is_dataclass(current):
            changes[f.name] = _merge(current, value, where)
        elif get_origin(hint) is tuple:
            (item_type, _ellipsis) = get_args(hint)
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected a list, got {value!r}")
            changes[f.name] = tuple(_build(item_type, item, f"{where}[{i}]") for i, item in enumerate(value))
        else:
            changes[f.name] = _coerce_scalar(hint, value, where)
    try:
        return replace(obj, **changes)  # type: ignore[type-var]
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path or 'config'}: {exc}") from None


def apply_overrides(
    config: MonitoringConfig, overrides: Mapping[str, Any] | None, source: str = "overrides"
) -> MonitoringConfig:
    """Merge a (YAML-shaped) mapping over ``config``; :class:`ConfigError` names any bad path."""
    if not overrides:
        return config
    try:
        return _merge(config, overrides, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path | None = None) -> MonitoringConfig:
    """The defaults, with the YAML file at ``path`` (if given) merged over them."""
    config = MonitoringConfig()
    if path is None:
        return config
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read monitoring config: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return config
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return apply_overrides(config, data, source=str(p))


def describe(config: MonitoringConfig | None = None) -> dict[str, Any]:
    """The configuration as the YAML-shaped mapping users override (documentation, ``--help``)."""

    def plain(value: object) -> object:
        if is_dataclass(value) and not isinstance(value, type):
            return {_yaml_name(f): plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return dict(value)
        return value

    result = plain(config or MonitoringConfig())
    assert isinstance(result, dict)
    return result
