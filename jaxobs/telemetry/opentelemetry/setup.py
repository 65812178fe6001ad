"""Configuration: ``install``/``uninstall``/``flush``, the environment path and the SIGTERM flush.

Settings read from the exporter (so ``OTEL_*`` variables work as they do for
the SDK): the temporality preference (``delta``/``lowmemory`` → delta Sums and
Histograms) and the default histogram aggregation.  jaxobs histograms have the
catalog's fixed buckets, which cannot be turned into exponential buckets
without inventing counts: when the exporter asks for
``base2_exponential_bucket_histogram`` they stay explicit-bucket, a warning is
logged once and ``jaxobs_internal_errors_total{component="otel_histogram_aggregation"}``
counts it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref
from collections.abc import Sequence
from types import FrameType
from typing import Any

from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricExporter
from opentelemetry.sdk.resources import Resource

from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.opentelemetry.producer import JaxobsMetricProducer
from jaxobs.telemetry.opentelemetry.reader import SHUTDOWN_TIMEOUT_MILLIS, JaxobsMetricReader
from jaxobs.telemetry.recorder import Recorder

logger = logging.getLogger("jaxobs")

#: ``JAXOBS_BACKEND=otel`` (or ``prometheus,otel``) exports the default recorder over OTLP.
BACKEND_ENV = "JAXOBS_BACKEND"
#: ``1``: rename metrics with an OpenTelemetry semantic convention (hw.*, process.*, system.*).
SEMCONV_ENV = "JAXOBS_OTEL_SEMCONV"
#: ``1``: flush on SIGTERM (the environment path's switch for :func:`flush_on_sigterm`).
SIGTERM_ENV = "JAXOBS_OTEL_FLUSH_ON_SIGTERM"

_readers: weakref.WeakSet[JaxobsMetricReader] = weakref.WeakSet()
_env_lock = threading.Lock()
_env_installed: set[int] = set()


def forget(reader: JaxobsMetricReader) -> None:
    _readers.discard(reader)


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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


def wants_delta(exporter: MetricExporter) -> bool:
    """Whether ``exporter`` prefers DELTA for counters (its temporality preference)."""
    from opentelemetry.sdk.metrics import Counter

    preferred = getattr(exporter, "_preferred_temporality", None) or {}
    return preferred.get(Counter) is AggregationTemporality.DELTA


def check_histogram_aggregation(exporter: MetricExporter) -> bool:
    """Warn (once per exporter) and count when exponential histograms were asked for."""
    from opentelemetry.sdk.metrics import Histogram
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

    preferred = getattr(exporter, "_preferred_aggregation", None) or {}
    if not isinstance(preferred.get(Histogram), ExponentialBucketHistogramAggregation):
        return True
    report_internal_error("otel_histogram_aggregation")
    logger.warning("jaxobs: the exporter asks for exponential histograms "
                   "(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION); jaxobs histograms keep "
                   "their fixed catalog buckets and are exported as explicit-bucket histograms")
    return False


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


def default_collectors() -> list[Any]:
    """The collectors ``/metrics`` has in-process: JAX device memory, live arrays, collector_up."""
    from jaxobs.runtime.jax_memory import JaxMemoryCollector

    return [JaxMemoryCollector()]


def install(meter_provider: Any = None, *, exporter: MetricExporter | None = None, registry: Any = None,
            recorder: Recorder | None = None, collectors: Sequence[Any] | None = None,
            resource: Resource | None = None, semconv: bool | None = None,
            export_interval_millis: float | None = None, export_timeout_millis: float | None = None,
            shutdown_timeout_millis: float = SHUTDOWN_TIMEOUT_MILLIS,
            sigterm: bool = False) -> JaxobsMetricReader:
    """Export jaxobs metrics through OpenTelemetry; returns the reader.

    ``meter_provider``: an SDK ``MeterProvider`` to register the jaxobs reader
    on.  By default jaxobs uses a dedicated provider (nothing is added to the
    app's providers, so their instruments pay nothing) with the resource of
    the app's global SDK provider when there is one.
    ``exporter``: any ``MetricExporter`` (default: OTLP from the environment);
    its temporality preference is honoured.
    ``registry``/``recorder``: which recorder to export (default: the global one).
    ``collectors``: read at each export (default: the ones ``/metrics`` has —
    JAX device memory, live arrays, ``jaxobs_collector_up``).
    ``semconv``: semantic-convention names for hw/process/system metrics
    (default ``JAXOBS_OTEL_SEMCONV``, else off: catalog names, which the shipped
    rules and dashboards query).
    ``shutdown_timeout_millis``: the longest exit waits for the last batch.
    ``sigterm``: also flush on SIGTERM (:func:`flush_on_sigterm`).
    """
    if recorder is None:
        from jaxobs.telemetry import recorder_for

        recorder = recorder_for(registry)
    if resource is None:
        source = meter_provider if meter_provider is not None else _global_sdk_provider()
        resource = (_provider_resource(source) if source is not None else None) or Resource.create()
    if exporter is None:
        exporter = otlp_exporter()
    check_histogram_aggregation(exporter)
    producer = JaxobsMetricProducer(
        recorder, collectors=default_collectors() if collectors is None else collectors,
        resource=resource, semconv=_truthy(SEMCONV_ENV) if semconv is None else semconv,
        delta=wants_delta(exporter))
    reader = JaxobsMetricReader(exporter, [producer], export_interval_millis=export_interval_millis,
                                export_timeout_millis=export_timeout_millis,
                                shutdown_timeout_millis=shutdown_timeout_millis)
    if meter_provider is not None:
        meter_provider.add_metric_reader(reader)
        atexit.register(_shutdown_at_exit, weakref.ref(reader))
    else:  # a dedicated provider: its own exit hook shuts the reader down (last batch)
        from opentelemetry.sdk.metrics import MeterProvider

        meter_provider = MeterProvider(resource=resource, metric_readers=[reader],
                                       shutdown_on_exit=True)
    reader.meter_provider = meter_provider
    _readers.add(reader)
    if sigterm:
        flush_on_sigterm()
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


_sigterm_lock = threading.Lock()
_sigterm_installed = False


def flush_on_sigterm() -> bool:
    """On SIGTERM, export every jaxobs reader's last batch (bounded), then let the signal go on.

    Opt-in, because it replaces the process's SIGTERM handler: the previous
    handler runs afterwards (a Python handler is called; the default action is
    re-raised, so the process still terminates by the signal).  Must be called
    from the main thread; returns False (and counts it) otherwise.
    """
    global _sigterm_installed
    with _sigterm_lock:
        if _sigterm_installed:
            return True
        try:
            previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, lambda signum, frame: _on_sigterm(previous, signum, frame))
        except (ValueError, OSError) as exc:  # not the main thread
            report_internal_error("otel_sigterm", exc)
            return False
        _sigterm_installed = True
        return True


def _on_sigterm(previous: Any, signum: int, frame: FrameType | None) -> None:
    global _sigterm_installed
    try:
        for reader in list(_readers):
            reader.bounded_export(reader.shutdown_timeout_millis)
    except Exception as exc:
        report_internal_error("otel_sigterm", exc)
    if callable(previous):
        previous(signum, frame)
    elif previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _sigterm_installed = False
        os.kill(os.getpid(), signal.SIGTERM)  # re-raise: terminate as the signal asks


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
        reader = install(recorder=recorder)
        if _truthy(SIGTERM_ENV):
            flush_on_sigterm()
        return reader
    except Exception as exc:
        report_internal_error("otel_backend", exc)
        return None
