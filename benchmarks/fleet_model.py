"""A synthetic jaxobs fleet for ``rule_cost.py``: counters as closed-form functions of time.

Every series a jaxobs pod exposes for the example spec's SLIs (requests by outcome,
the request-latency histogram by start, calls by function and cache) is an exact
integral of a rate model, so any moment's value, any 5-minute rate and any 30-day
total are known without simulating:

* traffic follows a day: ``rate(t) = base * (1 + A sin(2 pi t / 1d))`` (A = 0.8,
  a 9x swing between night and peak), every pod in phase, pods of 5 sizes;
* errors arrive at a constant rate per pod, so the error *ratio* is highest at night
  (the case where averaging 5-minute ratios and dividing sums disagree);
* latency and cold starts are fixed shares of the requests; cache misses are one
  compile per function every 2 hours.

``Fleet.slices`` writes OpenMetrics text for ``promtool tsdb create-blocks-from
openmetrics``; ``Fleet.exposition`` serves the same series live to a scrape, so the
counters continue across the end of the history.  ``Fleet.sli_totals`` is the
model's bad and total events of one SLO, for the recordings' history and the
truth the 30-day ratios are compared against.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from jaxobs import catalog as c
from jaxobs.slo.model import SLO, Service

DAY = 86400.0
AMPLITUDE = 0.8
OMEGA = 2 * math.pi / DAY
#: Requests per second of the smallest pod at its daily mean; pods are 1..5 times that.
BASE_RPS = 4.0
#: Errors per second of a pod of size 1, whatever its traffic (so the ratio swings 9x).
ERROR_RPS = 0.004
COLD_SHARE = 0.002
MISS_PER_S = 1 / 7200
STEADY_MEDIAN_S, STEADY_SIGMA = 0.06, 0.7
COLD_MEDIAN_S, COLD_SIGMA = 3.0, 0.5
TRAIN_STEPS_PER_S = 0.5
TRAIN_FUNCTIONS = ("train_step", "eval_step", "data_fn", "loss_fn", "update_fn")

Model = Callable[[np.ndarray], np.ndarray]


def _lognormal_cdf(x: float, median: float, sigma: float) -> float:
    return 0.5 * (1 + math.erf(math.log(x / median) / (sigma * math.sqrt(2))))


def _label_str(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


@dataclass(frozen=True)
class Pod:
    job: str
    index: int
    size: int  # 1..5: traffic multiple
    functions: tuple[str, ...]

    @property
    def target(self) -> dict[str, str]:
        return {"job": self.job, "pod": f"{self.job}-{self.index:04d}",
                "instance": f"10.{self.index // 250}.{self.index % 250}.{7 if self.job == 'training' else 9}:9090"}

    def requests(self, t: np.ndarray) -> np.ndarray:
        """Requests (or steps) by ``t`` seconds after the origin: the integral of the rate."""
        base = (BASE_RPS if self.job != "training" else TRAIN_STEPS_PER_S) * self.size
        return base * (t + AMPLITUDE / OMEGA * (1 - np.cos(OMEGA * t)))

    def errors(self, t: np.ndarray) -> np.ndarray:
        scale = ERROR_RPS if self.job != "training" else ERROR_RPS / 8
        return scale * self.size * t

    def calls(self, function: str, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(hits, misses)``: the first function runs once per request, the others less."""
        k = self.functions.index(function)
        per_request = 1.0 if k == 0 else 0.5 / k
        misses = MISS_PER_S * t
        return per_request * self.requests(t), misses


