"""Alerts that need no SLO, per service, scoped by the service's scrape targets.

Memory (device memory high, OOMs), compilation (cache hit ratio, cold-start
ratio, recompilation storms, many replicas compiling at once), targets and
collectors, GPU XID errors, mixed versions, and the deploy window.  Every
aggregation keeps the service's grouping labels, so one cluster's problem is
not averaged away by another's.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxobs import catalog as c
from jaxobs.generate import promql as q
from jaxobs.generate.health_alerts import health_alerts
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
    Alert,
)
from jaxobs.slo.model import ResourceThresholds, Service

# --- windows of the resource alerts (data, not buried in strings) -------------------------
RATIO_WINDOW = "30m"  # cache-hit and cold-start ratios
OOM_WINDOW = "10m"
OOM_PAGE_WINDOW = "5m"  # the page needs OOMs in every such window for its `for`
STORM_WINDOW = "5m"
CONCURRENT_WINDOW = "5m"
XID_WINDOW = "15m"

MISS = 'cache="miss"'
COLD = 'start="cold"'
OOM = 'error="oom"'
RECOMPILE = 'cause!="first"'

_VALUE = "{{ $value | humanize }}"
_PERCENT = "{{ $value | humanizePercentage }}"


def resource_alerts(service: Service, t: ResourceThresholds) -> list[Alert]:
    """The service's alerts that need no SLO."""
    name = service.name

    def alert(alert_name: str, severity: str, category: str, for_: str, expr: str,
              summary: str, description: str) -> Alert:
        return Alert(name=alert_name, severity=severity, expr=expr, for_=for_, summary=summary,
                     description=description, category=category, service=name,
                     labels=service.labels)

    return [*_core_alerts(service, t, alert), *health_alerts(service, t, alert)]


