"""Prometheus rules from the SLO model: SLI recording rules, burn-rate alerts, resource alerts.

Pure functions of a :class:`~jaxobs.slo.model.Spec`; the same groups become a
plain rule file and a prometheus-operator ``PrometheusRule`` (DESIGN.md §5).

Recording rules per SLO (why this many, and no more than Sloth)
----------------------------------------------------------------
Sloth records 8 SLI window ratios (5m 30m 1h 2h 6h 1d 3d 30d) plus 7 metadata
rules: 15 per SLO.  jaxobs records, per SLO:

* one error ratio per *distinct* window of its burn-rate tiers — the default
  tiers (1h/5m, 6h/30m, 1d/2h, 3d/6h) need 7: 5m 30m 1h 2h 6h 1d 3d, and
  windows shared by tiers (or spelled differently, ``60m`` = ``1h``) are
  recorded once;
* one error ratio over the SLO window (30d), averaged from the shortest window's
  ratio as Sloth does, because ``rate(...[30d])`` over raw counters on every
  evaluation is what makes SLO rules expensive (skipped when a tier already
  records that window);
* four metadata rules: objective, error budget, the burn rate of *every* window
  (one rule: it divides all the ratio series of the SLO by the budget, keeping
  their ``window`` label) and the error budget remaining over the SLO window.

So the default tiers give **12 recording rules per SLO** (7 + 1 + 4, vs Sloth's
15); the seed guide's single "page when burn > 3x over 1h" tier gives 2 + 1 + 4
= 7.  All ratios share one metric name and differ by a ``window`` label, which
is what lets a single rule compute every burn rate.

Alerts
------
* ``JaxobsErrorBudgetBurn``: one rule per tier (multi-window: the long *and* the
  short window must burn faster than the tier's factor), labelled with the
  tier's ``severity`` and long ``window``; the tier's own ``for``.
* Resource alerts per service (they need no SLO), scoped by the service's
  target selector: see :func:`resource_alerts`.

Every alert carries ``severity`` (page|ticket), ``service``, ``category`` and
the service's/SLO's own labels, and the annotations ``summary``, ``description``
(with the offending ``{{ $value }}``) and ``runbook_url``.  Every metric name
comes from :mod:`jaxobs.catalog`; nothing here imports jax.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxobs import catalog as c
from jaxobs.generate.render import dump_yaml
from jaxobs.slo import duration
from jaxobs.slo.model import SLI, SLO, BurnRateTier, ResourceThresholds, Service, Spec

#: Prometheus' own scrape-health series (not a jaxobs metric, so not in the catalog).
UP = "up"

# --- recording rule names (level:metric:operations) ---------------------------------------
ERROR_RATIO = "jaxobs_slo:sli_error:ratio"
OBJECTIVE = "jaxobs_slo:objective:ratio"
ERROR_BUDGET = "jaxobs_slo:error_budget:ratio"
BURN_RATE = "jaxobs_slo:error_budget:burn_rate"
BUDGET_REMAINING = "jaxobs_slo:error_budget_remaining:ratio"
RECORDING_RULE_NAMES: tuple[str, ...] = (ERROR_RATIO, OBJECTIVE, ERROR_BUDGET, BURN_RATE,
                                         BUDGET_REMAINING)

# --- alert names -------------------------------------------------------------------------
SLO_BURN = "JaxobsErrorBudgetBurn"
DEVICE_MEMORY_HIGH = "JaxobsDeviceMemoryHigh"
OOM_ERRORS = "JaxobsOOMErrors"
CACHE_HIT_LOW = "JaxobsCompileCacheHitRatioLow"
COLD_START_HIGH = "JaxobsColdStartRatioHigh"
RECOMPILATION_STORM = "JaxobsRecompilationStorm"
CONCURRENT_COMPILATION = "JaxobsConcurrentCompilation"
TARGET_DOWN = "JaxobsTargetDown"
COLLECTOR_DOWN = "JaxobsCollectorDown"
GPU_XID = "JaxobsGPUXidErrors"
BUILD_MISMATCH = "JaxobsBuildInfoMismatch"
DEPLOY_IN_PROGRESS = "JaxobsDeployInProgress"

#: Every alert jaxobs can generate (runbooks exist for exactly these).
ALERT_NAMES: tuple[str, ...] = (
    SLO_BURN, DEVICE_MEMORY_HIGH, OOM_ERRORS, CACHE_HIT_LOW, COLD_START_HIGH, RECOMPILATION_STORM,
    CONCURRENT_COMPILATION, TARGET_DOWN, COLLECTOR_DOWN, GPU_XID, BUILD_MISMATCH,
    DEPLOY_IN_PROGRESS,
)

#: Alert categories that a deploy window suppresses (Alertmanager inhibition): a rollout
#: compiles everything once and briefly runs mixed versions.
DEPLOY_SUPPRESSED_CATEGORIES: tuple[str, ...] = ("compile", "version")

# --- windows of the resource alerts (data, not buried in strings) -------------------------
RATIO_WINDOW = "30m"  # cache-hit and cold-start ratios
OOM_WINDOW = "10m"
OOM_PAGE_WINDOW = "5m"  # the page needs OOMs in every such window for its `for`
STORM_WINDOW = "5m"
CONCURRENT_WINDOW = "5m"
XID_WINDOW = "15m"

MISS = 'cache="miss"'
COLD = 'start="cold"'
STEADY = 'start="steady"'
ERROR = 'outcome="error"'
OOM = 'error="oom"'
RECOMPILE = 'cause!="first"'

_VALUE = "{{ $value | humanize }}"
_PERCENT = "{{ $value | humanizePercentage }}"


@dataclass(frozen=True)
class Alert:
    """One alerting rule before it becomes YAML."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    category: str
    service: str
    labels: tuple[tuple[str, str], ...] = ()


