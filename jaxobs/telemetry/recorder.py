"""In-process accumulators: the cheap, lock-free hot path behind every backend.

Why not call prometheus-client (1–3 µs) or OpenTelemetry (10+ µs) per call?
A tiny jitted kernel dispatches in ~4 µs, so per-call exporter calls would
double its cost.  Instead each series keeps one *cell* per thread: a plain list
that only its own thread writes, so updates need no lock and lose nothing.
Backends read (sum) the cells when they are scraped or flushed, which is rare.

Everything here is backend-agnostic and jax-free.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from jaxobs import catalog
from jaxobs.catalog import MetricSpec, buckets_for
from jaxobs.telemetry.internal_errors import report_internal_error

LabelValues = tuple[str, ...]


class _Series:
    """Base: one label combination of one metric, with per-thread cells."""

    __slots__ = ("_cells", "_tls", "_lock", "__weakref__")

    def __init__(self) -> None:
        self._cells: list[list[float]] = []
        self._tls = threading.local()
        self._lock = threading.Lock()

    def _cell_size(self) -> int:
        return 1

    def cell(self) -> list[float]:
        """This thread's cell (created on first use).  Hot paths cache it."""
        try:
            return self._tls.cell  # type: ignore[no-any-return]
        except AttributeError:
            cell = [0.0] * self._cell_size()
            with self._lock:
                self._cells.append(cell)
            self._tls.cell = cell
            return cell


class CounterSeries(_Series):
    __slots__ = ("_ticks", "_retired", "_version")

    def __init__(self) -> None:
        super().__init__()
        self._ticks: list[itertools.count[int]] = []
        self._retired = 0.0
        self._version = 0  # bumped by inc(); tickers are read directly (see version())

    def inc(self, amount: float = 1.0) -> None:
        try:
            cell = self._tls.cell
        except AttributeError:
            cell = self.cell()
        cell[0] += amount
        self._version += 1

    def ticker(self) -> itertools.count[int]:
        """An ``itertools.count`` that adds one per ``next()``.

        ``next()`` on it is a single atomic C call (~40 ns) that also returns
        the running count, so the hottest path gets counting and its sampling
        decision from one operation, without a thread-local look-up.
        """
        tick = itertools.count()
        with self._lock:
            self._ticks.append(tick)
        return tick

    def retire(self, tick: itertools.count[int]) -> None:
        """Fold a ticker whose owner is gone into the total (wrappers created in a loop
        must not grow this list forever)."""
        with self._lock:
            self._retired += _count_of(tick)
            self._ticks = [t for t in self._ticks if t is not tick]

    def value(self) -> float:
        with self._lock:
            ticks = sum(_count_of(t) for t in self._ticks) + self._retired
        return float(sum(c[0] for c in list(self._cells)) + ticks)

    def touched(self) -> bool:
        """Observed at least once (a series is exposed from its first observation on)."""
        return bool(self._cells) or self.value() != 0

    def version(self) -> tuple[int, float, int]:
        """Changes whenever the value does: the flusher's diff key.  Cheaper than
        :meth:`value` (no lock, no pass over the cells); a lost ``+= 1`` under a race
        still changes it."""
        ticks = self._ticks
        return self._version, self._retired, sum(_count_of(t) for t in ticks) if ticks else 0


def _count_of(tick: itertools.count[int]) -> int:
    return int(repr(tick)[len("count("):-1])


class GaugeSeries(_Series):
    """A gauge: ``set`` for sampled values, ``inc``/``dec`` (per-thread) for levels."""

    __slots__ = ("_value", "_version")

    def __init__(self) -> None:
        super().__init__()
        self._value: float | None = None  # None until the first set(): not exposed yet
        self._version = 0

    def set(self, value: float) -> None:
        self._value = float(value)  # a single reference store: atomic under the GIL
        self._version += 1

    def inc(self, amount: float = 1.0) -> None:
        try:
            cell = self._tls.cell
        except AttributeError:
            cell = self.cell()
        cell[0] += amount
        self._version += 1

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)

    def value(self) -> float:
        return (self._value or 0.0) + float(sum(c[0] for c in list(self._cells)))

    def touched(self) -> bool:
        return self._value is not None or bool(self._cells)

    def version(self) -> int:
        return self._version