def _core_alerts(service: Service, t: ResourceThresholds, alert: Callable[..., Alert]) -> list[Alert]:
    s = q.matchers(service.target_selector)
    g = service.group_by
    name = service.name
    svc = q.eq("service", name)
    count = c.REQUEST_DURATION.name + "_count"
    calls = q.selector(c.CALLS.name, *s)
    calls_by_fn = q.sum_rate(calls, RATIO_WINDOW, ("function", *g))
    misses_by_fn = q.sum_rate(q.selector(c.CALLS.name, *s, MISS), RATIO_WINDOW, ("function", *g))
    oom = q.selector(c.ERRORS.name, *s, OOM)
    up = q.selector(UP, *s)
    deploy = q.selector(c.DEPLOY_IN_PROGRESS.name, *s)
    build_labels = ", ".join(c.BUILD_INFO.labels)
    stuck = q.selector("ALERTS", q.eq("alertname", DEPLOY_STUCK), svc, 'alertstate="firing"')
    return [
        alert(DEVICE_MEMORY_HIGH, "ticket", "memory", "15m",
              f"{q.selector(c.DEVICE_MEMORY_UTILIZATION.name, *s)} > "
              f"{q.number(t.device_memory_ratio)}",
              f"{name}: device memory above {t.device_memory_ratio:.0%}",
              f"Device {{{{ $labels.device }}}} ({{{{ $labels.platform }}}}) on "
              f"{{{{ $labels.instance }}}} has {_PERCENT} of its memory in use for 15 minutes "
              f"(threshold {t.device_memory_ratio:.0%}); out-of-memory errors come next."),
        alert(OOM_ERRORS, "ticket", "memory", "0s",
              f"{q.agg('sum', ('function', *g), q.gained(oom, OOM_WINDOW))} > 0",
              f"{name}: out-of-memory errors",
              f"{{{{ $labels.function }}}} raised {_VALUE} out-of-memory errors in the last "
              f"{OOM_WINDOW}."),
        alert(OOM_ERRORS, "page", "memory", "10m",
              f"{q.agg('count', g, q.agg('sum', ('instance', *g), q.gained(oom, OOM_PAGE_WINDOW)) + ' > 0')}"
              f"\n/\n{q.agg('count', g, up)}\n>= {q.number(t.oom_instance_ratio)}",
              f"{name}: widespread out-of-memory errors",
              f"{_PERCENT} of the instances of {name} kept raising out-of-memory errors for "
              f"10 minutes (page at {t.oom_instance_ratio:.0%}); requests are failing."),
        alert(CACHE_HIT_LOW, "ticket", "compile", "15m",
              f"(1 - {misses_by_fn}\n/\n{calls_by_fn}) < {q.number(t.cache_hit_ratio)}\nand\n"
              f"{q.agg('sum', ('function', *g), q.increase(calls, RATIO_WINDOW))} "
              f">= {t.ratio_min_events}",
              f"{name}: compile-cache hit ratio below {t.cache_hit_ratio:.0%}",
              f"Only {_PERCENT} of the calls of {{{{ $labels.function }}}} hit the compile cache "
              f"over {RATIO_WINDOW} (threshold {t.cache_hit_ratio:.0%}); new shapes, dtypes "
              f"or static arguments keep compiling."),
        alert(COLD_START_HIGH, "ticket", "compile", "15m",
              f"{q.sum_rate(q.selector(count, svc, COLD), RATIO_WINDOW, g)}\n/\n"
              f"{q.sum_rate(q.selector(count, svc), RATIO_WINDOW, g)}\n"
              f"> {q.number(t.cold_start_ratio)}\nand\n"
              f"{q.agg('sum', g, q.increase(q.selector(count, svc), RATIO_WINDOW))} "
              f">= {t.ratio_min_events}",
              f"{name}: cold-start ratio above {t.cold_start_ratio:.0%}",
              f"{_PERCENT} of the requests of {name} waited for a JIT compile over "
              f"{RATIO_WINDOW} (threshold {t.cold_start_ratio:.0%}); warmup misses shapes "
              f"or the compile cache is cold."),
        alert(RECOMPILATION_STORM, "ticket", "compile", "10m",
              f"{q.sum_rate(q.selector(c.COMPILATIONS.name, *s, RECOMPILE), STORM_WINDOW, ('function', *g))}"
              f" * 60\n> {q.number(t.recompiles_per_minute)}",
              f"{name}: recompilation storm",
              f"{{{{ $labels.function }}}} recompiles {_VALUE} times a minute (threshold "
              f"{q.number(t.recompiles_per_minute)}); see {c.COMPILATIONS.name} by cause."),
        alert(CONCURRENT_COMPILATION, "ticket", "compile", "0s",
              f"count by (function{''.join(', ' + x for x in g)}) (max_over_time("
              f"{q.selector(c.COMPILATIONS_IN_PROGRESS.name, *s)}[{CONCURRENT_WINDOW}]) > 0)\n"
              f">= {t.concurrent_compiling_replicas}",
              f"{name}: many replicas compiling the same function",
              f"{_VALUE} instances compiled {{{{ $labels.function }}}} within {CONCURRENT_WINDOW} "
              f"(threshold {t.concurrent_compiling_replicas}): every replica pays the same "
              f"compile."),
        alert(TARGET_DOWN, "ticket", "availability", "5m",
              f"{up} == 0",
              f"{name}: a scrape target is down",
              "{{ $labels.instance }} (job {{ $labels.job }}) has failed every scrape "
              "for 5 minutes (up = {{ $value }})."),
        alert(TARGET_DOWN, "page", "availability", "5m",
              f"{q.agg('count', g, f'{up} == 0')}\n== {q.agg('count', g, up)}",
              f"{name}: every scrape target is down",
              f"All {_VALUE} scrape targets of {name} have been down for 5 minutes; "
              f"its SLO alerts are blind while there is no data."),
        alert(COLLECTOR_DOWN, "ticket", "observability", "10m",
              f"{q.selector(c.COLLECTOR_UP.name, *s)} == 0",
              f"{name}: a jaxobs collector is failing",
              f"Collector {{{{ $labels.collector }}}} (device {{{{ $labels.device }}}}) on "
              f"{{{{ $labels.instance }}}} has failed for 10 minutes "
              f"({c.COLLECTOR_UP.name} = {{{{ $value }}}}); its metrics are missing."),
        alert(GPU_XID, "ticket", "hardware", "0s",
              f"({q.gained(q.selector(c.GPU_XID_ERRORS.name, *s), XID_WINDOW)})\n> 0",
              f"{name}: GPU XID errors",
              f"GPU {{{{ $labels.gpu }}}} ({{{{ $labels.model }}}}, {{{{ $labels.uuid }}}}) on "
              f"{{{{ $labels.instance }}}} reported {_VALUE} XID {{{{ $labels.xid }}}} errors in "
              f"{XID_WINDOW}."),
        alert(BUILD_MISMATCH, "ticket", "version", "30m",
              f"{q.agg('count', g, q.agg('count', (*c.BUILD_INFO.labels, *g), q.selector(c.BUILD_INFO.name, *s)))}"
              f" > 1",
              f"{name}: replicas run different jax/driver versions",
              f"{_VALUE} different version sets ({build_labels}) run in {name} for 30 minutes; "
              f"pin drivers and runtimes so every replica matches."),
        alert(DEPLOY_STUCK, "ticket", "deploy", t.deploy_max_duration,
              f"{q.agg('max', g, deploy)} == 1",
              f"{name}: deploy window stuck open",
              f"{c.DEPLOY_IN_PROGRESS.name} of {name} has been {{{{ $value }}}} for {t.deploy_max_duration}, "
              f"longer than any deploy should take. Compile and version alerts are no longer "
              f"inhibited; clear the gauge if no deploy is running."),
        alert(DEPLOY_IN_PROGRESS, "ticket", "deploy", "0s",
              f"{q.agg('max', g, f'max_over_time({deploy}[{t.deploy_grace_window}])')} == 1\n"
              f"unless on ({', '.join(g)})\n{stuck}",
              f"{name}: deploy window open",
              f"A deploy of {name} is in progress or ended less than {t.deploy_grace_window} ago "
              f"({c.DEPLOY_IN_PROGRESS.name} = {{{{ $value }}}}); compile and version alerts are "
              f"inhibited meanwhile, for at most {t.deploy_max_duration}. This alert is "
              f"routed to no one."),
    ]
