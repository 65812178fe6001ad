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
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import internal_error_counts, report_internal_error
from jaxobs.telemetry.multiproc_files import (
    SpaceReserver,
    WriterDisabled,
    check_directory,
    entry_bytes,
    reason_of,
    write_marker,
)
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
        exemplars = dict(series.exemplars) if series.exemplars else {}
        cumulative = 0.0
        buckets: list[Any] = []  # (le, cumulative count[, exemplar])
        for i, (le, c) in enumerate(zip(_le_labels(series.bounds), counts, strict=False)):
            cumulative += c
            exemplar = exemplars.get(i)
            if exemplar is None:
                buckets.append((le, cumulative))
            else:  # shown in the OpenMetrics format, which Prometheus asks for with exemplars on
                trace_id, value, timestamp = exemplar
                buckets.append((le, cumulative, Exemplar({"trace_id": trace_id}, value, timestamp)))
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

    Space for every new series is reserved before prometheus-client's mmap
    touches it (:mod:`jaxobs.telemetry.multiproc_files`).  The first failure —
    full disk, unwritable or missing directory — disables the writer for good:
    it is counted as ``jaxobs_internal_errors_total{component="multiprocess_write"}``,
    a marker file tells the sidecar, and :func:`start_http_server` serves this
    process's metrics in-process instead.
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
        self._reserver = SpaceReserver()
        self.directory = os.environ.get(MULTIPROC_ENV, "")
        #: Why writing stopped (one of multiproc_files.REASONS), or None while it works.
        self.disabled: str | None = None
        try:
            check_directory(self.directory)
        except WriterDisabled as exc:
            self._disable(exc)

    def start(self) -> MultiprocessFlusher:
        if self.disabled is None:
            self._thread.start()
            atexit.register(self.close)
        return self

    def _disable(self, exc: BaseException) -> None:
        self.disabled = reason_of(exc)
        report_internal_error("multiprocess_write", exc)
        write_marker(self.directory, os.getpid(), self.disabled, str(exc))
        self._reserver.close()

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
            from prometheus_client.mmap_dict import mmap_key

            prefix = f"{typ}_{mode}" if typ == "gauge" else typ
            try:
                self._reserver.reserve(os.path.join(self.directory, f"{prefix}_{os.getpid()}.db"),
                                       entry_bytes(mmap_key(spec.base_name, sample, list(labelnames),
                                                            list(labelvalues), spec.help)))
                value = cls(typ, spec.base_name, sample, labelnames, labelvalues, spec.help,
                            multiprocess_mode=mode)
            except OSError as exc:
                raise WriterDisabled(reason_of(exc), f"{self.directory}: {exc}") from exc
            self._values[key] = value
        return value

    def flush(self) -> None:
        """Write what changed since the last flush (idempotent; safe from any thread; a
        no-op once disabled).

        Cost is proportional to the series that changed, plus one cheap version
        read per series: an idle function costs a few attribute reads, not a
        snapshot and a dozen mmap writes.
        """
        if self.disabled is not None:
            return
        try:
            with self._lock:
                if self.disabled is not None:
                    return
                if self.directory:  # a forked worker is a new writer: it needs its own lock
                    _hold_liveness_lock(self.directory)
                sync_internal_errors(self.recorder)
                for family in self.recorder.families():
                    self._flush_family(family)
                for collector in self.collectors:
                    self._flush_collector(collector)
        except WriterDisabled as exc:  # full disk, directory gone or read-only: stop writing files
            self._disable(exc)
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


def multiprocess_disabled() -> str | None:
    """Why this process stopped writing multiprocess files (``no_space``…), or None."""
    for flusher in list(_flushers.values()):
        if flusher.disabled is not None:
            return flusher.disabled
    return None


class _MultiprocessOrLocal(Collector):
    """Every process's metrics from the shared directory while this process writes there;
    this process's own registry once its writer is disabled (the files no longer hold it).

    The directory is read with the sidecar's reader: one bad or blocking file is
    skipped and counted, never a hang or a failed scrape inside the user's program.
    """

    def __init__(self, local: Any) -> None:
        self.local = local
        self._source: Any = None

    def collect(self) -> Iterator[Metric]:
        if multiprocess_disabled() is None:
            try:
                if self._source is None:
                    from jaxobs.exporter.sources import MultiprocessSource

                    self._source = MultiprocessSource(os.environ.get(MULTIPROC_ENV, ""), check_pids=False)
                yield from self._source.collect()
                return
            except Exception as exc:  # the directory vanished, or a bug: serve this process instead
                report_internal_error("multiprocess_read", exc)
        yield from self.local.collect()


