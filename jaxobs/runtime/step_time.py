"""Judging step times: transient anomalies, and deviation from the expected step time.

Two questions with two answers, because one detector cannot answer both:

* *Was this step unusually slow?*  :class:`AnomalyDetector` compares a step
  with the recent steps (rolling median + k·MAD).  It must adapt, or every
  step after a lasting change would be "anomalous" — which is exactly why it
  cannot see lasting changes.
* *Are steps slower than they should be?*  :class:`StepTimeBaseline` compares
  the recent median with an expected step time that does not follow the
  drift: configured, or learned as the lowest median any full window ever had
  (the best the job has shown it can do).  A permanent 2× slowdown or a slow
  drift stays visible as ``deviation`` (recent median / expected) for as long
  as it lasts.

Both are plain, jax-free arithmetic on seconds so tests can feed exact times.
"""

from __future__ import annotations

import math
import statistics
from collections import deque

#: 1.4826 · MAD estimates the standard deviation of normally distributed times, so
#: "median + 3·MAD" flags about 1 step in 700 of pure noise instead of 1 in 40.
MAD_TO_SIGMA = 1.4826
#: Step-time noise is heavy-tailed (scheduler, GC): measured on a 2-core CPU, 4–10% of
#: sub-millisecond steps exceed median + 3·MAD by a few microseconds.  A step must also
#: be this fraction slower than the median to count: nobody acts on smaller slowdowns.
MIN_EXCESS_RATIO = 0.5
#: A step time that at least this fraction of the window shares (within
#: :data:`MODE_TOLERANCE`) is a recurring *mode*, not an anomaly: a loop whose every
#: fifth step also logs has two normal speeds, and the slower one is not a straggler.
MODE_FRACTION = 0.05
MODE_TOLERANCE = 0.2
#: :class:`StepTimeBaseline` recomputes its window's median every this many steps.
REFRESH = 5


class AnomalyDetector:
    """Flags step times above the rolling median + ``k``·MAD of the last ``window`` steps
    (and above ``(1 + min_excess) × median``, see :data:`MIN_EXCESS_RATIO`), unless the
    time is a recurring mode of the window (see :data:`MODE_FRACTION`).

    Fewer than ``min_samples`` steps judge nothing: a median of three steps
    says little.  Every judged step joins the window, so a lasting slowdown
    stops being charged as an anomaly after a few steps; :class:`StepTimeBaseline`
    keeps it visible.
    """

    def __init__(self, window: int = 50, k: float = 3.0, min_samples: int = 10,
                 min_excess: float = MIN_EXCESS_RATIO, mode_fraction: float = MODE_FRACTION) -> None:
        if window < 3 or min_samples < 3 or min_samples > window:
            raise ValueError("need 3 <= min_samples <= window")
        self.k = k
        self.min_excess = min_excess
        self.min_samples = min_samples
        self.mode_fraction = mode_fraction
        self._times: deque[float] = deque(maxlen=window)

    def median(self) -> float | None:
        """Median of the window (None while warming up)."""
        if len(self._times) < self.min_samples:
            return None
        return statistics.median(self._times)

    def threshold(self) -> float | None:
        """Step time above which a step is anomalous (None while warming up)."""
        median = self.median()
        if median is None:
            return None
        mad = statistics.median(abs(t - median) for t in self._times) * MAD_TO_SIGMA
        return median + max(self.k * mad, self.min_excess * median)

    def _recurring(self, seconds: float) -> bool:
        need = max(2, math.ceil(self.mode_fraction * len(self._times)))
        tolerance = MODE_TOLERANCE * seconds
        return sum(1 for t in self._times if abs(t - seconds) <= tolerance) >= need

    def observe(self, seconds: float) -> float:
        """Judge one step; returns its excess over the median (0 when it is normal)."""
        excess = 0.0
        median = self.median()
        # Cheap pre-check first: a step within (1 + min_excess) × median is normal whatever
        # the MAD is, so most steps cost one sort of the window.
        if median is not None and seconds > (1 + self.min_excess) * median:
            limit = self.threshold()
            if limit is not None and seconds > limit and not self._recurring(seconds):
                excess = seconds - median
        self._times.append(seconds)
        return excess


class StepTimeBaseline:
    """The expected step time and how far the recent steps are from it.

    ``expected``: configured, or learned as the lowest median of any full
    ``window`` of steady steps seen so far.  ``deviation``: median of the last
    ``window`` steps divided by ``expected`` (1.0 on target, 2.0 twice as slow;
    None until a window is full).
    """

    def __init__(self, window: int = 50, expected: float | None = None) -> None:
        if window < 3:
            raise ValueError("need window >= 3")
        if expected is not None and not expected > 0:
            raise ValueError(f"expected_step_seconds must be > 0, got {expected}")
        self._configured = expected
        self._learned: float | None = None
        self._times: deque[float] = deque(maxlen=window)
        self._seen = 0
        self.recent: float | None = None

    @property
    def expected(self) -> float | None:
        return self._configured if self._configured is not None else self._learned

    @property
    def deviation(self) -> float | None:
        expected = self.expected
        if expected is None or self.recent is None or expected <= 0:
            return None
        return self.recent / expected

    def observe(self, seconds: float) -> None:
        self._times.append(seconds)
        self._seen += 1
        # The median of a full window, every REFRESH steps: cheap, and a window's worth of
        # history moves it anyway.
        if len(self._times) == self._times.maxlen and self._seen % REFRESH == 0:
            self.recent = statistics.median(self._times)
            if self._learned is None or self.recent < self._learned:
                self._learned = self.recent
