"""The whole /metrics text for known observations, compared exactly (as prometheus_client's own
exposition tests do): names, HELP and TYPE lines, label order, bucket layout and values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from jaxobs import catalog as C
from jaxobs.telemetry import recorder_for


def _text(registry: CollectorRegistry, *names: str) -> str:
    """The exposition of the named families only (jaxobs' own build info varies by machine)."""
    keep, out = False, []
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("# HELP "):
            keep = line.split()[2] in names
        if keep:
            out.append(line)
    return "\n".join(out) + "\n"


def test_counters_and_a_histogram_expose_exactly(monkeypatch):
    registry = CollectorRegistry()
    rec = recorder_for(registry)
    rec.counter(C.CALLS, "predict", "hit").inc(41)
    rec.counter(C.CALLS, "predict", "miss").inc()
    kernel = rec.histogram(C.KERNEL_DURATION, "predict")
    for seconds in (0.00005, 0.0005, 0.0005, 0.5, 2.0):
        kernel.observe(seconds)
    rec.counter(C.CALLS, "never_called", "hit")  # declared, never observed: not on /metrics
    assert _text(registry, "jaxobs_calls_total", "jaxobs_kernel_duration_seconds") == f"""\
# HELP jaxobs_calls_total {C.CALLS.help}
# TYPE jaxobs_calls_total counter
jaxobs_calls_total{{cache="hit",function="predict"}} 41.0
jaxobs_calls_total{{cache="miss",function="predict"}} 1.0
# HELP jaxobs_kernel_duration_seconds {C.KERNEL_DURATION.help}
# TYPE jaxobs_kernel_duration_seconds histogram
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="0.0001"}} 1.0
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="0.001"}} 3.0
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="0.01"}} 3.0
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="0.1"}} 3.0
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="1.0"}} 4.0
jaxobs_kernel_duration_seconds_bucket{{function="predict",le="+Inf"}} 5.0
jaxobs_kernel_duration_seconds_count{{function="predict"}} 5.0
jaxobs_kernel_duration_seconds_sum{{function="predict"}} 2.50105
"""


def test_gauges_and_labels_expose_exactly():
    registry = CollectorRegistry()
    rec = recorder_for(registry)
    rec.gauge(C.COMPILATIONS_IN_PROGRESS, "train_step").set(2)
    rec.counter(C.REQUESTS, "inference", "error").inc(3)
    rec.counter(C.REQUESTS, "inference", "ok").inc(997)
    assert _text(registry, "jaxobs_compilations_in_progress", "jaxobs_requests_total") == f"""\
# HELP jaxobs_compilations_in_progress {C.COMPILATIONS_IN_PROGRESS.help}
# TYPE jaxobs_compilations_in_progress gauge
jaxobs_compilations_in_progress{{function="train_step"}} 2.0
# HELP jaxobs_requests_total {C.REQUESTS.help}
# TYPE jaxobs_requests_total counter
jaxobs_requests_total{{outcome="error",service="inference"}} 3.0
jaxobs_requests_total{{outcome="ok",service="inference"}} 997.0
"""
