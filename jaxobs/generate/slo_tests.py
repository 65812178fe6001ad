"""Generated promtool cases of the SLO alerts: time-shaped traffic, not constant ratios.

Every case starts with healthy traffic for longer than the longest tier window,
is evaluated every 5 minutes (the base window, so the recorded 5-minute rates
tile time exactly) and checks what an on-call engineer would see:

* **burst**: a short burst of errors sized to spend 1.5x the budget share of the
  most sensitive page tier pages that tier (and files no ticket), then, once the
  short windows are clean again while the long window still holds the burst,
  the page clears: a recovered service is silent.
* **slow burn**: a steady burn between the ticket and page factors files a
  ticket and never pages; the error budget remaining is checked against the
  value the counters give.
* **zero traffic**: counters that stop moving raise nothing, not even no-data.
* **no data**: when the SLI's series are gone the no-data alert fires.

Together they fail if the two windows of a tier are joined by ``or`` instead of
``and`` (the burst's long window still burns after recovery), or if every tier
reads the 5-minute window (the burst then files tickets), which
``tests/test_slo_scenarios.py`` proves by mutating the rules.

Raw-PromQL SLIs read the user's own metrics, whose shape jaxobs cannot know,
so they get no generated case (``promtool check rules`` still checks them);
neither do SLOs with windows under 5 minutes.
"""

from __future__ import annotations

import math

from jaxobs import catalog as c
from jaxobs.generate import promql as q
from jaxobs.generate.names import BUDGET_REMAINING, SLO_BURN, SLO_NO_DATA
from jaxobs.generate.slo_rules import base_window, no_data_wait
from jaxobs.generate.testcase import Case, Check, Series, instance, labels, segments, series
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, BurnRateTier, Outputs, Service

#: Rule evaluation interval of the SLO test files, and the step of their inputs.
EVAL_S = 300
STEP_S = 60
#: Events per input step: large, so even a 99.999% budget gives whole numbers.
EVENTS_PER_STEP = 100_000
#: Group label values of test inputs (one group per grouping label).
GROUP_VALUE = "a"

FIRING = 'alertstate="firing"'
Phase = tuple[float, int]  # (bad ratio, steps); a ratio below 0 means no traffic


def _minutes(text: str) -> int:
    return duration.seconds(text) // STEP_S


def _grid(minute: float) -> int:
    """The first evaluation (a multiple of 5 minutes) at or after ``minute``."""
    step = EVAL_S // STEP_S
    return int(math.ceil(minute / step) * step)


def _t(minutes: int) -> str:
    return duration.canonical(minutes * STEP_S)


def history(tiers: list[BurnRateTier]) -> int:
    """Healthy minutes before anything happens: an hour longer than the longest window of
    ``tiers`` (the tiers a case makes claims about), so their long windows are full."""
    return _grid(max((_minutes(t.long_window) for t in tiers), default=0) + 60)


def bad_per_step(ratio: float) -> int:
    """Bad events per input step for a bad ``ratio`` (whole events, rounded up)."""
    return min(EVENTS_PER_STEP, math.ceil(round(ratio * EVENTS_PER_STEP, 6)))


