"""The producer: one consistent recorder snapshot as OTel ``MetricsData``, cumulative or delta.

opentelemetry-sdk ≤ 1.45 has no observable histogram and no
``MetricProducer``/``metric_producers`` (the specification's bridge for
pre-aggregated data).  :class:`JaxobsMetricProducer` implements that interface
(``produce()`` → ``MetricsData``): counters become monotonic Sums, gauges
Gauges, histograms Histograms with the catalog's bucket boundaries as explicit
bounds (exact counts and sums, no re-bucketing).

Temporality follows the exporter's preference (the OTLP exporter reads
``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``): with ``delta`` (or
``lowmemory``) monotonic Sums and Histograms carry the difference since the
last *successful* export of each series; a failed export is not committed, so
its increments go out with the next batch instead of being lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from time import time_ns
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
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
from jaxobs.telemetry.opentelemetry.naming import Attributes, Stream, stream_for
from jaxobs.telemetry.recorder import CounterSeries, GaugeSeries, HistogramSeries, Recorder

SCOPE = InstrumentationScope("jaxobs", __version__)

try:  # the producer interface, once the SDK has it (its metric_producers= then accepts ours)
    from opentelemetry.sdk.metrics.export import MetricProducer as _ProducerBase  # type: ignore[attr-defined]
except ImportError:  # opentelemetry-sdk <= 1.45
    _ProducerBase = object  # type: ignore[assignment,misc]

_Key = tuple[str, tuple[tuple[str, str], ...]]
#: Last committed value of a delta series: a number, or (bucket counts, sum) of a histogram.
_Value = Any


@dataclass
class _Points:
    stream: Stream
    temporality: AggregationTemporality
    points: list[Any] = field(default_factory=list)

    def metric(self) -> Metric:
        s = self.stream
        if s.kind == "histogram":
            data: Any = Histogram(self.points, self.temporality)
        elif s.kind == "gauge":
            data = Gauge(self.points)
        else:
            temporality = self.temporality if s.kind == "counter" else AggregationTemporality.CUMULATIVE
            data = Sum(self.points, temporality, is_monotonic=s.kind == "counter")
        return Metric(s.name, s.description, s.unit, data)


def process_start_ns() -> int:
    """Start of every cumulative series: no observation in this process is older."""
    try:
        import psutil

        return int(psutil.Process().create_time() * 1e9)
    except Exception:
        return time_ns()


class JaxobsMetricProducer(_ProducerBase):  # type: ignore[misc,valid-type]
    """Converts a Recorder (and optional collectors) into OTel ``MetricsData`` on demand.

    ``produce()`` reads the recorder's per-thread cells once, so counters,
    gauges and histograms in one batch come from the same moment.
    ``collectors`` are jaxobs collectors (``JaxMemoryCollector()``,
    ``NvmlCollector()``…) read at the same time.  ``semconv``: rename metrics
    that have an OpenTelemetry semantic convention (see
    :mod:`~jaxobs.telemetry.opentelemetry.naming`).  ``delta``: send monotonic
    Sums and Histograms as differences (call :meth:`commit` after each
    successful export; the reader does).
    """

    def __init__(self, recorder: Recorder, *, collectors: Sequence[Any] = (), resource: Resource | None = None,
                 semconv: bool = False, delta: bool = False) -> None:
        self.recorder = recorder
        self.collectors = list(collectors)
        self.resource = resource if resource is not None else Resource.create()
        self.semconv = semconv
        self.delta = delta
        self._start = process_start_ns()
        self._committed: dict[_Key, tuple[_Value, int]] = {}
        self._pending: dict[_Key, tuple[_Value, int]] = {}

    @property
    def temporality(self) -> AggregationTemporality:
        return AggregationTemporality.DELTA if self.delta else AggregationTemporality.CUMULATIVE

    def produce(self, timeout_millis: float = 10_000) -> MetricsData:
        from jaxobs.telemetry.prometheus import sync_internal_errors

        now = time_ns()
        out: dict[tuple[str, str], _Points] = {}
        self._pending = {}
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

    def commit(self) -> None:
        """The last produced batch was exported: later deltas start from it."""
        self._committed.update(self._pending)
        self._pending = {}

    def stream(self, spec: catalog.MetricSpec, values: tuple[str, ...]) -> tuple[Stream, Attributes] | None:
        """How one catalog series is exported (``None``: not exported)."""
        return stream_for(spec, values, self.semconv)

    def _points(self, out: dict[tuple[str, str], _Points], stream: Stream) -> _Points:
        key = (stream.name, stream.kind)
        points = out.get(key)
        if points is None:
            points = out[key] = _Points(stream, self.temporality)
        return points

    def _since(self, stream: Stream, attrs: Attributes, value: _Value, now: int) -> tuple[_Value | None, int]:
        """(committed value to subtract or None, start time) of a delta series; notes ``value``."""
        key = (stream.name, tuple(sorted(attrs.items())))
        self._pending[key] = (value, now)
        previous = self._committed.get(key)
        return (previous[0], previous[1]) if previous is not None else (None, self._start)

    def _add_family(self, out: dict[tuple[str, str], _Points], spec: catalog.MetricSpec,
                    items: Iterable[tuple[tuple[str, ...], Any]], now: int) -> None:
        for values, series in items:
            mapped = self.stream(spec, values)
            if mapped is None:
                continue
            stream, attrs = mapped
            if isinstance(series, HistogramSeries):
                self._add_histogram(out, stream, attrs, series, now)
            elif isinstance(series, (CounterSeries, GaugeSeries)):
                self._add_number(out, stream, attrs, series.value(), now)

    def _add_histogram(self, out: dict[tuple[str, str], _Points], stream: Stream, attrs: Attributes,
                       series: HistogramSeries, now: int) -> None:
        counts, total = series.snapshot()
        start = self._start
        if self.delta:
            previous, start = self._since(stream, attrs, (counts, total), now)
            if previous is not None:
                counts = [c - p for c, p in zip(counts, previous[0], strict=True)]
                total -= previous[1]
        self._points(out, stream).points.append(HistogramDataPoint(
            attributes=attrs, start_time_unix_nano=start, time_unix_nano=now,
            count=int(sum(counts)), sum=total, bucket_counts=[int(c) for c in counts],
            explicit_bounds=list(series.bounds), min=None, max=None))  # type: ignore[arg-type]

    def _add_number(self, out: dict[tuple[str, str], _Points], stream: Stream, attrs: Attributes,
                    value: float, now: int) -> None:
        if stream.kind == "gauge":
            point = NumberDataPoint(attrs, None, now, float(value))  # type: ignore[arg-type]
        else:
            start = self._start
            if self.delta and stream.kind == "counter":
                previous, start = self._since(stream, attrs, value, now)
                if previous is not None:
                    value = value - previous if value >= previous else value  # a reset starts over
            counted = stream.kind == "counter" and stream.unit in ("", "{error}") and float(value).is_integer()
            point = NumberDataPoint(attrs, start, now, int(value) if counted else float(value))
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
