"""Recording rules and alerts of one SLO.

Recording rules (why this shape, and no more rules than Sloth)
--------------------------------------------------------------
Only two rules read raw metrics: the SLI's bad-event rate and event rate over
the base window (5m), summed ``by`` the SLO's grouping labels.  Every window's
error ratio is then a *ratio of sums* of those recordings::

    sum_over_time(errors_rate[1h]) / sum_over_time(events_rate[1h])

which weights every 5-minute slice by its traffic.  (Averaging 5-minute
*ratios* instead lets one quiet hour with a few errors outweigh a busy hour
without any: 1h at 10k req/min and no errors, then 1h at 10 req/min with 10%
errors, averages to a budget of -45.7 where the counters say 0.90.)  It costs
what the average cost: one range read of a recording per window.

Per SLO: 2 rates + one ratio per distinct tier window and the SLO window
+ objective, error budget, burn rate (one rule for every window, keeping the
``window`` label) and budget remaining.  The default ladder gives 2 + 8 + 4 =
**14 recording rules per SLO**; Sloth generates 15.

The SLO window's ratio reads as far back as the window (30d): Prometheus must
keep at least that much of the recordings (``--storage.tsdb.retention.time``),
and the rules must run where every series of the SLI is visible (the Prometheus
that scrapes the targets, or the ruler of Thanos/Mimir for a global view).

Alerts
------
* ``JaxobsErrorBudgetBurn`` per tier: the long *and* the short window burn
  faster than the tier's factor, and the long window saw at least the tier's
  ``min_events``.  Below that a page tier files a ticket (label
  ``low_traffic="true"``) or stays silent, as the tier says.
* ``JaxobsSLONoData``: the SLI's event rate is absent (its series or its
  targets are gone), for as long as the fastest page tier would take to notice
  a total outage (clamped to 2m..1h).
"""

from __future__ import annotations

from typing import Any

from jaxobs.generate import promql as q
from jaxobs.generate.names import (
    BUDGET_REMAINING,
    BURN_RATE,
    ERROR_BUDGET,
    ERROR_RATIO,
    ERRORS_RATE,
    EVENTS_RATE,
    OBJECTIVE,
    SLO_BURN,
    SLO_NO_DATA,
    Alert,
)
from jaxobs.generate.sli import sli_rates, sli_words
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, BurnRateTier, Service

#: The window of the two raw-metric rates (shorter only if a tier's window is).
BASE_WINDOW = "5m"
#: No-data waits: at least this long (scrape hiccups), at most this long (a blind SLO).
NO_DATA_MIN_S, NO_DATA_MAX_S = 120, 3600

_VALUE = "{{ $value | humanize }}"


def alert_windows(slo: SLO) -> tuple[str, ...]:
    """The distinct windows the tiers of ``slo`` read, shortest first."""
    unique = {duration.seconds(w) for t in slo.tiers for w in (t.long_window, t.short_window)}
    return tuple(duration.canonical(s) for s in sorted(unique))


def base_window(slo: SLO) -> str:
    """The window of the raw-metric rates: 5m, or the shortest tier window if shorter."""
    shortest = min([duration.seconds(w) for w in alert_windows(slo)] or [300])
    return duration.canonical(min(duration.seconds(BASE_WINDOW), shortest))


def recorded_windows(slo: SLO) -> tuple[str, ...]:
    """Every window with an error-ratio recording: the tiers' and the SLO window."""
    unique = {duration.seconds(w) for w in alert_windows(slo)} | {duration.seconds(slo.window)}
    unique.add(duration.seconds(base_window(slo)))
    return tuple(duration.canonical(s) for s in sorted(unique))


def ids(service: Service, slo: SLO) -> tuple[str, str]:
    """The matchers of one SLO's recordings."""
    return (q.eq("service", service.name), q.eq("slo", slo.name))


def ratio_expr(service: Service, slo: SLO, window: str) -> str:
    """The error ratio over ``window``, from the two rate recordings."""
    errors, events = (q.selector(n, *ids(service, slo)) for n in (ERRORS_RATE, EVENTS_RATE))
    if duration.seconds(window) == duration.seconds(base_window(slo)):
        return f"{errors}\n/\n{q.positive(events)}"
    return (f"sum_over_time({errors}[{window}])\n/\n"
            f"{q.positive(f'sum_over_time({events}[{window}])')}")


def recording_rules(service: Service, slo: SLO) -> list[dict[str, Any]]:
    """The recording rules of one SLO, in evaluation order (later rules read earlier ones)."""
    labels = {"service": service.name, "slo": slo.name}
    errors, events = sli_rates(service, slo, base_window(slo))
    rules: list[dict[str, Any]] = [
        {"record": ERRORS_RATE, "expr": errors, "labels": dict(labels)},
        {"record": EVENTS_RATE, "expr": events, "labels": dict(labels)},
    ]
    rules += [{"record": ERROR_RATIO, "expr": ratio_expr(service, slo, w),
               "labels": {**labels, "window": w}} for w in recorded_windows(slo)]
    budget = q.number(slo.error_budget_ratio)
    match = ids(service, slo)
    rules += [
        {"record": OBJECTIVE, "expr": f"vector({q.number(slo.objective / 100)})",
         "labels": dict(labels)},
        {"record": ERROR_BUDGET, "expr": f"vector({budget})", "labels": dict(labels)},
        {"record": BURN_RATE, "expr": f"{q.selector(ERROR_RATIO, *match)} / {budget}",
         "labels": dict(labels)},
        {"record": BUDGET_REMAINING,
         "expr": f"1 - {q.selector(ERROR_RATIO, *match, q.eq('window', slo.window))} / {budget}",
         "labels": dict(labels)},
    ]
    return rules


# --- alerts -------------------------------------------------------------------------------


