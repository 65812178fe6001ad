"""Traces reach a real OTLP/gRPC receiver (the official TraceService proto on 127.0.0.1): a cold
request's span tree with the compile of its function, sent by the SDK's OTLPSpanExporter."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent import futures

import jax.numpy as jnp
import pytest
from realtools import require_module

grpc = require_module("grpc")
require_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
from opentelemetry import trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

import jaxobs  # noqa: E402


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.spans: queue.Queue = queue.Queue()

    def Export(self, request, context):  # type: ignore[no-untyped-def]
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.put(span)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[TraceReceiver, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rx = TraceReceiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(rx, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield rx, port
    finally:
        server.stop(grace=None)


def test_a_cold_request_arrives_over_otlp_with_its_compile_spans(receiver, monkeypatch, registry):
    rx, port = receiver
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    predict = jaxobs.jit(lambda x: jnp.sin(x) + 1, name="predict_otlp", registry=registry)
    with jaxobs.request("otlp", registry=registry):
        predict(jnp.ones(5))
    provider.force_flush(10_000)
    provider.shutdown()
    spans = []
    while True:
        try:
            spans.append(rx.spans.get(timeout=5 if not spans else 0.5))
        except queue.Empty:
            break
    by_name = {s.name: s for s in spans}
    assert {"jaxobs.request", "jaxobs.compile", "jaxobs.compile.trace", "jaxobs.compile.lower",
            "jaxobs.compile.backend"} <= set(by_name)
    request, compile_ = by_name["jaxobs.request"], by_name["jaxobs.compile"]
    assert compile_.parent_span_id == request.span_id and compile_.trace_id == request.trace_id
    attributes = {a.key: a.value.string_value for a in compile_.attributes}
    assert attributes["jaxobs.function"] == "predict_otlp" and attributes["jaxobs.compile.cause"] == "first"
    assert {a.key: a.value.string_value for a in request.attributes}["jaxobs.start"] == "cold"