# --- PromQL building blocks ----------------------------------------------------------------


def eq(label: str, value: str) -> str:
    """An equality matcher with the value escaped for a PromQL string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{label}="{escaped}"'


def le_matcher(bound: float) -> str:
    """Match a bucket bound however it was exposed: prometheus-client writes ``1.0``,
    Prometheus 3 normalises it to ``1``."""
    if float(bound).is_integer():
        return f'le=~"{int(bound)}(\\\\.0)?"'
    return f'le="{float(bound)!r}"'


def sel(name: str, *matchers: str) -> str:
    """``name{matchers}`` with matchers sorted, so output never depends on call order."""
    return f"{name}{{{','.join(sorted(matchers))}}}"


def _matchers(pairs: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    return tuple(eq(k, v) for k, v in pairs)


def _sum_rate(series: str, window: str) -> str:
    return f"sum(rate({series}[{window}]))"


def _ratio(bad: str, total: str) -> str:
    """``bad / total``; no traffic gives no sample (not NaN) so idle time is not averaged in."""
    return f"({bad})\n/\n({total} > 0)"


def sli_error_ratio(service: Service, sli: SLI, window: str) -> str:
    """PromQL for the fraction of bad events of ``sli`` over ``window`` (a labelless vector).

    Missing error series (nothing failed yet) count as zero, not as "no data".
    """
    svc = (eq("service", service.name),) + _matchers(sli.selector)
    if sli.kind == "availability":
        total = _sum_rate(sel(c.REQUESTS.name, *svc), window)
        bad = _sum_rate(sel(c.REQUESTS.name, *svc, ERROR), window)
        return _ratio(f"{bad} or vector(0)", total)
    if sli.kind == "latency":
        if sli.threshold_seconds is None:
            raise ValueError(f"{service.name}: latency SLI without a threshold")
        steady = svc + (STEADY,)
        total = _sum_rate(sel(c.REQUEST_DURATION.name + "_count", *steady), window)
        good = _sum_rate(sel(c.REQUEST_DURATION.name + "_bucket", *steady,
                             le_matcher(sli.threshold_seconds)), window)
        return _ratio(f"{total}\n-\n({good} or vector(0))", total)
    if sli.kind == "cold_start" and not any(k == "function" for k, _ in sli.selector):
        count = c.REQUEST_DURATION.name + "_count"
        total = _sum_rate(sel(count, *svc), window)
        bad = _sum_rate(sel(count, *svc, COLD), window)
        return _ratio(f"{bad} or vector(0)", total)
    if sli.kind in ("cold_start", "cache_hit"):
        # Calls carry no service label: scope them by the service's targets (and selector).
        scope = _matchers(service.target_selector) + _matchers(sli.selector)
        total = _sum_rate(sel(c.CALLS.name, *scope), window)
        bad = _sum_rate(sel(c.CALLS.name, *scope, MISS), window)
        return _ratio(f"{bad} or vector(0)", total)
    if sli.kind == "raw":
        if not sli.errors_query or not sli.total_query:
            raise ValueError(f"{service.name}: raw SLI needs errors and total queries")
        errors = sli.errors_query.replace("$window", window)
        total = sli.total_query.replace("$window", window)
        return _ratio(f"sum({errors}) or vector(0)", f"sum({total})")
    raise ValueError(f"{service.name}: unknown SLI kind {sli.kind!r}")


# --- recording rules ----------------------------------------------------------------------


def alert_windows(slo: SLO) -> tuple[str, ...]:
    """The distinct windows the tiers of ``slo`` read, shortest first."""
    unique = {duration.seconds(w) for t in slo.tiers for w in (t.long_window, t.short_window)}
    return tuple(duration.canonical(s) for s in sorted(unique))


def _fmt(number: float) -> str:
    return f"{number:.12g}"


def _slo_labels(service: Service, slo: SLO) -> dict[str, str]:
    return {"service": service.name, "slo": slo.name}


def recording_rules(service: Service, slo: SLO) -> list[dict[str, Any]]:
    """The recording rules of one SLO, in evaluation order (later rules read earlier ones)."""
    ids = _slo_labels(service, slo)
    id_matchers = (eq("service", service.name), eq("slo", slo.name))
    windows = alert_windows(slo)
    rules: list[dict[str, Any]] = [
        {"record": ERROR_RATIO, "expr": sli_error_ratio(service, slo.sli, w),
         "labels": {**ids, "window": w}}
        for w in windows
    ]
    if duration.seconds(slo.window) not in {duration.seconds(w) for w in windows}:
        base = sel(ERROR_RATIO, *id_matchers, eq("window", windows[0]))
        rules.append({
            "record": ERROR_RATIO,
            "expr": f"sum_over_time({base}[{slo.window}])\n/\ncount_over_time({base}[{slo.window}])",
            "labels": {**ids, "window": slo.window},
        })
    budget = _fmt(slo.error_budget_ratio)
    rules += [
        {"record": OBJECTIVE, "expr": f"vector({_fmt(slo.objective / 100)})", "labels": dict(ids)},
        {"record": ERROR_BUDGET, "expr": f"vector({budget})", "labels": dict(ids)},
        {"record": BURN_RATE, "expr": f"{sel(ERROR_RATIO, *id_matchers)} / {budget}",
         "labels": dict(ids)},
        {"record": BUDGET_REMAINING,
         "expr": f"1 - {sel(ERROR_RATIO, *id_matchers, eq('window', slo.window))} / {budget}",
         "labels": dict(ids)},
    ]
    return rules


# --- SLO alerts ---------------------------------------------------------------------------

_SLI_WORDS = {
    "availability": "failed requests",
    "cold_start": "requests that waited for a JIT compile",
    "cache_hit": "calls that missed the compile cache",
    "raw": "bad events of the spec's raw queries",
}


def sli_words(sli: SLI) -> str:
    """What a bad event is, for humans."""
    if sli.kind == "latency":
        return f"steady-state requests slower than {sli.threshold_seconds:g}s"
    return _SLI_WORDS[sli.kind]


def slo_alert(service: Service, slo: SLO, tier: BurnRateTier) -> Alert:
    """The multi-window burn-rate alert of one tier."""
    ids = (eq("service", service.name), eq("slo", slo.name))
    factor = _fmt(tier.factor)
    expr = (f"{sel(BURN_RATE, *ids, eq('window', tier.long_window))} > {factor}\n"
            f"and ignoring (window)\n"
            f"{sel(BURN_RATE, *ids, eq('window', tier.short_window))} > {factor}")
    # At exactly `factor`x the budget lasts window/factor (rounded down to the minute).
    exhausted = duration.canonical(max(60, int(duration.seconds(slo.window) / tier.factor) // 60 * 60))
    description = (
        f"The {slo.objective:g}% {slo.sli.kind} SLO {slo.name!r} of {service.name} "
        f"({sli_words(slo.sli)} over {slo.window}) is burning its error budget {_VALUE}x "
        f"faster than sustainable over the last {tier.long_window}, and still over the last "
        f"{tier.short_window}. Above {factor}x the whole {slo.window} budget is gone in "
        f"{exhausted}.")
    return Alert(
        name=SLO_BURN, severity=tier.severity, expr=expr, for_=tier.for_,
        summary=(f"{service.name}/{slo.name}: error budget burning faster than {factor}x "
                 f"over {tier.long_window}"),
        description=description, category="slo", service=service.name,
        labels=tuple(sorted({**dict(service.labels), **dict(slo.labels), "slo": slo.name,
                             "sli": slo.sli.kind, "window": tier.long_window}.items())))


# --- resource alerts ----------------------------------------------------------------------


def resource_alerts(service: Service, t: ResourceThresholds) -> list[Alert]:
    """Alerts that need no SLO, scoped to the service's scrape targets (seed M4/M6/M8, F2–F7)."""
    s = _matchers(service.target_selector)
    name = service.name
    svc = eq("service", name)
    count = c.REQUEST_DURATION.name + "_count"
    calls_by_fn = f"sum by (function) (rate({sel(c.CALLS.name, *s)}[{RATIO_WINDOW}]))"
    misses_by_fn = f"sum by (function) (rate({sel(c.CALLS.name, *s, MISS)}[{RATIO_WINDOW}]))"
    oom = sel(c.ERRORS.name, *s, OOM)
    build_labels = ", ".join(c.BUILD_INFO.labels)
    labels = service.labels

    def alert(alert_name: str, severity: str, category: str, for_: str, expr: str,
              summary: str, description: str) -> Alert:
        return Alert(name=alert_name, severity=severity, expr=expr, for_=for_, summary=summary,
                     description=description, category=category, service=name, labels=labels)

    return [
        alert(DEVICE_MEMORY_HIGH, "ticket", "memory", "15m",
              f"{sel(c.DEVICE_MEMORY_UTILIZATION.name, *s)} > {_fmt(t.device_memory_ratio)}",
              f"{name}: device memory above {t.device_memory_ratio:.0%}",
              f"Device {{{{ $labels.device }}}} ({{{{ $labels.platform }}}}) on "
              f"{{{{ $labels.instance }}}} has {_PERCENT} of its memory in use for 15 minutes "
              f"(threshold {t.device_memory_ratio:.0%}); OOMs come next (F2)."),
        alert(OOM_ERRORS, "ticket", "memory", "0s",
              f"sum by (function) (increase({oom}[{OOM_WINDOW}])) > 0",
              f"{name}: out-of-memory errors",
              f"{{{{ $labels.function }}}} raised {_VALUE} out-of-memory errors in the last "
              f"{OOM_WINDOW} (F2)."),
        alert(OOM_ERRORS, "page", "memory", "10m",
              f"count(sum by (instance) (increase({oom}[{OOM_PAGE_WINDOW}])) > 0)\n/\n"
              f"count({sel(UP, *s)})\n>= {_fmt(t.oom_instance_ratio)}",
              f"{name}: widespread out-of-memory errors",
              f"{_PERCENT} of the instances of {name} kept raising out-of-memory errors for "
              f"10 minutes (page at {t.oom_instance_ratio:.0%}); requests are failing (F2)."),
        alert(CACHE_HIT_LOW, "ticket", "compile", "15m",
              f"(1 - {misses_by_fn}\n/\n{calls_by_fn}) < {_fmt(t.cache_hit_ratio)}\nand\n"
              f"sum by (function) (increase({sel(c.CALLS.name, *s)}[{RATIO_WINDOW}])) "
              f">= {t.ratio_min_events}",
              f"{name}: compile-cache hit ratio below {t.cache_hit_ratio:.0%}",
              f"Only {_PERCENT} of the calls of {{{{ $labels.function }}}} hit the compile cache "
              f"over {RATIO_WINDOW} (threshold {t.cache_hit_ratio:.0%}, M6); new shapes, dtypes "
              f"or static arguments keep compiling."),
        alert(COLD_START_HIGH, "ticket", "compile", "15m",
              f"{_sum_rate(sel(count, svc, COLD), RATIO_WINDOW)}\n/\n"
              f"{_sum_rate(sel(count, svc), RATIO_WINDOW)}\n> {_fmt(t.cold_start_ratio)}\nand\n"
              f"sum(increase({sel(count, svc)}[{RATIO_WINDOW}])) >= {t.ratio_min_events}",
              f"{name}: cold-start ratio above {t.cold_start_ratio:.0%}",
              f"{_PERCENT} of the requests of {name} waited for a JIT compile over "
              f"{RATIO_WINDOW} (threshold {t.cold_start_ratio:.0%}, M8, F1)."),
        alert(RECOMPILATION_STORM, "ticket", "compile", "10m",
              f"sum by (function) (rate({sel(c.COMPILATIONS.name, *s, RECOMPILE)}"
              f"[{STORM_WINDOW}])) * 60\n> {_fmt(t.recompiles_per_minute)}",
              f"{name}: recompilation storm",
              f"{{{{ $labels.function }}}} recompiles {_VALUE} times a minute (threshold "
              f"{_fmt(t.recompiles_per_minute)}, F3); see {c.COMPILATIONS.name} by cause."),
        alert(CONCURRENT_COMPILATION, "ticket", "compile", "0s",
              f"count by (function) (max_over_time({sel(c.COMPILATIONS_IN_PROGRESS.name, *s)}"
              f"[{CONCURRENT_WINDOW}]) > 0)\n>= {t.concurrent_compiling_replicas}",
              f"{name}: many replicas compiling the same function",
              f"{_VALUE} instances compiled {{{{ $labels.function }}}} within {CONCURRENT_WINDOW} "
              f"(threshold {t.concurrent_compiling_replicas}, F6 thundering compilation)."),
        alert(TARGET_DOWN, "ticket", "availability", "5m",
              f"{sel(UP, *s)} == 0",
              f"{name}: a scrape target is down",
              "{{ $labels.instance }} (job {{ $labels.job }}) has failed every scrape "
              "for 5 minutes (up = {{ $value }})."),
        alert(TARGET_DOWN, "page", "availability", "5m",
              f"count({sel(UP, *s)} == 0)\n== count({sel(UP, *s)})",
              f"{name}: every scrape target is down",
              f"All {_VALUE} scrape targets of {name} have been down for 5 minutes; "
              f"its SLO alerts are blind while there is no data."),
        alert(COLLECTOR_DOWN, "ticket", "observability", "10m",
              f"{sel(c.COLLECTOR_UP.name, *s)} == 0",
              f"{name}: a jaxobs collector is failing",
              f"Collector {{{{ $labels.collector }}}} (device {{{{ $labels.device }}}}) on "
              f"{{{{ $labels.instance }}}} has failed for 10 minutes "
              f"({c.COLLECTOR_UP.name} = {{{{ $value }}}}); its metrics are missing."),
        alert(GPU_XID, "ticket", "hardware", "0s",
              f"increase({sel(c.GPU_XID_ERRORS.name, *s)}[{XID_WINDOW}]) > 0",
              f"{name}: GPU XID errors",
              f"GPU {{{{ $labels.gpu }}}} ({{{{ $labels.model }}}}, {{{{ $labels.uuid }}}}) on "
              f"{{{{ $labels.instance }}}} reported {_VALUE} XID {{{{ $labels.xid }}}} errors in "
              f"{XID_WINDOW}."),
        alert(BUILD_MISMATCH, "ticket", "version", "30m",
              f"count(count by ({build_labels}) ({sel(c.BUILD_INFO.name, *s)})) > 1",
              f"{name}: replicas run different jax/driver versions",
              f"{_VALUE} different version sets ({build_labels}) run in {name} for 30 minutes "
              f"(F7: pin drivers and runtimes)."),
        alert(DEPLOY_IN_PROGRESS, "ticket", "deploy", "0s",
              f"max(max_over_time({sel(c.DEPLOY_IN_PROGRESS.name, *s)}[{t.deploy_grace_window}]))"
              f" == 1",
              f"{name}: deploy window open",
              f"A deploy of {name} is in progress or ended less than {t.deploy_grace_window} ago "
              f"({c.DEPLOY_IN_PROGRESS.name} = {{{{ $value }}}}); compile and version alerts are "
              f"inhibited meanwhile. This alert is routed to no one."),
    ]


