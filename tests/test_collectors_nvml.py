"""The NVML collector against a pynvml double that mimics the real binding (and is checked against it)."""

from __future__ import annotations

import inspect
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

import fake_pynvml  # noqa: E402
from fake_pynvml import FakeGpu, FakeNvml  # noqa: E402
from realtools import require_module  # noqa: E402

from jaxobs import __version__, catalog  # noqa: E402
from jaxobs.exporter.collectors import nvml as nvml_collector  # noqa: E402
from jaxobs.exporter.collectors.nvml import NvmlCollector, cuda_version_string  # noqa: E402
from jaxobs.telemetry.internal_errors import internal_error_counts  # noqa: E402

pynvml = require_module("pynvml")

#: Every pynvml attribute the collector touches (and the double therefore must get right).
USED_BY_COLLECTOR = (
    "nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetUUID",
    "nvmlDeviceGetName", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetTemperature", "nvmlDeviceGetTotalEccErrors", "nvmlEventSetCreate", "nvmlDeviceRegisterEvents",
    "nvmlEventSetWait_v2", "nvmlEventSetFree", "nvmlSystemGetDriverVersion", "nvmlSystemGetCudaDriverVersion",
    "NVML_TEMPERATURE_GPU", "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_MEMORY_ERROR_TYPE_CORRECTED",
    "NVML_VOLATILE_ECC", "nvmlEventTypeXidCriticalError", "NVMLError", "NVMLError_Timeout",
    "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetPcieThroughput",
    "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetProcessUtilization", "NVML_CLOCK_SM", "NVML_CLOCK_MEM", "NVML_PCIE_UTIL_TX_BYTES",
    "NVML_PCIE_UTIL_RX_BYTES", "NVMLError_NotFound",
    *(constant for _, constant in nvml_collector.THROTTLE_REASONS),
    *nvml_collector.UNAVAILABLE_ERRORS,
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def scrape(collector: NvmlCollector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


@pytest.fixture
def eight_gpus():
    nvml = FakeNvml([FakeGpu(i) for i in range(8)])
    collector = NvmlCollector(nvml, xid_poll_ms=20)
    yield nvml, collector
    collector.close()


# --- the double cannot drift from the real binding ------------------------------------------
def test_fake_has_everything_the_collector_uses_with_real_signatures():
    fake = FakeNvml([])
    for name in USED_BY_COLLECTOR:
        assert hasattr(pynvml, name), f"pynvml has no {name}: the collector uses a name that does not exist"
        assert hasattr(fake, name), f"the double lacks {name}"
        real = getattr(pynvml, name)
        if inspect.isfunction(real):
            real_params = list(inspect.signature(real).parameters)
            fake_params = list(inspect.signature(getattr(fake, name)).parameters)
            assert fake_params == real_params, name
        elif not inspect.isclass(real):
            assert getattr(fake, name) == real, f"constant {name} differs from pynvml"


def test_fake_error_hierarchy_matches_pynvml():
    real = {n: getattr(pynvml, n) for n in dir(pynvml) if n.startswith("NVMLError_")}
    fake = {n: getattr(fake_pynvml, n) for n in dir(fake_pynvml) if n.startswith("NVMLError_")}
    assert sorted(fake) == sorted(real)
    for name, cls in real.items():
        assert issubclass(fake[name], fake_pynvml.NVMLError)
        assert fake[name]().value == cls().value, name
        # NVMLError(code) picks the subclass, as in pynvml.
        assert type(fake_pynvml.NVMLError(cls().value)).__name__ == name


def test_fake_event_data_has_the_real_fields():
    real = [f[0] for f in pynvml.c_nvmlEventData_t._fields_]
    assert list(fake_pynvml.c_nvmlEventData_t.__dataclass_fields__) == real
    assert [f[0] for f in pynvml.c_nvmlMemory_t._fields_] == ["total", "free", "used"]
    assert list(fake_pynvml.c_nvmlMemory_t.__dataclass_fields__) == ["total", "free", "used"]


def test_real_pynvml_without_a_driver_raises_library_not_found():
    # What the fake's library_present=False stands for, on this GPU-less machine.
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):
        pynvml.nvmlInit()


# --- what the collector reports ------------------------------------------------------------
def test_reports_every_gpu_in_base_units(eight_gpus):
    nvml, collector = eight_gpus
    reg = scrape(collector)
    gpu3 = nvml.gpus[3]
    labels = {"gpu": "3", "uuid": gpu3.uuid, "model": gpu3.name}
    assert value(reg, catalog.GPU_UTILIZATION.name, **labels) == pytest.approx(0.37)
    assert value(reg, catalog.GPU_POWER.name, **labels) == pytest.approx(312.5)  # from 312500 mW
    assert value(reg, catalog.GPU_TEMPERATURE.name, **labels) == 54
    assert value(reg, catalog.GPU_MEMORY.name, kind="total", **labels) == 80 * 1024**3
    assert value(reg, catalog.GPU_ECC_ERRORS.name, type="uncorrected", **labels) == 0
    for i in range(8):
        assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device=str(i)) == 1
    assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 1


def test_driver_and_cuda_versions_go_into_build_info(eight_gpus):
    _, collector = eight_gpus
    reg = scrape(collector)
    assert value(reg, catalog.BUILD_INFO.name, jax="", jaxlib="", backend="gpu", driver="550.54.15",
                 cuda="12.4", jaxobs=__version__) == 1
    assert cuda_version_string(11080) == "11.8"


