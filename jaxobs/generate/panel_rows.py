"""The rows of the executive, on-call and debug dashboards (panels as data).

The building blocks (:class:`~jaxobs.generate.panels.Panel`, the PromQL helpers
and the SLO panels that read the recording rules) are in
:mod:`jaxobs.generate.panels`.
"""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate.panel_rows_health import (
    MFU_ALL_FUNCTIONS,
    debug_efficiency_panels,
    debug_throttling_panels,
    oncall_results_row,
)
from jaxobs.generate.panel_rows_throughput import executive_goodput_panel, goodput_panels, queue_row
from jaxobs.generate.panels import (
    ALERT_BUILD_MISMATCH,
    ALERT_CACHE_HIT,
    ALERT_COLD_START,
    ALERT_COLLECTOR_DOWN,
    ALERT_CONCURRENT_COMPILES,
    ALERT_DEPLOY,
    ALERT_DEVICE_MEMORY,
    ALERT_GPU_XID,
    ALERT_OOM,
    ALERT_RECOMPILES,
    ALERT_TARGET_DOWN,
    COLD,
    ERR,
    FN,
    HIT,
    JOB,
    MEM_IN_USE_LIMIT,
    OK,
    OOM,
    RATE,
    RECOMPILE,
    STEADY,
    SVC,
    Panel,
    Query,
    Row,
    above,
    below,
    burn_rate_panels,
    currency_unit,
    increase,
    q,
    qs,
    quantile,
    qx,
    rate,
    ratio,
    sel,
    slo_status_panels,
)
from jaxobs.slo.model import Spec


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
        executive_goodput_panel(),
        Panel("Accelerator efficiency (MFU)", "stat",
              q(f"avg(\n{MFU_ALL_FUNCTIONS}\n)", "MFU"), "percentunit",
              "Average model FLOPs utilization of the instrumented functions: achieved FLOP/s over "
              "the accelerators' peak. Training teams aim for 40-60%; empty on CPU.",
              min=0.0, max=1.0, decimals=1, width=6),
        Panel("Cost per 1k inferences over time", "timeseries", q(cost_per_1k, "cost per 1k"),
              money, "Cost per 1000 requests over time. " + price_note, width=12, height=6),
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
                  qx(quantile(0.99, c.REQUEST_DURATION, "service", SVC, STEADY),
                     "{{service}}"), "s",
                  "p99 latency of warm requests per service; compare with the latency SLO "
                  "threshold. With tracing on, exemplar points open the trace of a request.",
                  width=8),
            Panel("Cold requests (exemplars link to their traces)", "timeseries",
                  qx(quantile(0.99, c.REQUEST_DURATION, "service", SVC, COLD), "{{service}} p99"),
                  "s",
                  "Latency of requests that waited for a compile. With OpenTelemetry tracing on, "
                  "each exemplar point carries the trace id of a cold request: open it to see the "
                  "jaxobs.compile span, its cause and its phases (docs/tracing.md).", width=8),
        )),
        queue_row(),
        oncall_results_row(),
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
                  (Query(quantile(0.5, c.KERNEL_DURATION, "function", FN), "{{function}} p50"),
                   Query(quantile(0.99, c.KERNEL_DURATION, "function", FN), "{{function}} p99",
                         exemplar=True)),
                  "s",
                  "Device time of sampled calls, synchronised with block_until_ready. Compare "
                  "with host call latency: host >> kernel means dispatch/host overhead.",
                  width=8),
            Panel("Host call latency p99 by start", "timeseries",
                  qx(quantile(0.99, c.CALL_DURATION, "function, start", FN),
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
            *debug_efficiency_panels(),
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
            *debug_throttling_panels(),
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
            *goodput_panels(),
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
