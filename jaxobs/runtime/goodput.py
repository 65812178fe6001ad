"""Goodput and badput of a training loop: where the wall-clock time went.

A step-time chart hides the seconds a job did *not* spend training.  This
module splits them into the productive part (goodput) and the reasons for the
rest (badput), so an engineer can see which one to fix first::

    from jaxobs.runtime.goodput import GoodputTracker

    tracker = GoodputTracker("training")
    for i in range(steps):
        with tracker.data():                 # waiting for the input pipeline
            batch = next(batches)
        with tracker.step(examples=len(batch)):   # also a jaxobs.step("training")
            state, loss = train_step(state, batch)
            jax.block_until_ready(loss)      # time the compute, not the dispatch
        if i % 100 == 0:
            with tracker.checkpoint():
                save(state)
    print(tracker.summary().format())

Reasons (the ``reason`` label of ``jaxobs_step_badput_seconds_total``):

* ``compile`` — seconds JAX spent tracing, lowering and compiling inside
  steps, measured from ``jax.monitoring`` compile events of the step's own
  thread (any jitted function, instrumented or not).  Only the compile time
  is lost: the rest of a step that compiled still trained.
* ``data`` — seconds inside :meth:`GoodputTracker.data`.
* ``checkpoint`` — seconds inside :meth:`GoodputTracker.checkpoint`.
* ``anomaly`` — for a step slower than the rolling median + 3·MAD of recent
  steady steps (and at least 50% above the median), the seconds above the
  median.  Charging only the excess keeps
  the work a normal step does as goodput; a straggling host or a noisy
  neighbour shows up as exactly the time it cost.

Goodput (``jaxobs_step_goodput_seconds_total``) is step time minus its
compile and anomaly badput; examples go to ``jaxobs_step_examples_total``,
whose rate is the throughput.  A step that raised counts as neither (it is an
``outcome="error"`` step of ``jaxobs_requests_total``) and shows up as
unaccounted time in the summary, along with time spent outside every block
(logging, evaluation).
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter
from types import TracebackType
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import report_internal_error

#: Badput reasons, in the order summaries show them.
REASONS: tuple[str, ...] = ("compile", "data", "checkpoint", "anomaly")
#: 1.4826 · MAD estimates the standard deviation of normally distributed times, so
#: "median + 3·MAD" flags about 1 step in 700 of pure noise instead of 1 in 40.
MAD_TO_SIGMA = 1.4826
#: Step-time noise is heavy-tailed (scheduler, GC): measured on a 2-core CPU, 4–10% of
#: sub-millisecond steps exceed median + 3·MAD by a few microseconds.  A step must also
#: be this fraction slower than the median to count: nobody acts on smaller slowdowns.
MIN_EXCESS_RATIO = 0.5


class _ThreadCompileTime(threading.local):
    """Compile seconds of the step running on this thread (None: no step is running)."""

    seconds: list[float] | None = None


_compile_time = _ThreadCompileTime()
_subscribed = False


def _on_compile_phase(event: str, duration: float, fun_name: str | None) -> None:
    acc = _compile_time.seconds
    if acc is not None:
        acc[0] += float(duration)


def _install_listener() -> None:
    """Subscribe to the compile-event hub once per process (jax is imported only then)."""
    global _subscribed
    if _subscribed:
        return
    from jaxobs.runtime import compile_events

    compile_events.subscribe(_on_compile_phase)
    _subscribed = True


class AnomalyDetector:
    """Flags step times above the rolling median + ``k``·MAD of the last ``window`` steps
    (and above ``(1 + min_excess) × median``, see :data:`MIN_EXCESS_RATIO`).

    Fewer than ``min_samples`` steps judge nothing: a median of three steps
    says little.  Every judged step joins the window, so a lasting slowdown
    becomes the new normal instead of being charged forever.
    """

    def __init__(self, window: int = 50, k: float = 3.0, min_samples: int = 10,
                 min_excess: float = MIN_EXCESS_RATIO) -> None:
        if window < 3 or min_samples < 3 or min_samples > window:
            raise ValueError("need 3 <= min_samples <= window")
        self.k = k
        self.min_excess = min_excess
        self.min_samples = min_samples
        self._times: deque[float] = deque(maxlen=window)

    def threshold(self) -> float | None:
        """Step time above which a step is anomalous (None while warming up)."""
        if len(self._times) < self.min_samples:
            return None
        median = statistics.median(self._times)
        mad = statistics.median(abs(t - median) for t in self._times) * MAD_TO_SIGMA
        return median + max(self.k * mad, self.min_excess * median)

    def observe(self, seconds: float) -> float:
        """Judge one step; returns its excess over the median (0 when it is normal)."""
        limit = self.threshold()
        excess = 0.0
        if limit is not None and seconds > limit:
            excess = seconds - statistics.median(self._times)
        self._times.append(seconds)
        return excess


@dataclass(frozen=True)
class GoodputSummary:
    """Totals since the tracker started; ``badput_seconds`` has every reason of :data:`REASONS`."""

    service: str
    wall_seconds: float
    steps: int
    failed_steps: int
    compiled_steps: int
    anomalous_steps: int
    examples: int
    step_seconds: float
    goodput_seconds: float
    badput_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def badput_total(self) -> float:
        return sum(self.badput_seconds.values())

    @property
    def unaccounted_seconds(self) -> float:
        """Wall time in no block (logging, evaluation) or in steps that raised."""
        return max(0.0, self.wall_seconds - self.goodput_seconds - self.badput_total)

    @property
    def goodput_ratio(self) -> float:
        return self.goodput_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def examples_per_second(self) -> float:
        """Throughput over the wall time (what the job as a whole achieved)."""
        return self.examples / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def mean_step_seconds(self) -> float:
        ok = self.steps - self.failed_steps
        return self.step_seconds / ok if ok else 0.0

    def format(self) -> str:
        """A few lines for the end of a training run."""
        wall = self.wall_seconds or 1.0
        lines = [
            f"{self.service}: {self.steps} steps ({self.failed_steps} failed) in "
            f"{self.wall_seconds:.2f}s, mean step {self.mean_step_seconds * 1e3:.2f} ms, "
            f"{self.examples_per_second:,.0f} examples/s",
            f"  goodput   {self.goodput_seconds:8.3f}s  {self.goodput_seconds / wall:6.1%}",
        ]
        counts = {"compile": f"{self.compiled_steps} steps compiled",
                  "anomaly": f"{self.anomalous_steps} anomalous steps"}
        for reason in REASONS:
            seconds = self.badput_seconds.get(reason, 0.0)
            note = counts.get(reason, "")
            lines.append(f"  {reason:<9} {seconds:8.3f}s  {seconds / wall:6.1%}  {note}".rstrip())
        lines.append(f"  other     {self.unaccounted_seconds:8.3f}s  "
                     f"{self.unaccounted_seconds / wall:6.1%}  outside steps/data/checkpoints")
        return "\n".join(lines)


class _Timed:
    """A block whose duration is charged to one badput reason."""

    def __init__(self, tracker: GoodputTracker, reason: str) -> None:
        self._tracker, self._reason = tracker, reason
        self._t0 = 0.0

    def __enter__(self) -> _Timed:
        self._t0 = self._tracker._clock()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._tracker._add_badput(self._reason, self._tracker._clock() - self._t0)


class _Step:
    """One training step: a ``jaxobs.step`` plus compile-time accounting on this thread."""

    def __init__(self, tracker: GoodputTracker, examples: int) -> None:
        self._tracker = tracker
        self.examples = examples
        self._t0 = 0.0
        self._previous: list[float] | None = None
        self._acc = [0.0]

    def __enter__(self) -> _Step:
        self._previous = _compile_time.seconds
        _compile_time.seconds = self._acc
        self._tracker._sli.__enter__()
        self._t0 = self._tracker._clock()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        elapsed = self._tracker._clock() - self._t0
        _compile_time.seconds = self._previous
        try:
            self._tracker._finish_step(elapsed, self._acc[0], self.examples, failed=exc is not None)
        except Exception as inner:
            report_internal_error("goodput", inner)
        self._tracker._sli.__exit__(exc_type, exc, tb)


class GoodputTracker:
    """Goodput/badput accounting of one training loop (use it from the loop's thread).

    ``registry`` is a prometheus-client registry (default: the global one);
    ``window``/``k``/``min_samples``/``min_excess`` tune the anomaly detector;
    ``clock`` is for tests that need exact times.
    """

    def __init__(self, service: str = "training", *, registry: Any = None, window: int = 50,
                 k: float = 3.0, min_samples: int = 10, min_excess: float = MIN_EXCESS_RATIO,
                 clock: Callable[[], float] = perf_counter) -> None:
        from jaxobs.runtime.sli import step as sli_step
        from jaxobs.telemetry import recorder_for

        _install_listener()
        self.service = service
        self._clock = clock
        self._start = clock()
        self._sli = sli_step(service, registry=registry)
        self._detector = AnomalyDetector(window, k, min_samples, min_excess)
        rec = recorder_for(registry)
        self._badput_series = {r: rec.counter(catalog.STEP_BADPUT, service, r) for r in REASONS}
        self._goodput_series = rec.counter(catalog.STEP_GOODPUT, service)
        self._examples_series = rec.counter(catalog.STEP_EXAMPLES, service)
        self._badput = dict.fromkeys(REASONS, 0.0)
        self._goodput = 0.0
        self._step_seconds = 0.0
        self._steps = self._failed = self._compiled = self._anomalous = self._examples = 0

    # --- blocks --------------------------------------------------------------------
    def step(self, examples: int = 0) -> _Step:
        """Context manager around one step (block on its outputs inside it)."""
        return _Step(self, examples)

    def data(self) -> _Timed:
        """Context manager around waiting for the next batch."""
        return _Timed(self, "data")

    def checkpoint(self) -> _Timed:
        """Context manager around saving a checkpoint."""
        return _Timed(self, "checkpoint")

    # --- accounting ----------------------------------------------------------------
    def _add_badput(self, reason: str, seconds: float) -> None:
        if seconds <= 0:
            return
        self._badput[reason] += seconds
        self._badput_series[reason].inc(seconds)

    def _finish_step(self, elapsed: float, compile_seconds: float, examples: int,
                     failed: bool) -> None:
        self._steps += 1
        if failed:
            self._failed += 1
            return
        self._step_seconds += elapsed
        lost = 0.0
        if compile_seconds > 0:
            # A step that compiled is not a sample of normal step time.
            self._compiled += 1
            lost = min(compile_seconds, elapsed)
            self._add_badput("compile", lost)
        else:
            excess = self._detector.observe(elapsed)
            if excess > 0:
                self._anomalous += 1
                lost = excess
                self._add_badput("anomaly", excess)
        useful = elapsed - lost
        self._goodput += useful
        self._goodput_series.inc(useful)
        if examples:
            self._examples += examples
            self._examples_series.inc(examples)

    def summary(self) -> GoodputSummary:
        """Totals so far (the same numbers the metrics carry)."""
        return GoodputSummary(
            service=self.service, wall_seconds=self._clock() - self._start, steps=self._steps,
            failed_steps=self._failed, compiled_steps=self._compiled,
            anomalous_steps=self._anomalous, examples=self._examples,
            step_seconds=self._step_seconds, goodput_seconds=self._goodput,
            badput_seconds=dict(self._badput))
