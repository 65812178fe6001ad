"""Per-process attribution on shared GPUs, throttling, clocks, PCIe and energy, against the pynvml double."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from fake_pynvml import FakeGpu, FakeNvml  # noqa: E402
from realtools import require_module  # noqa: E402

from jaxobs.exporter.collectors import nvml as nvml_collector  # noqa: E402
from jaxobs.exporter.collectors.nvml import NvmlCollector  # noqa: E402

pynvml = require_module("pynvml")
GIB = 1024**3


class Scrape:
    """One collection, as one Prometheus scrape sees it (the collector keeps per-scrape state)."""

    def __init__(self, collector: NvmlCollector) -> None:
        self._values = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for family in collector.collect() for s in family.samples}

    def get_sample_value(self, name: str, labels: dict[str, str]) -> float | None:
        return self._values.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def collectors():
    """Builds collectors and closes them (each starts an XID event thread)."""
    made: list[NvmlCollector] = []

    def make(nvml: FakeNvml, **kwargs) -> NvmlCollector:
        made.append(NvmlCollector(nvml, **kwargs))
        return made[-1]

    yield make
    for collector in made:
        collector.close()


def scrape(collector: NvmlCollector) -> Scrape:
    return Scrape(collector)


def labels(gpu: FakeGpu, **extra: str) -> dict[str, str]:
    return {"gpu": str(gpu.index), "uuid": gpu.uuid, "model": gpu.name, **extra}


def test_two_app_processes_sharing_a_gpu_get_their_own_memory_and_a_foreign_one_lands_in_others(collectors):
    gpu = FakeGpu(0, processes=[(101, 3 * GIB), (102, 5 * GIB), (999, 7 * GIB), (998, 1 * GIB)],
                  process_samples=[(101, 10, 30, 10), (102, 11, 20, 5), (999, 12, 40, 25), (101, 9, 99, 99)])
    reg = scrape(collectors(FakeNvml([gpu]), app_pids=lambda: {101, 102}))
    mem = "jaxobs_gpu_process_memory_bytes"
    assert reg.get_sample_value(mem, labels(gpu, pid="101")) == 3 * GIB
    assert reg.get_sample_value(mem, labels(gpu, pid="102")) == 5 * GIB
    assert reg.get_sample_value(mem, labels(gpu, pid="others")) == 8 * GIB  # 999 and 998, summed
    assert reg.get_sample_value(mem, labels(gpu, pid="999")) is None  # no foreign pid becomes a label
    util = "jaxobs_gpu_process_utilization_ratio"
    assert reg.get_sample_value(util, labels(gpu, pid="101", kind="sm")) == pytest.approx(0.30)  # newest sample
    assert reg.get_sample_value(util, labels(gpu, pid="102", kind="memory")) == pytest.approx(0.05)
    assert reg.get_sample_value(util, labels(gpu, pid="others", kind="sm")) == pytest.approx(0.40)


def test_process_utilization_reads_only_samples_newer_than_the_last_scrape(collectors):
    gpu = FakeGpu(0, processes=[(101, GIB)], process_samples=[(101, 10, 30, 10)])
    nvml = FakeNvml([gpu])
    collector = collectors(nvml, app_pids=lambda: {101})
    first = scrape(collector)
    assert first.get_sample_value("jaxobs_gpu_process_utilization_ratio", labels(gpu, pid="101", kind="sm")) == 0.3
    reg = scrape(collector)  # no newer sample: NVML says NotFound, which is not a failure
    assert reg.get_sample_value("jaxobs_collector_up", {"collector": "nvml", "device": "0"}) == 1
    # no activity since the last scrape reads as idle, not as a vanished series
    assert reg.get_sample_value("jaxobs_gpu_process_utilization_ratio", labels(gpu, pid="101", kind="sm")) == 0.0
    gpu.process_samples.append((101, 20, 55, 7))
    third = scrape(collector)
    assert third.get_sample_value("jaxobs_gpu_process_utilization_ratio", labels(gpu, pid="101", kind="sm")) == 0.55


def test_not_supported_per_process_queries_are_skipped_and_the_gpu_stays_up(collectors):
    gpu = FakeGpu(0, processes=[(101, GIB)],
                  unsupported={"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetProcessUtilization"})
    nvml = FakeNvml([gpu])
    collector = collectors(nvml, app_pids=lambda: {101})
    for _ in range(3):
        reg = scrape(collector)
    assert reg.get_sample_value("jaxobs_collector_up", {"collector": "nvml", "device": "0"}) == 1
    assert reg.get_sample_value("jaxobs_gpu_process_memory_bytes", labels(gpu, pid="101")) is None
    assert reg.get_sample_value("jaxobs_gpu_utilization_ratio", labels(gpu)) == pytest.approx(0.37)
    # asked once, then remembered as unsupported (MIG and some vGPU setups refuse these)
    assert nvml.calls[("nvmlDeviceGetComputeRunningProcesses", 0)] == 1


def test_memory_not_available_for_a_process_is_left_out_not_counted_as_zero(collectors):
    gpu = FakeGpu(0, processes=[(101, None), (102, 2 * GIB)])
    reg = scrape(collectors(FakeNvml([gpu]), app_pids=lambda: {101, 102}))
    assert reg.get_sample_value("jaxobs_gpu_process_memory_bytes", labels(gpu, pid="101")) is None
    assert reg.get_sample_value("jaxobs_gpu_process_memory_bytes", labels(gpu, pid="102")) == 2 * GIB


@pytest.mark.parametrize(("mask", "on"), [
    (0, set()),
    (pynvml.nvmlClocksThrottleReasonSwPowerCap, {"sw_power_cap"}),
    (pynvml.nvmlClocksThrottleReasonHwThermalSlowdown | pynvml.nvmlClocksThrottleReasonSwThermalSlowdown,
     {"hw_thermal", "sw_thermal"}),
    (pynvml.nvmlClocksThrottleReasonGpuIdle | pynvml.nvmlClocksThrottleReasonSyncBoost, {"gpu_idle", "sync_boost"}),
    (pynvml.nvmlClocksThrottleReasonHwPowerBrakeSlowdown | pynvml.nvmlClocksThrottleReasonHwSlowdown,
     {"hw_power_brake", "hw_slowdown"}),
])
def test_throttle_reason_bits_map_to_one_series_each(collectors, mask, on):
    gpu = FakeGpu(0, throttle_mask=mask)
    reg = scrape(collectors(FakeNvml([gpu])))
    seen = {reason: reg.get_sample_value("jaxobs_gpu_clocks_throttled", labels(gpu, reason=reason))
            for reason, _ in nvml_collector.THROTTLE_REASONS}
    assert {r for r, v in seen.items() if v == 1.0} == on
    assert all(v in (0.0, 1.0) for v in seen.values())  # every reason is exported, 0 or 1


def test_clocks_pcie_bandwidth_and_energy_in_base_units(collectors):
    gpu = FakeGpu(0, sm_clock_mhz=1410, max_sm_clock_mhz=1980, mem_clock_mhz=1593, max_mem_clock_mhz=1593,
                  pcie_tx_kbps=1000, pcie_rx_kbps=2000, energy_mj=123_456, memory_util_pct=42)
    reg = scrape(collectors(FakeNvml([gpu])))
    assert reg.get_sample_value("jaxobs_gpu_clock_hertz", labels(gpu, clock="sm")) == 1410e6
    assert reg.get_sample_value("jaxobs_gpu_clock_max_hertz", labels(gpu, clock="sm")) == 1980e6
    assert reg.get_sample_value("jaxobs_gpu_clock_hertz", labels(gpu, clock="memory")) == 1593e6
    assert reg.get_sample_value("jaxobs_gpu_pcie_bytes_per_second", labels(gpu, direction="tx")) == 1000 * 1024
    assert reg.get_sample_value("jaxobs_gpu_pcie_bytes_per_second", labels(gpu, direction="rx")) == 2000 * 1024
    assert reg.get_sample_value("jaxobs_gpu_energy_joules_total", labels(gpu)) == pytest.approx(123.456)
    assert reg.get_sample_value("jaxobs_gpu_memory_bandwidth_utilization_ratio", labels(gpu)) == 0.42


def test_a_board_without_pcie_counters_still_reports_the_rest(collectors):
    gpu = FakeGpu(0, unsupported={"nvmlDeviceGetPcieThroughput", "nvmlDeviceGetTotalEnergyConsumption"})
    reg = scrape(collectors(FakeNvml([gpu])))
    assert reg.get_sample_value("jaxobs_gpu_pcie_bytes_per_second", labels(gpu, direction="tx")) is None
    assert reg.get_sample_value("jaxobs_gpu_clock_hertz", labels(gpu, clock="sm")) == 1755e6
    assert reg.get_sample_value("jaxobs_collector_up", {"collector": "nvml", "device": "0"}) == 1
