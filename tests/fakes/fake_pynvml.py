"""A stand-in for ``pynvml`` (nvidia-ml-py) that behaves like NVML on a machine with GPUs.

Same function names, argument order, return shapes and units as pynvml
(power in mW, memory in bytes, utilization in percent, the CUDA version as
``12040``), opaque handle objects, and the same exception hierarchy: one
``NVMLError_<Name>`` subclass per ``NVML_ERROR_<NAME>`` code, built the way
pynvml builds it, so ``NVMLError(code)`` returns the matching subclass.
``tests/test_collectors_nvml.py`` compares these names and codes with the
installed pynvml so the double cannot drift.

Two ways to use it:

* in-process: ``nvml = FakeNvml([FakeGpu(...), ...])`` and pass ``nvml`` where
  the module would go (``NvmlCollector(nvml=nvml)``);
* as a module, for an exporter in a subprocess: put this directory on
  ``PYTHONPATH`` and run with ``--nvml-module fake_pynvml``; the module-level
  functions drive a default system configured from the environment
  (``FAKE_PYNVML_GPUS=8``, ``FAKE_PYNVML_MISSING=1`` for "no driver").

Scenario controls (not part of pynvml): ``gpu.lost = True`` (the GPU fell off
the bus), ``gpu.unsupported`` (function names that answer NotSupported),
``nvml.inject_xid(index, xid)``, ``nvml.library_present = False``.
"""

from __future__ import annotations

import ctypes
import os
import queue
import string
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

# --- constants (values as in pynvml) -----------------------------------------------------
NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1

nvmlEventTypeNone = 0
nvmlEventTypeSingleBitEccError = 1
nvmlEventTypeDoubleBitEccError = 2
nvmlEventTypePState = 4
nvmlEventTypeXidCriticalError = 8
nvmlEventTypeClock = 16

NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1

nvmlClocksThrottleReasonGpuIdle = 0x1
nvmlClocksThrottleReasonApplicationsClocksSetting = 0x2
nvmlClocksThrottleReasonSwPowerCap = 0x4
nvmlClocksThrottleReasonHwSlowdown = 0x8
nvmlClocksThrottleReasonSyncBoost = 0x10
nvmlClocksThrottleReasonSwThermalSlowdown = 0x20
nvmlClocksThrottleReasonHwThermalSlowdown = 0x40
nvmlClocksThrottleReasonHwPowerBrakeSlowdown = 0x80
nvmlClocksThrottleReasonDisplayClockSetting = 0x100


# --- exceptions, generated like pynvml's _extractNVMLErrorsAsClasses --------------------
class NVMLError(Exception):
    _valClassMapping: dict[int, type] = {}

    def __new__(typ, value: int) -> NVMLError:  # noqa: N804 - pynvml's signature
        if typ == NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return _ERROR_STRINGS.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


_ERROR_STRINGS = {
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
}