def slo_inputs(service: Service, slo: SLO, phases: list[Phase], *, other: bool = False
               ) -> tuple[Series, ...]:
    """Counters of the SLI's own metrics, phase after phase.  ``other``: the same series
    for another service (so the SLO's own selector matches nothing)."""
    total = EVENTS_PER_STEP
    bad_steps = [(0 if r < 0 else bad_per_step(r), n) for r, n in phases]
    all_steps = [(0 if r < 0 else total, n) for r, n in phases]
    good_steps = [(a - b, n) for (a, n), (b, _) in zip(all_steps, bad_steps, strict=True)]
    # Counters start far from zero: rate() does not extrapolate a counter below zero, so
    # one starting at 0 would be under-counted against the others in its first window.
    base = float(EVENTS_PER_STEP)
    bad, good, every = (segments(x, base) for x in (bad_steps, good_steps, all_steps))
    sli = slo.sli
    name = f"{service.name}-other" if other else service.name
    target = {**dict(service.target_selector), "instance": instance(0),
              **dict.fromkeys(slo.group_by, GROUP_VALUE)}
    if other:
        target = {k: (f"{v}-other" if k != "instance" else v) for k, v in target.items()}
    svc = {**target, "service": name, **dict(sli.selector)}
    count = c.REQUEST_DURATION.name + "_count"
    if sli.kind == "availability":
        return ((series(c.REQUESTS.name, {**svc, "outcome": "ok"}), good),
                (series(c.REQUESTS.name, {**svc, "outcome": "error"}), bad))
    if sli.kind == "latency":
        assert sli.threshold_seconds is not None
        le = f"{float(sli.threshold_seconds)!r}"
        bucket = c.REQUEST_DURATION.name + "_bucket"
        return ((series(count, {**svc, "start": "steady"}), every),
                (series(bucket, {**svc, "start": "steady", "le": le}), good),
                # As many cold requests, all slower than the threshold: must not count.
                (series(count, {**svc, "start": "cold"}), every),
                (series(bucket, {**svc, "start": "cold", "le": le}), segments(
                    [(0, n) for _, n in phases], base)))
    if sli.kind == "cold_start" and "function" not in dict(sli.selector):
        return ((series(count, {**svc, "start": "steady"}), good),
                (series(count, {**svc, "start": "cold"}), bad))
    if sli.kind in ("cold_start", "cache_hit"):
        calls = {**target, **dict(sli.selector)}
        calls.setdefault("function", "predict")
        return ((series(c.CALLS.name, {**calls, "cache": "hit"}), good),
                (series(c.CALLS.name, {**calls, "cache": "miss"}), bad))
    raise ValueError(f"no generated inputs for {sli.kind!r} SLIs")


def _alerts(service: Service, slo: SLO, *extra: str, name: str = SLO_BURN) -> str:
    return q.selector("ALERTS", q.eq("alertname", name), q.eq("service", service.name),
                      q.eq("slo", slo.name), *extra)


def _share(tier: BurnRateTier) -> float:
    """Bad-event minutes (at 100% errors) the tier's long window must hold, per budget unit."""
    return tier.factor * _minutes(tier.long_window)


def burst_case(service: Service, slo: SLO, out: Outputs) -> Case | None:
    """A burst pages the most sensitive page tier, then clears while the long window is high."""
    pages = sorted((t for t in slo.tiers if t.severity == "page"), key=_share)
    if not pages:
        return None
    first, budget = pages[0], slo.error_budget_ratio
    needed = _share(first) * budget  # bad minutes that cross the tier's threshold
    start = history(pages) + 2  # off the evaluation grid, as real bursts are
    # The shortest burst (at least 10m, under the long window) that clearly pages.
    fired: int | None = None
    length, ratio = 0, 0.0
    for length in range(max(10, math.ceil(1.5 * needed)), _minutes(first.long_window) - 4):
        ratio = min(1.0, 1.5 * needed / length)
        fired = _first_firing(first, budget, start, length, ratio)
        if fired is not None:
            break
    if fired is None:
        return None  # a burst short enough to recover from cannot page this tier
    cleared = _grid(start + length + max(_minutes(t.short_window) for t in pages) + 10)
    end = cleared + 5
    phases = [(0.0, start), (ratio, length), (0.0, end - start - length)]
    page, ticket = (q.eq("severity", out.severity(s)) for s in ("page", "ticket"))
    firing_pages = f"count by (window) ({_alerts(service, slo, FIRING, page)})"
    bad_minutes = ratio * length
    # Tiers whose long window is full of healthy history and needs 1/0.8 of the burst:
    # silent (with every tier on the 5-minute window they would fire).
    quiet = [t for t in slo.tiers if t is not first and bad_minutes < 0.8 * _share(t) * budget
             and _minutes(t.long_window) <= start]
    if all(t in quiet for t in pages[1:]):
        checks = [Check(firing_pages, _t(fired), ((labels({"window": first.long_window}), 1),))]
    else:
        checks = [Check(f"count({_alerts(service, slo, FIRING, page, q.eq('window', first.long_window))})",
                        _t(fired), (("{}", 1),))]
    if any(t.severity == "ticket" for t in quiet):
        checks.append(Check(_alerts(service, slo, ticket, q.eq("window", next(
            t.long_window for t in quiet if t.severity == "ticket"))), _t(fired)))
    checks.append(Check(_alerts(service, slo, page), _t(cleared)))
    return Case(
        name=(f"{service.name}/{slo.name}: a {length}m burst ({ratio:.3g} bad) pages "
              f"{first.long_window}, files no ticket, and clears while the "
              f"{first.long_window} window still holds it"),
        series=slo_inputs(service, slo, phases), checks=tuple(checks), interval=_t(1))


