"""Generators: pure functions from the validated SLO model to files.

:func:`generate_all` returns every generated file as ``{relative path: text}``;
the CLI (:mod:`jaxobs.generate.cli`) writes them atomically or compares them
with a checked-in tree.  Nothing here imports jax.

Layout of the output::

    alerts/jaxobs.rules.yaml        plain Prometheus rules (recording + alerting)
    alerts/prometheusrule.yaml      the same groups as a prometheus-operator PrometheusRule
    alerts/alertmanager.yml         a standalone Alertmanager config (the demo's)
    alerts/alertmanager-route.yml   the jaxobs sub-route, receivers and inhibitions to merge
    alerts/tests/*.test.yaml        promtool unit tests of every alert
    runbooks/<AlertName>.md         one runbook per generated alert
    dashboards/jaxobs-*.json        Grafana dashboards (jaxobs.generate.dashboards)
    alerts/kubernetes/<service>/    KEDA ScaledObject, HPA + prometheus-adapter rules, Argo
                                    Rollouts AnalysisTemplate and its runbook (autoscaling.py,
                                    canary_analysis.py)
"""

from __future__ import annotations

import dataclasses

from jaxobs.slo.model import Spec

RULES_PATH = "alerts/jaxobs.rules.yaml"
PROMETHEUS_RULE_PATH = "alerts/prometheusrule.yaml"
ALERTMANAGER_PATH = "alerts/alertmanager.yml"
ALERTMANAGER_ROUTE_PATH = "alerts/alertmanager-route.yml"


def generate_all(spec: Spec, source: str | None = None) -> dict[str, str]:
    """Every generated file for ``spec``; ``source`` is the spec path named in the headers
    (default ``spec.source``)."""
    from jaxobs.generate import alertmanager, promtests, rules, runbooks
    from jaxobs.generate.autoscaling import build_autoscaling
    from jaxobs.generate.canary_analysis import build_canary_analysis
    from jaxobs.generate.dashboards import build_dashboards

    src = source if source is not None else spec.source
    # Every generator names the same source (the dashboards read it from the spec).
    spec = dataclasses.replace(spec, source=src)
    files = {
        RULES_PATH: rules.render_rules(spec, src),
        PROMETHEUS_RULE_PATH: rules.render_prometheus_rule(spec, src),
        ALERTMANAGER_PATH: alertmanager.render_alertmanager(spec, src),
        ALERTMANAGER_ROUTE_PATH: alertmanager.render_route(spec, src),
        **promtests.build_tests(spec, src),
        **runbooks.build_runbooks(rules.alert_names(spec), src),
        **build_dashboards(spec),
        **build_autoscaling(spec, src),
        **build_canary_analysis(spec, src),
    }
    return dict(sorted(files.items()))


__all__ = ["generate_all"]
