"""OpenTelemetry backend: the jaxobs catalog through an OTel ``MeterProvider``, read at collection time.

Usage::

    from jaxobs.telemetry import opentelemetry as jaxobs_otel
    jaxobs_otel.install()                        # OTLP (OTEL_EXPORTER_OTLP_* env), every 60 s
    jaxobs_otel.install(meter_provider=provider, exporter=ConsoleMetricExporter(),
                        export_interval_millis=10_000, collectors=[JaxMemoryCollector()])

or, with no code change, ``JAXOBS_BACKEND=otel`` (exports the default recorder).

How, and why this way
---------------------
* **Nothing on the hot path.**  An OTel ``histogram.record`` costs 10–16 µs,
  more than a tiny jitted call; jaxobs already aggregates every call into its
  :class:`~jaxobs.telemetry.recorder.Recorder` (per-thread cells, no locks).  This
  backend only *reads* that recorder when the SDK exports — exactly what the
  Prometheus backend does at scrape time — so the per-call cost is the same
  whichever backend is configured.
* **A producer, not instruments.**  The SDK has no observable histogram, and
  opentelemetry-sdk ≤ 1.45 has no ``MetricProducer``/``metric_producers``
  (the spec's bridge for pre-aggregated data; open-telemetry/opentelemetry-python#4768).
  :class:`JaxobsMetricProducer` implements that interface (``produce()`` →
  ``MetricsData``) and converts one consistent snapshot: counters become
  cumulative monotonic Sums, gauges Gauges, histograms Histograms with the
  catalog's bucket boundaries as explicit bounds (exact counts and sums, no
  re-bucketing).  :class:`JaxobsMetricReader` is the spec's "reader with a
  registered producer" for SDKs without one: it joins a ``MeterProvider``
  (so provider shutdown and ``force_flush`` reach it) and pushes the
  producer's data to any ``MetricExporter`` on its own interval.  It does not
  export the provider's own instruments — your existing readers do that — and
  it declares ``DropAggregation`` for them so it adds nothing to their cost.
  When the SDK grows ``metric_producers=``, the producer plugs in as is.
* **Why not observable counters/gauges for the scalars?**  They would reach
  *every* reader of the provider: a ``PrometheusMetricReader`` on the same
  registry as jaxobs' own collector would then serve every jaxobs series
  twice; and the snapshot would be split across two paths (scalars through
  the SDK, histograms through the producer) read at different moments.
* **force_flush and the Prometheus reader.**  ``MeterProvider.force_flush()``
  calls ``collect()`` on *every* reader; the OTel ``PrometheusMetricReader``
  queues each collection and renders all queued ones at the next scrape, so a
  provider-wide flush makes that scrape serve duplicate families.  jaxobs
  never calls it: :func:`flush` flushes the jaxobs readers only.

Names
-----
jaxobs' own metrics keep the catalog contract: the OTel name is the catalog
name without ``_total`` (counters are monotonic Sums), the unit is the UCUM
form of the name's unit suffix (``s``, ``By``, ``1``, ``W``, ``Cel``) and
attributes are the catalog labels.  An OTLP→Prometheus translation (the
Collector's ``prometheus`` exporter, Prometheus' OTLP receiver) therefore
yields the catalog names again and the shipped dashboards and rules work
unchanged.  Metrics for which OpenTelemetry has semantic conventions follow
them (``semconv=True``, the default): NVML GPU metrics become ``hw.gpu.*``,
``hw.power``, ``hw.temperature``, ``hw.errors`` with ``hw.id``/``hw.name``/
``hw.model``/``hw.type``/``hw.vendor`` attributes, process and host metrics
``process.memory.usage``, ``process.cpu.time``, ``system.memory.linux.available``.
``semconv=False`` keeps catalog names for those as well.

Temporality is cumulative (what OTLP→Prometheus pipelines expect).  Failures
are counted in ``jaxobs_internal_errors_total`` and never raised into the
application.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from jaxobs import __version__, catalog
from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.recorder import CounterSeries, GaugeSeries, HistogramSeries, Recorder

#: ``JAXOBS_BACKEND=otel`` (or ``prometheus,otel``) exports the default recorder over OTLP.
BACKEND_ENV = "JAXOBS_BACKEND"
SCOPE = InstrumentationScope("jaxobs", __version__)

_UCUM = {"seconds": "s", "bytes": "By", "ratio": "1", "watts": "W", "celsius": "Cel"}

try:  # the producer interface, once the SDK has it (its metric_producers= then accepts ours)
    from opentelemetry.sdk.metrics.export import MetricProducer as _ProducerBase  # type: ignore[attr-defined]
except ImportError:  # opentelemetry-sdk <= 1.45
    _ProducerBase = object  # type: ignore[assignment,misc]


# --- naming ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stream:
    """An OTel metric stream: what a catalog series is exported as."""

    name: str
    unit: str
    kind: str  # counter (monotonic Sum), updown (non-monotonic Sum), gauge, histogram
    description: str


Attributes = dict[str, str]
_Mapping = Callable[[catalog.MetricSpec, tuple[str, ...]], "tuple[Stream, Attributes] | None"]


def catalog_stream(spec: catalog.MetricSpec, values: tuple[str, ...]) -> tuple[Stream, Attributes]:
    """The contract-preserving mapping: catalog name minus ``_total``, catalog labels."""
    return (Stream(spec.base_name, _UCUM.get(spec.unit, ""), spec.type, spec.help),
            dict(zip(spec.labels, values, strict=False)))


def _gpu(values: tuple[str, ...]) -> Attributes:
    gpu, uuid, model = values[:3]
    return {"hw.id": uuid, "hw.name": f"gpu{gpu}", "hw.model": model, "hw.type": "gpu", "hw.vendor": "NVIDIA"}


def _sc(name: str, unit: str, kind: str, description: str,
        attrs: Callable[[tuple[str, ...]], Attributes]) -> _Mapping:
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
SEMCONV: dict[str, _Mapping] = {
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


# --- the producer ------------------------------------------------------------------------

@dataclass
class _Points:
    stream: Stream
    points: list[Any] = field(default_factory=list)

    def metric(self) -> Metric:
        s = self.stream
        if s.kind == "histogram":
            data: Any = Histogram(self.points, AggregationTemporality.CUMULATIVE)
        elif s.kind == "gauge":
            data = Gauge(self.points)
        else:
            data = Sum(self.points, AggregationTemporality.CUMULATIVE, is_monotonic=s.kind == "counter")
        return Metric(s.name, s.description, s.unit, data)


def _process_start_ns() -> int:
    """Start of every cumulative series: no observation in this process is older."""
    try:
        import psutil

        return int(psutil.Process().create_time() * 1e9)
    except Exception:
        return time_ns()


class JaxobsMetricProducer(_ProducerBase):  # type: ignore[misc,valid-type]
    """Converts a Recorder (and optional collectors) into OTel ``MetricsData`` on demand.

    ``produce()`` is the spec's MetricProducer operation; it reads the
    recorder's per-thread cells once, so counters, gauges and histograms in
    one batch come from the same moment.  ``collectors`` are jaxobs
    collectors (``JaxMemoryCollector()``, ``NvmlCollector()``…) read at the
    same time — their gauges are this backend's observable gauges.
    """

    def __init__(self, recorder: Recorder, *, collectors: Sequence[Any] = (), resource: Resource | None = None,
                 semconv: bool = True) -> None:
        self.recorder = recorder
        self.collectors = list(collectors)
        self.resource = resource if resource is not None else Resource.create()
        self.semconv = semconv
        self._start = _process_start_ns()

    def produce(self, timeout_millis: float = 10_000) -> MetricsData:
        from jaxobs.telemetry.prometheus import sync_internal_errors

        now = time_ns()
        out: dict[tuple[str, str], _Points] = {}
        try:
            sync_internal_errors(self.recorder)
        except Exception as exc:
            report_internal_error("otel_backend", exc)
        for family in self.recorder.families():
            try:
                self._add_family(out, family.spec, family.items(), now)
            except Exception as exc:  # one broken family must not lose the batch
                report_internal_error("otel_backend", exc)
        for collector in self.collectors:
            try:
                self._add_collector(out, collector, now)
            except Exception as exc:
                report_internal_error("otel_backend", exc)
        metrics = [p.metric() for p in out.values() if p.points]
        if not metrics:
            return MetricsData(resource_metrics=[])
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource,
            scope_metrics=[ScopeMetrics(scope=SCOPE, metrics=metrics, schema_url="")],
            schema_url=self.resource.schema_url)])

    def stream(self, spec: catalog.MetricSpec, values: tuple[str, ...]) -> tuple[Stream, Attributes] | None:
        """How one catalog series is exported (``None``: not exported)."""
        mapping = SEMCONV.get(spec.name) if self.semconv else None
        return mapping(spec, values) if mapping is not None else catalog_stream(spec, values)

    def _points(self, out: dict[tuple[str, str], _Points], stream: Stream) -> _Points:
        key = (stream.name, stream.kind)
        points = out.get(key)
        if points is None:
            points = out[key] = _Points(stream)
        return points

    def _add_family(self, out: dict[tuple[str, str], _Points], spec: catalog.MetricSpec,
                    items: Iterable[tuple[tuple[str, ...], Any]], now: int) -> None:
        for values, series in items:
            mapped = self.stream(spec, values)
            if mapped is None:
                continue
            stream, attrs = mapped
            if isinstance(series, HistogramSeries):
                counts, total = series.snapshot()
                self._points(out, stream).points.append(HistogramDataPoint(
                    attributes=attrs, start_time_unix_nano=self._start, time_unix_nano=now,
                    count=int(sum(counts)), sum=total, bucket_counts=[int(c) for c in counts],
                    explicit_bounds=list(series.bounds), min=None, max=None))  # type: ignore[arg-type]
            elif isinstance(series, (CounterSeries, GaugeSeries)):
                self._add_number(out, stream, attrs, series.value(), now)

    def _add_number(self, out: dict[tuple[str, str], _Points], stream: Stream, attrs: Attributes,
                    value: float, now: int) -> None:
        if stream.kind == "gauge":
            point = NumberDataPoint(attrs, None, now, float(value))  # type: ignore[arg-type]
        else:
            counted = stream.kind == "counter" and stream.unit in ("", "{error}") and float(value).is_integer()
            point = NumberDataPoint(attrs, self._start, now, int(value) if counted else float(value))
        self._points(out, stream).points.append(point)

    def _add_collector(self, out: dict[tuple[str, str], _Points], collector: Any, now: int) -> None:
        """A jaxobs collector yields prometheus-client families; map their samples back to the catalog."""
        for family in collector.collect():
            for sample in family.samples:
                spec = catalog.METRICS.get(sample.name)
                if spec is None:  # e.g. a counter's _created sample
                    continue
                values = tuple(sample.labels.get(label, "") for label in spec.labels)
                mapped = self.stream(spec, values)
                if mapped is not None:
                    self._add_number(out, mapped[0], mapped[1], sample.value, now)


# --- the reader --------------------------------------------------------------------------

def _drop_everything() -> dict[type, Any]:
    """This reader never collects the provider's instruments: declare Drop for all of them."""
    from opentelemetry.sdk import metrics as sdk_metrics
    from opentelemetry.sdk.metrics.view import DropAggregation

    names = ("Counter", "UpDownCounter", "Histogram", "_Gauge", "ObservableCounter",
             "ObservableUpDownCounter", "ObservableGauge")
    return {getattr(sdk_metrics, n): DropAggregation() for n in names if hasattr(sdk_metrics, n)}


