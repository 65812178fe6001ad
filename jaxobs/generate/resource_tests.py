"""Generated promtool cases of the alerts that need no SLO: each fires on one input and
stays silent on the others (at least one input per alert and severity)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from jaxobs import catalog as c
from jaxobs.generate import promql as q
from jaxobs.generate.health_alerts import health_scenarios
from jaxobs.generate.names import (
    BUILD_MISMATCH,
    CACHE_HIT_LOW,
    COLD_START_HIGH,
    COLLECTOR_DOWN,
    CONCURRENT_COMPILATION,
    DEPLOY_IN_PROGRESS,
    DEPLOY_STUCK,
    DEVICE_MEMORY_HIGH,
    GPU_XID,
    OOM_ERRORS,
    RECOMPILATION_STORM,
    TARGET_DOWN,
    UP,
)
from jaxobs.generate.resources import resource_alerts
from jaxobs.generate.testcase import Case, Check, Series, counter, gauge, instance, labels, series
from jaxobs.slo import duration
from jaxobs.slo.model import Outputs, ResourceThresholds, Service


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
    base = {**dict(service.target_selector), **dict.fromkeys(service.group_by, "a")}

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
    compiling = [(series(c.COMPILATIONS_IN_PROGRESS.name, at(i, **fn)), "0 0 1 0" + " 0" * (n - 4))
                 for i in range(replicas)]
    # Enough events per minute to clear the ratio alerts' minimum volume.
    volume = max(1000, t.ratio_min_events)
    hits_bad = math.floor(volume * t.cache_hit_ratio / 2)
    hits_good = math.ceil(volume * (1 + t.cache_hit_ratio) / 2)
    cold_bad = math.ceil(volume * (1 + t.cold_start_ratio) / 2)
    few_calls = (t.ratio_min_events - 1) // 30  # per minute: under the minimum over the window
    oom_quiet_instances = math.floor(1 / t.oom_instance_ratio) + 1
    one_step = "0 0 " + " ".join(["1"] * (n - 2))  # a counter that moved once, at 2m

    def born_at(minute: int) -> str:
        """An error counter born at its first increment (a process exposes no error series
        until something fails): absent, then 1 from ``minute`` on."""
        return " ".join(["_"] * minute + ["1"] * (n - minute))

    stuck_s = duration.seconds(t.deploy_max_duration)
    stuck_steps = stuck_s // 60 + 10
    return {
        (DEVICE_MEMORY_HIGH, "ticket"): _Scenario(
            fires=((series(mem, at(0, **dev)), gauge((1 + t.device_memory_ratio) / 2, n)),),
            quiet=(("below threshold", ((series(mem, at(0, **dev)),
                                         gauge(t.device_memory_ratio * 0.9, n)),)),),
            eval_time="20m", expect={"ticket": 1}),
        (OOM_ERRORS, "ticket"): _Scenario(
            fires=((series(oom, at(0, **fn, error="oom")), born_at(2)),),
            quiet=(("other error classes only", (
                (series(oom, at(0, **fn, error="runtime")), counter(5, n)),
                (series(oom, at(0, **fn, error="oom")), gauge(0, n)))),),
            eval_time="5m", expect={"ticket": 1}),
        (OOM_ERRORS, "page"): _Scenario(
            fires=tuple((series(oom, at(i, **fn, error="oom")), counter(1, n)) for i in (0, 1))
            + tuple((series(UP, at(i)), gauge(1, n)) for i in (0, 1)),
            quiet=(("OOMs on one instance, below the page ratio", tuple(
                (series(oom, at(i, **fn, error="oom")), counter(1 if i == 0 else 0, n))
                for i in range(oom_quiet_instances)) + tuple(
                (series(UP, at(i)), gauge(1, n)) for i in range(oom_quiet_instances))),),
            eval_time="20m", expect={"page": 1, "ticket": 1}),
        (CACHE_HIT_LOW, "ticket"): _Scenario(
            fires=((series(c.CALLS.name, at(0, **fn, cache="hit")), counter(hits_bad, n)),
                   (series(c.CALLS.name, at(0, **fn, cache="miss")),
                    counter(volume - hits_bad, n))),
            quiet=(("hit ratio above the threshold", (
                (series(c.CALLS.name, at(0, **fn, cache="hit")), counter(hits_good, n)),
                (series(c.CALLS.name, at(0, **fn, cache="miss")),
                 counter(volume - hits_good, n)))),) + ((
                ("every call misses, but too few calls to judge", (
                    (series(c.CALLS.name, at(0, **fn, cache="miss")), counter(few_calls, n)),)),
            ) if few_calls >= 1 else ()),
            eval_time="20m", expect={"ticket": 1}),
        (COLD_START_HIGH, "ticket"): _Scenario(
            fires=((series(count, at(0, **svc, start="steady")), counter(volume - cold_bad, n)),
                   (series(count, at(0, **svc, start="cold")), counter(cold_bad, n))),
            quiet=(("no cold requests after the first", (
                (series(count, at(0, **svc, start="steady")), counter(volume, n)),
                (series(count, at(0, **svc, start="cold")), gauge(1, n)))),),
            eval_time="20m", expect={"ticket": 1}),
        (RECOMPILATION_STORM, "ticket"): _Scenario(
            fires=((series(c.COMPILATIONS.name, at(0, **fn, cause="shape")),
                    counter(t.recompiles_per_minute * 2, n)),),
            quiet=(("as many first compiles (restarts), which are not recompiles", (
                (series(c.COMPILATIONS.name, at(0, **fn, cause="first")),
                 counter(t.recompiles_per_minute * 2, n)),)),),
            eval_time="15m", expect={"ticket": 1}),
        (CONCURRENT_COMPILATION, "ticket"): _Scenario(
            fires=tuple(compiling),
            quiet=(("one replica fewer than the threshold", tuple(compiling[:-1])),),
            eval_time="4m", expect={"ticket": 1}),
        (TARGET_DOWN, "ticket"): _Scenario(
            fires=((series(UP, at(0)), gauge(0, n)), (series(UP, at(1)), gauge(1, n))),
            quiet=(("all targets up", ((series(UP, at(0)), gauge(1, n)),
                                       (series(UP, at(1)), gauge(1, n)))),),
            eval_time="7m", expect={"ticket": 1}),
        (TARGET_DOWN, "page"): _Scenario(
            fires=((series(UP, at(0)), gauge(0, n)), (series(UP, at(1)), gauge(0, n))),
            quiet=(("one of two targets down", ((series(UP, at(0)), gauge(0, n)),
                                                (series(UP, at(1)), gauge(1, n)))),),
            eval_time="7m", expect={"page": 1, "ticket": 2}),
        (COLLECTOR_DOWN, "ticket"): _Scenario(
            fires=((series(c.COLLECTOR_UP.name, at(0, collector="nvml", device="0")),
                    gauge(0, n)),),
            quiet=(("collector answering", ((series(c.COLLECTOR_UP.name,
                                                     at(0, collector="nvml", device="0")),
                                             gauge(1, n)),)),),
            eval_time="12m", expect={"ticket": 1}),
        (GPU_XID, "ticket"): _Scenario(
            fires=((series(c.GPU_XID_ERRORS.name, at(0, **xid)), born_at(10)),),
            quiet=(("no new XID errors", ((series(c.GPU_XID_ERRORS.name, at(0, **xid)),
                                           gauge(3, n)),)),),
            eval_time="20m", expect={"ticket": 1}),
        (BUILD_MISMATCH, "ticket"): _Scenario(
            fires=((series(c.BUILD_INFO.name, at(0, **versions)), gauge(1, n)),
                   (series(c.BUILD_INFO.name, at(1, **{**versions, "driver": "y"})),
                    gauge(1, n))),
            quiet=(("every replica on the same versions", (
                (series(c.BUILD_INFO.name, at(0, **versions)), gauge(1, n)),
                (series(c.BUILD_INFO.name, at(1, **versions)), gauge(1, n)))),),
            eval_time="35m", expect={"ticket": 1}),
        (DEPLOY_IN_PROGRESS, "ticket"): _Scenario(
            fires=((series(c.DEPLOY_IN_PROGRESS.name, at(0)),
                    "0 0 1 1 1" + " 0" * (n - 5)),),
            quiet=(("no deploy", ((series(c.DEPLOY_IN_PROGRESS.name, at(0)), gauge(0, n)),)),),
            # a minute before the grace window after the deploy (which ended at 4m) runs out
            eval_time=duration.canonical(240 + max(0, duration.seconds(t.deploy_grace_window) - 60)),
            expect={"ticket": 1}),
        (DEPLOY_STUCK, "ticket"): _Scenario(
            fires=((series(c.DEPLOY_IN_PROGRESS.name, at(0)), gauge(1, stuck_steps)),),
            quiet=(("a deploy that ends in time", (
                (series(c.DEPLOY_IN_PROGRESS.name, at(0)),
                 f"{gauge(1, stuck_steps // 2)} {gauge(0, stuck_steps // 2)}"),)),),
            eval_time=duration.canonical(stuck_s + 5 * 60), expect={"ticket": 1}),
        **{key: _Scenario(fires=fires, quiet=quiet, eval_time=when, expect=expect)
           for key, (fires, quiet, when, expect)
           in health_scenarios(t, at, n, series, counter, gauge, one_step).items()},
    }


def resource_cases(service: Service, t: ResourceThresholds, out: Outputs | None = None
                   ) -> list[Case]:
    """For every resource alert (and severity) of the service: a firing and a silent case."""
    out = out or Outputs()
    scenarios = _resource_scenarios(service, t)
    cases = []
    for alert in resource_alerts(service, t):
        sc = scenarios[(alert.name, alert.severity)]
        firing = q.selector("ALERTS", q.eq("alertname", alert.name), q.eq("service", service.name),
                       q.eq("alertstate", "firing"))
        by_severity = f"count by (severity) ({firing})"
        cases.append(Case(
            name=f"{service.name}: {alert.name} ({alert.severity}) fires",
            series=sc.fires,
            checks=(Check(by_severity, sc.eval_time,
                          tuple(sorted((labels({"severity": out.severity(s)}), n)
                                       for s, n in sc.expect.items()))),)))
        silent = q.selector("ALERTS", q.eq("alertname", alert.name), q.eq("service", service.name),
                            q.eq("severity", out.severity(alert.severity)))
        for label, inputs in sc.quiet:
            cases.append(Case(name=f"{service.name}: {alert.name} ({alert.severity}) silent: {label}",
                              series=inputs, checks=(Check(silent, sc.eval_time, ()),)))
    return cases


