"""Prometheus backend: expose a Recorder through prometheus-client.

Two modes, one source of truth:

* **in-process** – a custom collector registered in the user's registry reads
  the recorder at scrape time (prometheus-client renders the text, so the
  exposition is exactly what client_python users expect);
* **multiprocess** – when ``PROMETHEUS_MULTIPROC_DIR`` is set (gunicorn-style
  servers, or the app + sidecar layout of ``exporters/``), a background thread
  writes the recorder's totals into prometheus-client's per-process mmap files
  every ``JAXOBS_FLUSH_INTERVAL`` seconds (default 1) and at exit, so the
  sidecar's ``MultiProcessCollector`` sees them.  Totals are *set*, not added,
  so a missed flush loses nothing.

Registration never clashes with other libraries' metrics (Orbax, Grain, the
user's own): the collector does not pre-describe names and only emits
``jaxobs_*`` families.
"""

from __future__ import annotations

import atexit
import errno
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import internal_error_counts, report_internal_error
from jaxobs.telemetry.recorder import CounterSeries, Family, GaugeSeries, HistogramSeries, Recorder

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _le_labels(bounds: tuple[float, ...]) -> list[str]:
    return [floatToGoString(b) for b in bounds] + ["+Inf"]


def family_to_metric(family: Family) -> Metric | None:
    spec = family.spec
    items = family.items()
    if not items:
        return None
    labels = list(spec.labels)
    if spec.type == "counter":
        counter = CounterMetricFamily(spec.base_name, spec.help, labels=labels)
        for values, series in items:
            assert isinstance(series, CounterSeries)
            counter.add_metric(list(values), series.value())
        return counter
    if spec.type == "gauge":
        gauge = GaugeMetricFamily(spec.name, spec.help, labels=labels)
        for values, series in items:
            assert isinstance(series, GaugeSeries)
            gauge.add_metric(list(values), series.value())
        return gauge
    hist = HistogramMetricFamily(spec.name, spec.help, labels=labels)
    for values, series in items:
        assert isinstance(series, HistogramSeries)
        counts, total = series.snapshot()
        cumulative, buckets = 0.0, []
        for le, c in zip(_le_labels(series.bounds), counts, strict=False):
            cumulative += c
            buckets.append((le, cumulative))
        hist.add_metric(list(values), buckets, total)
    return hist


class JaxobsCollector(Collector):
    """Reads one Recorder (plus process-wide internal-error counts) at scrape time."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def describe(self) -> list[Metric]:
        return []  # no up-front names: never clash with metrics another library registered

    def collect(self) -> Iterator[Metric]:
        sync_internal_errors(self.recorder)
        for family in self.recorder.families():
            try:
                metric = family_to_metric(family)
            except Exception as exc:  # one broken family must not fail the scrape
                report_internal_error("prometheus_backend", exc)
                continue
            if metric is not None:
                yield metric


def sync_internal_errors(recorder: Recorder) -> None:
    """Copy safety.py's counts into the recorder (safety must not depend on backends)."""
    for component, count in internal_error_counts().items():
        series = recorder.counter(catalog.INTERNAL_ERRORS, component)
        delta = count - series.value()
        if delta > 0:
            series.inc(delta)


# --- multiprocess ---------------------------------------------------------------------

_value_class: Any = None


def _multiprocess_value_class() -> Any:
    """prometheus-client's mmap value class; the same one its own metrics use, if any."""
    global _value_class
    if _value_class is None:
        from prometheus_client import values

        if getattr(values.ValueClass, "_multiprocess", False):
            _value_class = values.ValueClass
        else:  # the env var was set after prometheus_client was imported
            _value_class = values.MultiProcessValue()
    return _value_class


