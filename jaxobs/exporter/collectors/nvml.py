"""NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``), for the sidecar.

One seam: ``NvmlCollector(nvml=module)``; by default ``import pynvml`` on first
scrape, so a machine without the package or the driver still serves every
other metric and reports ``jaxobs_collector_up{collector="nvml",device=""} 0``.

Per-GPU isolation: each GPU is read on its own; an NVML error other than
"not supported" (``NVMLError_GpuIsLost``, ``…_Unknown``…) marks that GPU down
(``up{device="<index>"} 0``, one internal error when it starts failing) and the
other GPUs are still reported.  A reading the GPU does not support (ECC on
consumer boards, power on some models) is remembered per GPU and simply
absent from then on, with no error.

NVML "used" memory includes JAX's preallocated pool; ``jax_memory`` has the
truthful in-use figure.  The two join on ``uuid``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jaxobs import __version__, catalog
from jaxobs.exporter.collectors.nvml_xid import XidWatcher, handle_key
from jaxobs.telemetry.collector import WHOLE_COLLECTOR, Collector, Samples

#: NVML errors meaning "this reading is not available here", not "the GPU is broken".
UNAVAILABLE_ERRORS: tuple[str, ...] = (
    "NVMLError_NotSupported",
    "NVMLError_NoPermission",
    "NVMLError_FunctionNotFound",
)

Reader = Callable[[Any, Any], Iterable[tuple[tuple[str, ...], float]]]


@dataclass(frozen=True)
class Reading:
    """One NVML query and how it maps onto a catalog metric.

    ``read(nvml, handle)`` yields ``(extra label values, value)`` pairs in the
    metric's base unit.
    """

    key: str
    spec: catalog.MetricSpec
    read: Reader


def _utilization(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    yield (), nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0


def _memory(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    info = nvml.nvmlDeviceGetMemoryInfo(h)
    yield ("used",), info.used
    yield ("total",), info.total


def _power(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    yield (), nvml.nvmlDeviceGetPowerUsage(h) / 1000.0  # NVML reports milliwatts


def _temperature(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    yield (), nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)


def _ecc(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    # Volatile counters: since the last driver load, which Prometheus treats as a counter reset.
    for kind, err in (("uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
                      ("corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED)):
        yield (kind,), nvml.nvmlDeviceGetTotalEccErrors(h, err, nvml.NVML_VOLATILE_ECC)


#: ``reason`` label → pynvml's bit constant.  Power and thermal reasons are what the
#: throttling alert watches; idle, application clocks and display are normal states.
THROTTLE_REASONS: tuple[tuple[str, str], ...] = (
    ("gpu_idle", "nvmlClocksThrottleReasonGpuIdle"),
    ("applications_clocks", "nvmlClocksThrottleReasonApplicationsClocksSetting"),
    ("sw_power_cap", "nvmlClocksThrottleReasonSwPowerCap"),
    ("hw_slowdown", "nvmlClocksThrottleReasonHwSlowdown"),
    ("sync_boost", "nvmlClocksThrottleReasonSyncBoost"),
    ("sw_thermal", "nvmlClocksThrottleReasonSwThermalSlowdown"),
    ("hw_thermal", "nvmlClocksThrottleReasonHwThermalSlowdown"),
    ("hw_power_brake", "nvmlClocksThrottleReasonHwPowerBrakeSlowdown"),
)


def _throttle_reasons(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    # NVML renamed "throttle reasons" to "clock event reasons" (same bits); older bindings
    # have only the first name, and the newest deprecate it.
    read = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    mask = int(read(h))
    for reason, constant in THROTTLE_REASONS:
        bit = getattr(nvml, constant, None)
        if bit is not None:
            yield (reason,), 1.0 if mask & int(bit) else 0.0


def _clocks(nvml: Any, h: Any, read: Callable[[Any, int], int]) -> Iterable[tuple[tuple[str, ...], float]]:
    for clock, kind in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM)):
        yield (clock,), read(h, kind) * 1e6  # NVML reports MHz


def _memory_bandwidth(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    yield (), nvml.nvmlDeviceGetUtilizationRates(h).memory / 100.0


def _pcie(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    for direction, counter in (("tx", nvml.NVML_PCIE_UTIL_TX_BYTES), ("rx", nvml.NVML_PCIE_UTIL_RX_BYTES)):
        yield (direction,), nvml.nvmlDeviceGetPcieThroughput(h, counter) * 1024.0  # NVML reports KB/s


def _energy(nvml: Any, h: Any) -> Iterable[tuple[tuple[str, ...], float]]:
    yield (), nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0  # NVML reports millijoules


#: What is read from every GPU on every scrape.  A reading the GPU does not support is
#: skipped from then on (NVLink counters are left out: they need per-link field ids).
READINGS: tuple[Reading, ...] = (
    Reading("utilization", catalog.GPU_UTILIZATION, _utilization),
    Reading("memory", catalog.GPU_MEMORY, _memory),
    Reading("power", catalog.GPU_POWER, _power),
    Reading("temperature", catalog.GPU_TEMPERATURE, _temperature),
    Reading("ecc", catalog.GPU_ECC_ERRORS, _ecc),
    Reading("throttle", catalog.GPU_THROTTLED, _throttle_reasons),
    Reading("clocks", catalog.GPU_CLOCK, lambda nvml, h: _clocks(nvml, h, nvml.nvmlDeviceGetClockInfo)),
    Reading("max_clocks", catalog.GPU_CLOCK_MAX, lambda nvml, h: _clocks(nvml, h, nvml.nvmlDeviceGetMaxClockInfo)),
    Reading("memory_bandwidth", catalog.GPU_MEMORY_BANDWIDTH, _memory_bandwidth),
    Reading("pcie", catalog.GPU_PCIE_THROUGHPUT, _pcie),
    Reading("energy", catalog.GPU_ENERGY, _energy),
)


@dataclass
class Gpu:
    """What we know about one GPU index; identity fields are read once."""

    index: int
    handle: Any = None
    uuid: str = ""
    model: str = ""
    unsupported: set[str] = field(default_factory=set)
    #: newest per-process utilization sample seen (NVML returns samples newer than this)
    last_sample_us: int = 0
    #: ``pid`` label values seen in utilization samples (the workload's pids and "others")
    seen_pids: set[str] = field(default_factory=set)

    @property
    def labels(self) -> tuple[str, str, str]:
        return (str(self.index), self.uuid, self.model)


def cuda_version_string(version: int) -> str:
    """NVML's CUDA driver version integer (``12040``) as ``"12.4"``."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def load_nvml(module_name: str = "pynvml") -> Any:
    """Import the NVML binding by name (the CLI's ``--nvml-module`` seam)."""
    return importlib.import_module(module_name)


