"""The example training loop and the goodput accounting it uses (``jaxobs.runtime.goodput``).

Real JAX on CPU for the loop and the gradient check; the accounting's exact
arithmetic is checked with a scripted clock, its live numbers against the
invariants that must hold on any machine (components never exceed the wall
time, injected delays show up under their reason).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from prometheus_client import CollectorRegistry
from realtools import REPO

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog
from jaxobs.runtime.goodput import REASONS, AnomalyDetector, GoodputTracker
from jaxobs.testing import GradientCheckError

sys.path.insert(0, str(REPO / "examples" / "training_loop"))

import train  # noqa: E402


@pytest.fixture(autouse=True)
def not_ready() -> Iterator[None]:
    yield
    jaxobs.set_ready(False)  # train.run marks the process ready; readiness is process-wide


class ScriptedClock:
    """A clock that moves only when told: exact seconds in, exact seconds out."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- the anomaly detector -----------------------------------------------------------------


def test_detector_judges_nothing_before_min_samples() -> None:
    detector = AnomalyDetector(window=20, min_samples=5)
    assert [detector.observe(t) for t in (1.0, 1.0, 1.0, 1.0, 100.0)] == [0.0] * 5


def test_detector_charges_the_excess_over_the_median() -> None:
    detector = AnomalyDetector(window=20, min_samples=5)
    for t in (1.0, 1.1, 0.9, 1.0, 1.0, 1.1, 0.9):
        assert detector.observe(t) == 0.0
    # median 1.0, MAD 0.1 → threshold 1.0 + max(3 · 1.4826 · 0.1, 0.5 · 1.0) = 1.5
    assert detector.threshold() == pytest.approx(1.5)
    assert detector.observe(1.45) == 0.0
    assert detector.observe(4.0) == pytest.approx(3.0)


def test_detector_ignores_jitter_below_the_relative_floor() -> None:
    detector = AnomalyDetector(window=20, min_samples=5)
    for _ in range(10):
        detector.observe(1.0)  # MAD 0: every slower step would exceed median + 3·MAD
    assert detector.observe(1.2) == 0.0
    assert detector.observe(1.6) == pytest.approx(0.6)


def test_detector_window_is_rolling() -> None:
    detector = AnomalyDetector(window=5, min_samples=5)
    for _ in range(5):
        detector.observe(1.0)
    for _ in range(5):
        detector.observe(3.0)  # a lasting slowdown becomes the new normal ...
    assert detector.observe(3.0) == 0.0  # ... and is no longer charged


# --- the tracker, with exact times -----------------------------------------------------------


def test_tracker_splits_wall_time_exactly(registry: CollectorRegistry) -> None:
    clock = ScriptedClock()
    tracker = GoodputTracker("exact", registry=registry, min_samples=3, clock=clock)
    for i in range(6):
        with tracker.data():
            clock.advance(0.2)
        with tracker.step(examples=32):
            clock.advance(5.0 if i == 5 else 1.0)  # the last step straggles
        clock.advance(0.1)  # logging: outside every block
    with tracker.checkpoint():
        clock.advance(2.0)

    s = tracker.summary()
    assert s.wall_seconds == pytest.approx(6 * 0.2 + 5 * 1.0 + 5.0 + 6 * 0.1 + 2.0)
    assert s.badput_seconds == pytest.approx({**dict.fromkeys(REASONS, 0.0), "data": 1.2,
                                              "checkpoint": 2.0, "anomaly": 4.0})
    assert s.goodput_seconds == pytest.approx(6 * 1.0)
    assert s.unaccounted_seconds == pytest.approx(0.6)
    assert (s.steps, s.anomalous_steps, s.compiled_steps, s.examples) == (6, 1, 0, 192)
    rec = jaxobs.telemetry.recorder_for(registry)
    assert rec.value(catalog.STEP_BADPUT, "exact", "anomaly") == pytest.approx(4.0)
    assert rec.value(catalog.STEP_GOODPUT, "exact") == pytest.approx(6.0)
    assert rec.value(catalog.STEP_EXAMPLES, "exact") == 192
    assert rec.value(catalog.REQUESTS, "exact", "ok") == 6  # each step is a jaxobs.step SLI event


def test_compile_time_of_the_first_step_is_compile_badput(registry: CollectorRegistry) -> None:
    tracker = GoodputTracker("compiling", registry=registry)
    step = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())  # plain jax.jit: any compile counts
    x = jnp.ones((48, 48))
    with tracker.step(examples=48):
        jax.block_until_ready(step(x))
    first = tracker.summary()
    assert first.compiled_steps == 1
    assert first.badput_seconds["compile"] > 0  # also compiles outside the step (jnp.ones)
    with tracker.step(examples=48):
        jax.block_until_ready(step(x))
    second = tracker.summary()
    assert second.compiled_steps == 1  # warm: no new compile badput
    assert second.badput_seconds["compile"] == first.badput_seconds["compile"]


