"""Canary analysis from the spec: an Argo Rollouts AnalysisTemplate and its recordings.

The burn-rate metrics read the *same SLI expressions* as the alerts
(:func:`jaxobs.generate.sli.sli_rates`), recorded once more by the canary's track
label (``jaxobs_slo_track:*``), and divide by the error budget the alerts divide
by (``jaxobs_slo:error_budget:ratio``).  A canary fails where it would page if it
were the whole fleet: its burn over the fastest page tier's short window reaches
that tier's factor.  It passes below the slowest factor any tier alerts on;
in between (burning, but not page-fast) the measurement is inconclusive and
Argo Rollouts pauses the rollout for a person.

The other metrics compare the canary with the stable version or with the
thresholds of the resource alerts: steady-state latency (the latency SLO's
quantile), the cold-start ratio and compilations of *warm* canary replicas, and
version skew inside the canary (``jaxobs_build_info``).  Every condition is
guarded with ``len(result) > 0``: no data is inconclusive, never a pass.

Argo Rollouts fills the ``canary-hash``/``stable-hash`` arguments from the
Rollout (``valueFrom.podTemplateHashValue: Latest`` / ``Stable``); see
docs/autoscaling.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import names as n
from jaxobs.generate import promql as q
from jaxobs.generate.autoscaling import OBJECT_LABELS, kube_dir
from jaxobs.generate.render import dump_yaml
from jaxobs.generate.sli import COLD, STEADY, sli_rates
from jaxobs.generate.slo_rules import base_window
from jaxobs.slo import duration
from jaxobs.slo.kube_model import Canary
from jaxobs.slo.model import SLO, Service, Spec

CANARY_ARG = "canary-hash"
STABLE_ARG = "stable-hash"
ADDRESS_ARG = "prometheus-address"
MISS = 'cache="miss"'


@dataclass(frozen=True)
class Check:
    """One analysis metric: a query whose single value passes below ``success`` and fails
    above ``failure`` (inclusive as ``failure_inclusive`` says); between them: inconclusive."""

    name: str
    kind: str  # burn, latency, cold-start, compiles, version-skew (the runbook's sections)
    query: str
    success: float
    failure: float
    failure_inclusive: bool = True

    def conditions(self) -> tuple[str, str]:
        ok = f"len(result) > 0 && result[0] < {q.number(self.success)}" if self.failure_inclusive \
            else f"len(result) > 0 && result[0] <= {q.number(self.success)}"
        op = ">=" if self.failure_inclusive else ">"
        return ok, f"len(result) > 0 && result[0] {op} {q.number(self.failure)}"


def _arg(name: str) -> str:
    return "{{args." + name + "}}"


def _track(canary: Canary, arg: str) -> str:
    return q.eq(canary.track_label, _arg(arg))


def _tracked(slo: SLO, canary: Canary) -> SLO:
    """``slo`` also grouped by the track label (so its SLI rates split canary from stable)."""
    if canary.track_label in slo.group_by:
        return slo
    return dataclasses.replace(slo, group_by=(*slo.group_by, canary.track_label))


def recording_rules(service: Service) -> list[dict[str, Any]]:
    """Per SLO the SLI's two rates by track, with the alerts' own expressions."""
    canary = service.canary
    if canary is None:
        return []
    rules: list[dict[str, Any]] = []
    for slo in (s for s in service.slos if s.alerting):  # the SLOs the analysis judges
        errors, events = sli_rates(service, _tracked(slo, canary), base_window(slo))
        labels = {"service": service.name, "slo": slo.name}
        rules += [{"record": n.TRACK_ERRORS_RATE, "expr": errors, "labels": dict(labels)},
                  {"record": n.TRACK_EVENTS_RATE, "expr": events, "labels": dict(labels)}]
    return rules


def page_tier_window(slo: SLO) -> tuple[float, str]:
    """(factor, short window) of the fastest page tier (the fastest tier if none pages)."""
    tiers = [t for t in slo.tiers if t.severity == "page"] or list(slo.tiers)
    fastest = max(tiers, key=lambda t: t.factor)
    return fastest.factor, fastest.short_window


def burn_query(service: Service, slo: SLO, canary: Canary) -> str:
    """The canary's burn rate over the fastest page tier's short window."""
    _, window = page_tier_window(slo)
    ids = (q.eq("service", service.name), q.eq("slo", slo.name), _track(canary, CANARY_ARG))
    errors, events = (q.selector(r, *ids) for r in (n.TRACK_ERRORS_RATE, n.TRACK_EVENTS_RATE))
    if duration.seconds(window) > duration.seconds(base_window(slo)):
        errors, events = (f"sum_over_time({x}[{window}])" for x in (errors, events))
    budget = q.selector(n.ERROR_BUDGET, q.eq("service", service.name), q.eq("slo", slo.name))
    return f"sum({errors})\n/\n(sum({events}) > 0)\n/\nmax({budget})"


def burn_check(service: Service, slo: SLO, canary: Canary) -> Check:
    factor, _ = page_tier_window(slo)
    slowest = min(t.factor for t in slo.tiers)
    return Check(f"burn-{slo.name}", "burn", burn_query(service, slo, canary),
                 success=slowest, failure=factor)


def _steady_quantile(service: Service, phi: float, canary: Canary, arg: str) -> str:
    buckets = q.selector(c.REQUEST_DURATION.name + "_bucket", q.eq("service", service.name),
                         STEADY, _track(canary, arg))
    return q.histogram_quantile(phi, q.rate(buckets, canary.interval))


def latency_check(service: Service, canary: Canary) -> Check:
    """Canary steady p-quantile over what it may reach: the stable one times the tolerance,
    but never less than the latency SLO's threshold.  Above 1 fails."""
    latency = next((s for s in service.slos if s.sli.kind == "latency"), None)
    phi = latency.objective / 100 if latency else 0.99
    floor = latency.sli.threshold_seconds if latency and latency.sli.threshold_seconds else 0.0
    stable = f"{_steady_quantile(service, phi, canary, STABLE_ARG)} * {q.number(canary.latency_tolerance)}"
    if floor:
        stable = f"clamp_min(\n  {stable}\n  or\n  vector(0),\n  {q.number(floor)}\n)"
    query = f"{_steady_quantile(service, phi, canary, CANARY_ARG)}\n/\n{stable}"
    return Check("steady-latency", "latency", query, success=1, failure=1, failure_inclusive=False)


