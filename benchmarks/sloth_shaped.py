"""Sloth-shaped Prometheus rules for the SLOs of a jaxobs spec: the comparison point
of ``rule_cost.py``.

Written from the rule shapes Sloth documents and generates (``sloth generate``),
for the same SLIs (the same selectors, read through :func:`jaxobs.generate.sli.sli_rates`
without jaxobs' zero-fill branch, as a Sloth user would write ``error_query`` and
``total_query``) and the same burn-rate tiers:

* ``slo:sli_error:ratio_rate<W>`` for every alert window W: ``errors[W] / total[W]``,
  each read from the raw series;
* ``slo:sli_error:ratio_rate<SLO window>``: Sloth's "optimized" period ratio,
  ``sum_over_time(ratio_rate5m[30d]) / count_over_time(ratio_rate5m[30d])`` (the
  mean of 5-minute ratios);
* the seven metadata recordings (objective, error budget, period days, current and
  period burn rate, budget remaining, ``sloth_slo_info``);
* a page and a ticket alert, each "quick tier or slow tier" on the ratio recordings.

One group per SLO for the SLI recordings, one for the metadata and one for the
alerts, as Sloth lays them out.
"""

from __future__ import annotations

from typing import Any

from jaxobs.generate.sli import sli_rates
from jaxobs.generate.slo_rules import alert_windows
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, Service, Spec

#: The window of the short ratio the period ratio averages (Sloth: the page-quick short window).
SHORT_WINDOW = "5m"


def ratio_name(window: str) -> str:
    return f"slo:sli_error:ratio_rate{window}"


def slo_id_labels(service: Service, slo: SLO) -> dict[str, str]:
    return {"sloth_id": f"{service.name}-{slo.name}", "sloth_service": service.name,
            "sloth_slo": slo.name}


def _filter(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def sli_recordings(service: Service, slo: SLO) -> list[dict[str, Any]]:
    """One raw-data ratio per alert window, then the period ratio as a mean of 5m ratios."""
    ids = slo_id_labels(service, slo)
    rules = []
    for window in alert_windows(slo):
        errors, total = sli_rates(service, slo, window, zero_fill=False)
        rules.append({"record": ratio_name(window), "expr": f"({errors})\n/\n({total})\n",
                      "labels": {**ids, "sloth_window": window}})
    short = ratio_name(SHORT_WINDOW) + _filter(ids)
    rules.append({
        "record": ratio_name(slo.window),
        "expr": (f"sum_over_time({short}[{slo.window}])\n/ ignoring (sloth_window)\n"
                 f"count_over_time({short}[{slo.window}])\n"),
        "labels": {"sloth_window": slo.window},
    })
    return rules


def metadata_recordings(service: Service, slo: SLO) -> list[dict[str, Any]]:
    ids = slo_id_labels(service, slo)
    match = _filter(ids)
    objective = slo.objective / 100
    on = "on(sloth_id, sloth_slo, sloth_service) group_left"

    def burn(window: str) -> str:
        return f"{ratio_name(window)}{match}\n/ {on}\nslo:error_budget:ratio{match}\n"

    days = duration.seconds(slo.window) / 86400
    return [
        {"record": "slo:objective:ratio", "expr": f"vector({objective:g})", "labels": ids},
        {"record": "slo:error_budget:ratio", "expr": f"vector(1-{objective:g})", "labels": ids},
        {"record": "slo:time_period:days", "expr": f"vector({days:g})", "labels": ids},
        {"record": "slo:current_burn_rate:ratio", "expr": burn(SHORT_WINDOW), "labels": ids},
        {"record": "slo:period_burn_rate:ratio", "expr": burn(slo.window), "labels": ids},
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - slo:period_burn_rate:ratio{match}", "labels": ids},
        {"record": "sloth_slo_info", "expr": "vector(1)",
         "labels": {**ids, "sloth_mode": "cli-gen-prom", "sloth_objective": f"{slo.objective:g}"}},
    ]


def alerts(service: Service, slo: SLO) -> list[dict[str, Any]]:
    """Sloth's two alerts: page (quick or slow page tier) and ticket (the two ticket tiers)."""
    match = _filter(slo_id_labels(service, slo))
    budget = slo.error_budget_ratio
    rules = []
    for severity in ("page", "ticket"):
        quick, slow = sorted((t for t in slo.tiers if t.severity == severity),
                             key=lambda t: duration.seconds(t.long_window))[:2]

        def both(tier: Any) -> str:
            return (f"({ratio_name(tier.short_window)}{match} > ({tier.factor:g} * {budget:g}))\n"
                    f"    and ignoring (sloth_window)\n"
                    f"    ({ratio_name(tier.long_window)}{match} > ({tier.factor:g} * {budget:g}))")

        rules.append({
            "alert": f"{service.name.title()}{slo.name.title().replace('-', '')}Burn",
            "expr": f"(\n    {both(quick)}\n)\nor ignoring (sloth_window)\n(\n    {both(slow)}\n)\n",
            "labels": {"sloth_severity": severity},
            "annotations": {"summary": "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO "
                                       "error budget burn rate is over expected."},
        })
    return rules


def sloth_rule_groups(spec: Spec) -> list[dict[str, Any]]:
    """Every enabled SLO of ``spec`` as Sloth lays it out: SLI, metadata and alert groups."""
    groups = []
    for service in spec.services:
        for slo in service.slos:
            if not slo.enabled:
                continue
            slo_id = f"{service.name}-{slo.name}"
            groups += [
                {"name": f"sloth-slo-sli-recordings-{slo_id}", "rules": sli_recordings(service, slo)},
                {"name": f"sloth-slo-meta-recordings-{slo_id}",
                 "rules": metadata_recordings(service, slo)},
            ]
            if slo.alerting:
                groups.append({"name": f"sloth-slo-alerts-{slo_id}", "rules": alerts(service, slo)})
    return groups
