"""The panels of the three Grafana dashboards, as data.

Each dashboard is a tuple of :class:`Row` s holding :class:`Panel` s: a title, a
kind, PromQL queries, a unit, a description that says what to look for,
thresholds and (optionally) the alert whose runbook the panel links to.
:mod:`jaxobs.generate.dashboards` turns them into Grafana JSON with the
foundation SDK; nothing here knows about Grafana's object model.

Every metric name comes from :mod:`jaxobs.catalog`.  Queries use the dashboard
variables ``$job``, ``$service``, ``$function``, ``$accelerator_cost_per_hour``
and Grafana's ``$__rate_interval``/``$__range``.  SLO panels read the SLO
recording rules (error ratio, burn rate, budget remaining), so the number an
executive sees is the number that pages.  The rows of each dashboard are in
:mod:`jaxobs.generate.panel_rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxobs.catalog import MetricSpec
from jaxobs.generate import names as rules
from jaxobs.generate import promql
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, Service, Spec

Kind = Literal["timeseries", "stat", "gauge", "bargauge", "table"]
Steps = tuple[tuple[float | None, str], ...]

# --- alert names (the runbooks panels link to) ------------------------------------------
# The generated rules own the names; panels link to ``{runbook_base_url}/<name>.md``.
ALERT_DEVICE_MEMORY = rules.DEVICE_MEMORY_HIGH
ALERT_OOM = rules.OOM_ERRORS
ALERT_CACHE_HIT = rules.CACHE_HIT_LOW
ALERT_COLD_START = rules.COLD_START_HIGH
ALERT_RECOMPILES = rules.RECOMPILATION_STORM
ALERT_CONCURRENT_COMPILES = rules.CONCURRENT_COMPILATION
ALERT_TARGET_DOWN = rules.TARGET_DOWN
ALERT_COLLECTOR_DOWN = rules.COLLECTOR_DOWN
ALERT_GPU_XID = rules.GPU_XID
ALERT_BUILD_MISMATCH = rules.BUILD_MISMATCH
ALERT_DEPLOY = rules.DEPLOY_IN_PROGRESS
ALERT_SLO_BURN = rules.SLO_BURN


# --- the data model ------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"
    #: ask Prometheus for exemplars too: points that link a latency to the trace of the
    #: request that had it (jaxobs attaches trace ids when OpenTelemetry tracing is on)
    exemplar: bool = False


@dataclass(frozen=True)
class Panel:
    """One panel.  ``steps`` are Grafana threshold steps, the first with value ``None``."""

    title: str
    kind: Kind
    queries: tuple[Query, ...]
    unit: str
    description: str
    steps: Steps = ()
    runbook: str | None = None  # an alert name of the generated rules
    width: int = 8
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    bars: bool = False  # timeseries: draw bars (counts per interval)
    stack: bool = False  # timeseries: stack series
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, color)
    hide_columns: tuple[str, ...] = ()  # table: columns to drop (Time, Value)
    rename_columns: tuple[tuple[str, str], ...] = ()  # table: (column, new name)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def q(expr: str, legend: str = "__auto") -> tuple[Query, ...]:
    return (Query(expr, legend),)


def qx(expr: str, legend: str = "__auto") -> tuple[Query, ...]:
    """One query with exemplars on (latency panels)."""
    return (Query(expr, legend, exemplar=True),)


def qs(*pairs: tuple[str, str]) -> tuple[Query, ...]:
    return tuple(Query(expr, legend) for expr, legend in pairs)


def above(value: float, base: str = "green", color: str = "red") -> Steps:
    """Green, turning ``color`` at ``value`` and above."""
    return ((None, base), (value, color))


def below(value: float) -> Steps:
    """Red below ``value``, green from it."""
    return ((None, "red"), (value, "green"))


# --- PromQL helpers ------------------------------------------------------------------
RATE = "$__rate_interval"
JOB = 'job=~"$job"'
SVC = 'service=~"$service"'
FN = 'function=~"$function"'
OK = 'outcome="ok"'
ERR = 'outcome="error"'
COLD = 'start="cold"'
HIT = 'cache="hit"'
STEADY = 'start="steady"'
OOM = 'error="oom"'
RECOMPILE = 'cause!="first"'
MEM_IN_USE_LIMIT = 'kind=~"in_use|limit"'
_HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def sel(metric: MetricSpec, *matchers: str, suffix: str = "", job: bool = True) -> str:
    """``metric{job=~"$job",matchers...}``; ``suffix`` picks a histogram series."""
    if suffix and (metric.type != "histogram" or suffix not in _HIST_SUFFIXES):
        raise ValueError(f"{metric.name}: bad suffix {suffix!r}")
    return promql.selector(metric.name + suffix, *(((JOB,) if job else ()) + matchers),
                           ordered=True)


def rate(metric: MetricSpec, *matchers: str, suffix: str = "", window: str = RATE,
         job: bool = True) -> str:
    return promql.rate(sel(metric, *matchers, suffix=suffix, job=job), window)


def increase(metric: MetricSpec, *matchers: str, window: str = RATE) -> str:
    return promql.increase(sel(metric, *matchers), window)


def quantile(phi: float, metric: MetricSpec, by: str, *matchers: str) -> str:
    labels = tuple(x.strip() for x in by.split(",") if x.strip())
    return promql.histogram_quantile(phi, rate(metric, *matchers, suffix="_bucket"), labels)


ratio = promql.ratio


# --- SLO panels: they read the recording rules ---------------------------------------
def slo_series(name: str, service: Service, slo: SLO, window: str | None = None) -> str:
    """A recording rule of one SLO (``window`` picks a ratio or burn rate)."""
    match = [promql.eq("service", service.name), promql.eq("slo", slo.name)]
    if window is not None:
        match.append(promql.eq("window", window))
    return promql.selector(name, *match)


def _pct(objective: float) -> str:
    return f"{objective:g}%"


def _slo_title(service: Service, slo: SLO) -> str:
    return f"{service.name} / {slo.name}"


def _legend(slo: SLO, what: str) -> str:
    return " ".join([what, *(f"{{{{{label}}}}}" for label in slo.group_by)])


def slo_status_panels(spec: Spec) -> tuple[Panel, ...]:
    """Executive: per SLO, the SLI over its window and the error budget left."""
    panels: list[Panel] = []
    for service in spec.services:
        for slo in service.slos:
            name = _slo_title(service, slo)
            budget = slo.error_budget_ratio
            what = slo.description or f"{slo.sli.kind} SLI"
            panels.append(Panel(
                f"{name}: SLI over {slo.window}", "stat",
                q(f"1 - {slo_series(rules.ERROR_RATIO, service, slo, slo.window)}",
                  _legend(slo, "SLI")), "percentunit",
                f"{what}. Share of good events over the SLO window ({slo.window}); the objective "
                f"is {_pct(slo.objective)}. Red means the SLO is currently missed. Reads the "
                f"recording rule {rules.ERROR_RATIO}.",
                steps=below(slo.objective / 100.0), decimals=3, width=6, height=5,
                runbook=ALERT_SLO_BURN))
            panels.append(Panel(
                f"{name}: error budget remaining", "gauge",
                q(slo_series(rules.BUDGET_REMAINING, service, slo), _legend(slo, "budget left")),
                "percentunit",
                f"Share of the {slo.window} error budget ({budget:g} of events may be bad) still "
                "unspent. Below 25% (orange) freeze risky launches; below 0 (red) the SLO is "
                "breached and reliability work takes priority. The same recording rule "
                f"({rules.BUDGET_REMAINING}) the runbooks and alerts use.",
                steps=((None, "red"), (0.0, "orange"), (0.25, "green")),
                min=0.0, max=1.0, decimals=1, width=6, height=5, runbook=ALERT_SLO_BURN))
    return tuple(panels)


def burn_rate_panels(spec: Spec) -> tuple[Panel, ...]:
    """On-call: per SLO, the burn rate over the page tiers' long windows."""
    panels: list[Panel] = []
    for service in spec.services:
        for slo in service.slos:
            tiers = [t for t in slo.tiers if t.severity == "page"] or list(slo.tiers)
            windows = sorted({t.long_window for t in tiers}, key=duration.seconds)
            factors = sorted({t.factor for t in tiers})
            queries = tuple(Query(slo_series(rules.BURN_RATE, service, slo, w),
                                  _legend(slo, f"burn rate {w}")) for w in windows)
            steps: Steps = ((None, "green"),) + tuple(
                (f, "red" if f == factors[-1] else "orange") for f in factors)
            tiers_txt = ", ".join(f"{t.factor:g}x over {t.long_window}/{t.short_window} "
                                  f"({t.severity})" for t in slo.tiers)
            panels.append(Panel(
                f"{_slo_title(service, slo)}: burn rate", "timeseries", queries,
                "suffix:x",
                f"How fast the error budget of the {_pct(slo.objective)} {slo.sli.kind} SLO burns: "
                f"1x spends exactly the budget in {slo.window}. Alert tiers: {tiers_txt}. A line "
                "above a threshold that stays there means the alert fires; check the error-rate "
                "and errors-by-function panels for the cause.",
                steps=steps, min=0.0, width=12, height=8, runbook=ALERT_SLO_BURN))
    return tuple(panels)


def currency_unit(currency: str) -> str:
    """Grafana's unit id for a currency code."""
    known = {"USD", "GBP", "EUR", "JPY", "RUB", "UAH", "BRL", "DKK", "ISK", "NOK", "SEK", "CZK",
             "CHF", "PLN", "ZAR", "INR", "KRW", "IDR", "PHP", "VND"}
    code = currency.upper()
    return f"currency{code}" if code in known else f"currency:{currency}"
