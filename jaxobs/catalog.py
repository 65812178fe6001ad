"""The metric catalog: the one place that spells a jaxobs metric name.

Dashboards, alert rules, runbooks, backends and users' own queries all rely on
these names (docs/architecture.md), so everything else refers to the constants below
instead of string literals.  Names follow Prometheus conventions: base units,
``_total`` for counters, ``_ratio`` in 0..1, bounded label sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MetricType = Literal["counter", "gauge", "histogram"]

#: Request/step latency (per service, not per function): 100 µs … 2 min.  Latency SLO
#: thresholds must be one of these bounds so the SLI is exact, not interpolated;
#: ``jaxobs.configure(slo_spec=...)`` derives a shorter layout from the spec instead.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)
#: Per-function steady call time and sampled device time: decades, 100 µs … 1 s.
#: Per-function histograms multiply by the number of functions, so they stay coarse.
CALL_BUCKETS: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 1.0)
#: Compile phases and cold calls: compiles take tens of ms to minutes and happen a
#: handful of times, so a few coarse bounds (plus exact per-phase sums and counts) suffice.
COMPILE_BUCKETS: tuple[float, ...] = (0.1, 1.0, 10.0)
#: Fill of one padded batch: real rows / padded rows (a ratio, not seconds).
FILL_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
#: The base of a layout derived from an SLO spec: the spec's thresholds are added to it.
SLO_BASE_BUCKETS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0)

#: Bucket layouts by name: the one place a histogram's bounds come from.  Change
#: them with ``jaxobs.configure(buckets={"call": (...)})`` before the first
#: observation (a series keeps the bounds it was created with).
DEFAULT_LAYOUTS: dict[str, tuple[float, ...]] = {
    "latency": LATENCY_BUCKETS,
    "call": CALL_BUCKETS,
    "compile": COMPILE_BUCKETS,
    "queue": LATENCY_BUCKETS,  # batching-queue wait, per service
    "fill": FILL_BUCKETS,
}
_layouts: dict[str, tuple[float, ...]] = dict(DEFAULT_LAYOUTS)


def layout(name: str) -> tuple[float, ...]:
    """The bounds of the layout ``name`` as currently configured."""
    return _layouts[name]


def set_layout(name: str, bounds: tuple[float, ...] | None) -> None:
    """Replace one layout (``None`` restores its default).  Bounds must be positive and finite."""
    if name not in DEFAULT_LAYOUTS:
        raise ValueError(f"unknown bucket layout {name!r}: use one of {', '.join(DEFAULT_LAYOUTS)}")
    if bounds is None:
        _layouts[name] = DEFAULT_LAYOUTS[name]
        return
    clean = tuple(sorted({float(b) for b in bounds}))
    if not clean or clean[0] <= 0 or clean[-1] == float("inf"):
        raise ValueError(f"bucket layout {name!r} needs positive, finite bounds, got {bounds!r}")
    _layouts[name] = clean


def le_label(bound: float) -> str:
    """How a bound is spelled in the ``le`` label (prometheus-client's float formatting)."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(bound)


#: Distinct ``function`` label values one process exposes, by default; later
#: functions share :data:`OVERFLOW_FUNCTION` (``jaxobs.configure(max_functions=...)``).
MAX_FUNCTIONS = 500
OVERFLOW_FUNCTION = "__overflow__"


@dataclass(frozen=True)
class MetricSpec:
    """One catalog entry.

    ``name`` is the exposition name users query (counters include ``_total``).
    ``multiprocess_mode`` is how prometheus-client merges a gauge across the
    processes sharing ``PROMETHEUS_MULTIPROC_DIR``.
    """

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    #: histograms: the default bucket layout name, then (label, value, layout) overrides.
    layout: str | None = None
    layout_by: tuple[tuple[str, str, str], ...] = ()
    multiprocess_mode: str = "mostrecent"

    @property
    def buckets(self) -> tuple[float, ...] | None:
        """The default bucket bounds (a label value may pick another layout: :func:`buckets_for`)."""
        return None if self.layout is None else _layouts[self.layout]

    @property
    def base_name(self) -> str:
        """Name without the ``_total`` suffix (what client libraries take)."""
        if self.type == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    @property
    def unit(self) -> str:
        for unit in ("seconds", "bytes", "ratio", "watts", "celsius"):
            if self.base_name.endswith("_" + unit):
                return unit
        return ""


def _c(name: str, help: str, labels: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, "counter", help, labels)


def _g(name: str, help: str, labels: tuple[str, ...] = (), mode: str = "mostrecent") -> MetricSpec:
    return MetricSpec(name, "gauge", help, labels, multiprocess_mode=mode)


def _h(name: str, help: str, labels: tuple[str, ...], layout: str,
       layout_by: tuple[tuple[str, str, str], ...] = ()) -> MetricSpec:
    return MetricSpec(name, "histogram", help, labels, layout=layout, layout_by=layout_by)


def buckets_for(spec: MetricSpec, label_values: tuple[str, ...]) -> tuple[float, ...]:
    """The bounds of one histogram series: the first matching override, else the default."""
    for label, value, name in spec.layout_by:
        if label_values[spec.labels.index(label)] == value:
            return _layouts[name]
    assert spec.layout is not None, spec.name
    return _layouts[spec.layout]


# --- instrumented calls -------------------------------------------
CALLS = _c("jaxobs_calls_total",
           "Calls of instrumented functions; cache=miss means the call compiled (a cold start).",
           ("function", "cache"))
CALL_DURATION = _h("jaxobs_call_duration_seconds",
                   "Host-side call time: dispatch, plus compilation for cold calls.",
                   ("function", "start"), "call", (("start", "cold", "compile"),))
KERNEL_DURATION = _h("jaxobs_kernel_duration_seconds",
                     "Sampled call time synchronised with block_until_ready (device compute).",
                     ("function",), "call")
COMPILE_DURATION = _h("jaxobs_compile_duration_seconds",
                      "Compile time per phase: trace (jaxpr), lower (MLIR), backend (XLA).",
                      ("function", "phase"), "compile")
COMPILATIONS = _c("jaxobs_compilations_total",
                  "Compilations of instrumented functions by cause "
                  "(first, shape, dtype, static_arg, sharding, other).",
                  ("function", "cause"))
COMPILATIONS_IN_PROGRESS = _g("jaxobs_compilations_in_progress",
                              "Compilations running now (compilation queue depth).",
                              ("function",), mode="livesum")
ERRORS = _c("jaxobs_errors_total",
            "Exceptions raised by instrumented calls, by class (oom, trace, compile, runtime, other).",
            ("function", "error"))

# --- persistent compilation cache ------------------------------------------------------
PERSISTENT_CACHE_REQUESTS = _c("jaxobs_persistent_cache_requests_total",
                               "Compile requests that consulted JAX's persistent compilation cache.")
PERSISTENT_CACHE_HITS = _c("jaxobs_persistent_cache_hits_total",
                           "Executables loaded from JAX's persistent compilation cache.")
PERSISTENT_CACHE_MISSES = _c("jaxobs_persistent_cache_misses_total",
                             "Persistent compilation cache lookups that had to compile.")
PERSISTENT_CACHE_SAVED = _c("jaxobs_persistent_cache_saved_seconds_total",
                            "Compile time saved by JAX's persistent compilation cache.")

# --- XLA analysis at compile time -----------------------------------------------------
FUNCTION_FLOPS = _g("jaxobs_function_flops",
                    "FLOPs of one call, from XLA cost analysis of the latest compile.", ("function",))
FUNCTION_BYTES_ACCESSED = _g("jaxobs_function_bytes_accessed",
                             "Bytes accessed by one call, from XLA cost analysis.", ("function",))
FUNCTION_PEAK_MEMORY = _g("jaxobs_function_peak_memory_bytes",
                          "Argument + output + temporary bytes, from XLA memory analysis.", ("function",))
FUNCTION_FUSIONS = _g("jaxobs_function_fusions",
                      "Fused computations in the optimized HLO of the latest compile.", ("function",))

# --- requests and steps (SLIs) --------------------------------------------------------
REQUESTS = _c("jaxobs_requests_total",
              "Requests or training steps marked with jaxobs.request/step, by outcome (ok, error).",
              ("service", "outcome"))
REQUEST_DURATION = _h("jaxobs_request_duration_seconds",
                      "Request or step latency; start=cold when a call inside it compiled.",
                      ("service", "start"), "latency")
REQUESTS_IN_FLIGHT = _g("jaxobs_requests_in_flight",
                        "Requests or steps currently inside jaxobs.request/step.",
                        ("service",), mode="livesum")

# --- batching servers (queue and batch utilisation) -----------------------------------
QUEUE_DEPTH = _g("jaxobs_queue_depth", "Requests waiting in a batching queue.", ("service",),
                 mode="livesum")
QUEUE_WAIT = _h("jaxobs_queue_wait_seconds",
                "Time a request waited in the queue until its batch started.", ("service",),
                "queue")
BATCH_FILL = _h("jaxobs_batch_fill_ratio",
                "Real rows / padded rows of each batch (1 = no padding).", ("service",), "fill")
BATCH_ROWS = _c("jaxobs_batch_rows_total",
                "Rows computed by batches, kind=request (real rows) or padding (wasted rows).",
                ("service", "kind"))
REQUESTS_REJECTED = _c("jaxobs_requests_rejected_total",
                       "Requests refused before any work (reason=overload: the queue was full, "
                       "answered 503 with Retry-After).", ("service", "reason"))

# --- process state --------------------------------------------------------------------
READY = _g("jaxobs_ready", "1 once every registered warmup finished.", mode="max")
BUILD_INFO = _g("jaxobs_build_info",
                "Always 1; labels carry versions to spot driver/runtime mismatches.",
                ("jax", "jaxlib", "backend", "driver", "cuda", "jaxobs"), mode="max")
INTERNAL_ERRORS = _c("jaxobs_internal_errors_total",
                     "Failures inside jaxobs, counted and never raised to the user.", ("component",))
DEPLOY_IN_PROGRESS = _g("jaxobs_deploy_in_progress",
                        "1 while a deploy window is open (compile alerts are inhibited).", mode="max")
MANIFEST_SIGNATURES = _c("jaxobs_manifest_signatures_total",
                         "Warm-start manifest signatures at start-up, by outcome (warmed; stale: no "
                         "longer applies, skipped; unmatched: no function of that name).",
                         ("function", "outcome"))

# --- collectors (device and host) -----------------------------------------------------
DEVICE_MEMORY = _g("jaxobs_device_memory_bytes",
                   "JAX allocator memory_stats() per device, kind in_use/peak/limit/reserved.",
                   ("device", "platform", "kind"))
DEVICE_MEMORY_UTILIZATION = _g("jaxobs_device_memory_utilization_ratio",
                               "Device memory in use divided by the allocator limit.",
                               ("device", "platform"))
LIVE_ARRAYS = _g("jaxobs_live_arrays", "Live jax.Array objects per device (a steadily rising count is a leak).",
                 ("device",))
LIVE_ARRAY_BYTES = _g("jaxobs_live_array_bytes", "Bytes held by live jax.Array objects per device.",
                      ("device",))
DEVICE_PEAK_FLOPS = _g("jaxobs_device_peak_flops_per_second",
                       "Dense peak FLOP/s of this process' accelerator for the configured dtype; divide "
                       "achieved FLOP/s by it for model FLOPs utilization. Absent on CPU.",
                       ("device_kind", "dtype"))
PROFILES = _c("jaxobs_profiles_total",
              "On-demand profile captures, outcome=ok|busy|rejected|error.", ("outcome",))
NONFINITE_OUTPUTS = _c("jaxobs_nonfinite_outputs_total",
                       "Sampled calls whose floating-point outputs held a NaN or an infinity.", ("function",))
CANARY_RUNS = _c("jaxobs_canary_runs_total",
                 "Determinism canary runs, outcome=match|mismatch|error.", ("function", "outcome"))
CANARY_MAX_ABS_DIFF = _g("jaxobs_canary_max_abs_diff",
                         "Largest absolute difference between the canary's latest output and its reference.",
                         ("function",))
CANARY_LAST_RUN = _g("jaxobs_canary_last_run_timestamp_seconds",
                     "Unix time of the canary's latest completed run.", ("function",))
GPU_LABELS = ("gpu", "uuid", "model")
GPU_UTILIZATION = _g("jaxobs_gpu_utilization_ratio", "NVML GPU utilization (0-1).", GPU_LABELS)
GPU_MEMORY = _g("jaxobs_gpu_memory_bytes", "NVML memory, kind used/total (includes JAX's preallocation).",
                GPU_LABELS + ("kind",))
GPU_POWER = _g("jaxobs_gpu_power_watts", "NVML power draw.", GPU_LABELS)
GPU_TEMPERATURE = _g("jaxobs_gpu_temperature_celsius", "NVML GPU temperature.", GPU_LABELS)
GPU_XID_ERRORS = _c("jaxobs_gpu_xid_errors_total", "XID errors reported by NVML's event API.",
                    GPU_LABELS + ("xid",))
GPU_ECC_ERRORS = _c("jaxobs_gpu_ecc_errors_total", "Uncorrected/corrected ECC errors (volatile).",
                    GPU_LABELS + ("type",))
GPU_THROTTLED = _g("jaxobs_gpu_clocks_throttled",
                   "1 while NVML reports this reason for holding clocks below their maximum "
                   "(power_cap, thermal, sync_boost, ...), else 0.", GPU_LABELS + ("reason",))
GPU_CLOCK = _g("jaxobs_gpu_clock_hertz", "Current clock speed, clock=sm|memory.", GPU_LABELS + ("clock",))
GPU_CLOCK_MAX = _g("jaxobs_gpu_clock_max_hertz", "Maximum clock speed, clock=sm|memory.", GPU_LABELS + ("clock",))
GPU_MEMORY_BANDWIDTH = _g("jaxobs_gpu_memory_bandwidth_utilization_ratio",
                          "Fraction of the last sample period in which device memory was read or written (0-1).",
                          GPU_LABELS)
GPU_PCIE_THROUGHPUT = _g("jaxobs_gpu_pcie_bytes_per_second", "PCIe throughput, direction=tx|rx.",
                         GPU_LABELS + ("direction",))
GPU_ENERGY = _c("jaxobs_gpu_energy_joules_total", "Energy used since the driver loaded.", GPU_LABELS)
GPU_PROCESS_MEMORY = _g("jaxobs_gpu_process_memory_bytes",
                        "Device memory used per process of this workload; pid=\"others\" sums every other "
                        "process on the GPU (a shared or time-sliced GPU).", GPU_LABELS + ("pid",))
GPU_PROCESS_UTILIZATION = _g("jaxobs_gpu_process_utilization_ratio",
                             "Per-process SM or memory utilization (kind=sm|memory) over the last sample period; "
                             "pid=\"others\" sums every other process.", GPU_LABELS + ("pid", "kind"))
TPU_DUTY_CYCLE = _g("jaxobs_tpu_duty_cycle_ratio", "TensorCore duty cycle (0-1) from the TPU runtime.",
                    ("chip",))
TPU_HBM = _g("jaxobs_tpu_hbm_bytes", "TPU HBM bytes, kind used/total.", ("chip", "kind"))
PROCESS_RESIDENT_MEMORY = _g("jaxobs_process_resident_memory_bytes",
                             "Resident set size of the observed process.", ("process",))
PROCESS_CPU = _c("jaxobs_process_cpu_seconds_total", "CPU time of the observed process.",
                 ("process",))
HOST_MEMORY_AVAILABLE = _g("jaxobs_host_memory_available_bytes", "Host memory available.")
COLLECTOR_UP = _g("jaxobs_collector_up", "1 when a collector/device answered this scrape.",
                  ("collector", "device"))

# --- sidecar exporter -----------------------------------------------------------------
EXPORTER_COLLECT_DURATION = _g("jaxobs_exporter_collect_duration_seconds",
                               "Time each exporter source (collector or app metrics) took this scrape.",
                               ("collector",))
EXPORTER_AUTH_FAILURES = _c("jaxobs_exporter_auth_failures_total",
                            "Requests to /metrics refused for missing or wrong basic-auth credentials.")
EXPORTER_SKIPPED_FILES = _g("jaxobs_exporter_skipped_files",
                            "App multiprocess files skipped this scrape (their series are missing), by "
                            "reason: empty, corrupt, not_regular, changing, unreadable.", ("reason",))
APP_WRITERS_DISABLED = _g("jaxobs_exporter_app_writers_disabled",
                          "App processes that stopped writing multiprocess files, by reason (no_space, "
                          "unwritable, missing, error); their metrics are missing from this endpoint.",
                          ("reason",))

# --- training goodput -----------------------------------------------------------------
STEP_BADPUT = _c("jaxobs_step_badput_seconds_total",
                 "Wall-clock seconds of a training job lost, by reason (startup, restore, compile, "
                 "data, checkpoint, anomaly, failed, disruption, or a custom event).",
                 ("service", "reason"))
STEP_GOODPUT = _c("jaxobs_step_goodput_seconds_total",
                  "Seconds of training steps spent on useful work: step time minus its compile "
                  "and anomaly badput.", ("service",))
STEP_EXAMPLES = _c("jaxobs_step_examples_total",
                   "Examples processed by training steps (throughput: its rate, examples/s).",
                   ("service",))
STEP_WALL = _c("jaxobs_step_wall_seconds_total",
               "Wall-clock seconds the goodput tracker accounts for, from its start mark (process "
               "start by default): goodput + badput + unaccounted.", ("service",))
STEP_UNACCOUNTED = _g("jaxobs_step_unaccounted_seconds",
                      "Wall-clock seconds since the start mark in no goodput block and no badput "
                      "reason (logging, evaluation outside a block).", ("service",))
STEP_EXPECTED = _g("jaxobs_step_expected_seconds",
                   "Expected step time: configured, or the lowest median step time of any full "
                   "window so far.", ("service",))
STEP_RECENT = _g("jaxobs_step_recent_seconds",
                 "Median step time of the recent window (divide by jaxobs_step_expected_seconds "
                 "for the deviation).", ("service",))


def _collect() -> dict[str, MetricSpec]:
    specs = {v.name: v for v in globals().values() if isinstance(v, MetricSpec)}
    return dict(sorted(specs.items()))


#: Every metric by exposition name.
METRICS: dict[str, MetricSpec] = _collect()