class MultiprocessFlusher:
    """Writes a recorder's totals into ``PROMETHEUS_MULTIPROC_DIR`` periodically.

    ``collectors`` are in-process collectors (device memory, live arrays) whose
    gauge samples are copied too, so the sidecar sees them through the shared
    directory like everything else.
    """

    def __init__(self, recorder: Recorder, interval: float = 1.0,
                 collectors: tuple[Collector, ...] = ()) -> None:
        self.recorder = recorder
        self.interval = interval
        self.collectors = collectors
        self._values: dict[tuple[str, tuple[str, ...], str], Any] = {}
        #: family name → (generation, entries): see :meth:`_entries`.
        self._index: dict[str, tuple[int, list[list[Any]]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxobs-multiproc-flush", daemon=True)

    def start(self) -> MultiprocessFlusher:
        self._thread.start()
        atexit.register(self.close)
        return self

    def close(self) -> None:
        self._stop.set()
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def _value(self, spec: catalog.MetricSpec, sample: str, labelnames: tuple[str, ...],
               labelvalues: tuple[str, ...]) -> Any:
        key = (sample, labelvalues, spec.name)
        value = self._values.get(key)
        if value is None:
            cls = _multiprocess_value_class()
            typ = spec.type
            mode = spec.multiprocess_mode if typ == "gauge" else ""
            value = cls(typ, spec.base_name, sample, labelnames, labelvalues, spec.help,
                        multiprocess_mode=mode)
            self._values[key] = value
        return value

    def flush(self) -> None:
        """Write what changed since the last flush (idempotent; safe from any thread).

        Cost is proportional to the series that changed, plus one cheap version
        read per series: an idle function costs a few attribute reads, not a
        snapshot and a dozen mmap writes.
        """
        try:
            with self._lock:
                sync_internal_errors(self.recorder)
                for family in self.recorder.families():
                    self._flush_family(family)
                for collector in self.collectors:
                    self._flush_collector(collector)
        except Exception as exc:
            report_internal_error("multiprocess_flush", exc)

    def _flush_collector(self, collector: Collector) -> None:
        for metric in collector.collect():
            spec = catalog.METRICS.get(metric.name)
            if spec is None or spec.type != "gauge":
                continue
            for sample in metric.samples:
                values = tuple(sample.labels.get(label, "") for label in spec.labels)
                value = self._value(spec, spec.name, spec.labels, values)
                if spec.multiprocess_mode in ("mostrecent", "livemostrecent"):
                    value.set(sample.value, timestamp=time.time())
                else:
                    value.set(sample.value)

    def _entries(self, family: Family) -> list[list[Any]]:
        """``[label values, series, last written version]`` per series, rebuilt only when
        the family gained or lost series (its ``generation`` moved)."""
        cached = self._index.get(family.spec.name)
        if cached is not None and cached[0] == family.generation:
            return cached[1]
        generation = family.generation
        old = {id(e[1]): e for e in cached[1]} if cached is not None else {}
        entries = [old.get(id(series)) or [values, series, None] for values, series in family.all_items()]
        live = {id(e[1]) for e in entries}
        for gone in (e for key, e in old.items() if key not in live):
            self._forget(family.spec, gone[0])
        self._index[family.spec.name] = (generation, entries)
        return entries

    def _forget(self, spec: catalog.MetricSpec, labelvalues: tuple[str, ...]) -> None:
        """A retired series: drop its writers (its last totals stay in this process's file)."""
        for key in [k for k in self._values if k[2] == spec.name and k[1][:len(labelvalues)] == labelvalues]:
            del self._values[key]

    def _flush_family(self, family: Family) -> None:
        spec = family.spec
        labelnames = spec.labels
        for entry in self._entries(family):
            values, series = entry[0], entry[1]
            version = series.version()  # read before the values: a racing update re-flushes
            if version == entry[2] or not series.touched():
                continue
            if isinstance(series, CounterSeries):
                self._value(spec, spec.base_name + "_total", labelnames, values).set(series.value())
            elif isinstance(series, GaugeSeries):
                value = self._value(spec, spec.name, labelnames, values)
                if spec.multiprocess_mode in ("mostrecent", "livemostrecent"):
                    value.set(series.value(), timestamp=time.time())
                else:
                    value.set(series.value())
            elif isinstance(series, HistogramSeries):
                counts, total = series.snapshot()
                for le, c in zip(_le_labels(series.bounds), counts, strict=False):
                    self._value(spec, spec.name + "_bucket", labelnames + ("le",), values + (le,)).set(c)
                self._value(spec, spec.name + "_sum", labelnames, values).set(total)
            entry[2] = version


_flushers: dict[int, MultiprocessFlusher] = {}


def attach(recorder: Recorder, registry: CollectorRegistry) -> None:
    """Expose ``recorder`` (and the in-process device-memory collector) through ``registry``;
    in multiprocess mode also flush both to disk."""
    from prometheus_client import REGISTRY

    from jaxobs.runtime.jax_memory import JaxMemoryCollector

    memory = JaxMemoryCollector()
    registry.register(JaxobsCollector(recorder))
    registry.register(memory)
    if os.environ.get(MULTIPROC_ENV) and registry is REGISTRY and id(recorder) not in _flushers:
        _hold_liveness_lock(os.environ[MULTIPROC_ENV])
        interval = float(os.environ.get("JAXOBS_FLUSH_INTERVAL", "1.0"))
        _flushers[id(recorder)] = MultiprocessFlusher(recorder, interval, (memory,)).start()


def _hold_liveness_lock(directory: str) -> None:
    """Tell the sidecar this process is alive for as long as it runs (before any file is
    written), so it archives our files only after we exit."""
    from jaxobs.telemetry import liveness

    try:
        if not liveness.hold(directory):
            report_internal_error("liveness", TimeoutError(f"could not lock {directory}"))
    except OSError as exc:
        report_internal_error("liveness", exc)


def flush_multiprocess() -> None:
    """Flush every multiprocess writer now (e.g. before a short-lived process exits)."""
    for flusher in list(_flushers.values()):
        flusher.flush()


class PortInUseError(OSError):
    """The metrics port is taken; the message names the port and the fix."""


def start_http_server(port: int = 9464, addr: str = "0.0.0.0", registry: Any = None) -> Any:
    """Serve ``/metrics`` from this process (coexists with other servers on other ports).

    In multiprocess mode the served registry aggregates every process writing
    to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's documented pattern).
    Returns prometheus-client's ``(server, thread)``.
    """
    import prometheus_client

    from jaxobs.telemetry import recorder_for

    recorder_for(registry)  # make sure jaxobs series are registered
    if registry is None:
        registry = prometheus_client.REGISTRY
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            flush_multiprocess()
    try:
        return prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                exc.errno,
                f"port {port} on {addr} is already in use: pass another port "
                f"(e.g. jaxobs.start_http_server({port + 1})) or stop the process holding it") from None
        raise
