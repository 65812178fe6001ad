"""OpenTelemetry backend: the jaxobs catalog through an OTel ``MeterProvider``, read at export time.

Usage::

    from jaxobs.telemetry import opentelemetry as jaxobs_otel
    jaxobs_otel.install()                        # OTLP (OTEL_EXPORTER_OTLP_* env), every 60 s
    jaxobs_otel.install(meter_provider=provider, exporter=ConsoleMetricExporter(),
                        export_interval_millis=10_000, sigterm=True)

or, with no code change, ``JAXOBS_BACKEND=otel`` (exports the default recorder;
``JAXOBS_OTEL_FLUSH_ON_SIGTERM=1`` also flushes on SIGTERM).

Why this shape
--------------
* **Nothing on the hot path.**  An OTel ``histogram.record`` costs 10–16 µs,
  more than a tiny jitted call; jaxobs already aggregates every call into its
  :class:`~jaxobs.telemetry.recorder.Recorder`.  This backend only *reads*
  that recorder when it exports — as the Prometheus backend does at scrape
  time — so the per-call cost is the same whichever backend is configured.
* **A producer, not instruments** (:mod:`.producer`): one consistent
  snapshot per export; observable instruments would reach every reader of the
  provider (a ``PrometheusMetricReader`` on the same registry would serve
  every jaxobs series twice).
* **A reader that exits on time** (:mod:`.reader`), **names that keep the
  alerts working** (:mod:`.naming`), **settings from the exporter**
  (:mod:`.setup`: temporality, histogram aggregation, SIGTERM).
* ``MeterProvider.force_flush()`` collects *every* reader, and the OTel
  ``PrometheusMetricReader`` then serves duplicate families at the next
  scrape; :func:`flush` flushes the jaxobs readers only.

Failures are counted in ``jaxobs_internal_errors_total`` and never raised into
the application.  docs/opentelemetry.md is the user guide.
"""

from __future__ import annotations

from jaxobs.telemetry.opentelemetry.naming import SEMCONV, Attributes, Stream, catalog_stream, stream_for
from jaxobs.telemetry.opentelemetry.producer import SCOPE, JaxobsMetricProducer, process_start_ns
from jaxobs.telemetry.opentelemetry.reader import SHUTDOWN_TIMEOUT_MILLIS, JaxobsMetricReader
from jaxobs.telemetry.opentelemetry.setup import (
    BACKEND_ENV,
    SEMCONV_ENV,
    SIGTERM_ENV,
    check_histogram_aggregation,
    default_collectors,
    flush,
    flush_on_sigterm,
    install,
    install_from_env,
    otlp_exporter,
    requested_by_env,
    uninstall,
    wants_delta,
)

__all__ = [
    "BACKEND_ENV", "SCOPE", "SEMCONV", "SEMCONV_ENV", "SHUTDOWN_TIMEOUT_MILLIS", "SIGTERM_ENV",
    "Attributes", "JaxobsMetricProducer", "JaxobsMetricReader", "Stream", "catalog_stream",
    "check_histogram_aggregation", "default_collectors", "flush", "flush_on_sigterm", "install",
    "install_from_env", "otlp_exporter", "process_start_ns", "requested_by_env", "stream_for",
    "uninstall", "wants_delta",
]
