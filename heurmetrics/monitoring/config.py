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

Keys are the YAML names shown by :func:`describe`; alert sections are keyed by alert name. The
file is parsed by the pydantic models below (extra keys forbidden, scalars strict): an unknown
alert, an unknown key, a value of the wrong type, a malformed duration or selector (checked with
``promql-parser``) all raise :class:`ConfigError` naming the offending path, so a typo never
silently keeps a default.

Rule-version lifecycle (note A): "active" versions are selected by
:attr:`LifecycleConfig.active_version_matchers`, matchers on ``rule_version_info``. Its default
follows the metric definitions: ``status="active"`` once ``rule_version_info`` has the lifecycle
``status`` label, empty before. Empty means "every executing version counts as active" for the
alerts, and "not registered at all" for the *executions of versions that are not active* panels.

Why one module of ~570 lines: it is declarative (the pydantic models of every threshold and
selector, with their defaults), and an operator reads it top to bottom as the override file's
reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

import promql_parser
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

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


# --- value checks (promql-parser, the parser of the Prometheus query language) --------------------
def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (``90s``, ``1h30m``, ``3d``, ``0s``); :class:`ValueError` if malformed."""
    problem = ValueError(f"{text!r} is not a Prometheus duration (e.g. 30s, 5m, 1h30m, 3d)")
    # A number first and a unit last: the parser would read a bare "5" as seconds, rule files would not.
    if not isinstance(text, str) or not text[:1].isdigit() or not text[-1:].isalpha():
        raise problem
    try:
        return float(promql_parser.parse_duration(text).total_seconds())
    except ValueError as exc:
        # The parser refuses a zero duration, which `for: 0s` needs: "0s" is well formed exactly
        # when "10s" is (only the leading number changes).
        if "greater than 0" not in str(exc):
            raise problem from None
    try:
        promql_parser.parse_duration("1" + text)
    except ValueError:
        raise problem from None
    return 0.0


def check_matchers(text: str) -> str:
    """Return ``text`` if it is a comma-separated list of PromQL label matchers (or empty)."""
    problem = ValueError(f"{text!r} is not a list of PromQL label matchers (e.g. 'job=\"heurmetrics\"')")
    if not isinstance(text, str):
        raise problem
    try:
        parsed = promql_parser.parse(f"up{{{text}}}")
    except ValueError:
        raise problem from None
    # Anything after the closing brace (an operator, an offset, a second selector) is not matchers.
    if not isinstance(parsed, promql_parser.VectorSelector) or parsed.offset is not None or parsed.at is not None:
        raise problem
    return text.strip().rstrip(",").strip()


def _duration(text: str) -> str:
    duration_seconds(text)
    return text


def _severity(value: object) -> object:
    if value not in SEVERITIES:
        raise ValueError(f"{value!r} is not one of {', '.join(SEVERITIES)}")
    return value


Duration = Annotated[StrictStr, AfterValidator(_duration)]
Matchers = Annotated[StrictStr, AfterValidator(check_matchers)]
SeverityName = Annotated[Severity, BeforeValidator(_severity)]


class _Section(BaseModel):
    """A part of the configuration: immutable, unknown keys refused, YAML names as aliases."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: What the keys of this section are called in error messages.
    noun: ClassVar[str] = "key"


# --- selectors ----------------------------------------------------------------------------------
class Selectors(_Section):
    """PromQL matchers inserted into every generated query."""

    #: Selects the exporter's scrape target: ``up{…}`` and the self-monitoring series.
    exporter: Matchers = eq(JOB, "heurmetrics")
    #: Extra matchers on every heuristic / backtest series (e.g. ``env="prod"``); empty = none.
    series: Matchers = ""
    #: The executions that count as production traffic (SLO, absence, "in use"): backtest-mode
    #: executions come in bursts and are judged by the backtest alerts instead.
    live_executions: Matchers = ne(d.MODE, MODE_BACKTEST)


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


