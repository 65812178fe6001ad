"""The on-call page's data, read from a Prometheus server (``jaxobs report --format html``).

What someone paged at night looks at first, each from the series jaxobs' rules and
exporters write: burn rate per SLO (the recorded ``jaxobs_slo:error_budget:burn_rate``,
every window), steady and cold latency per service, compile time per function and phase
with the causes, device memory (JAX allocator, NVML, TPU runtime), and the alerts that
fired within the range.  Plain data here; :mod:`jaxobs.report.page` draws it.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from jaxobs import catalog
from jaxobs.report.data import BURN_RATE_RULE, PHASES
from jaxobs.report.sources import PrometheusAPI
from jaxobs.slo import duration

Points = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class SLOBurn:
    service: str
    slo: str
    #: window → burn now (NaN-free: windows without traffic are left out)
    now: dict[str, float]
    #: the shortest window's burn over the range
    window: str
    points: Points
    objective: float | None = None  # ratio, e.g. 0.999
    budget_remaining: float | None = None  # ratio of the budget left over the SLO window


@dataclass(frozen=True)
class Latency:
    service: str
    start: str  # steady / cold
    requests: float
    p50: float
    p95: float
    p99: float
    p99_points: Points = ()


@dataclass(frozen=True)
class Memory:
    source: str  # "JAX allocator", "NVML", "TPU runtime"
    device: str
    used: float
    limit: float | None


@dataclass(frozen=True)
class AlertSpan:
    name: str
    severity: str
    subject: str  # service/slo or service/function
    labels: dict[str, str]
    first: float
    last: float
    firing_now: bool
    summary: str = ""


@dataclass(frozen=True)
class OnCallData:
    source: str
    range_seconds: float
    generated_at: float
    burn: tuple[SLOBurn, ...] = ()
    latency: tuple[Latency, ...] = ()
    #: function → phase → seconds, since process start
    compile_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    #: function → cause → compiles
    compile_causes: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: tuple[Memory, ...] = ()
    alerts: tuple[AlertSpan, ...] = ()


def window_seconds(window: str) -> float:
    """A window label in seconds (unparseable labels sort last)."""
    try:
        return float(duration.seconds(window))
    except ValueError:
        return float("inf")


def _burn(api: PrometheusAPI, start: float, end: float, step: float) -> tuple[SLOBurn, ...]:
    now: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for labels, value in api.instant(BURN_RATE_RULE):
        now[(labels.get("service", ""), labels.get("slo", ""))][labels.get("window", "")] = value
    history: dict[tuple[str, str], dict[str, Points]] = defaultdict(dict)
    for labels, points in api.series(BURN_RATE_RULE, start, end, step):
        history[(labels.get("service", ""), labels.get("slo", ""))][labels.get("window", "")] = tuple(points)
    objectives = {(m.get("service", ""), m.get("slo", "")): v
                  for m, v in api.instant("jaxobs_slo:objective:ratio")}
    remaining = {(m.get("service", ""), m.get("slo", "")): v
                 for m, v in api.instant("jaxobs_slo:error_budget_remaining:ratio")}
    out = []
    for key in sorted(set(now) | set(history)):
        windows = history.get(key, {})
        shortest = min(windows, key=window_seconds) if windows else ""
        out.append(SLOBurn(key[0], key[1], dict(sorted(now.get(key, {}).items(), key=lambda kv: window_seconds(kv[0]))),
                           shortest, windows.get(shortest, ()), objectives.get(key), remaining.get(key)))
    return tuple(out)


def _latency(api: PrometheusAPI, rng: str, start: float, end: float, step: float) -> tuple[Latency, ...]:
    bucket = catalog.REQUEST_DURATION.name + "_bucket"
    count = catalog.REQUEST_DURATION.name + "_count"
    by = "service, start"
    requests = {(m.get("service", ""), m.get("start", "")): v
                for m, v in api.instant(f"sum by ({by}) (increase({count}[{rng}]))")}
    quantiles: dict[float, dict[tuple[str, str], float]] = {}
    for q in (0.5, 0.95, 0.99):
        quantiles[q] = {(m.get("service", ""), m.get("start", "")): v for m, v in api.instant(
            f"histogram_quantile({q}, sum by ({by}, le) (increase({bucket}[{rng}])))")}
    window = duration.canonical(max(30, int((end - start) / 30)))
    p99_over_time = {(m.get("service", ""), m.get("start", "")): tuple(p) for m, p in api.series(
        f"histogram_quantile(0.99, sum by ({by}, le) (rate({bucket}[{window}])))", start, end, step)}
    out = []
    for key, n in sorted(requests.items()):
        if n <= 0:
            continue
        out.append(Latency(key[0], key[1], n, quantiles[0.5].get(key, float("nan")),
                           quantiles[0.95].get(key, float("nan")), quantiles[0.99].get(key, float("nan")),
                           p99_over_time.get(key, ())))
    return tuple(out)


def _by_two(rows: list[tuple[dict[str, str], float]], a: str, b: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, value in rows:
        if value > 0:
            out[labels.get(a, "?")][labels.get(b, "?")] = value
    return {k: dict(v) for k, v in sorted(out.items(), key=lambda kv: -sum(kv[1].values()))}


def _memory(api: PrometheusAPI) -> tuple[Memory, ...]:
    out: list[Memory] = []
    pairs = ((catalog.DEVICE_MEMORY.name, "JAX allocator", "device", "in_use", "limit"),
             (catalog.GPU_MEMORY.name, "NVML", "gpu", "used", "total"),
             (catalog.TPU_HBM.name, "TPU runtime", "chip", "used", "total"))
    for metric, source, device_label, used_kind, limit_kind in pairs:
        values: dict[str, dict[str, float]] = defaultdict(dict)
        for labels, value in api.instant(f"max by ({device_label}, kind) ({metric})"):
            values[labels.get(device_label, "?")][labels.get("kind", "")] = value
        for device, kinds in sorted(values.items()):
            if used_kind in kinds:
                out.append(Memory(source, device, kinds[used_kind], kinds.get(limit_kind)))
    return tuple(out)


def _active_alerts(api: PrometheusAPI) -> list[dict[str, Any]]:
    """Prometheus' current alerts with their annotations (the summary line)."""
    with urllib.request.urlopen(f"{api.url}/api/v1/alerts", timeout=api.timeout) as resp:
        return list(json.loads(resp.read().decode())["data"]["alerts"])


