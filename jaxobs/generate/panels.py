"""The panels of the three Grafana dashboards, as data.

Each dashboard is a tuple of :class:`Row` s holding :class:`Panel` s: a title, a
kind, PromQL queries, a unit, a description that says what to look for,
thresholds and (optionally) the alert whose runbook the panel links to.
:mod:`jaxobs.generate.dashboards` turns them into Grafana JSON with the
foundation SDK; nothing here knows about Grafana's object model.

Every metric name comes from :mod:`jaxobs.catalog` (DESIGN.md §4).  Queries
use the dashboard variables ``$job``, ``$service``, ``$function``,
``$accelerator_cost_per_hour`` and Grafana's ``$__rate_interval``/``$__range``.
SLO panels read raw metrics over the SLO's own window with the same SLI PromQL
as :func:`jaxobs.generate.rules.sli_error_ratio`, so the dashboards work without
the recording rules yet agree with the alerts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from jaxobs import catalog as c
from jaxobs.catalog import MetricSpec
from jaxobs.generate import rules
from jaxobs.slo import duration
from jaxobs.slo.model import SLO, Service, Spec

Kind = Literal["timeseries", "stat", "gauge", "bargauge", "table"]
Steps = tuple[tuple[float | None, str], ...]

# --- alert names (the runbooks panels link to) ------------------------------------------
# The generated rules own the names; panels link to ``{runbook_base_url}/<name>.md``.
ALERT_DEVICE_MEMORY = rules.DEVICE_MEMORY_HIGH
ALERT_OOM = rules.OOM_ERRORS
ALERT_CACHE_HIT = rules.CACHE_HIT_LOW
ALERT_COLD_START = rules.COLD_START_HIGH
ALERT_RECOMPILES = rules.RECOMPILATION_STORM
ALERT_CONCURRENT_COMPILES = rules.CONCURRENT_COMPILATION
ALERT_TARGET_DOWN = rules.TARGET_DOWN
ALERT_COLLECTOR_DOWN = rules.COLLECTOR_DOWN
ALERT_GPU_XID = rules.GPU_XID
ALERT_BUILD_MISMATCH = rules.BUILD_MISMATCH
ALERT_DEPLOY = rules.DEPLOY_IN_PROGRESS
ALERT_SLO_BURN = rules.SLO_BURN


# --- the data model ------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


@dataclass(frozen=True)
class Panel:
    """One panel.  ``steps`` are Grafana threshold steps, the first with value ``None``."""

    title: str
    kind: Kind
    queries: tuple[Query, ...]
    unit: str
    description: str
    steps: Steps = ()
    runbook: str | None = None  # an alert name of the generated rules
    width: int = 8
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    bars: bool = False  # timeseries: draw bars (counts per interval)
    stack: bool = False  # timeseries: stack series
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, color)
    hide_columns: tuple[str, ...] = ()  # table: columns to drop (Time, Value)
    rename_columns: tuple[tuple[str, str], ...] = ()  # table: (column, new name)


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def q(expr: str, legend: str = "__auto") -> tuple[Query, ...]:
    return (Query(expr, legend),)


def qs(*pairs: tuple[str, str]) -> tuple[Query, ...]:
    return tuple(Query(expr, legend) for expr, legend in pairs)


def above(value: float, base: str = "green", color: str = "red") -> Steps:
    """Green, turning ``color`` at ``value`` and above."""
    return ((None, base), (value, color))


def below(value: float) -> Steps:
    """Red below ``value``, green from it."""
    return ((None, "red"), (value, "green"))


# --- PromQL helpers ------------------------------------------------------------------
RATE = "$__rate_interval"
JOB = 'job=~"$job"'
SVC = 'service=~"$service"'
FN = 'function=~"$function"'
OK = 'outcome="ok"'
ERR = 'outcome="error"'
COLD = 'start="cold"'
HIT = 'cache="hit"'
STEADY = 'start="steady"'
OOM = 'error="oom"'
RECOMPILE = 'cause!="first"'
MEM_IN_USE_LIMIT = 'kind=~"in_use|limit"'
_HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def sel(metric: MetricSpec, *matchers: str, suffix: str = "", job: bool = True) -> str:
    """``metric{job=~"$job",matchers...}``; ``suffix`` picks a histogram series."""
    if suffix and (metric.type != "histogram" or suffix not in _HIST_SUFFIXES):
        raise ValueError(f"{metric.name}: bad suffix {suffix!r}")
    parts = ((JOB,) if job else ()) + matchers
    return f"{metric.name}{suffix}{{{','.join(parts)}}}"


def rate(metric: MetricSpec, *matchers: str, suffix: str = "", window: str = RATE,
         job: bool = True) -> str:
    return f"rate({sel(metric, *matchers, suffix=suffix, job=job)}[{window}])"


def increase(metric: MetricSpec, *matchers: str, window: str = RATE) -> str:
    return f"increase({sel(metric, *matchers)}[{window}])"


def quantile(phi: float, metric: MetricSpec, by: str, *matchers: str) -> str:
    inner = f"sum by (le{', ' + by if by else ''}) ({rate(metric, *matchers, suffix='_bucket')})"
    return f"histogram_quantile({phi:g}, {inner})"


def ratio(numerator: str, denominator: str) -> str:
    return f"({numerator})\n/\n({denominator})"


# --- SLI PromQL ---------------------------------------------------------------------
def sli_error_ratio(service: Service, slo: SLO, window: str) -> str:
    """Ratio of bad to all events of ``slo`` over ``window``, from raw metrics: the very
    PromQL the generated recording rules use, so dashboards and alerts agree."""
    return rules.sli_error_ratio(service, slo.sli, window)


def _pct(objective: float) -> str:
    return f"{objective:g}%"


def _slo_title(service: Service, slo: SLO) -> str:
    return f"{service.name} / {slo.name}"


def slo_status_panels(spec: Spec) -> tuple[Panel, ...]:
    """Executive: per SLO, the SLI over its window and the error budget left."""
    panels: list[Panel] = []
    for service in spec.services:
        for slo in service.slos:
            name = _slo_title(service, slo)
            err = sli_error_ratio(service, slo, slo.window)
            budget = slo.error_budget_ratio
            what = slo.description or f"{slo.sli.kind} SLI"
            panels.append(Panel(
                f"{name}: SLI over {slo.window}", "stat",
                q(f"1 - (\n{err}\n)", "SLI"), "percentunit",
                f"{what}. Share of good events over the SLO window ({slo.window}); the objective "
                f"is {_pct(slo.objective)}. Red means the SLO is currently missed.",
                steps=below(slo.objective / 100.0), decimals=3, width=6, height=5,
                runbook=ALERT_SLO_BURN))
            panels.append(Panel(
                f"{name}: error budget remaining", "gauge",
                q(f"1 - (\n{err}\n) / {budget:g}", "budget left"), "percentunit",
                f"Share of the {slo.window} error budget ({budget:g} of events may be bad) still "
                "unspent. Below 25% (orange) freeze risky launches; below 0 (red) the SLO is "
                "breached and reliability work takes priority.",
                steps=((None, "red"), (0.0, "orange"), (0.25, "green")),
                min=0.0, max=1.0, decimals=1, width=6, height=5, runbook=ALERT_SLO_BURN))
    return tuple(panels)


def burn_rate_panels(spec: Spec) -> tuple[Panel, ...]:
    """On-call: per SLO, the burn rate over the page tiers' long windows."""
    panels: list[Panel] = []
    for service in spec.services:
        for slo in service.slos:
            tiers = [t for t in slo.tiers if t.severity == "page"] or list(slo.tiers)
            windows = sorted({t.long_window for t in tiers}, key=duration.seconds)
            factors = sorted({t.factor for t in tiers})
            budget = slo.error_budget_ratio
            queries = tuple(
                Query(f"(\n{sli_error_ratio(service, slo, w)}\n) / {budget:g}", f"burn rate {w}")
                for w in windows)
            steps: Steps = ((None, "green"),) + tuple(
                (f, "red" if f == factors[-1] else "orange") for f in factors)
            tiers_txt = ", ".join(f"{t.factor:g}x over {t.long_window}/{t.short_window} "
                                  f"({t.severity})" for t in slo.tiers)
            panels.append(Panel(
                f"{_slo_title(service, slo)}: burn rate", "timeseries", queries,
                "suffix:x",
                f"How fast the error budget of the {_pct(slo.objective)} {slo.sli.kind} SLO burns: "
                f"1x spends exactly the budget in {slo.window}. Alert tiers: {tiers_txt}. A line "
                "above a threshold that stays there means the alert fires; check the error-rate "
                "and errors-by-function panels for the cause.",
                steps=steps, min=0.0, width=12, height=8, runbook=ALERT_SLO_BURN))
    return tuple(panels)


