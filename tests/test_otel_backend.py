"""The OpenTelemetry backend in-process: data model, SDK equivalence, semantic conventions, readers.

The SDK's own ``InMemoryMetricReader`` is the oracle: the producer's points
must equal what OTel instruments would have aggregated from the same
observations — without paying ``record()`` per call.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog
from jaxobs.telemetry import opentelemetry as jotel
from jaxobs.telemetry.recorder import Recorder

sys.path.insert(0, str(Path(__file__).parent / "fakes"))


def metrics_by_name(data) -> dict:  # type: ignore[no-untyped-def]
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def point(metric, **attrs):  # type: ignore[no-untyped-def]
    matches = [p for p in metric.data.data_points if dict(p.attributes) == attrs]
    assert len(matches) == 1, (attrs, [dict(p.attributes) for p in metric.data.data_points])
    return matches[0]


# --- the producer: an instrumented JAX function, exact values ------------------------------

def test_instrumented_calls_become_otel_sums_and_histograms(registry):
    f = jaxobs.jit(lambda x: x * 2, name="double", registry=registry)
    f(jnp.ones(2))   # miss (first)
    f(jnp.ones(2))   # hit
    f(jnp.ones(3))   # miss (shape)
    data = jotel.JaxobsMetricProducer(jaxobs.telemetry.recorder_for(registry),
                                      resource=Resource.create({"service.name": "unit"})).produce()
    (rm,) = data.resource_metrics
    assert rm.resource.attributes["service.name"] == "unit"
    (sm,) = rm.scope_metrics
    assert (sm.scope.name, sm.scope.version) == ("jaxobs", jaxobs.__version__)
    m = metrics_by_name(data)

    calls = m["jaxobs_calls"]  # catalog name minus _total: OTLP→Prometheus adds it back
    assert isinstance(calls.data, Sum) and calls.data.is_monotonic
    assert calls.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert point(calls, function="double", cache="miss").value == 2
    assert point(calls, function="double", cache="hit").value == 1
    causes = m["jaxobs_compilations"]
    assert point(causes, function="double", cause="first").value == 1
    assert point(causes, function="double", cause="shape").value == 1

    duration = m["jaxobs_call_duration_seconds"]
    assert isinstance(duration.data, Histogram) and duration.unit == "s"
    assert duration.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    cold = point(duration, function="double", start="cold")
    assert list(cold.explicit_bounds) == list(catalog.COMPILE_BUCKETS)
    assert len(cold.bucket_counts) == len(catalog.COMPILE_BUCKETS) + 1
    assert cold.count == sum(cold.bucket_counts) == 2
    series = jaxobs.telemetry.recorder_for(registry).histogram(catalog.CALL_DURATION, "double", "cold")
    assert cold.sum == pytest.approx(series.snapshot()[1])
    assert cold.start_time_unix_nano < cold.time_unix_nano

    phases = m["jaxobs_compile_duration_seconds"]
    assert list(point(phases, function="double", phase="backend").explicit_bounds) == list(catalog.COMPILE_BUCKETS)
    assert isinstance(m["jaxobs_build_info"].data, Gauge)


def test_every_catalog_metric_maps_to_a_valid_stream():
    producer = jotel.JaxobsMetricProducer(Recorder(), semconv=True)
    names = set()
    for spec in catalog.METRICS.values():
        stream, _ = producer.stream(spec, tuple(f"v{i}" for i in range(len(spec.labels))))
        assert stream.kind in ("counter", "updown", "gauge", "histogram")
        assert not stream.name.endswith("_total"), stream.name
        if spec.type == "histogram":
            assert stream.kind == "histogram"
        names.add(stream.name)
        catalog_stream, _ = jotel.catalog_stream(spec, ())
        assert catalog_stream.name + ("_total" if spec.type == "counter" else "") == spec.name


def test_same_points_as_the_sdk_would_aggregate_from_the_same_observations():
    """Oracle: SDK Histogram (catalog bounds via a View) and Counter fed the same values."""
    observations = [0.0001, 0.0003, 0.001, 0.001, 0.004, 0.02, 0.3, 2.5, 7.0, 500.0]  # incl. bucket edges
    rec = Recorder()
    hist = rec.histogram(catalog.REQUEST_DURATION, "api", "steady")
    ok = rec.counter(catalog.REQUESTS, "api", "ok")
    for v in observations:
        hist.observe(v)
        ok.inc()

    oracle = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[oracle], views=[View(
        instrument_name=catalog.REQUEST_DURATION.base_name,
        aggregation=ExplicitBucketHistogramAggregation(boundaries=catalog.LATENCY_BUCKETS))])
    meter = provider.get_meter("oracle")
    sdk_hist = meter.create_histogram(catalog.REQUEST_DURATION.base_name, unit="s")
    sdk_counter = meter.create_counter(catalog.REQUESTS.base_name)
    for v in observations:
        sdk_hist.record(v, {"service": "api", "start": "steady"})
        sdk_counter.add(1, {"service": "api", "outcome": "ok"})
    expected = metrics_by_name(oracle.get_metrics_data())
    provider.shutdown()

    got = metrics_by_name(jotel.JaxobsMetricProducer(rec).produce())
    e = point(expected[catalog.REQUEST_DURATION.base_name], service="api", start="steady")
    g = point(got[catalog.REQUEST_DURATION.base_name], service="api", start="steady")
    assert list(g.bucket_counts) == list(e.bucket_counts)
    assert list(g.explicit_bounds) == list(e.explicit_bounds)
    assert (g.count, g.sum) == (e.count, pytest.approx(e.sum))
    assert got[catalog.REQUEST_DURATION.base_name].unit == expected[catalog.REQUEST_DURATION.base_name].unit
    ec = expected[catalog.REQUESTS.base_name].data
    gc = got[catalog.REQUESTS.base_name].data
    assert (gc.is_monotonic, gc.aggregation_temporality) == (ec.is_monotonic, ec.aggregation_temporality)
    assert point(got[catalog.REQUESTS.base_name], service="api", outcome="ok").value == \
        point(expected[catalog.REQUESTS.base_name], service="api", outcome="ok").value == len(observations)


# --- semantic conventions -----------------------------------------------------------------

def test_semconv_names_match_the_opentelemetry_semantic_conventions_package():
    from opentelemetry.semconv._incubating.attributes import hw_attributes as hw_attr
    from opentelemetry.semconv._incubating.metrics import (
        hw_metrics,
        process_metrics,
        system_metrics,
    )
    from opentelemetry.semconv.attributes import error_attributes

    producer = jotel.JaxobsMetricProducer(Recorder(), semconv=True)
    gpu = ("0", "GPU-abc", "NVIDIA H100")
    cases = {
        (catalog.GPU_UTILIZATION, gpu): hw_metrics.HW_GPU_UTILIZATION,
        (catalog.GPU_MEMORY, gpu + ("used",)): hw_metrics.HW_GPU_MEMORY_USAGE,
        (catalog.GPU_MEMORY, gpu + ("total",)): hw_metrics.HW_GPU_MEMORY_LIMIT,
        (catalog.GPU_POWER, gpu): hw_metrics.HW_POWER,
        (catalog.GPU_TEMPERATURE, gpu): hw_metrics.HW_TEMPERATURE,
        (catalog.GPU_XID_ERRORS, gpu + ("79",)): hw_metrics.HW_ERRORS,
        (catalog.GPU_ECC_ERRORS, gpu + ("uncorrected",)): hw_metrics.HW_ERRORS,
        (catalog.PROCESS_RESIDENT_MEMORY, ("app",)): process_metrics.PROCESS_MEMORY_USAGE,
        (catalog.PROCESS_CPU, ("app",)): process_metrics.PROCESS_CPU_TIME,
        (catalog.HOST_MEMORY_AVAILABLE, ()): system_metrics.SYSTEM_MEMORY_LINUX_AVAILABLE,
    }
    for (spec, values), name in cases.items():
        stream, attrs = producer.stream(spec, values)
        assert stream.name == name
        if spec.labels[:3] == catalog.GPU_LABELS:
            assert {hw_attr.HW_ID, hw_attr.HW_TYPE, hw_attr.HW_MODEL} <= attrs.keys()
            assert attrs[hw_attr.HW_ID] == "GPU-abc" and attrs[hw_attr.HW_TYPE] == "gpu"
    xid = producer.stream(catalog.GPU_XID_ERRORS, gpu + ("79",))[1]
    assert xid[error_attributes.ERROR_TYPE] == "xid_79"


def test_nvml_collector_exports_hw_gpu_metrics():
    from fake_pynvml import FakeGpu, FakeNvml

    from jaxobs.exporter.collectors.nvml import NvmlCollector

    nvml = FakeNvml([FakeGpu(0, uuid="GPU-0000"), FakeGpu(1, uuid="GPU-0001", utilization_pct=80)])
    collector = NvmlCollector(nvml, xid_poll_ms=20)
    try:
        m = metrics_by_name(jotel.JaxobsMetricProducer(Recorder(), collectors=[collector],
                                                       semconv=True).produce())
        util = m["hw.gpu.utilization"]
        assert util.unit == "1" and isinstance(util.data, Gauge)
        attrs = {"hw.id": "GPU-0001", "hw.name": "gpu1", "hw.model": "NVIDIA H100 80GB HBM3", "hw.type": "gpu",
                 "hw.vendor": "NVIDIA", "hw.gpu.task": "general"}
        assert point(util, **attrs).value == pytest.approx(0.8)
        usage = m["hw.gpu.memory.usage"]
        assert isinstance(usage.data, Sum) and not usage.data.is_monotonic and usage.unit == "By"
        gpu0 = {"hw.id": "GPU-0000", "hw.name": "gpu0", "hw.model": "NVIDIA H100 80GB HBM3", "hw.type": "gpu",
                "hw.vendor": "NVIDIA"}
        assert point(usage, **gpu0).value == 61 * 1024**3
        assert point(m["hw.gpu.memory.limit"], **gpu0).value == 80 * 1024**3
        assert point(m["hw.power"], **gpu0).value == pytest.approx(312.5)
        assert point(m["hw.temperature"], **gpu0).value == 54
        assert "jaxobs_collector_up" in m  # no convention: catalog name

        plain = metrics_by_name(jotel.JaxobsMetricProducer(Recorder(), collectors=[collector]).produce())
        assert "jaxobs_gpu_utilization_ratio" in plain and "hw.gpu.utilization" not in plain
    finally:
        collector.close()


def test_host_collector_exports_process_semconv_metrics():
    from jaxobs.exporter.collectors.host import HostCollector

    m = metrics_by_name(jotel.JaxobsMetricProducer(Recorder(), collectors=[HostCollector(self_name="app")],
                                                   semconv=True).produce())
    rss = point(m["process.memory.usage"], process="app")
    assert rss.value > 10_000_000 and m["process.memory.usage"].unit == "By"
    assert m["process.cpu.time"].data.is_monotonic and m["process.cpu.time"].unit == "s"
    assert m["system.memory.linux.available"].unit == "By"


# --- the reader on a MeterProvider ------------------------------------------------------------

def console_exporter() -> tuple[ConsoleMetricExporter, io.StringIO]:
    out = io.StringIO()
    return ConsoleMetricExporter(out=out, formatter=lambda data: data.to_json(indent=None) + "\n"), out


def exported(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_reader_joins_the_apps_provider_without_leaking_into_its_other_readers(registry):
    app_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[app_reader], resource=Resource.create({"service.name": "svc"}))
    provider.get_meter("app").create_counter("app_requests").add(5)
    exporter, out = console_exporter()
    reader = jotel.install(provider, exporter=exporter, registry=registry, export_interval_millis=3_600_000)
    try:
        f = jaxobs.jit(lambda x: x + 1, name="inc", registry=registry)
        f(jnp.ones(2))
        f(jnp.ones(2))
        assert reader.force_flush()
        (batch,) = exported(out)
        (rm,) = batch["resource_metrics"]
        assert rm["resource"]["attributes"]["service.name"] == "svc"  # the provider's resource
        names = {m["name"] for sm in rm["scope_metrics"] for m in sm["metrics"]}
        assert "jaxobs_calls" in names and "app_requests" not in names  # only jaxobs metrics

        app_names = set(metrics_by_name(app_reader.get_metrics_data()))
        assert app_names == {"app_requests"}  # the app's reader never sees jaxobs series

        assert jotel.flush()
        assert len(exported(out)) == 2
    finally:
        jotel.uninstall(reader)
        provider.shutdown()
    assert len(exported(out)) == 3  # a last batch when detached


def test_dedicated_provider_and_shutdown_exports_last_batch(registry):
    exporter, out = console_exporter()
    reader = jotel.install(exporter=exporter, registry=registry, export_interval_millis=3_600_000,
                           resource=Resource.create({"service.name": "dedicated"}))
    jaxobs.jit(lambda x: x - 1, name="dec", registry=registry)(jnp.ones(2))
    reader.meter_provider.shutdown()
    (batch,) = exported(out)
    m = {m["name"]: m for sm in batch["resource_metrics"][0]["scope_metrics"] for m in sm["metrics"]}
    points = m["jaxobs_calls"]["data"]["data_points"]
    # hit: never observed, so not exported
    assert sorted((p["attributes"]["cache"], p["value"]) for p in points) == [("miss", 1)]


def test_periodic_export_runs_on_its_interval(registry):
    exporter, out = console_exporter()
    reader = jotel.install(exporter=exporter, registry=registry, export_interval_millis=50)
    try:
        jaxobs.jit(lambda x: x * 4, name="quad", registry=registry)(jnp.ones(2))
        import time

        deadline = time.monotonic() + 10
        while len(exported(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(exported(out)) >= 2
    finally:
        jotel.uninstall(reader)


def test_failing_exporter_is_counted_not_raised(registry):
    from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

    from jaxobs.telemetry.internal_errors import internal_error_counts

    class Unreachable(MetricExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):  # type: ignore[no-untyped-def]
            return MetricExportResult.FAILURE

        def force_flush(self, timeout_millis=10_000):  # type: ignore[no-untyped-def]
            return True

        def shutdown(self, timeout_millis=30_000, **kwargs):  # type: ignore[no-untyped-def]
            pass

    before = internal_error_counts().get("otel_export", 0)
    reader = jotel.install(exporter=Unreachable(), registry=registry, export_interval_millis=3_600_000)
    jaxobs.jit(lambda x: x, name="ident", registry=registry)(jnp.ones(1))
    assert reader.force_flush() is False
    jotel.uninstall(reader)
    assert internal_error_counts()["otel_export"] >= before + 1


# --- the force_flush + Prometheus reader pitfall ---------------------------------------------

def test_jaxobs_flush_does_not_duplicate_a_prometheus_reader_scrape(registry):
    prom = pytest.importorskip("opentelemetry.exporter.prometheus")
    prom_registry = CollectorRegistry()
    prom_reader = prom.PrometheusMetricReader(registry=prom_registry)
    provider = MeterProvider(metric_readers=[prom_reader])
    provider.get_meter("app").create_counter("app_requests").add(3)
    exporter, _ = console_exporter()
    reader = jotel.install(provider, exporter=exporter, registry=registry, export_interval_millis=3_600_000)
    try:
        jaxobs.jit(lambda x: x + 3, name="plus3", registry=registry)(jnp.ones(1))
        assert jotel.flush()
        assert jotel.flush()
        text = generate_latest(prom_registry).decode()
        assert text.count("\napp_requests_total{") == 1, text
        assert "jaxobs" not in text  # jaxobs series reach Prometheus through jaxobs' own collector only

        # The pitfall itself (why flush() exists): a provider-wide flush queues a second
        # collection in the Prometheus reader, and the next scrape renders both.
        provider.force_flush()
        assert generate_latest(prom_registry).decode().count("\napp_requests_total{") > 1
    finally:
        jotel.uninstall(reader)
        provider.shutdown()


def test_env_var_selects_the_backend(monkeypatch):
    monkeypatch.setenv(jotel.BACKEND_ENV, "prometheus, otel")
    assert jotel.requested_by_env()
    monkeypatch.setenv(jotel.BACKEND_ENV, "prometheus")
    assert not jotel.requested_by_env()
    assert jotel.install_from_env(Recorder()) is None
