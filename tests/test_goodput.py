"""Goodput accounting that adds up: nested blocks, compiles anywhere, restarts, deviation.

Exact arithmetic runs on a scripted clock; the "must add up" layouts run on the
real clock with real JAX compiles on CPU and check goodput + badput against
the wall time (within 2%), never absolute times.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog
from jaxobs.runtime.goodput import REASONS, GoodputTracker
from jaxobs.runtime.step_time import AnomalyDetector, StepTimeBaseline


class ScriptedClock:
    """A clock that moves only when told: exact seconds in, exact seconds out."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tracker_with_clock(registry: CollectorRegistry, service: str, **kwargs: object
                       ) -> tuple[GoodputTracker, ScriptedClock]:
    clock = ScriptedClock()
    return GoodputTracker(service, registry=registry, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def adds_up(s, tolerance: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    """goodput + badput is the wall time (within ``tolerance``), and never more."""
    accounted = s.goodput_seconds + s.badput_total
    assert accounted <= s.wall_seconds * (1 + 1e-9) + 1e-9, s.format()
    assert accounted >= s.wall_seconds * (1 - tolerance), s.format()


# --- nested blocks, exact -------------------------------------------------------------------


def test_data_and_checkpoint_inside_a_step_are_not_also_goodput(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "nested")
    with tracker.step(examples=8):
        with tracker.data():
            clock.advance(0.2)
        clock.advance(1.0)            # the compute
        with tracker.checkpoint():
            clock.advance(2.0)
    s = tracker.summary()
    assert s.wall_seconds == pytest.approx(3.2)
    assert s.goodput_seconds == pytest.approx(1.0)
    assert s.badput_seconds["data"] == pytest.approx(0.2)
    assert s.badput_seconds["checkpoint"] == pytest.approx(2.0)
    assert s.goodput_seconds + s.badput_total == pytest.approx(s.wall_seconds)
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_GOODPUT, "nested") == pytest.approx(1.0)
    assert rec.value(catalog.STEP_WALL, "nested") == pytest.approx(3.2)
    assert rec.value(catalog.STEP_UNACCOUNTED, "nested") == pytest.approx(0.0)


def test_a_checkpoint_inside_a_step_is_not_an_anomaly(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "ckpt-in-step", min_samples=3)
    for i in range(20):
        with tracker.step():
            clock.advance(1.0)
            if i == 15:
                with tracker.checkpoint():
                    clock.advance(5.0)
    s = tracker.summary()
    assert s.anomalous_steps == 0 and s.badput_seconds["anomaly"] == 0.0
    assert s.badput_seconds["checkpoint"] == pytest.approx(5.0)
    assert s.goodput_seconds == pytest.approx(20.0)


def test_a_failed_step_is_failed_badput_and_exported(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "failing")
    with pytest.raises(RuntimeError, match="boom"):
        with tracker.step(examples=8):
            clock.advance(1.0)
            raise RuntimeError("boom")
    s = tracker.summary()
    assert (s.steps, s.failed_steps, s.examples, s.goodput_seconds) == (1, 1, 0, 0.0)
    assert s.badput_seconds["failed"] == pytest.approx(1.0)
    assert s.unaccounted_seconds == pytest.approx(0.0)
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_BADPUT, "failing", "failed") == pytest.approx(1.0)
    assert rec.value(catalog.REQUESTS, "failing", "error") == 1


def test_wall_time_and_unaccounted_time_are_exported(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "gaps")
    with tracker.step():
        clock.advance(1.0)
    clock.advance(0.5)                # logging, evaluation: in no block
    with tracker.data():
        clock.advance(0.25)
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_WALL, "gaps") == pytest.approx(1.75)
    assert rec.value(catalog.STEP_UNACCOUNTED, "gaps") == pytest.approx(0.5)
    assert tracker.summary().unaccounted_seconds == pytest.approx(0.5)


def test_startup_restore_and_custom_events_have_their_own_reasons(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "taxonomy")
    with tracker.startup():
        clock.advance(3.0)
    with tracker.restore():
        clock.advance(2.0)
    with tracker.badput("evaluation"):
        clock.advance(1.5)
    tracker.record_badput("preemption_notice", 0.0)  # zero seconds: nothing to charge
    with tracker.step():
        clock.advance(1.0)
    s = tracker.summary()
    assert s.badput_seconds["startup"] == pytest.approx(3.0)
    assert s.badput_seconds["restore"] == pytest.approx(2.0)
    assert s.badput_seconds["evaluation"] == pytest.approx(1.5)
    adds_up(s, tolerance=1e-9)
    assert "evaluation" in s.format()
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_BADPUT, "taxonomy", "evaluation") == pytest.approx(1.5)


