"""Hot-path cost of the OpenTelemetry backend against the Prometheus backend, as ratios.

Four variants of the same tiny jitted kernel run in one process, interleaved
in rounds (raw, prometheus, otel, naive, raw, …) so CPU-frequency drift and
background load hit all alike; the statistic is the median over rounds of
the per-call time:

* ``raw``        – ``jax.jit``, no telemetry;
* ``prometheus`` – ``jaxobs.jit`` with the Prometheus backend, scraped
  (``generate_latest``) by a background thread every ``--interval`` seconds;
* ``otel``       – ``jaxobs.jit`` with the OpenTelemetry backend installed,
  exporting every ``--interval`` seconds through a real OTLP encoding
  (protobuf serialisation, no network);
* ``naive``      – ``jaxobs.jit`` plus what a straightforward OTel integration
  would do: ``histogram.record(duration)`` on an SDK histogram per call.

The claim under test: ``otel / prometheus ≈ 1.00`` — both backends read the
same in-process recorder at collection time, so the per-call path is the
same; ``naive`` shows the 10+ µs per call that design avoids.  The default
interval (0.1 s) is far more frequent than production (10–60 s) so that any
collection-time interference would show.

    python benchmarks/otel_overhead.py [--rounds 30] [--calls 2000] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from overhead import time_calls  # the same timing loop as the jit benchmark
from prometheus_client import CollectorRegistry, generate_latest

import jaxobs
from jaxobs import catalog
from jaxobs.telemetry import opentelemetry as jotel


class OtlpEncodingExporter(MetricExporter):
    """Does the CPU work of an OTLP export (encode + serialise), without the network."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = 0
        self.bytes = 0
        self.seconds = 0.0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        t0 = time.perf_counter()
        self.bytes += len(encode_metrics(metrics_data).SerializeToString())
        self.seconds += time.perf_counter() - t0
        self.exports += 1
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class Scraper:
    """Scrapes a prometheus-client registry every ``interval`` seconds, like Prometheus would."""

    def __init__(self, registry: CollectorRegistry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self.scrapes = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t0 = time.perf_counter()
            generate_latest(self.registry)
            self.seconds += time.perf_counter() - t0
            self.scrapes += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def tiny(x: Any) -> Any:
    return x + 1.0


def naive_otel(fn: Callable[[Any], Any], provider: MeterProvider) -> Callable[[Any], Any]:
    """``fn`` plus one OTel ``histogram.record`` per call (the design jaxobs avoids)."""
    hist = provider.get_meter("naive").create_histogram(catalog.CALL_DURATION.base_name, unit="s")
    attrs = {"function": "naive", "start": "steady"}
    clock = time.perf_counter

    def call(x: Any) -> Any:
        t0 = clock()
        out = fn(x)
        hist.record(clock() - t0, attrs)
        return out

    return call




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between scrapes/exports")
    args = parser.parse_args()

    x = jnp.ones((8,), jnp.float32)
    prom_registry, otel_registry, naive_registry = CollectorRegistry(), CollectorRegistry(), CollectorRegistry()
    exporter = OtlpEncodingExporter()
    reader = jotel.install(exporter=exporter, registry=otel_registry,
                           export_interval_millis=args.interval * 1000)
    naive_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], views=[View(
        instrument_name=catalog.CALL_DURATION.base_name,
        aggregation=ExplicitBucketHistogramAggregation(boundaries=catalog.LATENCY_BUCKETS))])
    variants: dict[str, Callable[[Any], Any]] = {
        "raw": jax.jit(tiny),
        "prometheus": jaxobs.jit(tiny, name="prometheus", registry=prom_registry),
        "otel": jaxobs.jit(tiny, name="otel", registry=otel_registry),
        "naive": naive_otel(jaxobs.jit(tiny, name="naive", registry=naive_registry), naive_provider),
    }
    scraper = Scraper(prom_registry, args.interval)
    for fn in variants.values():  # compile and warm every variant
        for _ in range(200):
            jax.block_until_ready(fn(x))

    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            times[name].append(time_calls(fn, x, args.calls))
    scraper.stop()
    jotel.uninstall(reader)
    naive_provider.shutdown()

    med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    print(f"jax {jax.__version__} on {jax.default_backend()}, sample_rate={jaxobs.configure().sample_rate}, "
          f"{args.rounds} rounds x {args.calls} calls, scrape/export every {args.interval} s")
    print(f"{'variant':<11} {'µs/call':>8} {'vs raw':>8} {'vs prometheus':>14}")
    for name in variants:
        print(f"{name:<11} {med[name]:>8.2f} {med[name] / med['raw']:>8.3f} "
              f"{med[name] / med['prometheus']:>14.3f}")
    print()
    print(f"otel / prometheus hot-path ratio: {med['otel'] / med['prometheus']:.3f}   "
          f"(naive per-call record: {med['naive'] / med['prometheus']:.3f}, "
          f"+{med['naive'] - med['prometheus']:.2f} µs/call)")
    if exporter.exports and scraper.scrapes:
        print(f"collection cost off the hot path: OTLP encode {exporter.seconds / exporter.exports * 1e3:.2f} ms "
              f"per export ({exporter.bytes // exporter.exports} bytes), Prometheus text "
              f"{scraper.seconds / scraper.scrapes * 1e3:.2f} ms per scrape")


if __name__ == "__main__":
    main()