def test_one_gpu_lost_mid_run_leaves_the_others_reported(eight_gpus):
    nvml, collector = eight_gpus
    reg = scrape(collector)
    generate_latest(reg)
    before = internal_error_counts().get("collector.nvml", 0)

    nvml.gpus[5].lost = True
    text = generate_latest(reg).decode()
    generate_latest(reg)  # still lost on the next scrape: no second error

    assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="5") == 0
    assert f'{catalog.GPU_POWER.name}{{gpu="5"' not in text
    for i in (0, 1, 2, 3, 4, 6, 7):
        assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device=str(i)) == 1
        assert value(reg, catalog.GPU_POWER.name, gpu=str(i), uuid=nvml.gpus[i].uuid, model=nvml.gpus[i].name)
    assert internal_error_counts().get("collector.nvml", 0) == before + 1

    nvml.gpus[5].lost = False  # reset and back
    assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="5") == 1


def test_metric_not_supported_on_one_model_is_absent_without_errors():
    gpus = [FakeGpu(0), FakeGpu(1, name="NVIDIA GeForce RTX 4090",
                                unsupported={"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetPowerUsage"})]
    nvml = FakeNvml(gpus)
    collector = NvmlCollector(nvml, xid_poll_ms=20)
    try:
        reg = scrape(collector)
        before = dict(internal_error_counts())
        for _ in range(5):
            generate_latest(reg)
        consumer = {"gpu": "1", "uuid": gpus[1].uuid, "model": gpus[1].name}
        datacenter = {"gpu": "0", "uuid": gpus[0].uuid, "model": gpus[0].name}
        assert value(reg, catalog.GPU_ECC_ERRORS.name, type="corrected", **consumer) is None
        assert value(reg, catalog.GPU_POWER.name, **consumer) is None
        assert value(reg, catalog.GPU_TEMPERATURE.name, **consumer) == 54
        assert value(reg, catalog.GPU_POWER.name, **datacenter) == pytest.approx(312.5)
        assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="1") == 1
        assert internal_error_counts() == before
        # Asked once, remembered: no NotSupported round-trip on every scrape.
        assert nvml.calls[("nvmlDeviceGetPowerUsage", 1)] == 1
    finally:
        collector.close()


def test_library_missing_is_up_zero_and_one_error():
    nvml = FakeNvml([FakeGpu(0)], library_present=False)
    collector = NvmlCollector(nvml)
    reg = scrape(collector)
    before = internal_error_counts().get("collector.nvml", 0)
    for _ in range(3):
        assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 0
    assert internal_error_counts().get("collector.nvml", 0) == before + 1
    assert value(reg, catalog.GPU_UTILIZATION.name, gpu="0", uuid=nvml.gpus[0].uuid, model=nvml.gpus[0].name) is None

    nvml.library_present = True  # driver installed / container restarted with the runtime hook
    try:
        assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="0") == 1
    finally:
        collector.close()


def test_missing_pynvml_package_is_up_zero(monkeypatch):
    collector = NvmlCollector(None)
    monkeypatch.setattr(nvml_collector, "load_nvml", lambda name="pynvml": __import__("no_such_nvml_binding"))
    reg = scrape(collector)
    assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 0


def test_xid_events_are_counted_per_gpu_and_code(eight_gpus):
    nvml, collector = eight_gpus
    reg = scrape(collector)
    generate_latest(reg)  # starts NVML and the event thread
    nvml.inject_xid(2, 79)
    nvml.inject_xid(2, 79)
    nvml.inject_xid(6, 48)
    gpu2, gpu6 = nvml.gpus[2], nvml.gpus[6]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if value(reg, catalog.GPU_XID_ERRORS.name, gpu="6", uuid=gpu6.uuid, model=gpu6.name, xid="48") == 1:
            break
        time.sleep(0.02)
    assert value(reg, catalog.GPU_XID_ERRORS.name, gpu="2", uuid=gpu2.uuid, model=gpu2.name, xid="79") == 2
    assert value(reg, catalog.GPU_XID_ERRORS.name, gpu="6", uuid=gpu6.uuid, model=gpu6.name, xid="48") == 1


def test_xid_counter_survives_the_gpu_being_lost(eight_gpus):
    nvml, collector = eight_gpus
    reg = scrape(collector)
    generate_latest(reg)
    nvml.inject_xid(4, 79)  # "GPU has fallen off the bus"
    gpu4 = nvml.gpus[4]
    labels = dict(gpu="4", uuid=gpu4.uuid, model=gpu4.name, xid="79")
    deadline = time.monotonic() + 5
    while value(reg, catalog.GPU_XID_ERRORS.name, **labels) != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    nvml.gpus[4].lost = True
    assert value(reg, catalog.GPU_XID_ERRORS.name, **labels) == 1
    assert value(reg, catalog.COLLECTOR_UP.name, collector="nvml", device="4") == 0


def test_close_stops_the_event_thread_and_shuts_nvml_down(eight_gpus):
    nvml, collector = eight_gpus
    generate_latest(scrape(collector))
    collector.close()
    assert nvml.calls.get("nvmlShutdown") == 1
    assert not [t for t in __import__("threading").enumerate() if t.name == "jaxobs-nvml-xid" and t.is_alive()]