@pytest.mark.parametrize("reason", ["", "has space", "goodput", "x" * 80])
def test_a_bad_custom_reason_is_a_clear_error(registry: CollectorRegistry, reason: str) -> None:
    tracker, _ = tracker_with_clock(registry, "bad-reason")
    with pytest.raises(ValueError, match="reason"):
        tracker.badput(reason)


def test_overaccounting_is_clipped_counted_and_warned(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "over")
    clock.advance(1.0)
    with pytest.warns(RuntimeWarning, match="more than the wall time"):
        tracker.record_badput("outage", 5.0)  # 5 s reported, only 1 s has passed
    s = tracker.summary()
    assert s.badput_seconds["outage"] == pytest.approx(1.0)
    assert s.overaccounted_seconds == pytest.approx(4.0)
    adds_up(s, tolerance=1e-9)
    assert jaxobs.internal_error_counts().get("goodput_accounting", 0) >= 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per tracker, counted every time
        tracker.record_badput("outage", 5.0)


def test_a_compile_outside_every_block_is_compile(registry: CollectorRegistry) -> None:
    tracker = GoodputTracker("loose-compile", registry=registry, start="now")
    evaluate = jax.jit(lambda x: jnp.cos(x).sum() * 3.0)
    jax.block_until_ready(evaluate(jnp.ones(7)))  # evaluation between steps, not in a block
    with tracker.step():
        pass
    s = tracker.summary()
    assert s.badput_seconds["compile"] > 0
    adds_up(s, tolerance=0.5)  # eager dispatch around the compile stays unaccounted


def test_startup_counts_from_process_start_by_default(registry: CollectorRegistry) -> None:
    import psutil

    since_start = time.time() - psutil.Process().create_time()
    tracker = GoodputTracker("from-process-start", registry=registry)
    s = tracker.summary()
    # The test process has run for a while (imports, JAX, earlier tests): all of it is start-up.
    assert s.badput_seconds["startup"] >= since_start * 0.9
    assert s.wall_seconds >= s.badput_seconds["startup"]
    later = GoodputTracker("from-now", registry=registry, start="now").summary()
    assert later.badput_seconds["startup"] == 0.0
    assert later.wall_seconds < s.wall_seconds


# --- step-time deviation and the anomaly detector ---------------------------------------------


def test_two_speed_steps_are_not_anomalies_but_a_straggler_is() -> None:
    detector = AnomalyDetector(window=50, min_samples=10)
    flagged = 0
    for i in range(300):
        seconds = 0.020 if i % 5 == 0 else 0.010  # every fifth step also logs: a second speed
        flagged += detector.observe(seconds) > 0
    assert flagged == 0
    assert detector.observe(0.060) == pytest.approx(0.050)  # excess over the median


def test_a_permanent_slowdown_stays_visible_as_deviation(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "slowdown", min_samples=5)
    for i in range(300):
        with tracker.step():
            clock.advance(1.0 if i < 50 else 2.0)
    s = tracker.summary()
    assert s.expected_step_seconds == pytest.approx(1.0)  # learned: the best sustained median
    assert s.step_time_deviation == pytest.approx(2.0)   # still 2x, 250 steps later
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_EXPECTED, "slowdown") == pytest.approx(1.0)
    assert rec.value(catalog.STEP_RECENT, "slowdown") == pytest.approx(2.0)


def test_a_configured_expected_step_time_shows_gradual_drift(registry: CollectorRegistry) -> None:
    tracker, clock = tracker_with_clock(registry, "drift", min_samples=5, expected_step_seconds=1.0)
    for i in range(200):
        with tracker.step():
            clock.advance(1.0 + 0.005 * i)  # 0.5% slower every step: never an outlier
    s = tracker.summary()
    assert s.anomalous_steps == 0
    assert s.expected_step_seconds == 1.0
    assert s.step_time_deviation > 1.8


def test_baseline_learns_the_lowest_sustained_median() -> None:
    baseline = StepTimeBaseline(window=10)
    for t in [2.0] * 10 + [1.0] * 10 + [3.0] * 30:
        baseline.observe(t)
    assert baseline.expected == pytest.approx(1.0)
    assert baseline.deviation == pytest.approx(3.0)


# --- the layouts that must add up (real clock, real JAX) ----------------------------------------