def _merge(batches: Iterable[MetricsData]) -> MetricsData:
    return MetricsData(resource_metrics=[rm for batch in batches for rm in batch.resource_metrics])


class JaxobsMetricReader(MetricReader):
    """Pushes its producers' metrics to an exporter every ``export_interval_millis``.

    A ``MetricReader`` so that it can join a ``MeterProvider``: provider
    ``shutdown()`` (also at interpreter exit) exports a last batch and shuts
    the exporter down, provider ``force_flush()`` exports now.  Intervals
    default to ``OTEL_METRIC_EXPORT_INTERVAL``/``OTEL_METRIC_EXPORT_TIMEOUT``
    (60 s / 30 s), like the SDK's periodic reader.
    """

    def __init__(self, exporter: MetricExporter, producers: Sequence[Any], *,
                 export_interval_millis: float | None = None, export_timeout_millis: float | None = None) -> None:
        super().__init__(preferred_aggregation=_drop_everything())
        self.exporter = exporter
        self.producers = list(producers)
        self.interval_millis = _env_millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000, export_interval_millis)
        self.timeout_millis = _env_millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000, export_timeout_millis)
        if self.interval_millis <= 0:
            raise ValueError(f"export interval must be > 0 ms, got {self.interval_millis}")
        self.meter_provider: Any = None
        self._export_lock = threading.Lock()
        self._stop = threading.Event()
        self._shutdown = False
        self._thread = threading.Thread(target=self._run, name="jaxobs-otel-export", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_millis / 1e3):
            self.export(self.timeout_millis)

    def export(self, timeout_millis: float | None = None) -> bool:
        """Produce and export one batch now; False if the exporter failed (counted, not raised)."""
        timeout = self.timeout_millis if timeout_millis is None else timeout_millis
        try:
            data = _merge(p.produce(timeout_millis=timeout) for p in self.producers)
            if not data.resource_metrics:
                return True
            with self._export_lock:
                result = self.exporter.export(data, timeout_millis=timeout)
            if result is not MetricExportResult.SUCCESS:
                report_internal_error("otel_export")
                return False
            return True
        except Exception as exc:
            report_internal_error("otel_export", exc)
            return False

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        """Unused: this reader exports its producers, not the provider's instruments."""

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._shutdown:
            return False
        ok = self.export(timeout_millis)
        try:
            self.exporter.force_flush(timeout_millis=timeout_millis)
        except Exception as exc:
            report_internal_error("otel_export", exc)
        return ok

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_millis / 1e3)
        self.export(timeout_millis)  # the last batch (e.g. at interpreter exit)
        try:
            self.exporter.shutdown(timeout_millis=timeout_millis)
        except Exception as exc:
            report_internal_error("otel_export", exc)
        _readers.discard(self)