class LifecycleConfig(_Section):
    """Which rule versions are "active" (note A)."""

    #: Matchers on ``rule_version_info`` selecting active versions. Empty (no status label): the
    #: alerts treat every executing version as active, and the "not active" panels show executions
    #: of versions without any ``rule_version_info`` series (unregistered). With the status label:
    #: ``status="active"`` (see :func:`default_active_version_matchers`); add ``env`` matchers here.
    active_version_matchers: Matchers = Field(default_factory=default_active_version_matchers)
    #: A version counts as *in use* when it executed (live selector) within this window.
    in_use_lookback: Duration = "1d"


# --- alerts -------------------------------------------------------------------------------------
class AlertConfig(_Section):
    """What every alert has: a switch, extra labels and extra matchers on its main series."""

    enabled: StrictBool = True
    #: Extra labels on the alert (routing, team...). ``severity`` is set by its own key.
    labels: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    #: Extra PromQL matchers on the alert's main series, e.g. ``rule!~"daily_.*"``.
    selector: Matchers = ""

    @model_validator(mode="after")
    def _check_labels(self) -> AlertConfig:
        if "severity" in self.labels or "alertname" in self.labels:
            raise ValueError("labels must not set 'severity' or 'alertname' (use the severity key)")
        return self


class SimpleAlertConfig(AlertConfig):
    """An alert with one severity and one ``for:``."""

    severity: SeverityName = "warning"
    for_: Duration = Field("5m", alias="for")


class BurnWindow(_Section):
    """One multi-window condition: both windows must burn faster than ``factor`` times the budget."""

    short: Duration
    long: Duration
    factor: StrictFloat

    @model_validator(mode="after")
    def _check_window(self) -> BurnWindow:
        if duration_seconds(self.short) >= duration_seconds(self.long):
            raise ValueError(f"short window {self.short} must be shorter than long window {self.long}")
        if self.factor <= 0:
            raise ValueError(f"burn-rate factor must be positive, got {self.factor}")
        return self


class BurnTier(_Section):
    """A set of window pairs that share a severity (page or ticket)."""

    severity: SeverityName
    for_: Duration = Field(alias="for")
    windows: tuple[BurnWindow, ...]

    @model_validator(mode="after")
    def _check_tier(self) -> BurnTier:
        if not self.windows:
            raise ValueError("a burn-rate tier needs at least one window pair")
        return self


def _tier(severity: str, for_: str, *windows: tuple[str, str, float]) -> BurnTier:
    return BurnTier.model_validate(
        {"severity": severity, "for": for_, "windows": [{"short": s, "long": lg, "factor": f} for s, lg, f in windows]}
    )


class ErrorBudgetBurnConfig(AlertConfig):
    """Multi-window multi-burn-rate alert on the execution error ratio (status != ok) per rule."""

    #: Share of executions that must succeed (SLO objective); the error budget is 1 - objective.
    objective: StrictFloat = d.EXECUTION_SUCCESS_OBJECTIVE
    #: Minimum-traffic guard: at least this many executions in the long window of a pair.
    min_executions: StrictFloat = 10.0
    page: BurnTier = _tier("critical", "2m", ("5m", "1h", 14.4), ("30m", "6h", 6.0))
    ticket: BurnTier = _tier("warning", "15m", ("2h", "1d", 3.0), ("6h", "3d", 1.0))

    @model_validator(mode="after")
    def _check_burn(self) -> ErrorBudgetBurnConfig:
        if not 0.0 < self.objective < 1.0:
            raise ValueError(f"objective must be strictly between 0 and 1, got {self.objective}")
        if self.min_executions < 0:
            raise ValueError("min_executions must not be negative")
        return self

    def tiers(self) -> tuple[tuple[str, BurnTier], ...]:
        """``(tier name, tier)`` pairs, page first."""
        return (("page", self.page), ("ticket", self.ticket))

    def windows(self) -> tuple[str, ...]:
        """Every distinct window of every tier, shortest first (one recording rule each)."""
        all_windows = {w for _, tier in self.tiers() for pair in tier.windows for w in (pair.short, pair.long)}
        return tuple(sorted(all_windows, key=duration_seconds))