def _window_ratio(t: int, window: int, start: int, length: int, ratio: float,
                  closed: bool) -> float:
    """The recorded error ratio over ``window`` minutes at evaluation ``t`` (minutes).

    Prometheus 2 ranges are closed (``[t-w, t]``): a window holds ``w/5 + 1`` recordings,
    each rate covering the 5 input steps before it.  Prometheus 3 ranges are left-open:
    ``w/5`` recordings, each rate seeing the last 4 steps (then extrapolated, which cancels
    in a ratio).  Generated expectations must hold under both.
    """
    step = EVAL_S // STEP_S
    tiles = [e for e in range(t, t - window - (1 if closed else 0), -step) if e > 0]
    seen = step if closed else step - 1
    bad = sum(1 for e in tiles for k in range(e - seen + 1, e + 1) if start < k <= start + length)
    total = seen * len(tiles)
    return ratio * bad / total if total else 0.0


def _first_firing(tier: BurnRateTier, budget: float, start: int, length: int,
                  ratio: float) -> int | None:
    """The first evaluation at which ``tier`` fires on the burst, with a 5% margin on every
    evaluation that decides it (None when no evaluation is clear enough)."""
    step = EVAL_S // STEP_S
    threshold = tier.factor * budget
    wait = 0 if tier.for_ == "0s" else _minutes(tier.for_)
    long_w, short_w = _minutes(tier.long_window), _minutes(tier.short_window)

    def ratios(t: int, w: int) -> list[float]:
        return [_window_ratio(t, w, start, length, ratio, closed) for closed in (False, True)]

    def clearly_true(t: int) -> bool:
        return all(min(ratios(t, w)) > 1.05 * threshold for w in (long_w, short_w))

    def clearly_false(t: int) -> bool:
        return any(max(ratios(t, w)) < 0.95 * threshold for w in (long_w, short_w))

    pending: int | None = None
    for t in range(_grid(start), _grid(start + length + short_w) + step, step):
        if pending is None:
            if clearly_true(t):
                pending = t
            elif not clearly_false(t):
                return None  # too close to call at this evaluation
        elif clearly_true(t):
            if t - pending >= wait:
                return t
        else:
            return None
    return None


