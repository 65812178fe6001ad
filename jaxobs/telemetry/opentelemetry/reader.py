"""The reader: pushes the producers' data to an exporter on an interval, and exits on time.

:class:`JaxobsMetricReader` is the specification's "reader with a registered
producer" for SDKs without one.  It joins a ``MeterProvider`` (so provider
shutdown and ``force_flush`` reach it) and exports only jaxobs' producers: it
declares ``DropAggregation`` for the provider's own instruments, so it adds
nothing to their cost.

Exit is bounded.  The OTLP exporter retries an unreachable collector with
backoff for up to its timeout (10 s by default) and ignores the timeout it is
given, so a process whose collector is down used to take ~20 s to exit.  The
last export at shutdown runs in a helper thread; after ``shutdown_timeout_millis``
(default 3 s) the exporter is shut down, which aborts its retries and closes
the channel, and the lost batch is counted
(``jaxobs_internal_errors_total{component="otel_shutdown"}``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from time import monotonic
from typing import Any

from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)

from jaxobs.telemetry.internal_errors import report_internal_error

#: Longest a shutdown (process exit, SIGTERM) waits for the last batch.
SHUTDOWN_TIMEOUT_MILLIS = 3_000.0


def _drop_everything() -> dict[type, Any]:
    """This reader never collects the provider's instruments: declare Drop for all of them."""
    from opentelemetry.sdk import metrics as sdk_metrics
    from opentelemetry.sdk.metrics.view import DropAggregation

    names = ("Counter", "UpDownCounter", "Histogram", "_Gauge", "ObservableCounter",
             "ObservableUpDownCounter", "ObservableGauge")
    return {getattr(sdk_metrics, n): DropAggregation() for n in names if hasattr(sdk_metrics, n)}


def _merge(batches: Iterable[MetricsData]) -> MetricsData:
    return MetricsData(resource_metrics=[rm for batch in batches for rm in batch.resource_metrics])


def env_millis(name: str, default: float, explicit: float | None) -> float:
    if explicit is not None:
        return float(explicit)
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


class JaxobsMetricReader(MetricReader):
    """Pushes its producers' metrics to an exporter every ``export_interval_millis``.

    Intervals default to ``OTEL_METRIC_EXPORT_INTERVAL``/``OTEL_METRIC_EXPORT_TIMEOUT``
    (60 s / 30 s), like the SDK's periodic reader; ``shutdown_timeout_millis``
    bounds the last export (see the module docstring).
    """

    def __init__(self, exporter: MetricExporter, producers: Sequence[Any], *,
                 export_interval_millis: float | None = None, export_timeout_millis: float | None = None,
                 shutdown_timeout_millis: float = SHUTDOWN_TIMEOUT_MILLIS) -> None:
        super().__init__(preferred_aggregation=_drop_everything())
        self.exporter = exporter
        self.producers = list(producers)
        self.interval_millis = env_millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000, export_interval_millis)
        self.timeout_millis = env_millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000, export_timeout_millis)
        self.shutdown_timeout_millis = float(shutdown_timeout_millis)
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
        if not self._export_lock.acquire(timeout=max(timeout, 0.0) / 1e3):
            report_internal_error("otel_export")  # an earlier export is still retrying
            return False
        try:
            data = _merge(p.produce(timeout_millis=timeout) for p in self.producers)
            if not data.resource_metrics:
                return True
            result = self.exporter.export(data, timeout_millis=timeout)
            if result is not MetricExportResult.SUCCESS:
                report_internal_error("otel_export")
                return False
            for producer in self.producers:
                commit = getattr(producer, "commit", None)
                if commit is not None:
                    commit()
            return True
        except Exception as exc:
            report_internal_error("otel_export", exc)
            return False
        finally:
            self._export_lock.release()

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

    def bounded_export(self, timeout_millis: float) -> bool:
        """Export now, waiting at most ``timeout_millis``; False if it failed or did not finish."""
        done = threading.Event()
        result = [False]

        def last() -> None:
            result[0] = self.export(timeout_millis)
            done.set()

        threading.Thread(target=last, name="jaxobs-otel-last-export", daemon=True).start()
        if not done.wait(timeout_millis / 1e3):
            report_internal_error("otel_shutdown")
            return False
        return result[0]

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        bound = min(float(timeout_millis), self.shutdown_timeout_millis)
        deadline = monotonic() + bound / 1e3
        self._stop.set()
        self.bounded_export(bound)  # the last batch (e.g. at interpreter exit)
        try:  # also aborts an export still retrying against an unreachable collector
            self.exporter.shutdown(timeout_millis=max(0.0, deadline - monotonic()) * 1e3)
        except Exception as exc:
            report_internal_error("otel_export", exc)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(0.0, deadline - monotonic()))
        from jaxobs.telemetry.opentelemetry.setup import forget

        forget(self)
