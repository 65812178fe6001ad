"""OpenTelemetry spans: a cold request shows the compile of its function, with cause and phases."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import jaxobs
from jaxobs.runtime import tracing


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_a_cold_request_has_a_compile_span_with_cause_and_phase_durations(spans, registry):
    predict = jaxobs.jit(lambda x: jnp.tanh(x) * 2, name="predict", registry=registry)
    with jaxobs.request("inference", registry=registry):
        predict(jnp.ones(3))
    with jaxobs.request("inference", registry=registry):
        predict(jnp.ones(4))  # a new shape: a recompile, with its detail
    found = by_name(spans)
    requests, compiles = found["jaxobs.request"], found["jaxobs.compile"]
    assert [r.attributes["jaxobs.start"] for r in requests] == ["cold", "cold"]
    assert all(r.attributes["jaxobs.service"] == "inference" for r in requests)
    assert [c.attributes["jaxobs.compile.cause"] for c in compiles] == ["first", "shape"]
    assert compiles[1].attributes["jaxobs.compile.cause_detail"] == "shape: leaf 0 float32[3] -> float32[4]"
    for request_span, compile_span in zip(requests, compiles, strict=True):
        assert compile_span.parent.span_id == request_span.context.span_id  # request → compile of predict
        assert compile_span.attributes["jaxobs.function"] == "predict"
        assert request_span.start_time <= compile_span.start_time <= compile_span.end_time <= request_span.end_time
    phases = [s for s in spans.get_finished_spans() if s.name.startswith("jaxobs.compile.")]
    assert {p.attributes["jaxobs.compile.phase"] for p in phases} == {"trace", "lower", "backend"}
    for phase in phases:  # real durations from JAX's compile events
        assert phase.end_time - phase.start_time == pytest.approx(phase.attributes["jaxobs.compile.phase_seconds"]
                                                                  * 1e9, abs=2)
        assert phase.parent.span_id in {c.context.span_id for c in compiles}


def test_a_steady_sampled_request_has_a_kernel_event_and_no_compile(spans, registry):
    f = jaxobs.jit(lambda x: x + 1, name="steady", registry=registry, sample_rate=1.0)
    f(jnp.ones(2))  # compile outside any request
    spans.clear()
    with jaxobs.step("training", registry=registry):
        f(jnp.ones(2))
    found = by_name(spans)
    assert "jaxobs.compile" not in found
    (step,) = found["jaxobs.step"]
    assert step.attributes["jaxobs.start"] == "steady" and step.attributes["jaxobs.outcome"] == "ok"
    kernel = [e for e in step.events if e.name == "jaxobs.kernel"]
    assert kernel and kernel[0].attributes["jaxobs.kernel_seconds"] > 0


def test_a_failing_request_records_the_exception_and_its_class(spans, registry):
    f = jaxobs.jit(lambda x: x.reshape(7), name="bad", registry=registry)
    with pytest.raises(TypeError):
        with jaxobs.request("inference", registry=registry):
            f(jnp.ones(3))
    (request_span,) = by_name(spans)["jaxobs.request"]
    assert request_span.status.status_code is trace.StatusCode.ERROR
    assert request_span.attributes["jaxobs.outcome"] == "error"
    recorded = [e for e in request_span.events if e.name == "exception"]
    assert any(e.attributes.get("jaxobs.error") == "trace" for e in recorded)  # jaxobs' classification
    assert any(e.attributes.get("exception.type") == "TypeError" for e in recorded)


def test_requests_join_the_current_span():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")
    original = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: provider
    try:
        with tracer.start_as_current_span("HTTP POST /predict") as http:
            with jaxobs.request("inference"):
                pass
    finally:
        trace.get_tracer_provider = original
    (request_span,) = [s for s in exporter.get_finished_spans() if s.name == "jaxobs.request"]
    assert request_span.parent.span_id == http.get_span_context().span_id


def test_without_a_tracer_provider_nothing_is_traced():
    assert tracing.active_tracer() is None  # the default proxy provider: tracing is off
    assert tracing.start_request_span("request", "svc") is None


def test_latency_observations_carry_the_trace_id_as_an_openmetrics_exemplar(spans, registry):
    from prometheus_client.exposition import generate_latest as text_format
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    f = jaxobs.jit(lambda x: x * 3, name="ex", registry=registry, sample_rate=1.0)
    with jaxobs.request("exemplar_svc", registry=registry):
        f(jnp.ones(2))  # cold: the cold-call histogram gets the exemplar
    with jaxobs.request("exemplar_svc", registry=registry):
        f(jnp.ones(2))  # sampled: the kernel histogram gets one too
    trace_ids = {format(s.context.trace_id, "032x") for s in spans.get_finished_spans()
                 if s.name == "jaxobs.request"}
    text = openmetrics(registry).decode()
    lines = [line for line in text.splitlines() if " # {trace_id=" in line]
    for family in ("jaxobs_request_duration_seconds_bucket", "jaxobs_call_duration_seconds_bucket",
                   "jaxobs_kernel_duration_seconds_bucket"):
        found = [line for line in lines if line.startswith(family)]
        assert found, family
        assert all(line.split('trace_id="')[1][:32] in trace_ids for line in found)
    assert " # {" not in text_format(registry).decode()  # the classic text format has no exemplars


def test_without_tracing_no_exemplars_are_kept(registry):
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    f = jaxobs.jit(lambda x: x * 3, name="plain", registry=registry, sample_rate=1.0)
    with jaxobs.request("plain_svc", registry=registry):
        f(jnp.ones(2))
    assert "trace_id" not in openmetrics(registry).decode()


def test_latency_panels_ask_for_exemplars_and_the_datasource_links_them_to_traces():
    import json
    from pathlib import Path

    import yaml

    from jaxobs.generate import generate_all
    from jaxobs.slo.spec import SpecError, load_spec, parse_spec

    root = Path(__file__).resolve().parents[1]
    files = generate_all(load_spec(root / "examples" / "slo.yaml"), "examples/slo.yaml")
    oncall = json.loads(files["dashboards/jaxobs-oncall.json"])
    cold = next(p for p in oncall["panels"] if p["title"].startswith("Cold requests"))
    assert all(t.get("exemplar") is True for t in cold["targets"])
    datasource = yaml.safe_load(files["dashboards/grafana-datasource.yaml"])
    (link,) = datasource["datasources"][0]["jsonData"]["exemplarTraceIdDestinations"]
    assert link["name"] == "trace_id" and "${__value.raw}" in link["url"]  # the label jaxobs writes
    spec = "apiVersion: jaxobs/v1\nkind: SLOSpec\ndashboards: {trace_url: %s}\nservices: [{name: a, slos: []}]\n"
    with pytest.raises(SpecError, match=r"dashboards.trace_url.*\$\{__value.raw\}"):
        parse_spec(spec % "http://jaeger/trace/", "bad.yaml")
    assert "dashboards/grafana-datasource.yaml" not in generate_all(parse_spec(
        "apiVersion: jaxobs/v1\nkind: SLOSpec\nservices: [{name: a, slos: []}]\n", "none.yaml"), "none.yaml")