def _env_millis(name: str, default: float, explicit: float | None) -> float:
    if explicit is not None:
        return float(explicit)
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


# --- configuration -----------------------------------------------------------------------

_readers: weakref.WeakSet[JaxobsMetricReader] = weakref.WeakSet()
_env_lock = threading.Lock()
_env_installed: set[int] = set()


def otlp_exporter() -> MetricExporter:
    """An OTLP metric exporter configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables.

    gRPC by default; ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`` (or
    ``OTEL_EXPORTER_OTLP_PROTOCOL``) ``http/protobuf`` picks the HTTP exporter.
    """
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
                or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip().lower()
    try:
        if protocol.startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[no-redef]
                OTLPMetricExporter,
            )
    except ImportError as exc:
        package = "opentelemetry-exporter-otlp-proto-" + ("http" if protocol.startswith("http") else "grpc")
        raise ImportError(f"the OTLP exporter needs {package}: pip install 'jaxobs[otlp]'") from exc
    return OTLPMetricExporter()


def _global_sdk_provider() -> Any:
    """The app's global MeterProvider if it is an SDK one (for its resource), else None."""
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider

    current = metrics.get_meter_provider()
    return current if isinstance(current, MeterProvider) else None


def _provider_resource(provider: Any) -> Resource | None:
    # The SDK keeps a provider's resource in its private configuration; use it when
    # it is there, so jaxobs metrics carry the same service.name as the app's own.
    config = getattr(provider, "_sdk_config", None)
    resource = getattr(config, "resource", None)
    return resource if isinstance(resource, Resource) else None