def _alerts(api: PrometheusAPI, start: float, end: float, step: float) -> tuple[AlertSpan, ...]:
    summaries = {}
    try:
        for alert in _active_alerts(api):
            labels = alert.get("labels", {})
            summaries[tuple(sorted(labels.items()))] = alert.get("annotations", {}).get("summary", "")
    except Exception:  # an older server or a proxy without /api/v1/alerts: spans still show
        pass
    spans = []
    for labels, points in api.series('ALERTS{alertstate="firing"}', start, end, step):
        if not points:
            continue
        clean = {k: v for k, v in labels.items() if k not in ("__name__", "alertstate")}
        subject = "/".join(v for v in (clean.get("service"), clean.get("slo") or clean.get("function")) if v)
        last = points[-1][0]
        spans.append(AlertSpan(clean.get("alertname", "?"), clean.get("severity", ""), subject, clean,
                               points[0][0], last, end - last <= 2 * step,
                               summaries.get(tuple(sorted({**clean, "alertstate": "firing"}.items())),
                                             summaries.get(tuple(sorted(clean.items())), ""))))
    severity_rank = {"page": 0, "ticket": 1}
    spans.sort(key=lambda s: (not s.firing_now, severity_rank.get(s.severity, 2), -s.last, s.name))
    return tuple(spans)


def from_prometheus_oncall(url: str, range_seconds: float = 3600.0,
                           api: PrometheusAPI | None = None) -> OnCallData:
    """Everything the on-call page shows, over the last ``range_seconds``."""
    api = api or PrometheusAPI(url)
    rng = duration.canonical(max(1, int(range_seconds)))
    end = time.time()
    start = end - range_seconds
    step = max(1.0, range_seconds / 240)
    compile_rows = api.instant(f"sum by (function, phase) "
                               f"(last_over_time({catalog.COMPILE_DURATION.name}_sum[{rng}]))")
    cause_rows = api.instant(f"sum by (function, cause) "
                             f"(last_over_time({catalog.COMPILATIONS.name}[{rng}]))")
    seconds = _by_two(compile_rows, "function", "phase")
    return OnCallData(
        source=url, range_seconds=range_seconds, generated_at=end,
        burn=_burn(api, start, end, step),
        latency=_latency(api, rng, start, end, step),
        compile_seconds={fn: {p: phases.get(p, 0.0) for p in PHASES} for fn, phases in seconds.items()},
        compile_causes=_by_two(cause_rows, "function", "cause"),
        memory=_memory(api),
        alerts=_alerts(api, start, end, step),
    )
