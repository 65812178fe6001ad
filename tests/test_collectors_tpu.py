"""The TPU collector against a fake runtime serving the real tpu-info proto over real gRPC."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from realtools import require_module  # noqa: E402

require_module("grpc")
require_module("tpu_info")

from fake_tpu_runtime import DUTY_CYCLE, FakeChip, FakeRuntimeMetricService, FakeTpuRuntime  # noqa: E402

from jaxobs import catalog  # noqa: E402
from jaxobs.exporter.collectors.tpu import TpuCollector  # noqa: E402
from jaxobs.telemetry.internal_errors import internal_error_counts  # noqa: E402

UP = catalog.COLLECTOR_UP.name


@pytest.fixture
def runtime():
    rt = FakeTpuRuntime(FakeRuntimeMetricService([FakeChip(0, hbm_used=3 * 2**30), FakeChip(1)])).start()
    yield rt
    rt.stop()


@pytest.fixture
def registry(runtime):
    collector = TpuCollector(runtime.address, timeout=1.0)
    reg = CollectorRegistry()
    reg.register(collector)
    yield reg
    collector.close()


def test_hbm_and_duty_cycle_per_chip(registry):
    assert registry.get_sample_value(catalog.TPU_HBM.name, {"chip": "0", "kind": "used"}) == 3 * 2**30
    assert registry.get_sample_value(catalog.TPU_HBM.name, {"chip": "1", "kind": "total"}) == 16 * 2**30
    assert registry.get_sample_value(catalog.TPU_DUTY_CYCLE.name, {"chip": "1"}) == pytest.approx(0.875)
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": ""}) == 1
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": "1"}) == 1


def test_metric_the_runtime_does_not_serve_is_absent_without_error(runtime, registry):
    runtime.service.unsupported.add(DUTY_CYCLE)
    before = dict(internal_error_counts())
    assert registry.get_sample_value(catalog.TPU_DUTY_CYCLE.name, {"chip": "0"}) is None
    assert registry.get_sample_value(catalog.TPU_HBM.name, {"chip": "0", "kind": "total"}) == 16 * 2**30
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": ""}) == 1
    assert internal_error_counts() == before


def test_endpoint_down_then_back(runtime, registry):
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": "0"}) == 1
    before = internal_error_counts().get("collector.tpu", 0)

    runtime.stop()
    started = time.monotonic()
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": ""}) == 0
    assert time.monotonic() - started < 3, "a down endpoint must not hold the scrape"
    # Known chips stay visible as down instead of vanishing.
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": "0"}) == 0
    assert registry.get_sample_value(catalog.TPU_HBM.name, {"chip": "0", "kind": "used"}) is None
    assert internal_error_counts().get("collector.tpu", 0) == before + 1  # once, not per scrape

    runtime.start()  # same port
    deadline = time.monotonic() + 15
    while registry.get_sample_value(UP, {"collector": "tpu", "device": ""}) != 1:
        assert time.monotonic() < deadline, "collector did not recover after the runtime came back"
        time.sleep(0.2)
    assert registry.get_sample_value(catalog.TPU_HBM.name, {"chip": "0", "kind": "used"}) == 3 * 2**30
    assert registry.get_sample_value(UP, {"collector": "tpu", "device": "0"}) == 1


def test_nothing_listening_at_all():
    collector = TpuCollector("127.0.0.1:1", timeout=0.5)
    reg = CollectorRegistry()
    reg.register(collector)
    try:
        assert reg.get_sample_value(UP, {"collector": "tpu", "device": ""}) == 0
    finally:
        collector.close()
