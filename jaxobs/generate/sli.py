"""The PromQL of an SLI: bad events and all events per second, by the SLO's grouping labels.

Only these two rates read raw metrics; every window's ratio, the burn rates,
the budget, the dashboards and the runbooks read their recordings (see
:mod:`jaxobs.generate.slo_rules`).  Missing error series (nothing failed yet)
count as zero errors, but only where the events exist: with no events at all
the rates have no sample, which is what the no-data alert watches.
"""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate import promql as q
from jaxobs.slo.model import SLI, SLO, Service

MISS = 'cache="miss"'
COLD = 'start="cold"'
STEADY = 'start="steady"'
ERROR = 'outcome="error"'


def _or_zero(errors: str, events: str) -> str:
    """``errors``, or 0 for every group that has events but no error series yet."""
    return f"{errors}\nor\n0 * {events}"


def sli_rates(service: Service, slo: SLO, window: str,
              zero_fill: bool = True) -> tuple[str, str]:
    """``(errors per second, events per second)`` of the SLO over ``window``.

    ``zero_fill=False`` leaves out the "0 where nothing failed yet" branch: the plain
    ``errors / total`` shape other generators (Sloth) emit, which the rule-cost
    benchmark compares against.
    """
    sli, by = slo.sli, slo.group_by

    def bad_or_zero(bad: str, total: str) -> str:
        return _or_zero(bad, total) if zero_fill else bad

    svc = (q.eq("service", service.name),) + q.matchers(sli.selector)
    if sli.kind == "availability":
        total = q.sum_rate(q.selector(c.REQUESTS.name, *svc), window, by)
        bad = q.sum_rate(q.selector(c.REQUESTS.name, *svc, ERROR), window, by)
        return bad_or_zero(bad, total), total
    if sli.kind == "latency":
        if sli.threshold_seconds is None:
            raise ValueError(f"{service.name}: latency SLI without a threshold")
        steady = svc + (STEADY,)
        total = q.sum_rate(q.selector(c.REQUEST_DURATION.name + "_count", *steady), window, by)
        good = q.sum_rate(q.selector(c.REQUEST_DURATION.name + "_bucket", *steady,
                                     q.le_matcher(sli.threshold_seconds)), window, by)
        return f"{total}\n-\n{good}", total
    if sli.kind == "cold_start" and not any(k == "function" for k, _ in sli.selector):
        count = c.REQUEST_DURATION.name + "_count"
        total = q.sum_rate(q.selector(count, *svc), window, by)
        bad = q.sum_rate(q.selector(count, *svc, COLD), window, by)
        return bad_or_zero(bad, total), total
    if sli.kind in ("cold_start", "cache_hit"):
        # Calls carry no service label: scope them by the service's targets (and selector).
        scope = q.matchers(service.target_selector) + q.matchers(sli.selector)
        total = q.sum_rate(q.selector(c.CALLS.name, *scope), window, by)
        bad = q.sum_rate(q.selector(c.CALLS.name, *scope, MISS), window, by)
        return bad_or_zero(bad, total), total
    if sli.kind == "raw":
        if not sli.errors_query or not sli.total_query:
            raise ValueError(f"{service.name}: raw SLI needs errors and total queries")
        total = q.agg("sum", by, sli.total_query.replace("$window", window))
        bad = q.agg("sum", by, sli.errors_query.replace("$window", window))
        return bad_or_zero(bad, total), total
    raise ValueError(f"{service.name}: unknown SLI kind {sli.kind!r}")


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
