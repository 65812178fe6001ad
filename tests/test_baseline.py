"""The regression gate's decisions, on real JAX on CPU, on this (noisy, shared) machine.

A/A: the same kernel recorded twice must pass; A/B: an extra matmul, a doubled
peak memory and a kernel doing 1.5x the work must each be caught.  Timings
for A and B are sampled interleaved (one call of each in turn), so that both
samples meet the same machine load: on a shared 2-core machine, sequential
runs seconds apart differ by more than 1.5x (docs/upgrades.md has the figures).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
from jaxobs.baseline import compare, stats
from jaxobs.baseline import session as sessions
from jaxobs.baseline.session import Session

_ids = itertools.count()
TRIALS = 20
SAMPLES = 30  # per build per trial


def _loop_kernel(work: int) -> Any:
    def kernel(x: jax.Array) -> jax.Array:
        return jax.lax.fori_loop(0, work, lambda i, y: jnp.tanh(y @ x), x)

    return kernel


def _interleaved(kernel_a: Any, kernel_b: Any, arg_a: Any, arg_b: Any, trials: int,
                 samples: int = SAMPLES) -> list[tuple[dict, dict]]:
    """``trials`` pairs of (A, B) baselines whose timing samples were taken in turn."""
    session = Session().start()
    registry = CollectorRegistry()
    tag = next(_ids)
    fa = jaxobs.jit(kernel_a, name=f"a{tag}", registry=registry)
    fb = jaxobs.jit(kernel_b, name=f"b{tag}", registry=registry)
    for _ in range(trials * samples + 1):  # the first call of each compiles: not a sample
        fa(arg_a)
        fb(arg_b)
    doc = session.finish()
    rec_a, rec_b = doc["functions"][f"a{tag}"], doc["functions"][f"b{tag}"]
    pairs = []
    for t in range(trials):
        window = slice(t * samples, (t + 1) * samples)
        a = {**doc, "functions": {"kernel": {**rec_a, "kernel_seconds": rec_a["kernel_seconds"][window]}}}
        b = {**doc, "functions": {"kernel": {**rec_b, "kernel_seconds": rec_b["kernel_seconds"][window]}}}
        pairs.append((a, b))
    return pairs


def _verdicts(old: dict, new: dict) -> dict[str, str]:
    return {row.quantity: row.verdict for row in compare.compare(old, new).rows}


def test_a_a_passes_20_of_20() -> None:
    x = jnp.ones((160, 160)) / 160
    pairs = _interleaved(_loop_kernel(4), _loop_kernel(4), x, x, TRIALS)
    failures = [compare.render_text(compare.compare(a, b)) for a, b in pairs
                if compare.compare(a, b).regressions]
    assert not failures, f"{len(failures)}/{TRIALS} A/A runs failed:\n" + "\n".join(failures)


def test_a_kernel_doing_1_5x_the_work_is_caught_by_the_timing_test() -> None:
    x = jnp.ones((160, 160)) / 160
    pairs = _interleaved(_loop_kernel(4), _loop_kernel(6), x, x, 5, samples=100)
    # A while loop's FLOPs count the body once, so only the timing test can see this one.
    assert _verdicts(*pairs[0])["flops"] == "ok"
    caught = [_verdicts(a, b)["kernel_seconds"] for a, b in pairs]
    # measured: 19 of 20 such comparisons flag it (docs/upgrades.md); 3 of 5 keeps this test from flaking
    assert caught.count("REGRESSION") >= 3, caught


def test_an_extra_matmul_is_caught_exactly() -> None:
    x = jnp.ones((64, 64))
    old, new = _interleaved(lambda x: jnp.tanh(x @ x), lambda x: jnp.tanh((x @ x) @ x), x, x, 1)[0]
    verdicts = _verdicts(old, new)
    assert verdicts["flops"] == "REGRESSION"
    assert verdicts["compiles"] == "ok"


def test_a_shape_change_that_doubles_peak_memory_is_caught() -> None:
    def kernel(x: jax.Array) -> jax.Array:
        return jnp.tanh(x) * 2

    old, new = _interleaved(kernel, kernel, jnp.ones((256, 64)), jnp.ones((512, 64)), 1)[0]
    rows = {r.quantity: r for r in compare.compare(old, new).rows}
    assert rows["peak_memory_bytes"].verdict == "REGRESSION"
    assert rows["peak_memory_bytes"].change == "+100.0%"


def test_an_extra_compile_is_caught() -> None:
    session = Session().start()
    f = jaxobs.jit(lambda x: x + 1, name="recompiles", registry=CollectorRegistry())
    f(jnp.ones(3))
    old = session.finish()
    session = Session().start()
    g = jaxobs.jit(lambda x: x + 1, name="recompiles", registry=CollectorRegistry())
    g(jnp.ones(3))
    g(jnp.ones(4))  # a new shape: one more compile
    new = session.finish()
    assert old["functions"]["recompiles"]["compiles"] == 1
    assert _verdicts(old, new)["compiles"] == "REGRESSION"


def test_per_function_thresholds_and_globs(tmp_path: Any) -> None:
    old = {"format": "jaxobs-baseline", "version": 1, "functions": {
        "train_step": {"compiles": 1, "peak_memory_bytes": 100}, "serve": {"compiles": 1, "peak_memory_bytes": 100}}}
    new = {"format": "jaxobs-baseline", "version": 1, "functions": {
        "train_step": {"compiles": 1, "peak_memory_bytes": 108}, "serve": {"compiles": 1, "peak_memory_bytes": 108}}}
    path = tmp_path / "thresholds.yaml"
    path.write_text("functions:\n  'train_*':\n    peak_memory_bytes: 10%\n")
    result = compare.compare(old, new, compare.load_thresholds(path))
    verdict = {(r.function, r.quantity): r.verdict for r in result.rows}
    assert verdict[("train_step", "peak_memory_bytes")] == "ok"  # 8 % < its 10 %
    assert verdict[("serve", "peak_memory_bytes")] == "REGRESSION"  # 8 % > the default 5 %
    path.write_text("defaults:\n  peak_memory_bytes: 'off'\n")
    assert not compare.compare(old, new, compare.load_thresholds(path)).regressions


@pytest.mark.parametrize(("text", "message"), [
    ("defaults:\n  flopz: 1%\n", "unknown quantity 'defaults.flopz'"),
    ("defaults:\n  flops: lots\n", "field 'defaults.flops' is 'lots'"),
    ("functions:\n  f:\n    kernel_seconds: {alpha: 0.1, effect: 2}\n", "field 'functions.f.kernel_seconds'"),
    ("colour: blue\n", "top-level keys"),
])
def test_bad_thresholds_are_one_line_errors(tmp_path: Any, text: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(compare.BaselineError) as info:
        compare.load_thresholds(path)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_mann_whitney_matches_exact_enumeration() -> None:
    rng = random.Random(7)
    old = [rng.random() for _ in range(4)]
    new = [rng.random() + 0.3 for _ in range(5)]
    test = stats.mann_whitney_greater(old, new)
    pooled = old + new
    observed = sum(n > o for o in old for n in new)
    count = total = 0
    for chosen in itertools.combinations(range(9), 5):  # every way to label 5 of the 9 as "new"
        b = [pooled[i] for i in chosen]
        a = [pooled[i] for i in range(9) if i not in chosen]
        total += 1
        count += sum(y > x for x in a for y in b) >= observed
    assert test.method == "exact"
    assert test.u == observed
    assert test.p_value == pytest.approx(count / total)


def test_mann_whitney_agrees_with_scipy_when_installed() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(3)
    for m, n, shift, tie in [(8, 8, 0.2, False), (30, 40, 0.1, False), (60, 80, 0.05, False), (40, 40, 0.3, True)]:
        old = [rng.random() for _ in range(m)]
        new = [rng.random() + shift for _ in range(n)]
        if tie:
            old, new = [round(v, 1) for v in old], [round(v, 1) for v in new]
        ours = stats.mann_whitney_greater(old, new)
        method = "exact" if ours.method == "exact" else "asymptotic"
        theirs = scipy_stats.mannwhitneyu(new, old, alternative="greater", method=method)
        assert ours.u == pytest.approx(theirs.statistic)
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9, abs=1e-12)


def test_processes_of_one_run_merge_into_one_baseline() -> None:
    part = {"compiles": 1, "compile_seconds": {"trace": 0.1, "lower": 0.2, "backend": 0.3}, "flops": 10.0,
            "bytes_accessed": 5.0, "peak_memory_bytes": 100.0, "fusions": 2.0, "kernel_seconds": [0.1, 0.2]}
    other = {**part, "peak_memory_bytes": 300.0, "kernel_seconds": [0.3]}
    merged = sessions.merge([{"versions": {"jax": "x"}, "functions": {"f": part}},
                             {"versions": {"jax": "x"}, "functions": {"f": other, "g": part}}])
    f = merged["functions"]["f"]
    assert f["compiles"] == 2 and f["compile_seconds"]["backend"] == pytest.approx(0.6)
    assert f["peak_memory_bytes"] == 300.0 and f["kernel_seconds"] == [0.1, 0.2, 0.3]
    assert set(merged["functions"]) == {"f", "g"} and merged["format"] == "jaxobs-baseline"