def currency_unit(currency: str) -> str:
    """Grafana's unit id for a currency code."""
    known = {"USD", "GBP", "EUR", "JPY", "RUB", "UAH", "BRL", "DKK", "ISK", "NOK", "SEK", "CZK",
             "CHF", "PLN", "ZAR", "INR", "KRW", "IDR", "PHP", "VND"}
    code = currency.upper()
    return f"currency{code}" if code in known else f"currency:{currency}"


# --- executive ------------------------------------------------------------------------
def executive_rows(spec: Spec) -> tuple[Row, ...]:
    req_ok = f"sum by (service) ({rate(c.REQUESTS, SVC, OK)})"
    req_all = f"sum by (service) ({rate(c.REQUESTS, SVC)})"
    accelerators = (f"(count({sel(c.GPU_UTILIZATION)}) or vector(0))\n"
                    f"+ (count({sel(c.TPU_DUTY_CYCLE)}) or vector(0))")
    hourly = f"(\n{accelerators}\n) * $accelerator_cost_per_hour"
    qps_total = f"sum({rate(c.REQUESTS, SVC)})"
    cost_per_1k = f"(\n{hourly}\n) / 3600 * 1000\n/ ({qps_total} > 0)"
    money = currency_unit(spec.dashboards.currency)
    # Green from the strictest availability objective (99.9% without one).
    target = max((slo.objective / 100 for svc in spec.services for slo in svc.slos
                  if slo.sli.kind == "availability"), default=0.999)
    price_note = (f"Priced at $accelerator_cost_per_hour {spec.dashboards.currency} per "
                  "accelerator-hour (the dashboard constant accelerator_cost_per_hour, set from "
                  "the SLO spec's dashboards.accelerator_cost_per_hour; change it under "
                  "Dashboard settings > Variables).")

    def lat(start: str) -> tuple[Query, ...]:
        m = (SVC, f'start="{start}"')
        return tuple(Query(quantile(p, c.REQUEST_DURATION, "", *m), f"p{round(p * 100)}")
                     for p in (0.5, 0.95, 0.99))

    rows = []
    slo_panels = slo_status_panels(spec)
    if slo_panels:
        rows.append(Row("Service level objectives", slo_panels))
    rows.append(Row("Traffic and latency", (
        Panel("Success rate", "stat",
              q(ratio(f"sum({rate(c.REQUESTS, SVC, OK, window='$__range')})",
                      f"sum({rate(c.REQUESTS, SVC, window='$__range')})"), "success rate"),
              "percentunit",
              "Share of requests/steps of the selected services that succeeded over the whole "
              f"time range; green from {target:.3%} (the strictest availability objective).",
              steps=below(target), decimals=3,
              width=6, height=5),
        Panel("Requests per second", "stat", q(qps_total, "QPS"), "reqps",
              "Current request/step throughput of the selected services (QPS). A sudden drop "
              "with a healthy success rate usually means traffic went elsewhere.",
              width=6, height=5),
        Panel("Success rate by service", "timeseries", q(ratio(req_ok, req_all), "{{service}}"),
              "percentunit",
              "Success rate per service over time. Dips line up with burn-rate spikes on the "
              "on-call dashboard.", max=1.0, width=12, height=5),
        Panel("QPS by service", "timeseries", q(req_all, "{{service}}"), "reqps",
              "Requests (or training steps) per second by service.", width=8),
        Panel("Steady-state latency p50 / p95 / p99", "timeseries", lat("steady"), "s",
              "Request latency excluding cold starts (no compilation inside the request): "
              "what users feel once the service is warm. p99 creeping up with flat QPS points "
              "at device contention or host-side work.", width=8),
        Panel("Cold-start latency p50 / p95 / p99", "timeseries", lat("cold"), "s",
              "Latency of requests that had to compile (first call of a shape). Kept separate "
              "from steady-state latency; large values mean warmup misses shapes.", width=8),
    )))
    rows.append(Row("Accelerators and cost", (
        Panel("Accelerator utilization", "timeseries",
              qs((f"avg by (model) ({sel(c.GPU_UTILIZATION)})", "GPU {{model}}"),
                 (f"avg({sel(c.TPU_DUTY_CYCLE)})", "TPU duty cycle")),
              "percentunit",
              "Average GPU utilization (NVML) and TPU TensorCore duty cycle. Low utilization "
              "with high latency points at host-side bottlenecks; low utilization at low "
              "traffic means paid accelerators sit idle.", min=0.0, max=1.0, width=12),
        Panel("Accelerators reporting", "stat", q(accelerators, "accelerators"), "short",
              "GPUs and TPU chips whose collectors report metrics; the cost panels multiply "
              "this count by the hourly price.", width=4),
        Panel("Accelerator cost per hour", "stat", q(hourly, "cost per hour"), money,
              "Hourly cost of the accelerators reporting metrics. " + price_note,
              decimals=2, width=4),
        Panel("Cost per 1k inferences", "stat", q(cost_per_1k, "cost per 1k"), money,
              "Accelerator cost of 1000 requests at the current throughput: hourly cost / "
              "requests per hour x 1000. Rising cost with flat traffic means lower utilization "
              "or more replicas. " + price_note, decimals=4, width=4),
        Panel("Cost per 1k inferences over time", "timeseries", q(cost_per_1k, "cost per 1k"),
              money, "Cost per 1000 requests over time. " + price_note, width=24, height=6),
    )))
    return tuple(rows)