class HistogramSeries(_Series):
    """Cell layout: one non-cumulative count per bucket (last is +Inf), then the sum."""

    __slots__ = ("bounds", "exemplars", "_version")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        super().__init__()
        self.bounds = bounds
        #: bucket index -> (trace id, value, unix time) of its latest traced observation;
        #: None until a traced observation arrives (most series never get one)
        self.exemplars: dict[int, tuple[str, float, float]] | None = None
        #: bumped per observation (never on the unsampled fast path: histograms are only
        #: observed by sampled and cold calls).  A lost increment under a race still
        #: changes it, which is all the flusher needs to know.
        self._version = 0

    def _cell_size(self) -> int:
        return len(self.bounds) + 2

    def observe(self, value: float) -> None:
        try:
            cell = self._tls.cell
        except AttributeError:
            cell = self.cell()
        # bisect_left: a value equal to a bound belongs to that bucket (le semantics).
        cell[bisect_left(self.bounds, value)] += 1
        cell[-1] += value
        self._version += 1

    def observe_traced(self, value: float, trace_id: str | None) -> None:
        """Observe, and keep ``trace_id`` as the bucket's exemplar (cold, sampled and request
        paths only: a dict store per call would not belong on the fast path)."""
        self.observe(value)
        if trace_id is not None:
            exemplars = self.exemplars
            if exemplars is None:
                exemplars = self.exemplars = {}
            exemplars[bisect_left(self.bounds, value)] = (trace_id, value, time.time())

    def touched(self) -> bool:
        return bool(self._cells)

    def version(self) -> int:
        return self._version

    def snapshot(self) -> tuple[list[float], float]:
        """(non-cumulative bucket counts incl. +Inf, sum)."""
        n = len(self.bounds) + 1
        counts = [0.0] * n
        total = 0.0
        for c in list(self._cells):
            for i in range(n):
                counts[i] += c[i]
            total += c[-1]
        return counts, total

    def count(self) -> float:
        counts, _ = self.snapshot()
        return sum(counts)


class Family:
    """All series of one catalog metric, keyed by label values."""

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._series: dict[LabelValues, _Series] = {}
        self._lock = threading.Lock()
        #: bumped when a series is added or removed, so readers can cache their index.
        self.generation = 0

    def labels(self, *values: str) -> _Series:
        series = self._series.get(values)
        if series is None:
            if len(values) != len(self.spec.labels):
                raise ValueError(f"{self.spec.name} takes labels {self.spec.labels}, got {values}")
            with self._lock:
                series = self._series.get(values)
                if series is None:
                    series = self._new(values)
                    self._series[values] = series
                    self.generation += 1
        return series

    def _new(self, values: LabelValues) -> _Series:
        kind = self.spec.type
        if kind == "counter":
            return CounterSeries()
        if kind == "gauge":
            return GaugeSeries()
        return HistogramSeries(buckets_for(self.spec, values))

    def items(self) -> list[tuple[LabelValues, _Series]]:
        """Series observed at least once, sorted by label values.  A series that was
        created but never observed (e.g. a function that was wrapped but not yet
        called) is not exposed: it would only cost scrape and storage."""
        return [(k, s) for k, s in self.all_items() if s.touched()]  # type: ignore[attr-defined]

    def all_items(self) -> list[tuple[LabelValues, _Series]]:
        with self._lock:
            return sorted(self._series.items())

    def remove_where(self, position: int, value: str) -> int:
        """Drop every series whose label at ``position`` is ``value``; returns how many."""
        with self._lock:
            doomed = [k for k in self._series if k[position] == value]
            for k in doomed:
                del self._series[k]
            if doomed:
                self.generation += 1
        return len(doomed)


_all_recorders: weakref.WeakSet[Recorder] = weakref.WeakSet()


class CardinalityError(RuntimeError):
    """More distinct ``function`` values than the cap (counted, logged once, never raised)."""


@dataclass
class Limits:
    """Process-wide cardinality limits (``jaxobs.configure(max_functions=...)``)."""

    max_functions: int = catalog.MAX_FUNCTIONS


limits = Limits()