class NvmlCollector(Collector):
    """Per GPU: utilization, memory, power, temperature, ECC and XID counts, clocks and
    throttling, PCIe and energy; per process of the workload: memory and utilization."""

    name = "nvml"

    def __init__(self, nvml: Any | None = None, *, xid_poll_ms: int = 500,
                 app_pids: Callable[[], set[int]] | None = None) -> None:
        super().__init__()
        self._nvml: Any = nvml  # the pynvml module, or a double with its API
        #: the workload's processes (``--app-pid`` or the multiprocess file names): only
        #: these get their own ``pid`` label, everything else is summed as "others"
        self._app_pids = app_pids or (lambda: set())
        self._xid_poll_ms = xid_poll_ms
        self._gpus: list[Gpu] | None = None
        self._versions: tuple[str, str] | None = None
        self._xid: XidWatcher | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def _start(self) -> list[Gpu]:
        """Init NVML and enumerate GPUs; raises while the library/driver is unavailable."""
        if self._gpus is not None:
            return self._gpus
        if self._nvml is None:
            self._nvml = load_nvml()
        nvml = self._nvml
        nvml.nvmlInit()
        gpus = [Gpu(i) for i in range(nvml.nvmlDeviceGetCount())]
        for gpu in gpus:
            try:
                self._identify(gpu)
            except nvml.NVMLError as exc:  # lost at start-up: reported as down on each scrape
                self.latch.fail(f"gpu {gpu.index}", exc)
        try:
            driver = nvml.nvmlSystemGetDriverVersion()
            cuda = cuda_version_string(nvml.nvmlSystemGetCudaDriverVersion())
            self._versions = (str(driver), cuda)
        except nvml.NVMLError:
            self._versions = None
        self._xid = XidWatcher(nvml, {handle_key(g.handle): g.uuid for g in gpus if g.handle is not None},
                               poll_ms=self._xid_poll_ms)
        self._xid.start([g.handle for g in gpus if g.handle is not None])
        self._gpus = gpus
        return gpus

    def _identify(self, gpu: Gpu) -> None:
        nvml: Any = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(gpu.index)
        gpu.uuid = str(nvml.nvmlDeviceGetUUID(handle))
        gpu.model = str(nvml.nvmlDeviceGetName(handle))
        gpu.handle = handle

    def close(self) -> None:
        if self._xid is not None:
            self._xid.stop()
            self._xid = None
        if self._gpus is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._gpus = None

    # -- scrape -------------------------------------------------------------------------
    def _collect(self, out: Samples) -> None:
        try:
            gpus = self._start()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded…
            self.latch.fail("init", exc)
            out.up(WHOLE_COLLECTOR, False)
            return
        self.latch.ok("init")
        out.up(WHOLE_COLLECTOR, True)
        for gpu in gpus:
            out.up(str(gpu.index), self._read_gpu(gpu, out))
        self._add_xid(out, gpus)
        if self._versions is not None:
            driver, cuda = self._versions
            out.add(catalog.BUILD_INFO, ("", "", "gpu", driver, cuda, __version__), 1)

    def _read_gpu(self, gpu: Gpu, out: Samples) -> bool:
        """Read one GPU; all-or-nothing so a failing GPU exports no half-truths."""
        nvml = self._nvml
        unavailable = tuple(getattr(nvml, n) for n in UNAVAILABLE_ERRORS if hasattr(nvml, n))
        key = f"gpu {gpu.index}"
        samples: list[tuple[catalog.MetricSpec, tuple[str, ...], float]] = []
        try:
            if gpu.handle is None:
                self._identify(gpu)
            for reading in READINGS:
                if reading.key in gpu.unsupported:
                    continue
                try:
                    for extra, value in reading.read(nvml, gpu.handle):
                        samples.append((reading.spec, gpu.labels + extra, value))
                except unavailable:
                    gpu.unsupported.add(reading.key)
            samples.extend(self._read_processes(gpu, unavailable))
        except nvml.NVMLError as exc:
            self.latch.fail(key, exc)
            gpu.handle = None  # re-acquire by index once the GPU is back
            return False
        self.latch.ok(key)
        for spec, labels, value in samples:
            out.add(spec, labels, value)
        return True

    def _read_processes(self, gpu: Gpu, unavailable: tuple[type[BaseException], ...]
                        ) -> list[tuple[catalog.MetricSpec, tuple[str, ...], float]]:
        """Memory and utilization per process: the workload's own pids, the rest as "others".

        Labelling only the workload's pids keeps cardinality bounded and never
        exposes a foreign process.  NVML reports pids as the driver sees them;
        when that is another PID namespace than the sidecar's (no ``hostPID``),
        nothing matches and all use shows as "others".
        """
        nvml: Any = self._nvml
        out: list[tuple[catalog.MetricSpec, tuple[str, ...], float]] = []
        try:
            app = self._app_pids()
        except Exception:  # a vanished multiprocess directory: nobody is "ours" this scrape
            app = set()
        if "processes" not in gpu.unsupported:
            try:
                memory: dict[str, float] = {"others": 0.0}
                for proc in nvml.nvmlDeviceGetComputeRunningProcesses(gpu.handle):
                    used = getattr(proc, "usedGpuMemory", None)
                    if used is None:  # NVML_VALUE_NOT_AVAILABLE (WDDM, some MIG setups)
                        continue
                    pid = str(proc.pid) if proc.pid in app else "others"
                    memory[pid] = memory.get(pid, 0.0) + float(used)
                out += [(catalog.GPU_PROCESS_MEMORY, gpu.labels + (pid,), v) for pid, v in sorted(memory.items())]
            except unavailable:
                gpu.unsupported.add("processes")
        if "process_utilization" not in gpu.unsupported:
            try:
                samples = nvml.nvmlDeviceGetProcessUtilization(gpu.handle, gpu.last_sample_us)
            except unavailable:
                gpu.unsupported.add("process_utilization")
                samples = []
            except nvml.NVMLError as exc:
                if type(exc).__name__ != "NVMLError_NotFound":  # NotFound: no sample since last scrape
                    raise
                samples = []
            latest: dict[int, Any] = {}
            for sample in samples:  # the newest sample of each process
                if sample.pid not in latest or sample.timeStamp > latest[sample.pid].timeStamp:
                    latest[sample.pid] = sample
                gpu.last_sample_us = max(gpu.last_sample_us, int(sample.timeStamp))
            # A process seen before with no sample since the last scrape was idle: 0, not absent.
            util: dict[tuple[str, str], float] = {(pid, kind): 0.0 for pid in gpu.seen_pids
                                                  for kind in ("sm", "memory")}
            for pid_num, sample in latest.items():
                pid = str(pid_num) if pid_num in app else "others"
                gpu.seen_pids.add(pid)
                for kind, value in (("sm", sample.smUtil), ("memory", sample.memUtil)):
                    util[(pid, kind)] = util.get((pid, kind), 0.0) + value / 100.0
            out += [(catalog.GPU_PROCESS_UTILIZATION, gpu.labels + key, min(v, 1.0))
                    for key, v in sorted(util.items())]
            gpu.seen_pids &= {"others"} | {str(p) for p in app}  # exited processes drop out
        return out

    def _add_xid(self, out: Samples, gpus: list[Gpu]) -> None:
        if self._xid is None:
            return
        by_uuid = {g.uuid: g for g in gpus}
        for (uuid, xid), count in sorted(self._xid.counts().items()):
            gpu = by_uuid.get(uuid)
            labels = gpu.labels if gpu is not None else ("", uuid, "")
            out.add(catalog.GPU_XID_ERRORS, labels + (str(xid),), count)