class MetricsServerError(OSError):
    """``start_http_server`` could not serve: the message names the address, port and fix.

    The only exception :func:`start_http_server` raises; a full or missing
    multiprocess directory is not one of its causes (the server then serves
    this process's metrics in-process).
    """


class PortInUseError(MetricsServerError):
    """The metrics port is taken; the message names the port and the fix."""


def start_http_server(port: int = 9464, addr: str = "0.0.0.0", registry: Any = None, *,
                      max_connections: int = 16, request_timeout: float = 5.0,
                      scrape_timeout: float = 10.0, profiling: bool | Any = False) -> Any:
    """Serve ``/metrics`` (and ``/healthz``, ``/readyz``) from this process.

    The server is the sidecar's hardened one (:mod:`jaxobs.exporter.http`): a
    capped number of connection threads, a deadline per connection, header
    bytes capped while they are read, and probes answered outside the cap — so
    slow or hostile clients on the metrics port cannot pile up threads inside
    the user's program.

    In multiprocess mode the served registry aggregates every process writing
    to ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's documented pattern);
    if this process cannot write there (full disk, missing or read-only
    directory) it serves its own metrics instead.  Returns ``(server, thread)``
    like prometheus-client.  Raises only :class:`MetricsServerError`
    (:class:`PortInUseError` when the port is taken).

    ``profiling=True`` (or a :class:`jaxobs.runtime.profiling.Profiler`) adds
    ``POST /debug/jaxobs/profile?seconds=N``: a bounded, single-flight
    ``jax.profiler`` capture of this process (docs/debugging.md).
    """
    import prometheus_client

    from jaxobs.telemetry import recorder_for

    try:
        recorder = recorder_for(registry)  # make sure jaxobs series are registered
        profile = _profile_endpoint(profiling, registry)
        if registry is None:
            registry = prometheus_client.REGISTRY
            if os.environ.get(MULTIPROC_ENV):
                local = registry
                registry = CollectorRegistry()
                registry.register(_MultiprocessOrLocal(local))
                flush_multiprocess()
        server = _hardened_server(port, addr, registry, recorder, max_connections=max_connections,
                                  request_timeout=request_timeout, scrape_timeout=scrape_timeout,
                                  profile=profile)
    except MetricsServerError:
        raise
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                exc.errno,
                f"port {port} on {addr} is already in use: pass another port "
                f"(e.g. jaxobs.start_http_server({port + 1})) or stop the process holding it") from None
        raise MetricsServerError(exc.errno, f"cannot serve metrics on {addr}:{port}: "
                                 f"{exc.strerror or exc}; pass another addr or port") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise MetricsServerError(errno.EINVAL, f"cannot serve metrics on {addr!r}:{port!r}: {exc}; "
                                 f"pass a port in 0..65535 and an IP address") from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="jaxobs-metrics-http", daemon=True)
    thread.start()
    return server, thread


def _profile_endpoint(profiling: bool | Any, registry: Any) -> Any:
    """The profile endpoint's handler, or None when profiling is off."""
    if profiling is False or profiling is None:
        return None
    from jaxobs.runtime.profiling import Profiler, handle_profile_request

    profiler = profiling if isinstance(profiling, Profiler) else Profiler(registry=registry)
    return lambda method, query: handle_profile_request(profiler, method, query)


def _hardened_server(port: int, addr: str, registry: Any, recorder: Recorder, *,
                     max_connections: int, request_timeout: float, scrape_timeout: float,
                     profile: Any = None) -> Any:
    from jaxobs.exporter.http import Endpoints, ExporterServer, HttpConfig
    from jaxobs.exporter.sources import Readiness

    def readiness() -> Readiness:
        ready = recorder.value(catalog.READY)
        return Readiness(ready == 1, "ready" if ready == 1 else "warmup has not finished")

    config = HttpConfig(address=addr, port=int(port), max_connections=max_connections,
                        request_timeout=request_timeout, scrape_timeout=scrape_timeout)
    return ExporterServer(config, Endpoints(metrics=lambda _timeout: registry, readiness=readiness,
                                            profile=profile))