class Recorder:
    """Every series recorded in this process for one exposition target (registry).

    It also admits ``function`` label values: at most ``limits.max_functions``
    distinct ones; later functions share ``catalog.OVERFLOW_FUNCTION``.  A
    function whose wrappers were all garbage-collected keeps its series (a
    wrapper re-created in a loop keeps counting) until its slot is needed by a
    new function or :meth:`retire_function` is called.
    """

    def __init__(self) -> None:
        self._families: dict[str, Family] = {}
        self._lock = threading.Lock()
        #: admitted function label → live wrappers using it (0: retirable).
        self._functions: dict[str, int] = {}
        self._functions_lock = threading.Lock()
        _all_recorders.add(self)

    # --- the function cardinality cap -------------------------------------------
    def admit_function(self, name: str) -> str:
        """The ``function`` label a new wrapper named ``name`` records under."""
        with self._functions_lock:
            users = self._functions.get(name)
            if users is not None:
                self._functions[name] = users + 1
                return name
            if self._named_functions() >= limits.max_functions:
                idle = next((f for f, n in self._functions.items()
                             if n == 0 and f != catalog.OVERFLOW_FUNCTION), None)
                if idle is None:
                    overflow = catalog.OVERFLOW_FUNCTION
                    self._functions[overflow] = self._functions.get(overflow, 0) + 1
                    report_internal_error("cardinality", CardinalityError(
                        f"more than {limits.max_functions} distinct instrumented functions: "
                        f"{name!r} and later ones are recorded as function={overflow!r}. Give "
                        f"functions created in a loop one shared name=, or raise "
                        f"jaxobs.configure(max_functions=...)"))
                    return overflow
                self._retire_locked(idle)  # its wrappers are gone: reuse the slot
            self._functions[name] = 1
            return name

    def release_function(self, label: str) -> None:
        """A wrapper recording under ``label`` was garbage-collected."""
        with self._functions_lock:
            users = self._functions.get(label)
            if users:
                self._functions[label] = users - 1

    def retire_function(self, label: str) -> int:
        """Drop every series of ``label`` now and free its slot; returns series removed."""
        with self._functions_lock:
            return self._retire_locked(label)

    def functions(self) -> dict[str, int]:
        """Admitted function labels and how many live wrappers use each."""
        with self._functions_lock:
            return dict(self._functions)

    def _named_functions(self) -> int:
        return len(self._functions) - (catalog.OVERFLOW_FUNCTION in self._functions)

    def _retire_locked(self, label: str) -> int:
        self._functions.pop(label, None)
        removed = 0
        for family in self.families():
            if "function" in family.spec.labels:
                removed += family.remove_where(family.spec.labels.index("function"), label)
        return removed

    def series_count(self) -> int:
        """Series held in memory (exposed or not): what the cap bounds."""
        return sum(len(f._series) for f in self.families())

    def family(self, spec: MetricSpec) -> Family:
        fam = self._families.get(spec.name)
        if fam is None:
            with self._lock:
                fam = self._families.setdefault(spec.name, Family(spec))
        return fam

    def counter(self, spec: MetricSpec, *labels: str) -> CounterSeries:
        assert spec.type == "counter", spec.name
        return self.family(spec).labels(*labels)  # type: ignore[return-value]

    def gauge(self, spec: MetricSpec, *labels: str) -> GaugeSeries:
        assert spec.type == "gauge", spec.name
        return self.family(spec).labels(*labels)  # type: ignore[return-value]

    def histogram(self, spec: MetricSpec, *labels: str) -> HistogramSeries:
        assert spec.type == "histogram", spec.name
        return self.family(spec).labels(*labels)  # type: ignore[return-value]

    def families(self) -> list[Family]:
        with self._lock:
            return [self._families[k] for k in sorted(self._families)]

    # Convenience readers (tests, the demo summary, the OpenTelemetry backend).
    def value(self, spec: MetricSpec, *labels: str) -> float:
        """A counter's or gauge's current value; 0 when the series does not exist yet."""
        if spec.type == "histogram":
            raise TypeError(f"{spec.name} is a histogram: use observation_count()")
        series = self.family(spec)._series.get(tuple(labels))
        if series is None:
            return 0.0
        return series.value()  # type: ignore[attr-defined]

    def observation_count(self, spec: MetricSpec, *labels: str) -> int:
        """How many observations a histogram series has; 0 when it does not exist yet."""
        if spec.type != "histogram":
            raise TypeError(f"{spec.name} is a {spec.type}: use value()")
        series = self.family(spec)._series.get(tuple(labels))
        return 0 if series is None else int(series.count())  # type: ignore[attr-defined]


def all_recorders() -> Iterator[Recorder]:
    """Live recorders (process-wide events such as persistent-cache hits go to each)."""
    return iter(list(_all_recorders))


@dataclass(frozen=True)
class HistogramQuantiles:
    """Quantiles estimated from bucket counts the way PromQL's histogram_quantile does."""

    p50: float
    p95: float
    p99: float
    count: float


def quantiles(series: HistogramSeries) -> HistogramQuantiles:
    counts, _ = series.snapshot()
    total = sum(counts)

    def q(phi: float) -> float:
        if total == 0:
            return float("nan")
        rank = phi * total
        cumulative = 0.0
        lower = 0.0
        for i, c in enumerate(counts):
            upper = series.bounds[i] if i < len(series.bounds) else float("inf")
            if cumulative + c >= rank and c > 0:
                if upper == float("inf"):
                    return lower
                return lower + (upper - lower) * (rank - cumulative) / c
            cumulative += c
            lower = upper
        return lower

    return HistogramQuantiles(q(0.5), q(0.95), q(0.99), total)