def slow_burn_case(service: Service, slo: SLO, out: Outputs) -> Case | None:
    """A burn between the ticket and page factors tickets, never pages; budget checked."""
    pages = [t.factor for t in slo.tiers if t.severity == "page"]
    tickets = [t for t in slo.tiers if t.severity == "ticket"]
    if not tickets or (pages and max(t.factor for t in tickets) >= min(pages)):
        return None
    burn = (max(t.factor for t in tickets) + min(pages)) / 2 if pages else \
        2 * max(t.factor for t in tickets)
    burn = min(burn, 0.9 / slo.error_budget_ratio)
    start = 60  # an hour of healthy traffic, then the burn
    needed = min(_time_to_fire(t, burn, start) for t in tickets)
    longest_for = max(0 if t.for_ == "0s" else _minutes(t.for_) for t in tickets)
    check_at = _grid(start + needed * 1.2 + longest_for + 15)
    phases = [(0.0, start), (burn * slo.error_budget_ratio, check_at - start + 5)]
    window = _minutes(slo.window)
    burning = min(check_at - start, window)
    healthy = max(0, min(window, check_at) - burning)
    actual = bad_per_step(burn * slo.error_budget_ratio) / EVENTS_PER_STEP / slo.error_budget_ratio
    remaining = 1 - actual * burning / (healthy + burning)
    page, ticket = (q.eq("severity", out.severity(s)) for s in ("page", "ticket"))
    ids = {"service": service.name, "slo": slo.name, "window": slo.window,
           **dict.fromkeys(slo.group_by, GROUP_VALUE)}
    budget = q.selector(BUDGET_REMAINING, q.eq("service", service.name), q.eq("slo", slo.name))
    return Case(
        name=(f"{service.name}/{slo.name}: a {burn:g}x burn for {_t(burning)} files a "
              f"ticket and no page; {remaining:.3g} of the budget remains"),
        series=slo_inputs(service, slo, phases),
        checks=(
            Check(f"clamp_max(count({_alerts(service, slo, FIRING, ticket)}), 1)",
                  _t(check_at), (("{}", 1),)),
            Check(_alerts(service, slo, page), _t(check_at)),
            Check(f"abs({budget} - {q.number(round(remaining, 6))}) < bool 0.02",
                  _t(check_at), ((labels(ids), 1),)),
        ),
        interval=_t(1))


def _time_to_fire(tier: BurnRateTier, burn: float, healthy: int) -> int:
    """Minutes of a steady ``burn`` after ``healthy`` minutes until both windows of ``tier``
    exceed its factor (a window holds what history there is)."""
    for minute in range(1, 40 * 24 * 60):
        ok = True
        for window in (_minutes(tier.long_window), _minutes(tier.short_window)):
            burning = min(minute, window)
            if burn * burning / min(minute + healthy, window) <= tier.factor:
                ok = False
        if ok:
            return minute
    return 40 * 24 * 60


def zero_traffic_case(service: Service, slo: SLO) -> Case:
    """Counters that stop moving: no burn alert, and no no-data alert either."""
    start = 120
    end = start + 120
    phases = [(0.0, start), (-1.0, end - start + 5)]
    silent = q.selector("ALERTS", q.eq("service", service.name), q.eq("slo", slo.name))
    return Case(name=f"{service.name}/{slo.name}: zero traffic stays silent",
                series=slo_inputs(service, slo, phases),
                checks=tuple(Check(silent, _t(t)) for t in (start + 30, end)),
                interval=_t(1))


def no_data_case(service: Service, slo: SLO) -> Case:
    """The SLI's series are gone (renamed labels, removed targets): no-data fires."""
    at = _grid(_minutes(no_data_wait(slo)) + 15)
    return Case(
        name=f"{service.name}/{slo.name}: no SLI series (only another service's) fires no-data",
        series=slo_inputs(service, slo, [(0.0, at + 5)], other=True),
        checks=(Check(f"count({_alerts(service, slo, FIRING, name=SLO_NO_DATA)})",
                      _t(at), (("{}", 1),)),),
        interval=_t(1))


def slo_cases(service: Service, slo: SLO, out: Outputs | None = None) -> list[Case]:
    """Every generated case of one SLO (none for raw SLIs or SLOs without alerts)."""
    if slo.sli.kind == "raw" or not slo.alerting:
        return []
    if duration.seconds(base_window(slo)) < EVAL_S:
        return []  # windows under 5 minutes: the 5-minute evaluation cannot resolve them
    out = out or Outputs()
    cases = [burst_case(service, slo, out), slow_burn_case(service, slo, out),
             zero_traffic_case(service, slo)]
    if slo.no_data:
        cases.append(no_data_case(service, slo))
    return [case for case in cases if case is not None]
