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


#: What is read from every GPU on every scrape.
READINGS: tuple[Reading, ...] = (
    Reading("utilization", catalog.GPU_UTILIZATION, _utilization),
    Reading("memory", catalog.GPU_MEMORY, _memory),
    Reading("power", catalog.GPU_POWER, _power),
    Reading("temperature", catalog.GPU_TEMPERATURE, _temperature),
    Reading("ecc", catalog.GPU_ECC_ERRORS, _ecc),
)


@dataclass
class Gpu:
    """What we know about one GPU index; identity fields are read once."""

    index: int
    handle: Any = None
    uuid: str = ""
    model: str = ""
    unsupported: set[str] = field(default_factory=set)

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
    """GPU utilization, memory, power, temperature, ECC and XID counts, per GPU."""

    name = "nvml"

    def __init__(self, nvml: Any | None = None, *, xid_poll_ms: int = 500) -> None:
        super().__init__()
        self._nvml = nvml
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
        nvml = self._nvml
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
        except nvml.NVMLError as exc:
            self.latch.fail(key, exc)
            gpu.handle = None  # re-acquire by index once the GPU is back
            return False
        self.latch.ok(key)
        for spec, labels, value in samples:
            out.add(spec, labels, value)
        return True

    def _add_xid(self, out: Samples, gpus: list[Gpu]) -> None:
        if self._xid is None:
            return
        by_uuid = {g.uuid: g for g in gpus}
        for (uuid, xid), count in sorted(self._xid.counts().items()):
            gpu = by_uuid.get(uuid)
            labels = gpu.labels if gpu is not None else ("", uuid, "")
            out.add(catalog.GPU_XID_ERRORS, labels + (str(xid),), count)