# --- assembling ---------------------------------------------------------------------------


def slo_alerts(service: Service) -> list[Alert]:
    return [slo_alert(service, slo, tier) for slo in service.slos for tier in slo.tiers]


def all_alerts(spec: Spec) -> list[Alert]:
    """Every alert of the spec, in output order."""
    out: list[Alert] = []
    for service in spec.services:
        out += slo_alerts(service) + resource_alerts(service, spec.resources)
    return out


def alert_names(spec: Spec) -> tuple[str, ...]:
    """The distinct alert names the spec produces (one runbook each), sorted."""
    return tuple(sorted({a.name for a in all_alerts(spec)}))


def runbook_url(spec: Spec, alert_name: str) -> str:
    return f"{spec.runbook_base_url.rstrip('/')}/{alert_name}.md"


def alert_rule(alert: Alert, spec: Spec) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "alert": alert.name,
        "expr": alert.expr,
        "labels": {**dict(alert.labels), "severity": alert.severity, "service": alert.service,
                   "category": alert.category},
        "annotations": {"summary": alert.summary, "description": alert.description,
                        "runbook_url": runbook_url(spec, alert.name)},
    }
    if alert.for_ != "0s":
        rule["for"] = alert.for_
    return rule


def rule_groups(spec: Spec) -> list[dict[str, Any]]:
    """All rule groups: per SLO its recordings, per service its SLO alerts and resource alerts."""
    groups: list[dict[str, Any]] = []
    for service in spec.services:
        for slo in service.slos:
            groups.append({"name": f"jaxobs-slo-{service.name}-{slo.name}",
                           "rules": recording_rules(service, slo)})
        if service.slos:
            groups.append({"name": f"jaxobs-slo-alerts-{service.name}",
                           "rules": [alert_rule(a, spec) for a in slo_alerts(service)]})
        groups.append({"name": f"jaxobs-resources-{service.name}",
                       "rules": [alert_rule(a, spec) for a in resource_alerts(service,
                                                                               spec.resources)]})
    return groups


