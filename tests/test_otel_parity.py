"""OpenTelemetry at parity with /metrics: same families, names the shipped alerts query, settings.

The "Collector-style re-export" is opentelemetry-exporter-prometheus' translator
(OTLP data → Prometheus families, the rules the Collector's ``prometheus``
exporter follows: dots to underscores, ``_total`` on monotonic sums); its
output is fed to the shipped XID alert with the real ``promtool``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax.numpy as jnp
import pytest
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from realtools import REPO, require_tool

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog
from jaxobs.telemetry import opentelemetry as jotel
from jaxobs.telemetry.recorder import Recorder

sys.path.insert(0, str(Path(__file__).parent / "fakes"))


def otel_names(data) -> set[str]:  # type: ignore[no-untyped-def]
    return {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_default_collectors_export_the_same_families_as_metrics(registry: CollectorRegistry) -> None:
    f = jaxobs.jit(lambda x: x + 1, name="parity", registry=registry)
    f(jnp.ones(3))
    with jaxobs.request("parity", registry=registry):
        pass
    prometheus = {fam.name for fam in registry.collect() if fam.samples}
    producer = jotel.JaxobsMetricProducer(jaxobs.telemetry.recorder_for(registry),
                                          collectors=jotel.default_collectors())
    otel = otel_names(producer.produce())
    assert {catalog.COLLECTOR_UP.name, catalog.LIVE_ARRAYS.name, catalog.LIVE_ARRAY_BYTES.name} <= otel
    # prometheus-client names a counter family without _total, as OTel does
    assert otel == prometheus


def re_exported(data) -> str:  # type: ignore[no-untyped-def]
    """What a Collector's prometheus exporter would serve for ``data``."""
    from opentelemetry.exporter.prometheus import _CustomCollector

    collector = _CustomCollector()
    collector.add_metrics_data(data)
    reg = CollectorRegistry()
    reg.register(collector)
    return generate_latest(reg).decode()


def xid_metrics(semconv: bool) -> str:
    from fake_pynvml import FakeGpu, FakeNvml

    from jaxobs.exporter.collectors.nvml import NvmlCollector

    nvml = FakeNvml([FakeGpu(0, uuid="GPU-0000")])
    collector = NvmlCollector(nvml, xid_poll_ms=20)
    try:
        list(collector.collect())  # starts NVML and its event thread
        nvml.inject_xid(0, 79)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = re_exported(jotel.JaxobsMetricProducer(Recorder(), collectors=[collector],
                                                          semconv=semconv).produce())
            if "79" in text:
                return text
            time.sleep(0.05)
        raise AssertionError("the XID event was never counted")
    finally:
        collector.close()


def test_xid_alert_fires_on_the_default_names_after_a_collector_re_export(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    text = xid_metrics(semconv=False)
    (sample,) = [s for fam in text_string_to_metric_families(text) for s in fam.samples
                 if s.name == catalog.GPU_XID_ERRORS.name]
    assert {"gpu", "uuid", "model", "xid"} <= sample.labels.keys() and sample.labels["xid"] == "79"
    labels = ",".join(f'{k}="{v}"' for k, v in sorted({**sample.labels, "job": "inference"}.items()))
    test = tmp_path / "xid.test.yaml"
    test.write_text(textwrap.dedent(f"""\
        evaluation_interval: 1m
        rule_files: [{REPO / "alerts" / "jaxobs.rules.yaml"}]
        tests:
          - interval: 1m
            input_series:
              - series: '{sample.name}{{{labels}}}'
                values: '0x10 1x30'
            promql_expr_test:
              - expr: count(ALERTS{{alertname="JaxobsGPUXidErrors",alertstate="firing"}})
                eval_time: 20m
                exp_samples:
                  - value: 1
        """))
    result = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_semconv_names_are_opt_in_because_they_rename_the_xid_family() -> None:
    text = xid_metrics(semconv=True)
    assert catalog.GPU_XID_ERRORS.name not in text
    assert 'hw_errors_total{' in text and 'error_type="xid_79"' in text


def test_delta_preference_sends_differences_and_keeps_uncommitted_increments() -> None:
    rec = Recorder()
    counter = rec.counter(catalog.REQUESTS, "svc", "ok")
    hist = rec.histogram(catalog.REQUEST_DURATION, "svc", "steady")
    producer = jotel.JaxobsMetricProducer(rec, delta=True)

    def values() -> tuple[int, int, AggregationTemporality]:
        m = {x.name: x for x in producer.produce().resource_metrics[0].scope_metrics[0].metrics}
        (c,) = m["jaxobs_requests"].data.data_points
        (h,) = m["jaxobs_request_duration_seconds"].data.data_points
        return c.value, h.count, m["jaxobs_requests"].data.aggregation_temporality

    counter.inc(3)
    hist.observe(0.01)
    assert values() == (3, 1, AggregationTemporality.DELTA)
    producer.commit()  # exported
    counter.inc(2)
    assert values()[:2] == (2, 0)
    # not committed (the export failed): the next batch still carries these increments
    counter.inc(1)
    hist.observe(0.02)
    assert values()[:2] == (3, 1)


def test_exporter_temporality_preference_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    assert jotel.wants_delta(OTLPMetricExporter(endpoint="127.0.0.1:1", insecure=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative")
    assert not jotel.wants_delta(OTLPMetricExporter(endpoint="127.0.0.1:1", insecure=True))


def test_exponential_histogram_request_is_warned_and_counted(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
                       "base2_exponential_bucket_histogram")
    before = jaxobs.internal_error_counts().get("otel_histogram_aggregation", 0)
    exporter: MetricExporter = OTLPMetricExporter(endpoint="127.0.0.1:1", insecure=True)
    with caplog.at_level(logging.WARNING, logger="jaxobs"):
        assert not jotel.check_histogram_aggregation(exporter)
    assert "explicit-bucket" in caplog.text
    assert jaxobs.internal_error_counts()["otel_histogram_aggregation"] == before + 1
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION")
    assert jotel.check_histogram_aggregation(OTLPMetricExporter(endpoint="127.0.0.1:1", insecure=True))

