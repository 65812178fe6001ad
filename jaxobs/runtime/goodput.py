"""Goodput and badput of a training job: where every wall-clock second went.

A step-time chart hides the seconds a job did *not* spend training.  This
module splits the job's wall time into the productive part (goodput) and the
reasons for the rest (badput), so that they add up::

    from jaxobs.runtime.goodput import GoodputTracker

    tracker = GoodputTracker("training", state_file="ckpt/goodput.json")  # first thing
    with tracker.restore():
        state, first = restore_latest(ckpt_dir)
    for i in range(first, steps):
        with tracker.step(number=i, examples=batch_size):
            with tracker.data():             # waiting for the input pipeline
                batch = next(batches)
            state, loss = train_step(state, batch)
            jax.block_until_ready(loss)      # time the compute, not the dispatch
            if i % 100 == 0:
                with tracker.checkpoint():
                    save(state)
    print(tracker.summary().format())

Accounting rules (why the numbers add up)
-----------------------------------------
* **Wall time** runs from a start mark: process start by default (imports,
  JAX initialisation, data set-up are the ``startup`` reason), ``start="now"``
  or an explicit ``time.time()`` value.  Exported as
  ``jaxobs_step_wall_seconds_total``, so goodput % is
  ``rate(goodput) / rate(wall)``.
* **Blocks nest.**  A block's own time is its duration minus the blocks
  inside it: data and checkpoint blocks inside a step are charged to their
  reason once and are not also goodput, nor part of the step-time sample of
  the anomaly detector.
* **Compiles are compile**, in whatever block they happen (a step, a data
  wait, a checkpoint): JAX's compile-phase events on the block's thread are
  taken out of the block's own time.
* **Never more than the wall.**  Charges that would make goodput + badput
  exceed the wall time (overlapping blocks from several threads, a custom
  event longer than the run) are clipped, counted in
  ``jaxobs_internal_errors_total{component="goodput_accounting"}`` and warned
  about once.  What is in no block is exported as
  ``jaxobs_step_unaccounted_seconds``.

Reasons (the ``reason`` label of ``jaxobs_step_badput_seconds_total``), see :data:`REASONS`:
``startup`` (before the tracker existed, and :meth:`~GoodputTracker.startup`),
``restore`` (checkpoint restore), ``compile``, ``data`` (waiting for input;
with asynchronous loading, wrap only the wait), ``checkpoint``, ``anomaly``
(a step slower than the recent ones, the excess over their median),
``failed`` (steps that raised), ``disruption`` (steps re-done after a restart:
with ``state_file`` the tracker persists the last completed step number, and a
step numbered at or below it is progress lost), and custom events
(:meth:`~GoodputTracker.badput`, :meth:`~GoodputTracker.record_badput`).

Step-time *deviation* — recent median over an expected step time that is
configured or learned — is :mod:`jaxobs.runtime.step_time`: drift and lasting
slowdowns stay visible there after the anomaly detector has adapted.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any

from jaxobs import catalog
from jaxobs.runtime.goodput_summary import GoodputSummary
from jaxobs.runtime.step_time import MIN_EXCESS_RATIO, AnomalyDetector, StepTimeBaseline
from jaxobs.telemetry.internal_errors import report_internal_error

__all__ = ["REASONS", "AnomalyDetector", "GoodputSummary", "GoodputTracker", "StepTimeBaseline"]

#: Built-in badput reasons, in the order summaries show them.
REASONS: tuple[str, ...] = ("startup", "restore", "compile", "data", "checkpoint", "anomaly",
                            "failed", "disruption")
#: Custom reasons are label values: short, lower-case, and few (a bounded label set).
CUSTOM_REASON = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_CUSTOM_REASONS = 16
_RESERVED = frozenset({*REASONS, "goodput", "other", "wall", "unaccounted"})


class _ThreadCompileTime(threading.local):
    """Where compile seconds on this thread go: the innermost open block, else the loose
    accumulator of the latest tracker created on this thread (None: not counted)."""

    seconds: list[float] | None = None
    loose: list[float] | None = None


_compile_time = _ThreadCompileTime()
_subscribed = False


def _on_compile_phase(event: str, duration: float, fun_name: str | None) -> None:
    acc = _compile_time.seconds
    if acc is None:
        acc = _compile_time.loose
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


def _process_start_age() -> float:
    """Seconds since this process started (0 if unknown)."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception as exc:
        report_internal_error("goodput", exc)
        return 0.0