# --- on-call --------------------------------------------------------------------------
def oncall_rows(spec: Spec) -> tuple[Row, ...]:
    r = spec.resources
    req_err = f"sum by (service) ({rate(c.REQUESTS, SVC, ERR)})"
    req_all = f"sum by (service) ({rate(c.REQUESTS, SVC)})"
    cold = f"sum by (service) ({rate(c.REQUEST_DURATION, SVC, COLD, suffix='_count')})"
    all_lat = f"sum by (service) ({rate(c.REQUEST_DURATION, SVC, suffix='_count')})"
    hits = f"sum({rate(c.CALLS, FN, HIT)})"
    calls = f"sum({rate(c.CALLS, FN)})"
    return (
        Row("Errors and SLO burn", (
            Panel("Error rate by service", "timeseries", q(ratio(req_err, req_all), "{{service}}"),
                  "percentunit",
                  "Share of failed requests/steps per service, right now. A spike that matches "
                  "a burn-rate spike is the incident; check errors by function for the class.",
                  min=0.0, width=12),
            Panel("Errors by function and class", "timeseries",
                  q(f"sum by (function, error) ({rate(c.ERRORS, FN)})", "{{function}} {{error}}"),
                  "ops",
                  "Exceptions raised by instrumented calls per second, by class (oom, trace, "
                  "compile, runtime). compile errors after a deploy: roll back and compare "
                  "build info; oom: see the memory row.", min=0.0, width=12, stack=True),
        ) + burn_rate_panels(spec)),
        Row("Device memory and OOMs", (
            Panel("Device memory utilization", "timeseries",
                  q(f"max by (device) ({sel(c.DEVICE_MEMORY_UTILIZATION)})", "{{device}}"),
                  "percentunit",
                  f"Allocator memory in use / limit per device. Above "
                  f"{r.device_memory_ratio:.0%} the next larger batch or shape may OOM; a "
                  "steady climb at flat traffic is a leak (check live arrays on the debug "
                  "dashboard).", steps=above(r.device_memory_ratio), min=0.0, max=1.0,
                  width=8, runbook=ALERT_DEVICE_MEMORY),
            Panel("Device memory in use and limit", "timeseries",
                  q(f"max by (device, kind) ({sel(c.DEVICE_MEMORY, MEM_IN_USE_LIMIT)})",
                    "{{device}} {{kind}}"), "bytes",
                  "Bytes in use vs the allocator limit per device (JAX memory_stats, not NVML: "
                  "NVML counts JAX's preallocated pool as used).", min=0.0, width=8),
            Panel("OOM errors", "timeseries",
                  q(f"sum by (function) ({increase(c.ERRORS, FN, OOM)})",
                    "{{function}}"), "short",
                  "Out-of-memory errors per interval by function. Any bar is user-visible; "
                  "many functions at once means the device is full (reduce batch size, check "
                  "live arrays, restart the replica).", steps=above(1.0), min=0.0, bars=True,
                  width=8, runbook=ALERT_OOM),
        )),
        Row("Compilation", (
            Panel("Compilations by cause", "timeseries",
                  q(f"sum by (cause) ({increase(c.COMPILATIONS, FN)})", "{{cause}}"), "short",
                  "Recent compile events per interval by cause. 'first' after a deploy is "
                  "expected; sustained shape/dtype/static_arg compiles are a recompilation "
                  "storm (pad or bucket shapes, mark arguments static correctly).",
                  min=0.0, bars=True, stack=True, width=8, runbook=ALERT_RECOMPILES),
            Panel("Compilation queue depth", "timeseries",
                  q(f"sum by (function) ({sel(c.COMPILATIONS_IN_PROGRESS, FN)})", "{{function}}"),
                  "short",
                  f"Compilations running right now ({c.COMPILATIONS_IN_PROGRESS.name}). Requests "
                  "queue behind a compile; many replicas compiling the same function at once "
                  "is a thundering herd (warm up, use the persistent cache).",
                  steps=above(float(r.concurrent_compiling_replicas), color="orange"),
                  min=0.0, width=8, runbook=ALERT_CONCURRENT_COMPILES),
            Panel("Cold-start ratio", "timeseries", q(ratio(cold, all_lat), "{{service}}"),
                  "percentunit",
                  f"Share of requests that compiled. Above {r.cold_start_ratio:.0%} warmup is "
                  "missing shapes or the compile cache is being evicted.",
                  steps=above(r.cold_start_ratio), min=0.0, width=8, runbook=ALERT_COLD_START),
            Panel("Compile-cache hit ratio", "timeseries", q(ratio(hits, calls), "hit ratio"),
                  "percentunit",
                  f"Calls that reused a compiled executable. Below {r.cache_hit_ratio:.0%} the "
                  "service is recompiling; see recompile causes on the debug dashboard.",
                  steps=below(r.cache_hit_ratio), max=1.0, width=8, runbook=ALERT_CACHE_HIT),
            Panel("In-flight requests", "timeseries",
                  q(f"sum by (service) ({sel(c.REQUESTS_IN_FLIGHT, SVC)})", "{{service}}"),
                  "short",
                  "Requests/steps currently inside jaxobs.request/step (queue length). Rising "
                  "in-flight with flat QPS means requests are stuck, often behind a compile.",
                  min=0.0, width=8),
            Panel("Steady-state latency p99 by service", "timeseries",
                  q(quantile(0.99, c.REQUEST_DURATION, "service", SVC, STEADY),
                    "{{service}}"), "s",
                  "p99 latency of warm requests per service; compare with the latency SLO "
                  "threshold.", width=8),
        )),
        Row("Targets and collectors", (
            Panel("Targets up", "stat", q(f"up{{{JOB}}}", "{{instance}}"), "short",
                  "Prometheus scrape health per target of the selected jobs. DOWN means no "
                  "metrics (and no alerts) from that replica.",
                  steps=below(1.0), mappings=(("0", "DOWN", "red"), ("1", "UP", "green")),
                  width=8, height=6, runbook=ALERT_TARGET_DOWN),
            Panel("Collectors up", "stat",
                  q(f"min by (collector, device) ({sel(c.COLLECTOR_UP)})",
                    "{{collector}} {{device}}"), "short",
                  "Device/host collectors that answered the last scrape. A DOWN collector means "
                  "its series vanish (check the driver, NVML, or the TPU runtime port).",
                  steps=below(1.0), mappings=(("0", "DOWN", "red"), ("1", "UP", "green")),
                  width=8, height=6, runbook=ALERT_COLLECTOR_DOWN),
            Panel("Replicas ready", "stat", q(f"sum({sel(c.READY)})", "ready"), "short",
                  "Replicas whose warmup finished (/readyz answers 200).", width=8, height=6),
            Panel("Build info", "table",
                  q(f"count by (jax, jaxlib, backend, driver, cuda, jaxobs) ({sel(c.BUILD_INFO)})",
                    "replicas"), "short",
                  "Versions per replica group. More than one row means replicas run different "
                  "jax/jaxlib/driver/CUDA versions (driver/runtime mismatch): roll forward or "
                  "back so all match.", hide_columns=("Time",),
                  rename_columns=(("Value", "replicas"),), width=24, height=6,
                  runbook=ALERT_BUILD_MISMATCH),
        )),
    )