# --- the training loop ---------------------------------------------------------------------


def test_training_summary_is_consistent(registry: CollectorRegistry, tmp_path: Path) -> None:
    cfg = train.Config(steps=60, stall_every=10, stall_ms=20, slow_step_every=25, slow_step_ms=80,
                       checkpoint_every=20, checkpoint_dir=str(tmp_path), service="train-test")
    result = train.run(cfg, registry=registry, echo=lambda *_: None)
    s = result.summary

    assert result.grad_check == "passed"
    assert (s.steps, s.failed_steps, s.examples) == (60, 0, 60 * cfg.batch_size)
    assert result.losses[-1] < result.losses[0] / 2 and result.accuracy > 0.8
    # Every component is a part of the wall time, and they never add up to more.
    assert all(0 <= s.badput_seconds[r] <= s.wall_seconds for r in REASONS)
    assert 0 < s.goodput_seconds <= s.step_seconds <= s.wall_seconds
    assert s.goodput_seconds + s.badput_total <= s.wall_seconds + 1e-6
    # What was injected shows up under its reason.
    assert s.compiled_steps >= 1 and s.badput_seconds["compile"] > 0  # the first step compiled
    assert s.badput_seconds["data"] >= 6 * 0.020  # six stalls
    assert s.badput_seconds["checkpoint"] > 0
    assert s.anomalous_steps >= 2 and s.badput_seconds["anomaly"] >= 2 * 0.060  # two stragglers
    assert sorted(p.name for p in tmp_path.glob("step_*.npz")) == ["step_000040.npz", "step_000060.npz"]
    # The exported metrics carry the same numbers as the summary.
    rec = jaxobs.telemetry.recorder_for(registry)
    for reason in REASONS:
        assert rec.value(catalog.STEP_BADPUT, "train-test", reason) == pytest.approx(s.badput_seconds[reason])
    assert rec.value(catalog.STEP_GOODPUT, "train-test") == pytest.approx(s.goodput_seconds)
    assert rec.value(catalog.STEP_EXAMPLES, "train-test") == s.examples
    assert rec.value(catalog.REQUESTS, "train-test", "ok") == 60
    assert "goodput" in s.format() and "anomaly" in s.format()


def test_gradient_check_passes_on_the_training_loss() -> None:
    x, y = train.make_dataset(0, 64, 16, 3)
    params = train.init_params(jax.random.PRNGKey(0), 16, 8, 3)
    train.check_gradients(train.loss_fn, params, x, y)


def test_gradient_check_fails_on_a_deliberately_wrong_gradient() -> None:
    x, y = train.make_dataset(0, 64, 16, 3)
    params = train.init_params(jax.random.PRNGKey(0), 16, 8, 3)

    def wrong_loss(p: train.Params, xb: jax.Array, yb: jax.Array) -> jax.Array:
        @jax.custom_vjp
        def f(q: train.Params) -> jax.Array:
            return train.loss_fn(q, xb, yb)

        def fwd(q: train.Params) -> tuple[jax.Array, train.Params]:
            return f(q), q

        def bwd(q: train.Params, g: jax.Array) -> tuple[train.Params]:
            grads = jax.grad(train.loss_fn)(q, xb, yb)
            # The bug: the bias gradient of the last layer is dropped.
            return ({**jax.tree_util.tree_map(lambda t: g * t, grads), "b2": jnp.zeros_like(q["b2"])},)

        f.defvjp(fwd, bwd)
        return f(p)

    with pytest.raises(GradientCheckError) as info:
        train.check_gradients(wrong_loss, params, x, y)
    assert {m.path for m in info.value.mismatches} == {"args[0]['b2']"}


def test_train_script_prints_the_summary() -> None:
    out = subprocess.run([sys.executable, str(REPO / "examples" / "training_loop" / "train.py"),
                          "--steps", "30", "--checkpoint-every", "0"],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={k: v for k, v in {**os.environ, "JAX_PLATFORMS": "cpu"}.items()
                              if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert out.returncode == 0, out.stderr
    assert "gradient check: passed" in out.stdout
    assert "training: 30 steps (0 failed)" in out.stdout
    for word in ("goodput", *REASONS, "examples/s"):
        assert word in out.stdout