class _Block:
    """One open block: a step or a badput reason; nested blocks are subtracted from it."""

    def __init__(self, tracker: GoodputTracker, reason: str | None, number: int | None = None,
                 examples: int = 0) -> None:
        self._tracker = tracker
        self.reason = reason  # None: a step
        self.number = number
        self.examples = examples
        self.t0 = 0.0
        self.children = 0.0
        self.compile = [0.0]
        self._previous: list[float] | None = None

    def __enter__(self) -> _Block:
        tracker = self._tracker
        if self.reason is None:
            tracker._sli.__enter__()
        self._previous = _compile_time.seconds
        _compile_time.seconds = self.compile
        tracker._stack().append(self)
        self.t0 = tracker._clock()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        tracker = self._tracker
        if self.reason is None and exc is None and self.number is not None:
            try:
                tracker._progress(self.number)  # persisting progress is part of the step
            except Exception as inner:
                report_internal_error("goodput_state", inner)
        now = tracker._clock()
        _compile_time.seconds = self._previous
        try:
            tracker._close(self, now, failed=exc is not None)
        except Exception as inner:
            report_internal_error("goodput", inner)
        if self.reason is None:
            tracker._sli.__exit__(exc_type, exc, tb)


class GoodputTracker:
    """Goodput/badput accounting of one training job (blocks are opened from the loop's thread).

    ``registry``: a prometheus-client registry (default: the global one).
    ``start``: ``"process"`` (default: wall time from process start; with a
    custom ``clock`` this means ``"now"``), ``"now"``, or a ``time.time()`` value.
    ``state_file``: where the last completed step number is persisted, so a
    restarted job's re-done steps are ``disruption`` badput.
    ``expected_step_seconds``: the step time the job should have (learned when None).
    ``window``/``k``/``min_samples``/``min_excess``: the anomaly detector.
    ``clock``: for tests that need exact times.
    """

    def __init__(self, service: str = "training", *, registry: Any = None,
                 start: str | float = "process", state_file: str | os.PathLike[str] | None = None,
                 expected_step_seconds: float | None = None, window: int = 50, k: float = 3.0,
                 min_samples: int = 10, min_excess: float = MIN_EXCESS_RATIO,
                 clock: Callable[[], float] = perf_counter) -> None:
        from jaxobs.runtime.sli import step as sli_step
        from jaxobs.telemetry import recorder_for

        _install_listener()
        self.service = service
        self._clock = clock
        age = self._age_at(start, clock)
        self._sli = sli_step(service, registry=registry)
        self._detector = AnomalyDetector(window, k, min_samples, min_excess)
        self._baseline = StepTimeBaseline(window, expected_step_seconds)
        self._rec = recorder_for(registry)
        self._badput_series = {r: self._rec.counter(catalog.STEP_BADPUT, service, r) for r in REASONS}
        self._goodput_series = self._rec.counter(catalog.STEP_GOODPUT, service)
        self._examples_series = self._rec.counter(catalog.STEP_EXAMPLES, service)
        self._wall_series = self._rec.counter(catalog.STEP_WALL, service)
        self._unaccounted_series = self._rec.gauge(catalog.STEP_UNACCOUNTED, service)
        self._expected_series = self._rec.gauge(catalog.STEP_EXPECTED, service)
        self._recent_series = self._rec.gauge(catalog.STEP_RECENT, service)
        self._lock = threading.Lock()
        self._tls = threading.local()
        self._badput = dict.fromkeys(REASONS, 0.0)
        self._goodput = self._step_seconds = self._wall_exported = self._over = 0.0
        self._steps = self._failed = self._compiled = self._anomalous = self._examples = 0
        self._redone = 0
        self._warned = False
        self._state_file = Path(state_file) if state_file is not None else None
        self._resume_from = self._load_state()
        self._last_step = self._resume_from
        if expected_step_seconds is not None:
            self._expected_series.set(expected_step_seconds)
        # Compiles on this thread outside every block (evaluation, logging) are compile too.
        self._loose_compile = [0.0]
        _compile_time.loose = self._loose_compile
        now = clock()  # after the set-up above: its cost is start-up, not unaccounted
        self._start = now - age
        self._charge("startup", age, now)
        self._sync(now)

    @staticmethod
    def _age_at(start: str | float, clock: Callable[[], float]) -> float:
        if start == "now":
            return 0.0
        if start == "process":
            return _process_start_age() if clock is perf_counter else 0.0
        if isinstance(start, (int, float)) and not isinstance(start, bool):
            return max(0.0, time.time() - float(start))
        raise ValueError(f'GoodputTracker start must be "process", "now" or a time.time() value, '
                         f"got {start!r}")

    # --- blocks --------------------------------------------------------------------
    def step(self, examples: int = 0, *, number: int | None = None) -> _Block:
        """One training step (also a ``jaxobs.step`` SLI event); block on its outputs inside it.

        ``number``: the step number (for ``state_file``: steps at or below the
        last completed one of a previous run are re-done work, ``disruption``).
        """
        return _Block(self, None, number, examples)

    def data(self) -> _Block:
        """Waiting for the next batch (wrap the wait, not a background producer)."""
        return _Block(self, "data")

    def checkpoint(self) -> _Block:
        """Saving a checkpoint."""
        return _Block(self, "checkpoint")

    def restore(self) -> _Block:
        """Restoring a checkpoint (after a restart)."""
        return _Block(self, "restore")

    def startup(self) -> _Block:
        """Initialisation after the tracker was created (model set-up, connecting to storage)."""
        return _Block(self, "startup")

    def badput(self, reason: str) -> _Block:
        """A custom badput event, e.g. ``with tracker.badput("evaluation"):``."""
        return _Block(self, self._custom(reason))

    def record_badput(self, reason: str, seconds: float) -> None:
        """Charge ``seconds`` measured elsewhere (e.g. a preemption notice period) to ``reason``."""
        reason = reason if reason in REASONS else self._custom(reason)
        now = self._clock()
        self._charge(reason, float(seconds), now)
        self._sync(now)

    def _custom(self, reason: str) -> str:
        if not isinstance(reason, str) or not CUSTOM_REASON.match(reason) or reason in _RESERVED:
            raise ValueError(f"badput reason {reason!r}: use 1-40 lower-case letters, digits or _ "
                             f"(starting with a letter), not one of {sorted(_RESERVED)}")
        if reason not in self._badput:
            with self._lock:
                custom = len(self._badput) - len(REASONS)
                if reason not in self._badput and custom >= MAX_CUSTOM_REASONS:
                    raise ValueError(f"badput reason {reason!r}: at most {MAX_CUSTOM_REASONS} custom "
                                     "reasons per tracker (each is a label value)")
                self._badput.setdefault(reason, 0.0)
                self._badput_series[reason] = self._rec.counter(catalog.STEP_BADPUT, self.service, reason)
        return reason

    # --- accounting ----------------------------------------------------------------
    def _stack(self) -> list[_Block]:
        try:
            return self._tls.stack  # type: ignore[no-any-return]
        except AttributeError:
            self._tls.stack = []
            return self._tls.stack  # type: ignore[no-any-return]

    def _close(self, block: _Block, now: float, failed: bool) -> None:
        stack = self._stack()
        if stack and stack[-1] is block:
            stack.pop()
        elif block in stack:  # exited out of order: account for it anyway
            stack.remove(block)
            report_internal_error("goodput_accounting")
        elapsed = max(0.0, now - block.t0)
        if stack:
            stack[-1].children += elapsed
        own = max(0.0, elapsed - block.children)
        compiled = min(block.compile[0], own)
        self._charge("compile", compiled, now)
        rest = own - compiled
        if block.reason is not None:
            self._charge(block.reason, rest, now)
        else:
            self._finish_step(block, rest, compiled, failed, now)
        self._sync(now)

    def _finish_step(self, block: _Block, seconds: float, compiled: float, failed: bool,
                     now: float) -> None:
        """``seconds``: the step's own time (nested blocks excluded) after its ``compiled`` seconds."""
        self._steps += 1
        if compiled:
            self._compiled += 1
        if failed:
            self._failed += 1
            self._charge("failed", seconds, now)
            return
        self._step_seconds += seconds + compiled
        if block.number is not None and block.number <= self._resume_from:
            self._redone += 1
            self._charge("disruption", seconds, now)
        elif compiled:  # the rest of a step that compiled still trained, but is no sample
            self._charge(None, seconds, now)
        else:
            excess = min(self._detector.observe(seconds), seconds)
            self._baseline.observe(seconds)
            if excess > 0:
                self._anomalous += 1
                self._charge("anomaly", excess, now)
            self._charge(None, seconds - excess, now)
        if block.examples:
            self._examples += block.examples
            self._examples_series.inc(block.examples)

    def _charge(self, reason: str | None, seconds: float, now: float) -> None:
        """Add ``seconds`` to ``reason`` (None: goodput), never past the wall time."""
        if seconds <= 0:
            return
        with self._lock:
            room = (now - self._start) - self._goodput - sum(self._badput.values())
            over = seconds - max(0.0, room)
            if over > 1e-9 * max(1.0, seconds):
                self._over += over
                seconds -= over
                warn = not self._warned
                self._warned = True
            else:
                over, warn = 0.0, False
            if reason is None:
                self._goodput += seconds
            else:
                self._badput[reason] += seconds
        if reason is None:
            self._goodput_series.inc(seconds)
        else:
            self._badput_series[reason].inc(seconds)
        if over > 0:
            report_internal_error("goodput_accounting")
            if warn:
                warnings.warn(f"jaxobs goodput ({self.service}): {over:.3f}s charged to "
                              f"{reason or 'goodput'} would make goodput + badput more than the wall "
                              "time (overlapping blocks from several threads?); clipped and counted in "
                              'jaxobs_internal_errors_total{component="goodput_accounting"}',
                              RuntimeWarning, stacklevel=4)

    def _sync(self, now: float) -> None:
        """Advance the exported wall time, unaccounted time and step-time gauges to ``now``."""
        loose, self._loose_compile[0] = self._loose_compile[0], 0.0
        self._charge("compile", loose, now)
        with self._lock:
            wall = now - self._start
            delta = wall - self._wall_exported
            self._wall_exported = max(self._wall_exported, wall)
            accounted = self._goodput + sum(self._badput.values())
        if delta > 0:
            self._wall_series.inc(delta)
        self._unaccounted_series.set(max(0.0, wall - accounted))
        expected, recent = self._baseline.expected, self._baseline.recent
        if expected is not None:
            self._expected_series.set(expected)
        if recent is not None:
            self._recent_series.set(recent)

    # --- persisted progress ----------------------------------------------------------
    def _load_state(self) -> int:
        if self._state_file is None or not self._state_file.exists():
            return 0
        try:
            return int(json.loads(self._state_file.read_text())["last_step"])
        except Exception as exc:  # a corrupt file loses the disruption figure, not the job
            report_internal_error("goodput_state", exc)
            return 0

    def _progress(self, number: int) -> None:
        """Step ``number`` completed: persist it if it is the furthest one."""
        if number <= self._last_step:
            return
        self._last_step = number
        path = self._state_file
        if path is None:
            return
        try:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"service": self.service, "last_step": self._last_step,
                                       "time": time.time()}))
            os.replace(tmp, path)  # atomic: a crash leaves the old or the new number
        except Exception as exc:
            report_internal_error("goodput_state", exc)

    def summary(self) -> GoodputSummary:
        """Totals so far (the same numbers the metrics carry)."""
        now = self._clock()
        self._sync(now)
        with self._lock:
            return GoodputSummary(
                service=self.service, wall_seconds=now - self._start, steps=self._steps,
                failed_steps=self._failed, compiled_steps=self._compiled,
                anomalous_steps=self._anomalous, redone_steps=self._redone,
                examples=self._examples, step_seconds=self._step_seconds,
                goodput_seconds=self._goodput, badput_seconds=dict(self._badput),
                overaccounted_seconds=self._over,
                expected_step_seconds=self._baseline.expected,
                step_time_deviation=self._baseline.deviation)