# --- debug ----------------------------------------------------------------------------
def debug_rows(spec: Spec) -> tuple[Row, ...]:
    r = spec.resources
    hits_fn = f"sum by (function) ({rate(c.CALLS, FN, HIT)})"
    calls_fn = f"sum by (function) ({rate(c.CALLS, FN)})"
    flops = (f"max by (function) ({sel(c.FUNCTION_FLOPS, FN)})\n"
             f"* on (function) {calls_fn}")
    intensity = (f"max by (function) ({sel(c.FUNCTION_FLOPS, FN)})\n"
                 f"/ on (function) (max by (function) ({sel(c.FUNCTION_BYTES_ACCESSED, FN)}) > 0)")
    gpu = "{{gpu}} {{model}}"
    return (
        Row("Compilation", (
            Panel("Compile time p95 by phase", "timeseries",
                  q(quantile(0.95, c.COMPILE_DURATION, "phase", FN), "{{phase}}"), "s",
                  "p95 duration of each compile phase: trace (Python to jaxpr), lower (to "
                  "MLIR), backend (XLA). Slow trace means Python-heavy functions; slow backend "
                  "means large HLO (check fusions).", width=8),
            Panel("Compile time per function and phase", "timeseries",
                  q(f"sum by (function, phase) "
                    f"(increase({sel(c.COMPILE_DURATION, FN, suffix='_sum')}[{RATE}]))",
                    "{{function}} {{phase}}"), "s",
                  "Seconds spent compiling per interval, by function and phase: which "
                  "function's compiles cost the most.", min=0.0, bars=True, stack=True, width=8),
            Panel("Cache hit ratio by function", "timeseries",
                  q(ratio(hits_fn, calls_fn), "{{function}}"), "percentunit",
                  f"Share of calls that reused a compiled executable, per function. Below "
                  f"{r.cache_hit_ratio:.0%}: look at recompile causes for that function.",
                  steps=below(r.cache_hit_ratio), max=1.0, width=8, runbook=ALERT_CACHE_HIT),
            Panel("Recompile causes", "timeseries",
                  q(f"sum by (function, cause) ({increase(c.COMPILATIONS, FN, RECOMPILE)})",
                    "{{function}} {{cause}}"), "short",
                  "Compiles after the first, by function and cause. shape: pad/bucket inputs; "
                  "dtype: fix input dtypes; static_arg: hashable, stable static arguments; "
                  "sharding: keep input shardings consistent.",
                  min=0.0, bars=True, stack=True, width=12, runbook=ALERT_RECOMPILES),
            Panel("Compilations over the range", "table",
                  q(f"sum by (function, cause) "
                    f"(increase({sel(c.COMPILATIONS, FN)}[$__range])) > 0", "compiles"), "short",
                  "Total compilations per function and cause over the selected time range.",
                  hide_columns=("Time",), rename_columns=(("Value", "compilations"),), width=12),
        )),
        Row("Execution", (
            Panel("Kernel latency p50 / p99 (sampled)", "timeseries",
                  qs((quantile(0.5, c.KERNEL_DURATION, "function", FN), "{{function}} p50"),
                     (quantile(0.99, c.KERNEL_DURATION, "function", FN), "{{function}} p99")),
                  "s",
                  "Device time of sampled calls, synchronised with block_until_ready. Compare "
                  "with host call latency: host >> kernel means dispatch/host overhead.",
                  width=8),
            Panel("Host call latency p99 by start", "timeseries",
                  q(quantile(0.99, c.CALL_DURATION, "function, start", FN),
                    "{{function}} {{start}}"), "s",
                  "Host-side call time (dispatch, plus compile for cold calls). Unsampled calls "
                  "return before the device finishes, so steady values are dispatch cost.",
                  width=8),
            Panel("Calls per second by cache outcome", "timeseries",
                  q(f"sum by (function, cache) ({rate(c.CALLS, FN)})", "{{function}} {{cache}}"),
                  "ops", "Call rate per function; cache=miss calls compiled.", min=0.0, width=8),
            Panel("Achieved FLOP/s", "timeseries", q(flops, "{{function}}"), "flops",
                  "FLOPs per call (XLA cost analysis) x calls per second. Compare with the "
                  "accelerator's peak to find functions worth optimizing.", min=0.0, width=8),
            Panel("Fusions per function", "bargauge",
                  q(f"max by (function) ({sel(c.FUNCTION_FUSIONS, FN)})", "{{function}}"),
                  "short",
                  "Fused computations in the optimized HLO of the latest compile. A jump after a "
                  "code change means XLA stopped fusing (more kernels, more memory traffic).",
                  width=8),
            Panel("Arithmetic intensity", "bargauge", q(intensity, "{{function}}"), "short",
                  "FLOPs per byte accessed (XLA cost analysis). Low values are memory-bound: "
                  "batch more or fuse more.", width=8),
        )),
        Row("Memory and arrays", (
            Panel("Live arrays by device", "timeseries",
                  q(f"sum by (device) ({sel(c.LIVE_ARRAYS)})", "{{device}}"), "short",
                  "Live jax.Array objects per device. A count that only grows at steady "
                  "traffic is a leak (arrays kept in caches, lists or closures).", width=8),
            Panel("Live array bytes by device", "timeseries",
                  q(f"sum by (device) ({sel(c.LIVE_ARRAY_BYTES)})", "{{device}}"), "bytes",
                  "Bytes held by live arrays; compare with device memory in use to see how much "
                  "is temporaries vs held arrays.", width=8),
            Panel("Host RSS and available memory", "timeseries",
                  qs((f"sum by (instance, process) ({sel(c.PROCESS_RESIDENT_MEMORY)})",
                      "RSS {{instance}} {{process}}"),
                     (f"min by (instance) ({sel(c.HOST_MEMORY_AVAILABLE)})",
                      "available {{instance}}")), "bytes",
                  "Resident memory of the observed process and host memory available. RSS "
                  "growth with flat device memory: host-side leaks (Python objects, "
                  "host copies of arrays).", width=8),
            Panel("Device memory by kind", "timeseries",
                  q(f"max by (device, kind) ({sel(c.DEVICE_MEMORY)})", "{{device}} {{kind}}"),
                  "bytes", "Allocator in_use, peak, reserved and limit per device.", width=12),
            Panel("Peak memory per call (XLA)", "bargauge",
                  q(f"max by (function) ({sel(c.FUNCTION_PEAK_MEMORY, FN)})", "{{function}}"),
                  "bytes",
                  "Arguments + outputs + temporaries of one call, from XLA memory analysis: the "
                  "functions that need the most headroom.", width=12),
        )),
        Row("Persistent compilation cache", (
            Panel("Persistent cache hit ratio", "timeseries",
                  q(ratio(f"sum({rate(c.PERSISTENT_CACHE_HITS)})",
                          f"sum({rate(c.PERSISTENT_CACHE_REQUESTS)})"), "hit ratio"),
                  "percentunit",
                  "Compile requests served from JAX's persistent cache. Low after a deploy "
                  "means the cache directory is empty, not shared, or keyed on changing flags.",
                  max=1.0, width=8),
            Panel("Persistent cache hits and misses", "timeseries",
                  qs((f"sum({rate(c.PERSISTENT_CACHE_HITS)})", "hits"),
                     (f"sum({rate(c.PERSISTENT_CACHE_MISSES)})", "misses")), "ops",
                  "Persistent cache lookups per second.", min=0.0, width=8),
            Panel("Compile time saved", "timeseries",
                  q(f"sum(increase({sel(c.PERSISTENT_CACHE_SAVED)}[{RATE}]))", "saved"), "s",
                  "Compile seconds the persistent cache saved per interval.", min=0.0,
                  bars=True, width=8),
        )),
        Row("GPU", (
            Panel("GPU utilization", "timeseries", q(sel(c.GPU_UTILIZATION), gpu),
                  "percentunit", "NVML utilization per GPU.", min=0.0, max=1.0, width=8),
            Panel("GPU power", "timeseries", q(sel(c.GPU_POWER), gpu), "watt",
                  "Power draw per GPU; near the limit with low utilization suggests throttling.",
                  min=0.0, width=8),
            Panel("GPU temperature", "timeseries", q(sel(c.GPU_TEMPERATURE), gpu), "celsius",
                  "GPU temperature; above ~85 C GPUs throttle clocks.",
                  steps=((None, "green"), (80.0, "orange"), (85.0, "red")), width=8),
            Panel("GPU memory (NVML)", "timeseries",
                  q(sel(c.GPU_MEMORY), "{{gpu}} {{kind}}"), "bytes",
                  "NVML used/total. Includes JAX's preallocated pool (75% by default), so use "
                  "device memory utilization for real usage.", min=0.0, width=8),
            Panel("GPU XID errors", "timeseries",
                  q(f"sum by (gpu, xid) ({increase(c.GPU_XID_ERRORS)})", "{{gpu}} xid {{xid}}"),
                  "short",
                  "XID errors reported by the driver. Any XID needs attention: 48/63/64/74/79 "
                  "usually mean a hardware or driver fault (drain the node).",
                  steps=above(1.0), min=0.0, bars=True, width=8, runbook=ALERT_GPU_XID),
            Panel("GPU ECC errors", "timeseries",
                  q(f"sum by (gpu, type) ({increase(c.GPU_ECC_ERRORS)})", "{{gpu}} {{type}}"),
                  "short", "ECC errors per interval; uncorrected errors corrupt results.",
                  min=0.0, bars=True, width=8),
        )),
        Row("TPU", (
            Panel("TPU duty cycle", "timeseries", q(sel(c.TPU_DUTY_CYCLE), "chip {{chip}}"),
                  "percentunit",
                  "Share of time the TensorCores were busy. Low duty cycle at high load: input "
                  "pipeline or host bound.", min=0.0, max=1.0, width=12),
            Panel("TPU HBM", "timeseries", q(sel(c.TPU_HBM), "chip {{chip}} {{kind}}"), "bytes",
                  "HBM used and total per chip.", min=0.0, width=12),
        )),
        Row("Goodput", (
            Panel("Badput by reason", "timeseries",
                  q(f"sum by (reason) ({increase(c.STEP_BADPUT, SVC)})", "{{reason}}"), "s",
                  "Step seconds lost per interval, by reason (compile, data, checkpoint, "
                  "anomaly). Compile badput after restarts: enable the persistent cache; data: "
                  "the input pipeline is the bottleneck.", min=0.0, bars=True, stack=True,
                  width=12),
            Panel("Badput over the range", "bargauge",
                  q(f"sum by (reason) (increase({sel(c.STEP_BADPUT, SVC)}[$__range]))",
                    "{{reason}}"), "s",
                  "Total seconds lost per reason over the selected time range.", width=12),
        )),
        Row("jaxobs internals", (
            Panel("Internal errors", "timeseries",
                  q(f"sum by (component) ({increase(c.INTERNAL_ERRORS)})", "{{component}}"),
                  "short",
                  "Failures inside jaxobs (never raised to user code). Non-zero means some "
                  "metrics may be missing; file a bug with the component name.",
                  steps=above(1.0, color="orange"), min=0.0, bars=True, width=12),
            Panel("Deploy window", "timeseries",
                  q(f"max({sel(c.DEPLOY_IN_PROGRESS)})", "deploy in progress"), "short",
                  "1 while a deploy window is open; compile alerts are inhibited meanwhile.",
                  min=0.0, max=1.0, width=12, runbook=ALERT_DEPLOY),
        )),
    )
