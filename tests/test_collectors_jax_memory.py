"""The in-app JAX memory collector, on real CPU jax and on a device that reports allocator stats."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from jaxobs import catalog
from jaxobs.runtime.jax_memory import JaxMemoryCollector
from jaxobs.telemetry.internal_errors import internal_error_counts

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

UP = catalog.COLLECTOR_UP.name


def registry(collector: JaxMemoryCollector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


def test_cpu_has_no_memory_stats_but_counts_live_arrays():
    reg = registry(JaxMemoryCollector())
    dev = jax.local_devices()[0]
    device = str(dev.id)
    base_arrays = reg.get_sample_value(catalog.LIVE_ARRAYS.name, {"device": device})
    base_bytes = reg.get_sample_value(catalog.LIVE_ARRAY_BYTES.name, {"device": device})
    kept = [jnp.ones((256, 256), dtype=jnp.float32), jnp.zeros((10,), dtype=jnp.int8)]
    assert reg.get_sample_value(catalog.LIVE_ARRAYS.name, {"device": device}) == base_arrays + 2
    assert reg.get_sample_value(catalog.LIVE_ARRAY_BYTES.name, {"device": device}) == base_bytes + 256 * 256 * 4 + 10
    # memory_stats() is None on CPU: the series is absent, not 0, and the device is up.
    assert dev.memory_stats() is None
    in_use = {"device": device, "platform": "cpu", "kind": "in_use"}
    assert reg.get_sample_value(catalog.DEVICE_MEMORY.name, in_use) is None
    assert reg.get_sample_value(UP, {"collector": "jax_memory", "device": device}) == 1
    del kept


@dataclass
class StatsDevice:
    """A device as JAX exposes one on GPU: ``memory_stats()`` returns the allocator's dict."""

    id: int
    platform: str = "gpu"
    stats: dict | None = field(default_factory=lambda: {
        "bytes_in_use": 3 << 30, "peak_bytes_in_use": 5 << 30, "bytes_limit": 12 << 30,
        "bytes_reserved": 0, "largest_alloc_size": 1 << 20})
    broken: bool = False

    def memory_stats(self):
        if self.broken:
            raise RuntimeError("INTERNAL: device unavailable")
        return self.stats


class JaxWithDevices:
    """The two ``jax`` functions the collector uses, over the devices above."""

    def __init__(self, devices):
        self.devices = devices

    def local_devices(self):
        return self.devices

    def live_arrays(self):
        return []


def test_allocator_stats_and_utilization_ratio():
    reg = registry(JaxMemoryCollector(JaxWithDevices([StatsDevice(0)])))
    labels = {"device": "0", "platform": "gpu"}
    assert reg.get_sample_value(catalog.DEVICE_MEMORY.name, {**labels, "kind": "in_use"}) == 3 << 30
    assert reg.get_sample_value(catalog.DEVICE_MEMORY.name, {**labels, "kind": "limit"}) == 12 << 30
    assert reg.get_sample_value(catalog.DEVICE_MEMORY_UTILIZATION.name, labels) == pytest.approx(0.25)


def test_one_failing_device_is_isolated():
    devices = [StatsDevice(0), StatsDevice(1, broken=True)]
    reg = registry(JaxMemoryCollector(JaxWithDevices(devices)))
    before = internal_error_counts().get("collector.jax_memory", 0)
    assert reg.get_sample_value(UP, {"collector": "jax_memory", "device": "1"}) == 0
    assert reg.get_sample_value(UP, {"collector": "jax_memory", "device": "0"}) == 1
    peak = {"device": "0", "platform": "gpu", "kind": "peak"}
    assert reg.get_sample_value(catalog.DEVICE_MEMORY.name, peak) == 5 << 30
    assert internal_error_counts().get("collector.jax_memory", 0) == before + 1


def test_a_broken_jax_is_up_zero_not_an_exception():
    class Broken:
        def local_devices(self):
            raise RuntimeError("backend failed to initialize")

    reg = registry(JaxMemoryCollector(Broken()))
    assert reg.get_sample_value(UP, {"collector": "jax_memory", "device": ""}) == 0
