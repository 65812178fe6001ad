"""The report's data model: latency histograms, compile breakdowns and burn-rate series."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from jaxobs import catalog

PHASES: tuple[str, ...] = ("trace", "lower", "backend")
#: jaxobs_slo:error_budget:burn_rate, the recording rule the generated rules write.
BURN_RATE_RULE = "jaxobs_slo:error_budget:burn_rate"
MAX_LATENCY_SERIES = 6
MAX_BURN_SERIES = 8


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """One latency series: per-bucket (not cumulative) counts; the last bound is +Inf."""

    name: str
    bounds: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """Like PromQL's histogram_quantile (linear within a bucket)."""
        total = self.total
        if total <= 0:
            return math.nan
        rank, cumulative, lower = q * total, 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            if count > 0 and cumulative + count >= rank:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - cumulative) / count
            cumulative += count
            lower = bound
        return lower


@dataclass(frozen=True)
class BurnSeries:
    """Burn rate of one SLO over time: (unix seconds, burn) points."""

    name: str
    points: tuple[tuple[float, float], ...]

    @property
    def peak(self) -> float:
        return max((v for _, v in self.points), default=0.0)


@dataclass(frozen=True)
class ReportData:
    source: str
    latency: tuple[Histogram, ...] = ()
    #: function → phase → seconds
    compile_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    burn: tuple[BurnSeries, ...] = ()
    burn_note: str = ""
    generated_at: float = field(default_factory=time.time)

    @property
    def empty(self) -> bool:
        return not (any(h.total for h in self.latency) or self.compile_seconds or self.burn)


def _histograms(rows: list[tuple[dict[str, str], float]], keys: tuple[str, ...]) -> tuple[Histogram, ...]:
    """Cumulative ``le`` buckets (label dicts with ``le``) → per-bucket histograms, busiest first."""
    grouped: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for labels, value in rows:
        le = labels.get("le")
        if le is None:
            continue
        key = tuple(labels.get(k, "") for k in keys)
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        grouped[key][bound] = grouped[key].get(bound, 0.0) + value
    out = []
    for key, cumulative in grouped.items():
        bounds = tuple(sorted(cumulative))
        counts, previous = [], 0.0
        for b in bounds:
            counts.append(max(0.0, cumulative[b] - previous))
            previous = max(previous, cumulative[b])
        out.append(Histogram(" ".join(k for k in key if k), bounds, tuple(counts)))
    out.sort(key=lambda h: (-h.total, h.name))
    return tuple(h for h in out if h.total > 0)[:MAX_LATENCY_SERIES]


def _latency_rows(rows: list[tuple[str, dict[str, str], float]]) -> tuple[Histogram, ...]:
    """Request latency if there is any, else host-side call latency."""
    for metric, keys in ((catalog.REQUEST_DURATION.name, ("service", "start")),
                         (catalog.CALL_DURATION.name, ("function", "start"))):
        picked = [(labels, v) for name, labels, v in rows if name == metric + "_bucket"]
        hist = _histograms(picked, keys)
        if hist:
            return hist
    return ()


def _compile_breakdown(rows: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(PHASES, 0.0))
    for labels, value in rows:
        fn, phase = labels.get("function", "?"), labels.get("phase", "?")
        if value > 0:
            out[fn][phase] = out[fn].get(phase, 0.0) + value
    return {fn: dict(p) for fn, p in sorted(out.items(), key=lambda kv: -sum(kv[1].values()))}