def _compute(x: jax.Array) -> jax.Array:
    return jnp.tanh(x @ x.T).sum()


def test_layout_data_and_checkpoint_inside_the_step_adds_up(registry: CollectorRegistry,
                                                            tmp_path: Path) -> None:
    step = jax.jit(_compute)
    x = jnp.ones((64, 64))
    tracker = GoodputTracker("layout-nested", registry=registry, start="now")
    for i in range(30):
        with tracker.step(examples=64):
            with tracker.data():
                time.sleep(0.002)
            jax.block_until_ready(step(x))
            time.sleep(0.012)  # stands in for device compute: steps of a realistic length
            if i % 10 == 9:
                with tracker.checkpoint():
                    (tmp_path / f"ckpt_{i}").write_bytes(b"\0" * 100_000)
                    time.sleep(0.01)
    s = tracker.summary()
    adds_up(s)
    assert s.badput_seconds["data"] >= 30 * 0.002
    assert s.badput_seconds["checkpoint"] >= 3 * 0.01
    assert s.badput_seconds["compile"] > 0 and s.compiled_steps == 1
    assert s.goodput_seconds < s.step_seconds


def test_layout_compile_inside_a_data_wait_is_compile(registry: CollectorRegistry) -> None:
    preprocess = jax.jit(lambda x: (x * 2.0 + 1.0).astype(jnp.float32) / 3.0)
    step = jax.jit(_compute)
    x = jnp.ones((32, 32))
    tracker = GoodputTracker("layout-compile-in-data", registry=registry, start="now")
    for _ in range(10):
        with tracker.data():
            batch = jax.block_until_ready(preprocess(x))  # compiles on the first wait only
            time.sleep(0.002)
        with tracker.step(examples=32):
            jax.block_until_ready(step(batch))
            time.sleep(0.012)
    s = tracker.summary()
    adds_up(s)
    compile_in_data = s.badput_seconds["compile"]
    assert compile_in_data > 0
    # data holds the waits only: 10 sleeps, not the compile on top of them
    assert s.badput_seconds["data"] >= 10 * 0.002
    assert s.badput_seconds["data"] + s.badput_seconds["compile"] <= s.wall_seconds


def test_layout_restart_that_redoes_steps_adds_up(registry: CollectorRegistry, tmp_path: Path) -> None:
    state = tmp_path / "goodput-state.json"
    step = jax.jit(_compute)
    x = jnp.ones((32, 32))

    def train(service: str, first: int, last: int) -> GoodputTracker:
        tracker = GoodputTracker(service, registry=registry, start="now", state_file=state)
        with tracker.restore():
            time.sleep(0.01)  # reading the checkpoint of step `first - 1`
        for n in range(first, last + 1):
            with tracker.step(number=n, examples=32):
                jax.block_until_ready(step(x))
                time.sleep(0.012)
        return tracker

    before = train("layout-restart-1", 1, 20)  # crashes after step 20; last checkpoint at step 10
    assert before.summary().badput_seconds["disruption"] == 0.0
    after = train("layout-restart-2", 11, 30)  # resumes from the checkpoint: 11..20 are re-done
    s = after.summary()
    adds_up(s)
    assert s.redone_steps == 10
    assert s.badput_seconds["disruption"] >= 10 * 0.012
    assert s.badput_seconds["restore"] >= 0.01
    # the re-done steps' time is not goodput: about half the step time went to disruption
    assert s.badput_seconds["disruption"] == pytest.approx(s.goodput_seconds, rel=0.5)


def test_reasons_are_the_documented_ones() -> None:
    assert REASONS == ("startup", "restore", "compile", "data", "checkpoint", "anomaly", "failed",
                       "disruption")
    assert "disruption" in catalog.STEP_BADPUT.help and "startup" in catalog.STEP_BADPUT.help


def test_a_broken_step_number_or_state_file_never_breaks_the_loop(registry: CollectorRegistry,
                                                                  tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    before = jaxobs.internal_error_counts().get("goodput_state", 0)
    tracker, clock = tracker_with_clock(registry, "robust", state_file=state)
    with tracker.step(number="seven"):  # type: ignore[arg-type]
        clock.advance(1.0)
    with tracker.step(number=1):
        clock.advance(1.0)
    assert jaxobs.internal_error_counts()["goodput_state"] >= before + 2  # corrupt file, bad number
    assert tracker.summary().steps == 2
    assert json.loads(state.read_text())["last_step"] == 1  # rewritten atomically