def burn_condition(service: Service, slo: SLO, tier: BurnRateTier) -> str:
    """Both windows of ``tier`` burn faster than its factor."""
    factor = q.number(tier.factor)
    match = ids(service, slo)
    return (f"{q.selector(BURN_RATE, *match, q.eq('window', tier.long_window))} > {factor}\n"
            f"and ignoring (window)\n"
            f"{q.selector(BURN_RATE, *match, q.eq('window', tier.short_window))} > {factor}")


def events_in(service: Service, slo: SLO, window: str) -> str:
    """Events of the SLI in ``window`` (the mean event rate times the window's seconds)."""
    return (f"avg_over_time({q.selector(EVENTS_RATE, *ids(service, slo))}[{window}]) "
            f"* {duration.seconds(window)}")


def _guarded(burn: str, events: str, op: str, minimum: int) -> str:
    return f"(\n{burn}\n)\nand ignoring (window)\n{events} {op} {minimum}"


def tier_alerts(service: Service, slo: SLO, tier: BurnRateTier) -> list[Alert]:
    """The alerts of one tier: guarded by traffic, plus the low-traffic ticket if any."""
    burn = burn_condition(service, slo, tier)
    guard = tier.min_events > 0 and not (tier.severity == "ticket" and tier.low_traffic == "ticket")
    if not guard:
        return [_burn_alert(service, slo, tier, tier.severity, burn, low_traffic=False)]
    events = events_in(service, slo, tier.long_window)
    out = [_burn_alert(service, slo, tier, tier.severity,
                       _guarded(burn, events, ">=", tier.min_events), low_traffic=False)]
    if tier.severity == "page" and tier.low_traffic == "ticket":
        out.append(_burn_alert(service, slo, tier, "ticket",
                               _guarded(burn, events, "<", tier.min_events), low_traffic=True))
    return out


def _exhausted_in(slo: SLO, factor: float) -> str:
    """How long the whole budget lasts at ``factor``x (rounded down to the minute)."""
    return duration.canonical(max(60, int(duration.seconds(slo.window) / factor) // 60 * 60))


def _burn_alert(service: Service, slo: SLO, tier: BurnRateTier, severity: str, expr: str,
                low_traffic: bool) -> Alert:
    factor = q.number(tier.factor)
    description = (
        f"The {slo.objective:g}% {slo.sli.kind} SLO {slo.name!r} of {service.name} "
        f"({sli_words(slo.sli)} over {slo.window}) is burning its error budget {_VALUE}x "
        f"faster than sustainable over the last {tier.long_window}, and still over the last "
        f"{tier.short_window}. Above {factor}x the whole {slo.window} budget is gone in "
        f"{_exhausted_in(slo, tier.factor)}.")
    labels = {**dict(service.labels), **dict(slo.labels), **dict(tier.labels), "slo": slo.name,
              "sli": slo.sli.kind, "window": tier.long_window}
    summary = (f"{service.name}/{slo.name}: error budget burning faster than {factor}x "
               f"over {tier.long_window}")
    if low_traffic:
        labels["low_traffic"] = "true"
        summary += f" (fewer than {tier.min_events} events: a ticket, not a page)"
        description += (f" Fewer than {tier.min_events} events arrived in {tier.long_window}, "
                        "too few to page on: a handful of failures can cause this burn.")
    return Alert(name=SLO_BURN, severity=severity, expr=expr, for_=tier.for_, summary=summary,
                 description=description, category="slo", service=service.name,
                 labels=tuple(sorted(labels.items())))


def no_data_wait(slo: SLO) -> str:
    """How long the SLI may be absent before alerting.

    As long as the fastest page tier would take to notice a total outage (all events
    bad: ``factor * budget * long_window``), clamped to 2m..1h.  A strict objective
    waits briefly (its burn alert would have fired fast), a loose one waits longer.
    """
    pages = [t for t in slo.tiers if t.severity == "page"] or list(slo.tiers)
    fastest = min((t.factor * slo.error_budget_ratio * duration.seconds(t.long_window)
                   for t in pages), default=NO_DATA_MAX_S)
    wait = int(min(NO_DATA_MAX_S, max(NO_DATA_MIN_S, fastest))) // 60 * 60
    return duration.canonical(wait)


def no_data_alert(service: Service, slo: SLO) -> Alert:
    """The SLI's event rate is absent: its series or its targets are gone."""
    severity = "page" if any(t.severity == "page" for t in slo.tiers) else "ticket"
    wait = no_data_wait(slo)
    selector = ", ".join(f"{k}={v}" for k, v in service.target_selector)
    return Alert(
        name=SLO_NO_DATA, severity=severity,
        expr=f"absent({q.selector(EVENTS_RATE, *ids(service, slo))})", for_=wait,
        summary=f"{service.name}/{slo.name}: no SLI data, the SLO cannot alert",
        description=(f"The SLI of the {slo.objective:g}% {slo.sli.kind} SLO {slo.name!r} of "
                     f"{service.name} has had no series for {wait}: its metrics were renamed "
                     f"or relabelled, the instrumentation was removed, or its targets "
                     f"({selector}) left service discovery. Its burn-rate alerts are blind "
                     f"until the data is back."),
        category="slo", service=service.name,
        labels=tuple(sorted({**dict(service.labels), **dict(slo.labels), "slo": slo.name,
                             "sli": slo.sli.kind}.items())))


def slo_alerts(service: Service) -> list[Alert]:
    """Every alert of the service's SLOs (none for record-only ones)."""
    out: list[Alert] = []
    for slo in service.slos:
        if not slo.alerting:
            continue
        for tier in slo.tiers:
            out += tier_alerts(service, slo, tier)
        if slo.no_data:
            out.append(no_data_alert(service, slo))
    return out
