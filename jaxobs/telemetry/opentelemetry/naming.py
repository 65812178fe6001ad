"""What a catalog series is called in OpenTelemetry: catalog names, or semantic conventions.

The default is the catalog mapping (:func:`catalog_stream`): the OTel name is
the catalog name without ``_total`` and an OTLP→Prometheus translation (the
Collector's ``prometheus``/``prometheusremotewrite`` exporters, Prometheus'
OTLP receiver) yields the catalog names again, so the shipped alerts and
dashboards work.  :data:`SEMCONV` renames the metrics that have an
OpenTelemetry semantic convention (``hw.*``, ``process.*``, ``system.*``); it
is opt-in because after such a pipeline they are no longer catalog names —
``jaxobs_gpu_xid_errors_total`` becomes ``hw_errors_total{error_type="xid_79"}``
and the XID alert cannot fire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jaxobs import catalog

_UCUM = {"seconds": "s", "bytes": "By", "ratio": "1", "watts": "W", "celsius": "Cel"}


@dataclass(frozen=True)
class Stream:
    """An OTel metric stream: what a catalog series is exported as."""

    name: str
    unit: str
    kind: str  # counter (monotonic Sum), updown (non-monotonic Sum), gauge, histogram
    description: str


Attributes = dict[str, str]
Mapping = Callable[[catalog.MetricSpec, tuple[str, ...]], "tuple[Stream, Attributes] | None"]


def catalog_stream(spec: catalog.MetricSpec, values: tuple[str, ...]) -> tuple[Stream, Attributes]:
    """The contract-preserving mapping: catalog name minus ``_total``, catalog labels."""
    return (Stream(spec.base_name, _UCUM.get(spec.unit, ""), spec.type, spec.help),
            dict(zip(spec.labels, values, strict=False)))


def _gpu(values: tuple[str, ...]) -> Attributes:
    gpu, uuid, model = values[:3]
    return {"hw.id": uuid, "hw.name": f"gpu{gpu}", "hw.model": model, "hw.type": "gpu", "hw.vendor": "NVIDIA"}


def _sc(name: str, unit: str, kind: str, description: str,
        attrs: Callable[[tuple[str, ...]], Attributes]) -> Mapping:
    stream = Stream(name, unit, kind, description)
    return lambda spec, values: (stream, attrs(values))


def _gpu_memory(spec: catalog.MetricSpec, values: tuple[str, ...]) -> tuple[Stream, Attributes] | None:
    kind = values[3]
    if kind == "used":
        return Stream("hw.gpu.memory.usage", "By", "updown", "GPU memory used."), _gpu(values)
    if kind == "total":
        return Stream("hw.gpu.memory.limit", "By", "updown", "Size of the GPU memory."), _gpu(values)
    return catalog_stream(spec, values)


_ERRORS = Stream("hw.errors", "{error}", "counter", "Number of errors encountered by the component.")

#: Catalog metrics that have an OpenTelemetry semantic convention (hw.*, process.*, system.*).
SEMCONV: dict[str, Mapping] = {
    catalog.GPU_UTILIZATION.name: _sc("hw.gpu.utilization", "1", "gauge",
                                      "Fraction of time spent in a specific task.",
                                      lambda v: {**_gpu(v), "hw.gpu.task": "general"}),
    catalog.GPU_MEMORY.name: _gpu_memory,
    catalog.GPU_POWER.name: _sc("hw.power", "W", "gauge", "Instantaneous power consumed by the component.",
                                _gpu),
    catalog.GPU_TEMPERATURE.name: _sc("hw.temperature", "Cel", "gauge", "Temperature in degrees Celsius.",
                                      _gpu),
    catalog.GPU_XID_ERRORS.name: lambda spec, v: (_ERRORS, {**_gpu(v), "error.type": f"xid_{v[3]}"}),
    catalog.GPU_ECC_ERRORS.name: lambda spec, v: (_ERRORS, {**_gpu(v), "error.type": f"ecc_{v[3]}"}),
    catalog.PROCESS_RESIDENT_MEMORY.name: _sc("process.memory.usage", "By", "updown",
                                              "The amount of physical memory in use.",
                                              lambda v: {"process": v[0]}),
    catalog.PROCESS_CPU.name: _sc("process.cpu.time", "s", "counter", "Total CPU seconds broken down by "
                                  "different CPU modes.", lambda v: {"process": v[0]}),
    catalog.HOST_MEMORY_AVAILABLE.name: _sc("system.memory.linux.available", "By", "updown",
                                            "An estimate of how much memory is available for starting "
                                            "new applications, without causing swapping.", lambda v: {}),
}


def stream_for(spec: catalog.MetricSpec, values: tuple[str, ...],
               semconv: bool) -> tuple[Stream, Attributes] | None:
    """How one catalog series is exported (``None``: not exported)."""
    mapping = SEMCONV.get(spec.name) if semconv else None
    return mapping(spec, values) if mapping is not None else catalog_stream(spec, values)