class LatencyHighConfig(SimpleAlertConfig):
    """Execution latency quantile above the budget of ``definitions``."""

    quantile: StrictFloat = 0.95
    threshold_seconds: StrictFloat = d.EXECUTION_LATENCY_BUDGET_SECONDS
    window: Duration = "5m"
    for_: Duration = Field("15m", alias="for")

    @model_validator(mode="after")
    def _check_quantile(self) -> LatencyHighConfig:
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be strictly between 0 and 1, got {self.quantile}")
        return self


class ExecutionsAbsentConfig(SimpleAlertConfig):
    """A version that executed regularly in ``lookback`` has not executed for ``quiet``."""

    lookback: Duration = "6h"
    #: Executions in ``lookback`` that make a version "regular" (12 in 6 h = every 30 min on
    #: average): rules on slow timeframes (1h, 1d bars) never trip a 1 h ``quiet`` window.
    min_executions: StrictFloat = 12.0
    quiet: Duration = "1h"
    for_: Duration = Field("10m", alias="for")

    @model_validator(mode="after")
    def _check_quiet(self) -> ExecutionsAbsentConfig:
        if duration_seconds(self.quiet) >= duration_seconds(self.lookback):
            raise ValueError(f"quiet ({self.quiet}) must be shorter than lookback ({self.lookback})")
        return self


class BacktestFailedConfig(SimpleAlertConfig):
    """More than ``threshold`` backtest runs of a version failed within ``window``."""

    window: Duration = "1h"
    threshold: StrictFloat = 0.0
    for_: Duration = Field("0s", alias="for")


class BacktestStaleConfig(SimpleAlertConfig):
    """The latest completed backtest of an in-use version is older than ``max_age``."""

    max_age: Duration = "7d"
    for_: Duration = Field("30m", alias="for")


class PerformanceDriftConfig(SimpleAlertConfig):
    """A version's live hit ratio disagrees with its walk-forward expectation.

    Reads the ``rule_version_performance_drift_adjusted_p_value`` gauge of the latest performance
    snapshot (Fisher's exact test of live hits against the walk-forward's out-of-sample hits,
    Benjamini-Hochberg adjusted across the versions of the window; NaN, and so never firing,
    while either side has too few resolved signals). Fires when the adjusted p-value of the
    ``window`` snapshot is below ``alpha`` for ``for``.
    """

    window: StrictStr = "1d"
    alpha: StrictFloat = d.DRIFT_ALPHA
    for_: Duration = Field("1h", alias="for")

    @model_validator(mode="after")
    def _check_drift(self) -> PerformanceDriftConfig:
        if self.window not in d.EXPORTED_PERFORMANCE_WINDOWS:
            exported = ", ".join(d.EXPORTED_PERFORMANCE_WINDOWS)
            raise ValueError(f"window {self.window!r} is not exported to Prometheus (exported: {exported})")
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be strictly between 0 and 1, got {self.alpha}")
        return self


class BacktestOverfittingConfig(SimpleAlertConfig):
    """The latest walk-forward run of a version is probably overfit: its probability of backtest
    overfitting (``backtest_overfitting_pbo_ratio``, CSCV) is above ``threshold``."""

    threshold: StrictFloat = 0.5
    for_: Duration = Field("15m", alias="for")

    @model_validator(mode="after")
    def _check_threshold(self) -> BacktestOverfittingConfig:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        return self


class ExporterDownConfig(SimpleAlertConfig):
    """Prometheus cannot scrape any exporter replica of a job (``sum by (job) (up) == 0``)."""

    severity: SeverityName = "critical"


class ExporterReplicaDownConfig(SimpleAlertConfig):
    """One exporter replica cannot be scraped while others of its job still can.

    A ticket, not a page: runners given several URLs fail over to the replicas that are up, and
    the store keeps every row; only the increments the replica counted since its last scrape are
    lost to Prometheus (docs/scaling.md). With a single replica, :class:`ExporterDownConfig` fires.
    """

    severity: SeverityName = "warning"