def _make_error_classes() -> None:
    this = sys.modules[__name__]
    for err_name in [n for n in dir(this) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        value = getattr(this, err_name)

        def gen_new(val: int) -> Any:
            def new(typ: type, *args: Any) -> NVMLError:
                return NVMLError.__new__(typ, val)

            return new

        cls = type(class_name, (NVMLError,), {"__new__": gen_new(value)})
        cls.__module__ = __name__
        setattr(this, class_name, cls)
        NVMLError._valClassMapping[value] = cls


_make_error_classes()


def _raise(code: int) -> None:
    raise NVMLError(code)


def _address(handle: Any) -> int | None:
    try:
        return ctypes.addressof(handle.contents)
    except (AttributeError, TypeError, ValueError):
        return None


# --- structs ------------------------------------------------------------------------------
@dataclass
class c_nvmlMemory_t:  # noqa: N801 - pynvml's name
    total: int
    free: int
    used: int


@dataclass
class c_nvmlUtilization_t:  # noqa: N801
    gpu: int
    memory: int


class c_nvmlProcessUtilizationSample_t(ctypes.Structure):  # noqa: N801 - pynvml's name and fields
    _fields_ = [("pid", ctypes.c_uint), ("timeStamp", ctypes.c_ulonglong), ("smUtil", ctypes.c_uint),
                ("memUtil", ctypes.c_uint), ("encUtil", ctypes.c_uint), ("decUtil", ctypes.c_uint)]


class nvmlFriendlyObject:  # noqa: N801 - what pynvml returns for running processes
    def __init__(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, value)


@dataclass
class c_nvmlEventData_t:  # noqa: N801
    device: Any
    eventType: int  # noqa: N815
    eventData: int  # noqa: N815
    gpuInstanceId: int = 0xFFFFFFFF  # noqa: N815
    computeInstanceId: int = 0xFFFFFFFF  # noqa: N815


class c_nvmlDevice_t(ctypes.Structure):  # noqa: N801 - pynvml's name
    """The opaque device struct; handles are pointers to it, as in pynvml."""

    _fields_ = [("index", ctypes.c_uint)]


#: Handles are ``POINTER(c_nvmlDevice_t)``: each call returns a *new* pointer object to
#: the same address, exactly what makes comparing real handles with ``==`` wrong.
FakeHandle = ctypes.POINTER(c_nvmlDevice_t)


@dataclass
class FakeGpu:
    """One simulated GPU; mutate its fields between scrapes to change what NVML reports."""

    index: int
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    utilization_pct: int = 37
    memory_total: int = 80 * 1024**3
    memory_used: int = 61 * 1024**3
    power_mw: int = 312_500
    temperature_c: int = 54
    ecc_corrected: int = 0
    ecc_uncorrected: int = 0
    lost: bool = False
    memory_util_pct: int = 18
    throttle_mask: int = 0
    sm_clock_mhz: int = 1755
    mem_clock_mhz: int = 2619
    max_sm_clock_mhz: int = 1980
    max_mem_clock_mhz: int = 2619
    pcie_tx_kbps: int = 120_000
    pcie_rx_kbps: int = 480_000
    energy_mj: int = 9_876_543_210
    #: (pid, used bytes or None when NVML cannot tell), as nvmlDeviceGetComputeRunningProcesses lists them
    processes: list[tuple[int, int | None]] = field(default_factory=list)
    #: (pid, timestamp µs, sm %, memory %) utilization samples NVML keeps
    process_samples: list[tuple[int, int, int, int]] = field(default_factory=list)
    #: pynvml function names this GPU answers with NVMLError_NotSupported.
    unsupported: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.uuid:
            self.uuid = f"GPU-{self.index:08x}-fake-4e2b-9c1d-{self.index:012x}"
        self._struct = c_nvmlDevice_t(self.index)

    def handle(self) -> Any:
        return ctypes.pointer(self._struct)


class FakeEventSet:
    def __init__(self) -> None:
        self.queue: queue.Queue[c_nvmlEventData_t] = queue.Queue()
        self.registered: dict[int, int] = {}  # gpu index -> event type mask
        self.freed = False


class FakeNvml:
    """The NVML library of one simulated machine; attribute names mirror pynvml's."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu] | None = None, *, driver: str = "550.54.15",
                 cuda: int = 12040, library_present: bool = True) -> None:
        self.gpus = gpus if gpus is not None else [FakeGpu(i) for i in range(8)]
        self.driver = driver
        self.cuda = cuda
        self.library_present = library_present
        self._refcount = 0
        self._event_sets: list[FakeEventSet] = []
        self._lock = threading.Lock()
        self.calls: dict[Any, int] = {}  # by function name, and by (name, gpu index)
        self._by_address = {ctypes.addressof(g._struct): g for g in self.gpus}
        # Error classes and constants, so an instance can stand in for the module.
        this = sys.modules[__name__]
        for name in dir(this):
            if name.startswith(("NVMLError_", "NVML_", "nvmlEventType", "nvmlClocksThrottleReason")):
                setattr(self, name, getattr(this, name))

    # -- helpers ---------------------------------------------------------------------------
    def _count(self, fn: str) -> None:
        with self._lock:
            self.calls[fn] = self.calls.get(fn, 0) + 1

    def _check_init(self) -> None:
        if self._refcount <= 0:
            _raise(NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any, fn: str) -> FakeGpu:
        self._count(fn)
        self._check_init()
        gpu = self._by_address.get(_address(handle))
        if gpu is None:
            _raise(NVML_ERROR_INVALID_ARGUMENT)
        with self._lock:
            self.calls[(fn, gpu.index)] = self.calls.get((fn, gpu.index), 0) + 1
        if gpu.lost:
            _raise(NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.unsupported:
            _raise(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    # -- scenario controls (not in pynvml) -------------------------------------------------
    def inject_xid(self, index: int, xid: int) -> None:
        """The driver reports XID ``xid`` on GPU ``index`` to every registered event set."""
        gpu = self.gpus[index]
        for es in self._event_sets:
            if es.registered.get(index, 0) & nvmlEventTypeXidCriticalError:
                es.queue.put(c_nvmlEventData_t(gpu.handle(), nvmlEventTypeXidCriticalError, xid))

    # -- library ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if not self.library_present:
            _raise(NVML_ERROR_LIBRARY_NOT_FOUND)
        self._refcount += 1

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.nvmlInit()

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        self._check_init()
        self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._check_init()
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._check_init()
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        self._check_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._count("nvmlDeviceGetHandleByIndex")
        self._check_init()
        if not 0 <= index < len(self.gpus):
            _raise(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if gpu.lost:
            _raise(NVML_ERROR_GPU_IS_LOST)
        return gpu.handle()

    # -- device queries --------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> c_nvmlUtilization_t:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return c_nvmlUtilization_t(gpu=gpu.utilization_pct, memory=gpu.memory_util_pct)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> c_nvmlMemory_t:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return c_nvmlMemory_t(total=gpu.memory_total, free=gpu.memory_total - gpu.memory_used,
                              used=gpu.memory_used)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").throttle_mask

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").throttle_mask

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:  # noqa: A002 - pynvml's name
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        return {NVML_CLOCK_SM: gpu.sm_clock_mhz, NVML_CLOCK_MEM: gpu.mem_clock_mhz}.get(type, 0)

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int) -> int:  # noqa: A002
        gpu = self._gpu(handle, "nvmlDeviceGetMaxClockInfo")
        return {NVML_CLOCK_SM: gpu.max_sm_clock_mhz, NVML_CLOCK_MEM: gpu.max_mem_clock_mhz}.get(type, 0)

    def nvmlDeviceGetPcieThroughput(self, device: Any, counter: int) -> int:
        gpu = self._gpu(device, "nvmlDeviceGetPcieThroughput")
        if counter not in (NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES):
            _raise(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.pcie_tx_kbps if counter == NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kbps

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[nvmlFriendlyObject]:
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        return [nvmlFriendlyObject({"pid": pid, "usedGpuMemory": used, "gpuInstanceId": 0xFFFFFFFF,
                                    "computeInstanceId": 0xFFFFFFFF}) for pid, used in gpu.processes]

    def nvmlDeviceGetProcessUtilization(self, handle: Any, timeStamp: int) -> list[Any]:  # noqa: N803
        gpu = self._gpu(handle, "nvmlDeviceGetProcessUtilization")
        newer = [c_nvmlProcessUtilizationSample_t(pid, ts, sm, mem, 0, 0)
                 for pid, ts, sm, mem in gpu.process_samples if ts > timeStamp]
        if not newer:  # as the real call: no sample newer than the timestamp is NotFound
            _raise(NVML_ERROR_NOT_FOUND)
        return newer

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            _raise(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_c

    def nvmlDeviceGetEccMode(self, handle: Any) -> list[int]:
        self._gpu(handle, "nvmlDeviceGetEccMode")
        return [NVML_FEATURE_ENABLED, NVML_FEATURE_ENABLED]

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:  # noqa: N803
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        if errorType == NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return gpu.ecc_uncorrected
        return gpu.ecc_corrected

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetSupportedEventTypes")
        if "nvmlDeviceRegisterEvents" in gpu.unsupported:
            return nvmlEventTypeNone
        return nvmlEventTypeXidCriticalError | nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError

    # -- events ----------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> FakeEventSet:
        self._check_init()
        es = FakeEventSet()
        self._event_sets.append(es)
        return es

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: FakeEventSet) -> None:  # noqa: N803
        gpu = self._gpu(handle, "nvmlDeviceRegisterEvents")
        eventSet.registered[gpu.index] = eventSet.registered.get(gpu.index, 0) | eventTypes

    def nvmlEventSetWait_v2(self, eventSet: FakeEventSet, timeoutms: int) -> c_nvmlEventData_t:
        self._check_init()
        try:
            return eventSet.queue.get(timeout=timeoutms / 1000.0)
        except queue.Empty:
            _raise(NVML_ERROR_TIMEOUT)
            raise  # unreachable

    def nvmlEventSetWait(self, eventSet: FakeEventSet, timeoutms: int) -> c_nvmlEventData_t:
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: FakeEventSet) -> None:
        eventSet.freed = True
        if eventSet in self._event_sets:
            self._event_sets.remove(eventSet)


# --- module-level API, for ``--nvml-module fake_pynvml`` in a subprocess ----------------
def _default_system() -> FakeNvml:
    count = int(os.environ.get("FAKE_PYNVML_GPUS", "8"))
    return FakeNvml([FakeGpu(i) for i in range(count)],
                    library_present=os.environ.get("FAKE_PYNVML_MISSING", "") != "1")


SYSTEM = _default_system()

for _name in dir(FakeNvml):
    if _name.startswith("nvml"):
        globals()[_name] = getattr(SYSTEM, _name)
del _name