class Fleet:
    """Inference pods (the example spec's ``job="inference"``) and training pods."""

    def __init__(self, pods: int, functions: int, training_pods: int) -> None:
        names = ("predict",) + tuple(f"fn{i:02d}" for i in range(1, functions))
        self.pods = [Pod("inference", i, 1 + i % 5, names) for i in range(pods)]
        self.pods += [Pod("training", i, 1 + i % 5, TRAIN_FUNCTIONS) for i in range(training_pods)]
        self.bounds = c.layout("latency") + (math.inf,)
        self.steady_cdf = [_lognormal_cdf(b, STEADY_MEDIAN_S, STEADY_SIGMA) if b != math.inf else 1.0
                           for b in self.bounds]
        self.cold_cdf = [_lognormal_cdf(b, COLD_MEDIAN_S, COLD_SIGMA) if b != math.inf else 1.0
                         for b in self.bounds]

    # --- the series -----------------------------------------------------------------------

    def series(self, t: np.ndarray) -> Iterator[tuple[str, str, str, np.ndarray]]:
        """``(family, type, sample name + labels, values at t)``, families grouped."""
        yield from self._requests(t)
        yield from self._durations(t)
        yield from self._calls(t)

    def _requests(self, t: np.ndarray) -> Iterator[tuple[str, str, str, np.ndarray]]:
        family = c.REQUESTS.name.removesuffix("_total")
        for pod in self.pods:
            service = pod.job
            total, bad = pod.requests(t), pod.errors(t)
            for outcome, values in (("ok", total - bad), ("error", bad)):
                labels = {**pod.target, "service": service, "outcome": outcome}
                yield family, "counter", c.REQUESTS.name + _label_str(labels), values

    def _durations(self, t: np.ndarray) -> Iterator[tuple[str, str, str, np.ndarray]]:
        family = c.REQUEST_DURATION.name
        for pod in self.pods:
            total = pod.requests(t)
            for start, share, cdf, median in (("steady", 1 - COLD_SHARE, self.steady_cdf, STEADY_MEDIAN_S),
                                              ("cold", COLD_SHARE, self.cold_cdf, COLD_MEDIAN_S)):
                count = share * total
                base = {**pod.target, "service": pod.job, "start": start}
                for bound, fraction in zip(self.bounds, cdf, strict=True):
                    yield (family, "histogram",
                           f"{family}_bucket" + _label_str({**base, "le": _le(bound)}), fraction * count)
                yield family, "histogram", f"{family}_count" + _label_str(base), count
                yield family, "histogram", f"{family}_sum" + _label_str(base), median * count

    def _calls(self, t: np.ndarray) -> Iterator[tuple[str, str, str, np.ndarray]]:
        family = c.CALLS.name.removesuffix("_total")
        for pod in self.pods:
            for function in pod.functions:
                hits, misses = pod.calls(function, t)
                for cache, values in (("hit", hits), ("miss", misses)):
                    labels = {**pod.target, "function": function, "cache": cache}
                    yield family, "counter", c.CALLS.name + _label_str(labels), values

    def series_count(self) -> int:
        return sum(1 for _ in self.series(np.zeros(1)))

    # --- writers ----------------------------------------------------------------------------

    def openmetrics(self, origin: float, times: np.ndarray) -> str:
        """One OpenMetrics document with every series at ``times`` (absolute seconds)."""
        out: list[str] = []
        current = None
        rel = times - origin
        stamps = [f"{int(x)}" for x in times]
        for family, kind, name, values in self.series(rel):
            if family != current:
                out.append(f"# TYPE {family} {kind}")
                current = family
            out.extend(f"{name} {v!r} {s}" for v, s in zip(values.tolist(), stamps, strict=True))
        out.append("# EOF")
        return "\n".join(out) + "\n"

    def exposition(self, origin: float, now: float) -> str:
        """The Prometheus text format of every series at ``now`` (for the live scrape)."""
        out: list[str] = []
        current = None
        for family, kind, name, values in self.series(np.array([now - origin])):
            if family != current:  # the text format names a counter with its _total
                out.append(f"# TYPE {family}{'_total' if kind == 'counter' else ''} {kind}")
                current = family
            out.append(f"{name} {float(values[0])!r}")
        return "\n".join(out) + "\n"

    # --- the SLIs ---------------------------------------------------------------------------

    def sli_totals(self, service: Service, slo: SLO, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(bad events, all events)`` of one SLO by ``t`` seconds after the origin, summed
        over the pods its selectors match (the example spec's SLI kinds)."""
        sli, selector = slo.sli, dict(service.target_selector)
        pods = [p for p in self.pods if p.job == selector.get("job", service.name)]
        bad, total = np.zeros_like(t), np.zeros_like(t)
        for pod in pods:
            requests = pod.requests(t)
            if sli.kind == "availability":
                bad, total = bad + pod.errors(t), total + requests
            elif sli.kind == "latency":
                assert sli.threshold_seconds is not None
                steady = (1 - COLD_SHARE) * requests
                fraction = self.steady_cdf[self.bounds.index(sli.threshold_seconds)]
                bad, total = bad + (1 - fraction) * steady, total + steady
            elif sli.kind == "cold_start":
                bad, total = bad + COLD_SHARE * requests, total + requests
            elif sli.kind == "cache_hit":
                hits, misses = pod.calls(dict(sli.selector)["function"], t)
                bad, total = bad + misses, total + hits + misses
            else:
                raise ValueError(f"the fleet model has no {sli.kind} SLI")
        return bad, total