class StoreWriteErrorsConfig(SimpleAlertConfig):
    """More than ``threshold`` store writes failed within ``window`` (sustained for ``for``)."""

    window: Duration = "5m"
    threshold: StrictFloat = 0.0
    for_: Duration = Field("10m", alias="for")


class EventsDroppedConfig(SimpleAlertConfig):
    """Acknowledged events were dropped: the no-sampling promise is broken. Pages at once."""

    window: Duration = "5m"
    threshold: StrictFloat = 0.0
    severity: SeverityName = "critical"
    for_: Duration = Field("0s", alias="for")


class WriterBacklogConfig(SimpleAlertConfig):
    """More than ``threshold_events`` events wait in the writer queue for ``for``."""

    threshold_events: StrictFloat = 10000.0
    for_: Duration = Field("10m", alias="for")


class AlertsConfig(_Section):
    """One section per alert, keyed in YAML by the alert name."""

    noun: ClassVar[str] = "alert"

    error_budget_burn: ErrorBudgetBurnConfig = Field(default_factory=ErrorBudgetBurnConfig, alias=ERROR_BUDGET_BURN)
    latency_high: LatencyHighConfig = Field(default_factory=LatencyHighConfig, alias=LATENCY_HIGH)
    executions_absent: ExecutionsAbsentConfig = Field(default_factory=ExecutionsAbsentConfig, alias=EXECUTIONS_ABSENT)
    backtest_failed: BacktestFailedConfig = Field(default_factory=BacktestFailedConfig, alias=BACKTEST_FAILED)
    backtest_stale: BacktestStaleConfig = Field(default_factory=BacktestStaleConfig, alias=BACKTEST_STALE)
    performance_drift: PerformanceDriftConfig = Field(default_factory=PerformanceDriftConfig, alias=PERFORMANCE_DRIFT)
    backtest_overfitting: BacktestOverfittingConfig = Field(
        default_factory=BacktestOverfittingConfig, alias=BACKTEST_OVERFITTING
    )
    exporter_down: ExporterDownConfig = Field(default_factory=ExporterDownConfig, alias=EXPORTER_DOWN)
    exporter_replica_down: ExporterReplicaDownConfig = Field(
        default_factory=ExporterReplicaDownConfig, alias=EXPORTER_REPLICA_DOWN
    )
    store_write_errors: StoreWriteErrorsConfig = Field(default_factory=StoreWriteErrorsConfig, alias=STORE_WRITE_ERRORS)
    events_dropped: EventsDroppedConfig = Field(default_factory=EventsDroppedConfig, alias=EVENTS_DROPPED)
    writer_backlog: WriterBacklogConfig = Field(default_factory=WriterBacklogConfig, alias=WRITER_BACKLOG)

    def by_name(self) -> dict[str, AlertConfig]:
        """Every alert section keyed by alert name, in declaration order."""
        return {str(f.alias): getattr(self, name) for name, f in type(self).model_fields.items()}


# --- dashboards -------------------------------------------------------------------------------
class DatasourceConfig(_Section):
    """A Grafana datasource: the provisioned name and uid, also the dashboards' default choice."""

    name: StrictStr
    uid: StrictStr


class DashboardsConfig(_Section):
    """Grafana-side settings of the generated dashboards and provisioning files."""

    prometheus: DatasourceConfig = DatasourceConfig(name="heurmetrics Prometheus", uid="heurmetrics-prometheus")
    postgres: DatasourceConfig = DatasourceConfig(name="heurmetrics PostgreSQL", uid="heurmetrics-postgres")
    #: Prometheus scrape interval (Grafana derives ``$__rate_interval`` from it).
    scrape_interval: Duration = "15s"
    refresh: Duration = "1m"
    #: Grafana folder of the provisioned dashboards and the path the file provider reads.
    folder: StrictStr = "heurmetrics"
    provider_path: StrictStr = "/var/lib/grafana/dashboards/heurmetrics"