def _warm(service: Service, canary: Canary) -> str:
    """Canary replicas ready for the whole interval (their warm-up is over)."""
    ready = q.selector(c.READY.name, *q.matchers(service.target_selector), _track(canary, CANARY_ARG))
    return f"min_over_time({ready}[{canary.interval}]) == 1"


def _sum_warm(series: str, service: Service, canary: Canary) -> str:
    """``sum(series and on (job, instance) warm canary replicas)``."""
    return (f"sum(\n  {series}\n  and on (job, instance)\n  "
            f"{_warm(service, canary)}\n)")


def cold_start_check(service: Service, spec: Spec, canary: Canary) -> Check:
    count = c.REQUEST_DURATION.name + "_count"
    match = (q.eq("service", service.name), _track(canary, CANARY_ARG))
    cold = _sum_warm(q.rate(q.selector(count, *match, COLD), canary.interval), service, canary)
    every = _sum_warm(q.rate(q.selector(count, *match), canary.interval), service, canary)
    threshold = spec.resources.cold_start_ratio
    return Check("cold-start-ratio", "cold-start", f"(\n{cold}\nor\nvector(0)\n)\n/\n({every} > 0)",
                 success=threshold, failure=threshold, failure_inclusive=False)


def compiles_check(service: Service, canary: Canary) -> Check:
    misses = q.selector(c.CALLS.name, *q.matchers(service.target_selector), MISS,
                        _track(canary, CANARY_ARG))
    compiled = _sum_warm(q.increase(misses, canary.interval), service, canary)
    query = f"(\n{compiled}\nor\nvector(0)\n)\n/\ncount({_warm(service, canary)})"
    return Check("compiles-per-replica", "compiles", query, success=canary.max_compiles_per_replica,
                 failure=canary.max_compiles_per_replica, failure_inclusive=False)


def skew_check(service: Service, canary: Canary) -> Check:
    info = q.selector(c.BUILD_INFO.name, *q.matchers(service.target_selector),
                      _track(canary, CANARY_ARG))
    query = f"count(\n  count by ({', '.join(c.BUILD_INFO.labels)}) ({info})\n)"
    return Check("version-skew", "version-skew", query, success=1, failure=1,
                 failure_inclusive=False)


def checks(service: Service, spec: Spec) -> list[Check]:
    canary = service.canary
    if canary is None:
        return []
    out = [burn_check(service, slo, canary) for slo in service.slos if slo.alerting]
    out += [latency_check(service, canary), cold_start_check(service, spec, canary),
            compiles_check(service, canary), skew_check(service, canary)]
    return out


def analysis_template(service: Service, spec: Spec) -> dict[str, Any]:
    canary = service.canary
    assert canary is not None
    metrics = []
    for check in checks(service, spec):
        success, failure = check.conditions()
        metrics.append({
            "name": check.name,
            "initialDelay": canary.initial_delay,
            "interval": canary.interval,
            "count": canary.count,
            "failureLimit": canary.failure_limit,
            "successCondition": success,
            "failureCondition": failure,
            "provider": {"prometheus": {"address": _arg(ADDRESS_ARG), "query": check.query}},
        })
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": f"{service.name.lower().replace('_', '-')}-jaxobs-canary",
                     "labels": {**OBJECT_LABELS, "jaxobs.dev/service": service.name}},
        "spec": {
            "args": [{"name": CANARY_ARG}, {"name": STABLE_ARG},
                     {"name": ADDRESS_ARG, "value": canary.prometheus_address}],
            "metrics": metrics,
        },
    }


def build_canary_analysis(spec: Spec, source: str) -> dict[str, str]:
    """``{path: text}``: every canary service's AnalysisTemplate and its runbook."""
    from jaxobs.generate.canary_runbook import render_canary_runbook

    files: dict[str, str] = {}
    for service in spec.services:
        if service.canary is None:
            continue
        base = kube_dir(service)
        files[f"{base}/analysistemplate.yaml"] = dump_yaml(
            analysis_template(service, spec), source,
            f"Argo Rollouts AnalysisTemplate of {service.name}: judges a canary by the SLOs that\n"
            f"page. Needs the recording rules of alerts/jaxobs.rules.yaml (group "
            f"jaxobs-canary-{service.name}).\nWhat a failed metric means and how to roll back: "
            f"{base}/canary-analysis.md")
        files[f"{base}/canary-analysis.md"] = render_canary_runbook(service, spec, source)
    return files