def _shutdown_at_exit(ref: weakref.ref[JaxobsMetricReader]) -> None:
    reader = ref()
    if reader is not None:
        reader.shutdown()


def install(meter_provider: Any = None, *, exporter: MetricExporter | None = None, registry: Any = None,
            recorder: Recorder | None = None, collectors: Sequence[Any] = (), resource: Resource | None = None,
            semconv: bool = True, export_interval_millis: float | None = None,
            export_timeout_millis: float | None = None) -> JaxobsMetricReader:
    """Export jaxobs metrics through OpenTelemetry; returns the reader.

    ``meter_provider``: an SDK ``MeterProvider`` to register the jaxobs reader
    on.  By default jaxobs uses a dedicated provider (nothing is added to the
    app's providers, so their instruments pay nothing) with the resource of
    the app's global SDK provider when there is one.
    ``exporter``: any ``MetricExporter`` (default: OTLP from the environment).
    ``registry``/``recorder``: which recorder to export (default: the global one).
    ``collectors``: jaxobs collectors read at each export (device memory, NVML…).

    The last batch is exported at interpreter exit.  opentelemetry-sdk 1.45's
    ``MeterProvider.force_flush()``/``shutdown()`` do not reach readers added
    with ``add_metric_reader``: use :func:`flush` / :func:`uninstall`.
    """
    if recorder is None:
        from jaxobs.telemetry import recorder_for

        recorder = recorder_for(registry)
    if resource is None:
        source = meter_provider if meter_provider is not None else _global_sdk_provider()
        resource = (_provider_resource(source) if source is not None else None) or Resource.create()
    producer = JaxobsMetricProducer(recorder, collectors=collectors, resource=resource, semconv=semconv)
    reader = JaxobsMetricReader(exporter if exporter is not None else otlp_exporter(), [producer],
                                export_interval_millis=export_interval_millis,
                                export_timeout_millis=export_timeout_millis)
    if meter_provider is not None:
        meter_provider.add_metric_reader(reader)
        atexit.register(_shutdown_at_exit, weakref.ref(reader))
    else:  # a dedicated provider: its own exit hook shuts the reader down (last batch)
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    reader.meter_provider = meter_provider
    _readers.add(reader)
    return reader


