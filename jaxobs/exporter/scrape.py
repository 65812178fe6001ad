"""One ``/metrics`` scrape of the sidecar: run every source within a deadline and merge.

Why a deadline per scrape and a thread per source: an NVML call can hang
when a GPU is wedged (the driver is stuck, dcgm-exporter issue trackers are
full of it), a gRPC endpoint can be slow, a shared directory can be on a
struggling disk.  Sources run concurrently and the scrape answers when the
deadline passes, with ``jaxobs_collector_up{collector=<source>,device=""} 0``
for whatever did not finish.

Why single-flight: a hung source must not pile up one stuck thread per scrape.
At most one collection per source runs at a time; a scrape that arrives while
one is running waits for *that* result (so two Prometheus replicas scraping
together share one NVML round instead of one of them seeing ``up 0``).

Merging: the app's families come first; a family name the app and a
collector both emit (``jaxobs_internal_errors_total``, ``jaxobs_build_info``)
becomes one family, so the exposition stays valid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from jaxobs import catalog
from jaxobs.telemetry.collector import WHOLE_COLLECTOR, FailureLatch, Samples
from jaxobs.telemetry.internal_errors import internal_error_counts

logger = logging.getLogger("jaxobs.exporter")


class Source(Protocol):
    """Anything with a ``name`` and a ``collect()`` returning metric families."""

    name: str

    def collect(self) -> Iterable[Metric]: ...


class SingleFlight:
    """Run ``fn`` on a worker thread, at most one run at a time; callers share the running one."""

    def __init__(self, name: str, fn: Callable[[], Any]) -> None:
        self.name = name
        self._fn = fn
        self._lock = threading.Lock()
        self._running: Future[Any] | None = None

    def submit(self) -> Future[Any]:
        with self._lock:
            if self._running is not None and not self._running.done():
                return self._running
            fut: Future[Any] = Future()
            self._running = fut
        threading.Thread(target=self._run, args=(fut,), name=f"jaxobs-collect-{self.name}",
                         daemon=True).start()
        return fut

    def _run(self, fut: Future[Any]) -> None:
        start = time.perf_counter()
        try:
            result = list(self._fn())
        except BaseException as exc:  # delivered to the waiting scrapes
            fut.set_exception(exc)
        else:
            fut.set_result((result, time.perf_counter() - start))


class Scraper:
    """Collects every source under one deadline and returns merged families."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = list(sources)
        self._flights = [SingleFlight(s.name, s.collect) for s in self.sources]
        self._latch = FailureLatch("exporter.scrape")

    def collect(self, timeout: float) -> list[Metric]:
        deadline = time.monotonic() + timeout
        started = time.perf_counter()
        pending = [(src, flight.submit()) for src, flight in zip(self.sources, self._flights, strict=True)]
        merged = _Merger()
        health = Samples("exporter")
        for src, fut in pending:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                families, seconds = fut.result(timeout=remaining)
            except FutureTimeout:
                self._latch.fail(f"{src.name} timeout", TimeoutError(f"{src.name} exceeded {timeout:g}s"))
                health.up(WHOLE_COLLECTOR, False, collector=src.name)
                health.add(catalog.EXPORTER_COLLECT_DURATION, (src.name,), time.perf_counter() - started)
                continue
            except Exception as exc:
                self._latch.fail(f"{src.name} error", exc)
                health.up(WHOLE_COLLECTOR, False, collector=src.name)
                continue
            self._latch.ok(f"{src.name} timeout")
            self._latch.ok(f"{src.name} error")
            if src.name == "app":  # collectors report their own up series
                health.up(WHOLE_COLLECTOR, True, collector=src.name)
            health.add(catalog.EXPORTER_COLLECT_DURATION, (src.name,), seconds)
            merged.extend(families)
        merged.extend(health.families())
        merged.extend([_internal_errors()])
        return merged.families()


def _internal_errors() -> Metric:
    """The sidecar's own ``jaxobs_internal_errors_total`` (the app exports its own)."""
    fam = CounterMetricFamily(catalog.INTERNAL_ERRORS.base_name, catalog.INTERNAL_ERRORS.help,
                              labels=list(catalog.INTERNAL_ERRORS.labels))
    for component, count in sorted(internal_error_counts().items()):
        fam.add_metric([component], count)
    return fam


class _Merger:
    """Families by name in first-seen order; later same-name families add their new samples."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}
        self._owned: set[str] = set()
        self._keys: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}

    def extend(self, families: Iterable[Metric]) -> None:
        for fam in families:
            have = self._families.get(fam.name)
            if have is None:
                self._families[fam.name] = fam
                continue
            if have.type != fam.type:
                logger.debug("dropping %s %s: already exported as %s", fam.type, fam.name, have.type)
                continue
            if not fam.samples:
                continue
            if fam.name not in self._owned:
                # Never mutate a family a SingleFlight result may share with another scrape.
                copy = Metric(have.name, have.documentation, have.type, have.unit)
                copy.samples = list(have.samples)
                self._families[fam.name] = have = copy
                self._owned.add(fam.name)
                self._keys[fam.name] = {_key(s) for s in have.samples}
            keys = self._keys[fam.name]
            for s in fam.samples:
                k = _key(s)
                if k not in keys:
                    keys.add(k)
                    have.samples.append(s)

    def families(self) -> list[Metric]:
        return list(self._families.values())


def _key(sample: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    return sample.name, tuple(sorted(sample.labels.items()))