# --- the one object -----------------------------------------------------------------------------
class MonitoringConfig(_Section):
    """Everything the rule and dashboard generators read. Immutable; derive with :func:`apply_overrides`."""

    #: ``runbook_url`` = this + ``#`` + lower-cased alert name (an anchor of docs/runbooks.md).
    runbook_base_url: StrictStr = DEFAULT_RUNBOOK_BASE_URL
    #: Grafana root URL; when set, alerts get a ``dashboard_url`` annotation.
    grafana_base_url: StrictStr = ""
    selectors: Selectors = Field(default_factory=Selectors)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    dashboards: DashboardsConfig = Field(default_factory=DashboardsConfig)

    def runbook_url(self, alert: str) -> str:
        """The runbook anchor of ``alert``."""
        return f"{self.runbook_base_url}#{alert.lower()}"

    def dashboard_url(self, uid: str) -> str | None:
        """Grafana URL of a dashboard, or ``None`` when ``grafana_base_url`` is unset."""
        if not self.grafana_base_url:
            return None
        return f"{self.grafana_base_url.rstrip('/')}/d/{uid}"


# --- overrides ----------------------------------------------------------------------------------
def _merged(base: Mapping[str, Any], overrides: Mapping[Any, Any]) -> dict[Any, Any]:
    """``overrides`` over ``base``: mappings merge key by key, anything else replaces."""
    out: dict[Any, Any] = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        out[key] = _merged(current, value) if isinstance(current, Mapping) and isinstance(value, Mapping) else value
    return out


def _section_at(loc: tuple[int | str, ...]) -> type[_Section] | None:
    """The model of the section at ``loc`` (YAML keys and list indexes), or None."""
    model: Any = MonitoringConfig
    for key in loc:
        if isinstance(key, int):
            continue
        fields = {str(f.alias or name): f for name, f in model.model_fields.items()}
        if key not in fields:
            return None
        annotation = fields[key].annotation
        model = get_args(annotation)[0] if get_origin(annotation) is tuple else annotation
        if not (isinstance(model, type) and issubclass(model, _Section)):
            return None
    return model if isinstance(model, type) and issubclass(model, _Section) else None


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for key in loc:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


_EXPECTED = {
    "bool_type": "expected true or false",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}


def _describe_error(error: ErrorDetails) -> str:
    """One pydantic error as ``path: what is wrong`` with YAML key names."""
    loc, kind = tuple(error["loc"]), error["type"]
    if kind == "extra_forbidden":
        parent = _section_at(loc[:-1])
        noun = parent.noun if parent else "key"
        known = ", ".join(str(f.alias or n) for n, f in parent.model_fields.items()) if parent else ""
        return f"{_path(loc[:-1]) or '(top level)'}: unknown {noun} {loc[-1]!r}; known {noun}s: {known}"
    if kind == "missing":
        return f"{_path(loc[:-1]) or '(top level)'}: missing key(s) {loc[-1]}"
    where = _path(loc) or "config"
    if kind == "value_error":
        return f"{where}: {error.get('ctx', {}).get('error', error['msg'])}"
    if kind in _EXPECTED:
        return f"{where}: {_EXPECTED[kind]}, got {error['input']!r}"
    return f"{where}: {error['msg']}"


def apply_overrides(
    config: MonitoringConfig, overrides: Mapping[str, Any] | None, source: str = "overrides"
) -> MonitoringConfig:
    """Merge a (YAML-shaped) mapping over ``config``; :class:`ConfigError` names any bad path."""
    if not overrides:
        return config
    try:
        return MonitoringConfig.model_validate(_merged(config.model_dump(by_alias=True), overrides))
    except ValidationError as exc:
        problems = dict.fromkeys(_describe_error(e) for e in exc.errors())  # ordered, without repeats
        raise ConfigError(f"{source}: {'; '.join(problems)}") from None


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
    return (config or MonitoringConfig()).model_dump(mode="json", by_alias=True)
