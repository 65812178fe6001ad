"""What every jaxobs collector shares: catalog-driven families, the up gauge, failure isolation.

A collector is a prometheus-client *custom collector* (an object with
``collect()`` yielding metric families).  The rule this module enforces is the
one dcgm-exporter users complain about most when it is broken:
one failing device or library never fails the scrape.  So:

* :class:`Collector.collect` never raises.  Whatever goes wrong inside a
  subclass's ``_collect`` becomes ``jaxobs_collector_up{collector, device=""} 0``
  plus one ``report_internal_error``.
* Subclasses report per-device health with :meth:`Samples.up`; a device that is
  known but not answering keeps its ``up`` series at 0 instead of vanishing.
* :class:`FailureLatch` counts an internal error when something *starts*
  failing, not on every scrape while it stays broken, so a missing library or
  a lost GPU is one incident in ``jaxobs_internal_errors_total``, not a counter
  that grows with the scrape rate.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import report_internal_error

#: The ``device`` label value of a collector-wide ``up`` series (library, endpoint).
WHOLE_COLLECTOR = ""


def family(spec: catalog.MetricSpec) -> Metric:
    """An empty metric family for a catalog entry (name, help, labels from the catalog)."""
    if spec.type == "gauge":
        return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    if spec.type == "counter":
        return CounterMetricFamily(spec.base_name, spec.help, labels=list(spec.labels))
    raise ValueError(f"collectors only emit gauges and counters, not {spec.type} ({spec.name})")


class Samples:
    """The samples of one scrape, grouped by catalog entry.

    Families are created on first use, so a metric nobody added (say, ECC on a
    consumer GPU) is absent from the exposition rather than exported as 0.
    """

    def __init__(self, collector: str) -> None:
        self.collector = collector
        self._families: dict[str, Metric] = {}

    def add(self, spec: catalog.MetricSpec, labels: Sequence[str], value: float) -> None:
        fam = self._families.get(spec.name)
        if fam is None:
            fam = self._families[spec.name] = family(spec)
        fam.add_metric(list(labels), float(value))  # type: ignore[attr-defined]

    def up(self, device: str, ok: bool, *, collector: str | None = None) -> None:
        """Record whether ``device`` (or the whole collector, ``""``) answered this scrape."""
        self.add(catalog.COLLECTOR_UP, (collector or self.collector, device), 1.0 if ok else 0.0)

    def families(self) -> list[Metric]:
        return list(self._families.values())


class FailureLatch:
    """Report an internal error when a key starts failing; stay quiet while it keeps failing."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._failing: set[str] = set()

    def fail(self, key: str, exc: BaseException | None = None) -> None:
        if key not in self._failing:
            self._failing.add(key)
            report_internal_error(self.component, exc)

    def ok(self, key: str) -> None:
        self._failing.discard(key)



class Collector(abc.ABC):
    """Base class: subclasses implement ``_collect`` and may override ``close``."""

    #: The ``collector`` label value, e.g. ``"nvml"``.
    name: str = "collector"

    def __init__(self) -> None:
        self.latch = FailureLatch(f"collector.{self.name}")

    @abc.abstractmethod
    def _collect(self, out: Samples) -> None:
        """Add this scrape's samples (including ``up`` series) to ``out``."""

    def collect(self) -> Iterator[Metric]:
        out = Samples(self.name)
        try:
            self._collect(out)
        except Exception as exc:  # isolation: a collector bug is an up=0, not a failed scrape
            self.latch.fail("collect", exc)
            out = Samples(self.name)
            out.up(WHOLE_COLLECTOR, False)
        else:
            self.latch.ok("collect")
        yield from out.families()

    def describe(self) -> list[Metric]:
        # Registering with a CollectorRegistry must not trigger a collection
        # (which could block on a device); an empty describe() does that.
        return []

    def close(self) -> None:  # noqa: B027 - optional hook: most collectors hold nothing to release
        """Release background threads and library handles (no-op by default)."""
