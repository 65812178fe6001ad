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
import time
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


# --- delta temporality, a receiver that dies, SIGTERM, a collector that is down at exit --------


def start_receiver(port: int = 0) -> tuple[Receiver, object]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rx = Receiver()
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(rx, server)
    rx.port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return rx, server


def calls_of(request, function: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    m = metrics_of(request).get("jaxobs_calls")
    if m is None:
        return {}
    return {attrs(p)["cache"]: p.as_int for p in m.sum.data_points if attrs(p)["function"] == function}


def test_delta_preference_reaches_the_receiver_and_a_dead_receiver_loses_nothing(
        registry, monkeypatch):  # type: ignore[no-untyped-def]
    import jax.numpy as jnp
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    import jaxobs
    from jaxobs.telemetry import opentelemetry as jotel

    rx, server = start_receiver()
    port = rx.port
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")  # a dead receiver fails fast
    exporter = OTLPMetricExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    reader = jotel.install(exporter=exporter, registry=registry, export_interval_millis=3_600_000,
                           collectors=[])
    f = jaxobs.jit(lambda x: x - 1, name="delta_fn", registry=registry)
    try:
        for _ in range(3):
            f(jnp.ones(2))
        assert reader.force_flush()
        first = rx.next(timeout=10)
        assert metrics_of(first)["jaxobs_calls"].sum.aggregation_temporality == 1  # DELTA
        assert calls_of(first, "delta_fn") == {"miss": 1, "hit": 2}

        for _ in range(2):
            f(jnp.ones(2))
        assert reader.force_flush()
        assert calls_of(rx.next(timeout=10), "delta_fn") == {"hit": 2, "miss": 0}  # the difference only

        server.stop(grace=None)  # the collector dies mid-run
        for _ in range(4):
            f(jnp.ones(2))
        assert not reader.force_flush()  # counted, not raised
        rx, server = start_receiver(port)  # ... and comes back
        f(jnp.ones(2))
        deadline = time.monotonic() + 30  # the gRPC channel reconnects with its own backoff
        while not reader.force_flush():
            assert time.monotonic() < deadline, "the exporter never reached the restarted receiver"
        back = rx.next(timeout=10)  # the first batch that arrived
        assert calls_of(back, "delta_fn") == {"hit": 5, "miss": 0}  # 4 while it was down + 1: nothing lost
        assert jaxobs.internal_error_counts().get("otel_export", 0) >= 1
    finally:
        jotel.uninstall(reader)
        server.stop(grace=None)


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, time
    import jax.numpy as jnp
    import jaxobs

    f = jaxobs.jit(lambda x: x * 2, name="sigterm_fn")
    for _ in range(500):
        f(jnp.ones(2))
    print("ready", flush=True)
    time.sleep(120)
""")


def run_until_sigterm(port: int, tmp_path, **extra: str) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    import signal

    env = {**os.environ, "JAXOBS_BACKEND": "otel", "JAX_PLATFORMS": "cpu",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_INSECURE": "true",
           "OTEL_METRIC_EXPORT_INTERVAL": "3600000", **extra}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        return proc.returncode, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_flushes_the_last_batch_when_asked_to(receiver, tmp_path):  # type: ignore[no-untyped-def]
    import signal

    code, stderr = run_until_sigterm(receiver.port, tmp_path, JAXOBS_OTEL_FLUSH_ON_SIGTERM="1")
    assert code == -signal.SIGTERM, stderr[-2000:]  # the signal still terminates the process
    request = receiver.next(timeout=10)
    assert calls_of(request, "sigterm_fn") == {"miss": 1, "hit": 499}


def test_without_the_handler_sigterm_loses_the_last_batch(receiver, tmp_path):  # type: ignore[no-untyped-def]
    """What the opt-in is for: the default SIGTERM action skips every exit hook."""
    import signal

    code, _ = run_until_sigterm(receiver.port, tmp_path)
    assert code == -signal.SIGTERM
    with pytest.raises(queue.Empty):
        receiver.next(timeout=1)


def test_exit_with_the_collector_down_is_bounded(tmp_path):  # type: ignore[no-untyped-def]
    from realtools import free_port

    script = textwrap.dedent("""
        import atexit, time
        import jax.numpy as jnp
        import jaxobs

        started = []
        atexit.register(lambda: print("shutdown took", time.monotonic() - started[0],
                                      jaxobs.internal_error_counts().get("otel_shutdown", 0), flush=True))
        f = jaxobs.jit(lambda x: x * 2, name="down_fn")
        f(jnp.ones(2))
        atexit.register(lambda: started.append(time.monotonic()))  # runs first: exit hooks are LIFO
    """)
    env = {**os.environ, "JAXOBS_BACKEND": "otel", "JAX_PLATFORMS": "cpu",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nobody listens
           "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
           "OTEL_METRIC_EXPORT_INTERVAL": "3600000"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("shutdown took")]
    seconds, lost = float(line.split()[2]), int(line.split()[3])
    # The exporter would retry for its 60 s timeout; jaxobs gives up after its shutdown bound
    # and counts the lost batch.
    assert lost == 1
    assert seconds < 60
    print(f"exit with the collector down took {seconds:.1f}s")