def uninstall(reader: JaxobsMetricReader) -> None:
    """Export a last batch and detach ``reader`` from its provider."""
    provider = reader.meter_provider
    if provider is not None and hasattr(provider, "remove_metric_reader"):
        try:
            provider.remove_metric_reader(reader)  # also shuts the reader down
        except Exception as exc:
            report_internal_error("otel_backend", exc)
    reader.shutdown()


def flush(timeout_millis: float = 10_000) -> bool:
    """Export every jaxobs reader's metrics now (e.g. before a short-lived job exits).

    Only jaxobs' readers: ``MeterProvider.force_flush()`` would also collect a
    ``PrometheusMetricReader``, which then serves duplicated metrics.
    """
    ok = True
    for reader in list(_readers):
        ok = reader.force_flush(timeout_millis) and ok
    return ok


def requested_by_env() -> bool:
    backends = {b.strip().lower() for b in os.environ.get(BACKEND_ENV, "").split(",")}
    return bool(backends & {"otel", "opentelemetry", "otlp"})


def install_from_env(recorder: Recorder) -> JaxobsMetricReader | None:
    """``JAXOBS_BACKEND=otel``: export ``recorder`` over OTLP (once; failures are counted, not raised)."""
    if not requested_by_env():
        return None
    with _env_lock:
        if id(recorder) in _env_installed:
            return None
        _env_installed.add(id(recorder))
    try:
        return install(recorder=recorder)
    except Exception as exc:
        report_internal_error("otel_backend", exc)
        return None