_PREAMBLE = ("SLO recording rules and alerts of jaxobs (plain Prometheus rule file).\n"
             "Check: promtool check rules {path}; tests: promtool test rules alerts/tests/*.yaml")


def render_rules(spec: Spec, source: str) -> str:
    """The plain Prometheus rule file."""
    return dump_yaml({"groups": rule_groups(spec)}, source,
                     _PREAMBLE.format(path="alerts/jaxobs.rules.yaml"))


#: Labels kube-prometheus' default ruleSelector picks up.
PROMETHEUS_RULE_LABELS: dict[str, str] = {
    "app.kubernetes.io/name": "jaxobs",
    "app.kubernetes.io/part-of": "jaxobs",
    "prometheus": "k8s",
    "role": "alert-rules",
}


def prometheus_rule(spec: Spec) -> dict[str, Any]:
    """The same groups as a prometheus-operator ``PrometheusRule`` custom resource."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "jaxobs-slos", "labels": dict(PROMETHEUS_RULE_LABELS)},
        "spec": {"groups": rule_groups(spec)},
    }


def render_prometheus_rule(spec: Spec, source: str) -> str:
    return dump_yaml(prometheus_rule(spec), source,
                     "The rules of alerts/jaxobs.rules.yaml as a prometheus-operator "
                     "PrometheusRule.\nApply: kubectl apply -n <monitoring namespace> -f "
                     "alerts/prometheusrule.yaml")
