"""Exemplars: latency observations carry the trace id of the request that made them, and a real
Prometheus (exemplar storage on) returns trace ids that match the spans the app exported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from realtools import free_port, http_get_json, running_prometheus, wait_until

pytestmark = pytest.mark.e2e

WORKLOAD = """
    import sys, time
    import jax.numpy as jnp
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    import jaxobs

    class Printer(SpanExporter):  # the test's span backend: trace ids on stdout
        def export(self, spans):
            for span in spans:
                if span.name == "jaxobs.request":
                    print(f"span {span.context.trace_id:032x} {span.attributes['jaxobs.start']}", flush=True)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Printer()))
    trace.set_tracer_provider(provider)
    jaxobs.start_http_server({port}, addr="127.0.0.1")
    predict = jaxobs.jit(lambda x: jnp.tanh(x).sum(), name="predict", sample_rate=1.0)
    print("ready", flush=True)
    n = 1
    while True:
        n = n % 6 + 1  # six shapes: some requests compile (cold), most do not
        with jaxobs.request("exemplars"):
            predict(jnp.ones(n))
        time.sleep(0.05)
"""


def test_prometheus_returns_exemplars_whose_trace_ids_match_exported_spans(tmp_path: Path) -> None:
    port = free_port()
    code = textwrap.dedent(WORKLOAD.replace("{port}", str(port)))
    app = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    spans: dict[str, str] = {}
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready", app.stderr.read() if app.stderr else ""
        os.set_blocking(app.stdout.fileno(), False)

        def read_spans() -> None:
            for line in app.stdout.readlines():
                if line.startswith("span "):
                    _, trace_id, start = line.split()
                    spans[trace_id] = start

        with running_prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"], job="exemplars",
                                features=["exemplar-storage"]) as prom:
            prom.wait_value('up{job="exemplars"}', lambda v: v == 1)

            def exemplars() -> list[dict]:
                now = time.time()
                body = http_get_json(f"{prom.url}/api/v1/query_exemplars?query="
                                     "jaxobs_request_duration_seconds_bucket"
                                     f"&start={now - 300}&end={now}")
                return [e for group in body["data"] for e in group["exemplars"]]

            found = wait_until(lambda: len(exemplars()) >= 3 and exemplars(), 60,
                               what="Prometheus to store request-duration exemplars")
            read_spans()
            trace_ids = {e["labels"]["trace_id"] for e in found}
            assert trace_ids <= set(spans), (trace_ids - set(spans), len(spans))
            kernel = http_get_json(f"{prom.url}/api/v1/query_exemplars?query="
                                   "jaxobs_kernel_duration_seconds_bucket"
                                   f"&start={time.time() - 300}&end={time.time()}")["data"]
            time.sleep(0.5)
            read_spans()
            kernel_ids = {e["labels"]["trace_id"] for g in kernel for e in g["exemplars"]}
            assert kernel_ids and kernel_ids <= set(spans)  # sampled kernel time, inside requests
    finally:
        app.kill()
        app.wait(10)
