"""``promtool test rules`` files generated from the same model as the rules.

They prove, with Prometheus' own evaluator, that every alert fires when it
should and stays silent when it should not:

* per SLO (built-in SLIs): a fast burn fires every tier; a burn between the
  ticket and page factors fires tickets but no page; a healthy error ratio
  (half the budget, or half the smallest factor if lower) leaves the SLO without any alert, pending or
  firing.  The latency case feeds slow *cold* requests next to healthy steady
  ones, so it also proves cold calls are excluded from the steady-state SLI.
* per resource alert: one input that fires it and one (or more) that must not.

Raw-PromQL SLIs read the user's own metrics, whose shape jaxobs cannot know,
so they get no generated test (``promtool check rules`` still checks them).

Inputs stay tiny (one sample a minute for a few dozen minutes) so promtool runs
in well under a second per file: rates over long windows extrapolate from the
samples present, and both sides of a ratio scale alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import rules as r
from jaxobs.generate.render import dump_yaml
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, ResourceThresholds, Service, Spec

#: Events per minute in SLO inputs: large, so even a 99.999% budget gives whole numbers.
EVENTS_PER_MINUTE = 1_000_000
RULES_FROM_TESTS = "../jaxobs.rules.yaml"


def instance(i: int) -> str:
    """The ``instance`` label of replica ``i`` in test inputs."""
    return f"replica-{i}:9464"


Series = tuple[str, str]  # (series selector, promtool values notation)


@dataclass(frozen=True)
class Check:
    """One ``promql_expr_test``: ``expr`` at ``eval_time`` must return exactly ``samples``."""

    expr: str
    eval_time: str
    samples: tuple[tuple[str, float], ...] = ()  # (labels, value)


@dataclass(frozen=True)
class Case:
    name: str
    series: tuple[Series, ...]
    checks: tuple[Check, ...]
    interval: str = "1m"


@dataclass(frozen=True)
class _Clock:
    """The sampling grid of a case: ``steps`` samples ``interval_s`` apart."""

    interval_s: int
    steps: int

    @property
    def interval(self) -> str:
        return duration.canonical(self.interval_s)


def _series(name: str, labels: dict[str, str]) -> str:
    return r.sel(name, *(r.eq(k, v) for k, v in labels.items()))


def _counter(per_step: float, steps: int) -> str:
    return f"0+{_num(per_step)}x{steps}"


def _gauge(value: float, steps: int) -> str:
    return f"{_num(value)}x{steps}"


def _num(value: float) -> str:
    return f"{value:.12g}"


def _labels(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={_quote(v)}" for k, v in sorted(pairs.items())) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- SLO cases ----------------------------------------------------------------------------


def _slo_clock(slo: SLO) -> tuple[_Clock, int]:
    """Sample fast enough for the shortest window; evaluate once every tier's ``for`` passed."""
    shortest = min(duration.seconds(w) for w in r.alert_windows(slo))
    interval = max(1, min(60, shortest // 4))
    longest_for = max((duration.seconds(t.for_) if t.for_ != "0s" else 0) for t in slo.tiers)
    eval_s = longest_for + 5 * interval + 60
    return _Clock(interval, eval_s // interval + 2), eval_s


def _le_value(bound: float) -> str:
    """The ``le`` label prometheus-client writes for a bucket bound."""
    return f"{float(bound)!r}"


def slo_inputs(service: Service, slo: SLO, bad_ratio: float, steps: int) -> tuple[Series, ...]:
    """Counters of the SLI's own metrics with ``bad_ratio`` of the events bad."""
    total = EVENTS_PER_MINUTE
    bad = min(total, math.ceil(bad_ratio * total)) if bad_ratio > 0 else 0
    good = total - bad
    sli = slo.sli
    target = {**dict(service.target_selector), "instance": instance(0)}
    svc = {**target, "service": service.name, **dict(sli.selector)}
    if sli.kind == "availability":
        return ((_series(c.REQUESTS.name, {**svc, "outcome": "ok"}), _counter(good, steps)),
                (_series(c.REQUESTS.name, {**svc, "outcome": "error"}), _counter(bad, steps)))
    if sli.kind == "latency":
        assert sli.threshold_seconds is not None
        le = _le_value(sli.threshold_seconds)
        count = c.REQUEST_DURATION.name + "_count"
        bucket = c.REQUEST_DURATION.name + "_bucket"
        return (
            (_series(count, {**svc, "start": "steady"}), _counter(total, steps)),
            (_series(bucket, {**svc, "start": "steady", "le": le}), _counter(good, steps)),
            # As many cold requests, all slower than the threshold: must not count.
            (_series(count, {**svc, "start": "cold"}), _counter(total, steps)),
            (_series(bucket, {**svc, "start": "cold", "le": le}), _counter(0, steps)),
        )
    if sli.kind == "cold_start" and "function" not in dict(sli.selector):
        count = c.REQUEST_DURATION.name + "_count"
        return ((_series(count, {**svc, "start": "steady"}), _counter(good, steps)),
                (_series(count, {**svc, "start": "cold"}), _counter(bad, steps)))
    if sli.kind in ("cold_start", "cache_hit"):
        calls = {**target, **dict(sli.selector)}
        calls.setdefault("function", "predict")
        return ((_series(c.CALLS.name, {**calls, "cache": "hit"}), _counter(good, steps)),
                (_series(c.CALLS.name, {**calls, "cache": "miss"}), _counter(bad, steps)))
    raise ValueError(f"no generated inputs for {sli.kind!r} SLIs")


def _alerts_of(service: Service, slo: SLO, state: str | None = None) -> str:
    matchers = [r.eq("alertname", r.SLO_BURN), r.eq("service", service.name), r.eq("slo", slo.name)]
    if state:
        matchers.append(r.eq("alertstate", state))
    return r.sel("ALERTS", *matchers)


def slo_cases(service: Service, slo: SLO) -> list[Case]:
    """Fast burn fires every tier; a mid burn fires tickets only; a healthy ratio is silent."""
    if slo.sli.kind == "raw":
        return []
    clock, eval_s = _slo_clock(slo)
    budget = slo.error_budget_ratio
    factors = sorted(t.factor for t in slo.tiers)
    burns: list[tuple[str, float]] = [("fast burn", min(2 * factors[-1], 1 / budget))]
    pages = [t.factor for t in slo.tiers if t.severity == "page"]
    tickets = [t.factor for t in slo.tiers if t.severity == "ticket"]
    if pages and tickets and max(tickets) < min(pages):
        burns.append(("slow burn: tickets, no page", (max(tickets) + min(pages)) / 2))
    eval_time = duration.canonical(eval_s)
    cases = []
    for label, burn in burns:
        firing = sorted((t.severity, t.long_window) for t in slo.tiers if t.factor < burn)
        expr = f"count by (severity, window) ({_alerts_of(service, slo, 'firing')})"
        cases.append(Case(
            name=f"{service.name}/{slo.name}: {label} ({burn:g}x) fires "
                 f"{', '.join(f'{s} {w}' for s, w in firing)}",
            series=slo_inputs(service, slo, burn * budget, clock.steps),
            checks=(Check(expr, eval_time,
                          tuple((_labels({"severity": s, "window": w}), 1) for s, w in firing)),),
            interval=clock.interval))
    healthy = min(factors[0], 1.0) / 2  # within budget, and below every tier
    cases.append(Case(
        name=f"{service.name}/{slo.name}: healthy ({healthy:g}x burn) stays silent",
        series=slo_inputs(service, slo, healthy * budget, clock.steps),
        checks=tuple(Check(_alerts_of(service, slo), duration.canonical(t), ())
                     for t in sorted({clock.interval_s * 2, eval_s // 2, eval_s})),
        interval=clock.interval))
    return cases


# --- resource alert cases -----------------------------------------------------------------


@dataclass(frozen=True)
class _Scenario:
    """Inputs for one resource alert: they fire it (with these severities) or they do not."""

    fires: tuple[Series, ...]
    quiet: tuple[tuple[str, tuple[Series, ...]], ...]
    eval_time: str
    #: severities expected firing (with counts) for the `fires` input.
    expect: dict[str, int] = field(default_factory=dict)


def _resource_scenarios(service: Service, t: ResourceThresholds
                        ) -> dict[tuple[str, str], _Scenario]:
    """Per (alert, severity): inputs that fire it and inputs that must leave it silent."""
    base = dict(service.target_selector)

    def at(i: int, **labels: str) -> dict[str, str]:
        return {**base, "instance": instance(i), **labels}

    n = 40
    fn = {"function": "predict"}
    mem = c.DEVICE_MEMORY_UTILIZATION.name
    dev = {"device": "0", "platform": "gpu"}
    oom = c.ERRORS.name
    count = c.REQUEST_DURATION.name + "_count"
    svc = {"service": service.name}
    xid = {"gpu": "0", "uuid": "GPU-0", "model": "A100", "xid": "79"}
    versions = dict.fromkeys(c.BUILD_INFO.labels, "x")
    replicas = t.concurrent_compiling_replicas
    compiling = [(_series(c.COMPILATIONS_IN_PROGRESS.name, at(i, **fn)), "0 0 1 0" + " 0" * (n - 4))
                 for i in range(replicas)]
    # Enough events per minute to clear the ratio alerts' minimum volume.
    volume = max(1000, t.ratio_min_events)
    hits_bad = math.floor(volume * t.cache_hit_ratio / 2)
    hits_good = math.ceil(volume * (1 + t.cache_hit_ratio) / 2)
    cold_bad = math.ceil(volume * (1 + t.cold_start_ratio) / 2)
    few_calls = (t.ratio_min_events - 1) // 30  # per minute: under the minimum over the window
    oom_quiet_instances = math.floor(1 / t.oom_instance_ratio) + 1
    one_step = "0 0 " + " ".join(["1"] * (n - 2))  # a counter that moved once, at 2m
    return {
        (r.DEVICE_MEMORY_HIGH, "ticket"): _Scenario(
            fires=((_series(mem, at(0, **dev)), _gauge((1 + t.device_memory_ratio) / 2, n)),),
            quiet=(("below threshold", ((_series(mem, at(0, **dev)),
                                         _gauge(t.device_memory_ratio * 0.9, n)),)),),
            eval_time="20m", expect={"ticket": 1}),
        (r.OOM_ERRORS, "ticket"): _Scenario(
            fires=((_series(oom, at(0, **fn, error="oom")), one_step),),
            quiet=(("other error classes only", (
                (_series(oom, at(0, **fn, error="runtime")), _counter(5, n)),
                (_series(oom, at(0, **fn, error="oom")), _gauge(0, n)))),),
            eval_time="5m", expect={"ticket": 1}),
        (r.OOM_ERRORS, "page"): _Scenario(
            fires=tuple((_series(oom, at(i, **fn, error="oom")), _counter(1, n)) for i in (0, 1))
            + tuple((_series(r.UP, at(i)), _gauge(1, n)) for i in (0, 1)),
            quiet=(("OOMs on one instance, below the page ratio", tuple(
                (_series(oom, at(i, **fn, error="oom")), _counter(1 if i == 0 else 0, n))
                for i in range(oom_quiet_instances)) + tuple(
                (_series(r.UP, at(i)), _gauge(1, n)) for i in range(oom_quiet_instances))),),
            eval_time="20m", expect={"page": 1, "ticket": 1}),
        (r.CACHE_HIT_LOW, "ticket"): _Scenario(
            fires=((_series(c.CALLS.name, at(0, **fn, cache="hit")), _counter(hits_bad, n)),
                   (_series(c.CALLS.name, at(0, **fn, cache="miss")),
                    _counter(volume - hits_bad, n))),
            quiet=(("hit ratio above the threshold", (
                (_series(c.CALLS.name, at(0, **fn, cache="hit")), _counter(hits_good, n)),
                (_series(c.CALLS.name, at(0, **fn, cache="miss")),
                 _counter(volume - hits_good, n)))),) + ((
                ("every call misses, but too few calls to judge", (
                    (_series(c.CALLS.name, at(0, **fn, cache="miss")), _counter(few_calls, n)),)),
            ) if few_calls >= 1 else ()),
            eval_time="20m", expect={"ticket": 1}),
        (r.COLD_START_HIGH, "ticket"): _Scenario(
            fires=((_series(count, at(0, **svc, start="steady")), _counter(volume - cold_bad, n)),
                   (_series(count, at(0, **svc, start="cold")), _counter(cold_bad, n))),
            quiet=(("no cold requests after the first", (
                (_series(count, at(0, **svc, start="steady")), _counter(volume, n)),
                (_series(count, at(0, **svc, start="cold")), _gauge(1, n)))),),
            eval_time="20m", expect={"ticket": 1}),
        (r.RECOMPILATION_STORM, "ticket"): _Scenario(
            fires=((_series(c.COMPILATIONS.name, at(0, **fn, cause="shape")),
                    _counter(t.recompiles_per_minute * 2, n)),),
            quiet=(("as many first compiles (restarts), which are not recompiles", (
                (_series(c.COMPILATIONS.name, at(0, **fn, cause="first")),
                 _counter(t.recompiles_per_minute * 2, n)),)),),
            eval_time="15m", expect={"ticket": 1}),
        (r.CONCURRENT_COMPILATION, "ticket"): _Scenario(
            fires=tuple(compiling),
            quiet=(("one replica fewer than the threshold", tuple(compiling[:-1])),),
            eval_time="4m", expect={"ticket": 1}),
        (r.TARGET_DOWN, "ticket"): _Scenario(
            fires=((_series(r.UP, at(0)), _gauge(0, n)), (_series(r.UP, at(1)), _gauge(1, n))),
            quiet=(("all targets up", ((_series(r.UP, at(0)), _gauge(1, n)),
                                       (_series(r.UP, at(1)), _gauge(1, n)))),),
            eval_time="7m", expect={"ticket": 1}),
        (r.TARGET_DOWN, "page"): _Scenario(
            fires=((_series(r.UP, at(0)), _gauge(0, n)), (_series(r.UP, at(1)), _gauge(0, n))),
            quiet=(("one of two targets down", ((_series(r.UP, at(0)), _gauge(0, n)),
                                                (_series(r.UP, at(1)), _gauge(1, n)))),),
            eval_time="7m", expect={"page": 1, "ticket": 2}),
        (r.COLLECTOR_DOWN, "ticket"): _Scenario(
            fires=((_series(c.COLLECTOR_UP.name, at(0, collector="nvml", device="0")),
                    _gauge(0, n)),),
            quiet=(("collector answering", ((_series(c.COLLECTOR_UP.name,
                                                     at(0, collector="nvml", device="0")),
                                             _gauge(1, n)),)),),
            eval_time="12m", expect={"ticket": 1}),
        (r.GPU_XID, "ticket"): _Scenario(
            fires=((_series(c.GPU_XID_ERRORS.name, at(0, **xid)), one_step),),
            quiet=(("no new XID errors", ((_series(c.GPU_XID_ERRORS.name, at(0, **xid)),
                                           _gauge(3, n)),)),),
            eval_time="5m", expect={"ticket": 1}),
        (r.BUILD_MISMATCH, "ticket"): _Scenario(
            fires=((_series(c.BUILD_INFO.name, at(0, **versions)), _gauge(1, n)),
                   (_series(c.BUILD_INFO.name, at(1, **{**versions, "driver": "y"})),
                    _gauge(1, n))),
            quiet=(("every replica on the same versions", (
                (_series(c.BUILD_INFO.name, at(0, **versions)), _gauge(1, n)),
                (_series(c.BUILD_INFO.name, at(1, **versions)), _gauge(1, n)))),),
            eval_time="35m", expect={"ticket": 1}),
        (r.DEPLOY_IN_PROGRESS, "ticket"): _Scenario(
            fires=((_series(c.DEPLOY_IN_PROGRESS.name, at(0)),
                    "0 0 1 1 1" + " 0" * (n - 5)),),
            quiet=(("no deploy", ((_series(c.DEPLOY_IN_PROGRESS.name, at(0)), _gauge(0, n)),)),),
            # a minute before the grace window after the deploy (which ended at 4m) runs out
            eval_time=duration.canonical(240 + max(0, duration.seconds(t.deploy_grace_window) - 60)),
            expect={"ticket": 1}),
    }


def resource_cases(service: Service, t: ResourceThresholds) -> list[Case]:
    """For every resource alert (and severity) of the service: a firing and a silent case."""
    scenarios = _resource_scenarios(service, t)
    cases = []
    for alert in r.resource_alerts(service, t):
        sc = scenarios[(alert.name, alert.severity)]
        firing = r.sel("ALERTS", r.eq("alertname", alert.name), r.eq("service", service.name),
                       r.eq("alertstate", "firing"))
        by_severity = f"count by (severity) ({firing})"
        cases.append(Case(
            name=f"{service.name}: {alert.name} ({alert.severity}) fires",
            series=sc.fires,
            checks=(Check(by_severity, sc.eval_time,
                          tuple((_labels({"severity": s}), n) for s, n in sorted(sc.expect.items()))),)))
        silent = r.sel("ALERTS", r.eq("alertname", alert.name), r.eq("service", service.name),
                       r.eq("severity", alert.severity))
        for label, series in sc.quiet:
            cases.append(Case(name=f"{service.name}: {alert.name} ({alert.severity}) silent: {label}",
                              series=series, checks=(Check(silent, sc.eval_time, ()),)))
    return cases


# --- files --------------------------------------------------------------------------------


def _case_yaml(case: Case) -> dict[str, Any]:
    return {
        "name": case.name,
        "interval": case.interval,
        "input_series": [{"series": s, "values": v} for s, v in case.series],
        "promql_expr_test": [
            {"expr": chk.expr, "eval_time": chk.eval_time,
             "exp_samples": [{"labels": labels, "value": value} for labels, value in chk.samples]}
            for chk in case.checks],
    }


def _test_file(cases: list[Case], source: str, what: str) -> str:
    doc = {"rule_files": [RULES_FROM_TESTS], "evaluation_interval": "1m",
           "tests": [_case_yaml(x) for x in cases]}
    return dump_yaml(doc, source, f"{what}\nRun: promtool test rules alerts/tests/*.yaml")


def build_tests(spec: Spec, source: str) -> dict[str, str]:
    """``{"alerts/tests/<service>.<slo|resources>.test.yaml": text}``."""
    out: dict[str, str] = {}
    for service in spec.services:
        cases = [case for slo in service.slos for case in slo_cases(service, slo)]
        if cases:
            out[f"alerts/tests/{service.name}.slo.test.yaml"] = _test_file(
                cases, source, f"SLO burn-rate alerts of {service.name}: fire on fast burn, "
                               f"silent when healthy.")
        out[f"alerts/tests/{service.name}.resources.test.yaml"] = _test_file(
            resource_cases(service, spec.resources), source,
            f"Resource alerts of {service.name}: each fires on its input and stays silent otherwise.")
    return out
