"""Prometheus rules from the SLO model: the rule file and the PrometheusRule.

Pure functions of a :class:`~jaxobs.slo.model.Spec`.  The SLO recordings and
alerts come from :mod:`jaxobs.generate.slo_rules`, the alerts that need no SLO
from :mod:`jaxobs.generate.resources`; this module groups them, writes labels
and annotations, and renders both output formats.

Every alert carries ``severity`` (``page``/``ticket``, or the spec's
``severity_labels``, e.g. ``critical``/``warning``), ``service``, ``category``
and the service's/SLO's/tier's own labels, and the annotations ``summary``,
``description`` (with the offending ``{{ $value }}``), ``runbook_url`` and,
when the spec names a Grafana, ``dashboard_url``.  Every metric name comes from
:mod:`jaxobs.catalog`; nothing here imports jax.
"""

from __future__ import annotations

from typing import Any

from jaxobs.generate import promql as q
from jaxobs.generate.kube_rules import kube_rule_groups
from jaxobs.generate.names import (  # re-exported: rules.SLO_BURN etc.
    ALERT_NAME_PATTERN,
    ALERT_NAMES,
    BUDGET_REMAINING,
    BUILD_MISMATCH,
    BURN_RATE,
    CACHE_HIT_LOW,
    COLD_START_HIGH,
    COLLECTOR_DOWN,
    CONCURRENT_COMPILATION,
    DEPLOY_IN_PROGRESS,
    DEPLOY_STUCK,
    DEPLOY_SUPPRESSED_CATEGORIES,
    DEVICE_MEMORY_HIGH,
    ERROR_BUDGET,
    ERROR_RATIO,
    ERRORS_RATE,
    EVENTS_RATE,
    GPU_XID,
    OBJECTIVE,
    ONCALL_DASHBOARD_TITLE,
    OOM_ERRORS,
    RECOMPILATION_STORM,
    RECORDING_RULE_NAMES,
    SLO_BURN,
    SLO_NO_DATA,
    TARGET_DOWN,
    UP,
    Alert,
    dashboard_uid,
)
from jaxobs.generate.render import dump_yaml
from jaxobs.generate.resources import resource_alerts
from jaxobs.generate.sli import sli_words
from jaxobs.generate.slo_rules import alert_windows, recording_rules, slo_alerts
from jaxobs.slo.model import Spec

eq = q.eq
sel = q.selector

__all__ = ["ALERT_NAMES", "ALERT_NAME_PATTERN", "Alert", "BUDGET_REMAINING", "BUILD_MISMATCH",
           "BURN_RATE", "CACHE_HIT_LOW", "COLD_START_HIGH", "COLLECTOR_DOWN",
           "CONCURRENT_COMPILATION", "DEPLOY_IN_PROGRESS", "DEPLOY_STUCK",
           "DEPLOY_SUPPRESSED_CATEGORIES", "DEVICE_MEMORY_HIGH", "ERRORS_RATE", "ERROR_BUDGET",
           "ERROR_RATIO", "EVENTS_RATE", "GPU_XID", "OBJECTIVE", "ONCALL_DASHBOARD_TITLE",
           "OOM_ERRORS", "RECOMPILATION_STORM", "RECORDING_RULE_NAMES", "SLO_BURN",
           "SLO_NO_DATA", "TARGET_DOWN", "UP", "alert_names", "alert_rule", "alert_windows",
           "all_alerts", "dashboard_uid", "dashboard_url", "eq", "prometheus_rule",
           "recording_rules", "render_prometheus_rule", "render_rules", "resource_alerts",
           "rule_groups", "runbook_url", "sel", "sli_words", "slo_alerts"]


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


def dashboard_url(spec: Spec) -> str | None:
    """The on-call dashboard filtered to the alert's service (None without a Grafana URL)."""
    if spec.outputs.grafana_url is None:
        return None
    uid = dashboard_uid(ONCALL_DASHBOARD_TITLE)
    return f"{spec.outputs.grafana_url}/d/{uid}/?var-service={{{{ $labels.service }}}}"


def alert_rule(alert: Alert, spec: Spec) -> dict[str, Any]:
    service = next(s for s in spec.services if s.name == alert.service)
    annotations = {"summary": alert.summary, "description": alert.description,
                   "runbook_url": runbook_url(spec, alert.name),
                   "targets": ",".join(q.matchers(service.target_selector))}
    url = dashboard_url(spec)
    if url:
        annotations["dashboard_url"] = url
    rule: dict[str, Any] = {
        "alert": alert.name,
        "expr": alert.expr,
        "labels": {**dict(alert.labels), "severity": spec.outputs.severity(alert.severity),
                   "service": alert.service, "category": alert.category},
        "annotations": annotations,
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
        alerts = slo_alerts(service)
        if alerts:
            groups.append({"name": f"jaxobs-slo-alerts-{service.name}",
                           "rules": [alert_rule(a, spec) for a in alerts]})
        groups.append({"name": f"jaxobs-resources-{service.name}",
                       "rules": [alert_rule(a, spec) for a in resource_alerts(service,
                                                                               spec.resources)]})
        groups += kube_rule_groups(service)
    return groups


_PREAMBLE = ("SLO recording rules and alerts of jaxobs (plain Prometheus rule file).\n"
             "Check: promtool check rules {path}; tests: promtool test rules alerts/tests/*.yaml")


def render_rules(spec: Spec, source: str) -> str:
    """The plain Prometheus rule file."""
    return dump_yaml({"groups": rule_groups(spec)}, source,
                     _PREAMBLE.format(path="alerts/jaxobs.rules.yaml"))


def prometheus_rule(spec: Spec) -> dict[str, Any]:
    """The same groups as a prometheus-operator ``PrometheusRule`` custom resource."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "jaxobs-slos", "labels": dict(spec.outputs.prometheus_rule_labels)},
        "spec": {"groups": rule_groups(spec)},
    }


def render_prometheus_rule(spec: Spec, source: str) -> str:
    return dump_yaml(prometheus_rule(spec), source,
                     "The rules of alerts/jaxobs.rules.yaml as a prometheus-operator "
                     "PrometheusRule.\nApply: kubectl apply -n <monitoring namespace> -f "
                     "alerts/prometheusrule.yaml")
