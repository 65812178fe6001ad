"""End to end over OTLP/gRPC: a real receiver (the official proto service) gets jaxobs metrics.

The receiver is a minimal ``MetricsServiceServicer`` on 127.0.0.1 built from
``opentelemetry-proto``; the sender is the SDK's ``OTLPMetricExporter``.
One test configures the backend in code, the other only through the
environment (``JAXOBS_BACKEND=otel`` + standard ``OTEL_*`` variables) in a
separate JAX process that exits: its last batch is sent at exit.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import pytest
from realtools import require_module

grpc = require_module("grpc")
require_module("opentelemetry.exporter.otlp.proto.grpc.metric_exporter")
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)

from jaxobs import catalog


@dataclass
class Receiver(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    """Collects every ExportMetricsServiceRequest it is sent."""

    port: int = 0
    requests: queue.Queue = field(default_factory=queue.Queue)

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        self.requests.put(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()

    def next(self, timeout: float = 60) -> metrics_service_pb2.ExportMetricsServiceRequest:
        return self.requests.get(timeout=timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rx = Receiver()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(rx, server)
    rx.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield rx
    finally:
        server.stop(grace=None)


def metrics_of(request) -> dict:  # type: ignore[no-untyped-def]
    return {m.name: m for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def attrs(dp) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {kv.key: kv.value.string_value for kv in dp.attributes}


def sum_value(metric, **labels: str) -> int | float:  # type: ignore[no-untyped-def]
    (dp,) = [p for p in metric.sum.data_points if attrs(p) == labels]
    return dp.as_int if dp.HasField("as_int") else dp.as_double


def check_instrumented_process(request, function: str) -> None:  # type: ignore[no-untyped-def]
    (rm,) = request.resource_metrics
    (sm,) = rm.scope_metrics
    assert sm.scope.name == "jaxobs"
    m = metrics_of(request)
    calls = m["jaxobs_calls"]
    assert calls.sum.is_monotonic
    assert calls.sum.aggregation_temporality == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
    assert sum_value(calls, function=function, cache="miss") == 2
    assert sum_value(calls, function=function, cache="hit") == 1
    assert sum_value(m["jaxobs_compilations"], function=function, cause="first") == 1
    assert sum_value(m["jaxobs_compilations"], function=function, cause="shape") == 1
    duration = m["jaxobs_call_duration_seconds"]
    assert duration.unit == "s"
    (cold,) = [p for p in duration.histogram.data_points if attrs(p) == {"function": function, "start": "cold"}]
    assert cold.count == 2 and sum(cold.bucket_counts) == 2
    assert list(cold.explicit_bounds) == list(catalog.COMPILE_BUCKETS)
    assert cold.sum > 0 and not cold.HasField("min")  # the recorder keeps no min/max: not invented


def test_install_exports_to_an_otlp_grpc_receiver(receiver, registry):
    import jax.numpy as jnp
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
        OTLPMetricExporter,
    )
    from opentelemetry.sdk.resources import Resource

    import jaxobs
    from jaxobs.telemetry import opentelemetry as jotel

    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{receiver.port}", insecure=True)
    reader = jotel.install(exporter=exporter, registry=registry, export_interval_millis=3_600_000,
                           resource=Resource.create({"service.name": "in-process"}))
    try:
        f = jaxobs.jit(lambda x: x * 2, name="otlp_double", registry=registry)
        f(jnp.ones(2))
        f(jnp.ones(2))
        f(jnp.ones(3))
        assert reader.force_flush()
        request = receiver.next()
    finally:
        jotel.uninstall(reader)
    check_instrumented_process(request, "otlp_double")
    resource = {kv.key: kv.value.string_value for kv in request.resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "in-process"


def test_env_configured_jax_process_sends_its_metrics_at_exit(receiver, tmp_path):
    script = textwrap.dedent("""
        import jax.numpy as jnp
        import jaxobs

        f = jaxobs.jit(lambda x: x * 2, name="env_double")
        f(jnp.ones(2))      # miss (first compile)
        f(jnp.ones(2))      # hit
        f(jnp.ones(3))      # miss (shape)
        print("done")
    """)
    env = {
        **os.environ,
        "JAXOBS_BACKEND": "otel",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "jaxobs-e2e",
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",  # nothing periodic: only the batch sent at exit
        "JAX_PLATFORMS": "cpu",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]
    request = receiver.next(timeout=10)
    check_instrumented_process(request, "env_double")
    resource = {kv.key: kv.value.string_value for kv in request.resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "jaxobs-e2e"
    assert receiver.requests.empty()  # exactly one batch: the one at exit
