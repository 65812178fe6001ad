"""Guards a JAX team can trust: verdicts that do not depend on test order, no blind spots,
no self-inflicted failures, honest gradient diagnoses.

Each test runs a small suite through ``pytester`` (in-process, the plugin loaded
through its entry point as in a user's suite), real JAX on CPU, and asserts on
per-test outcomes and on the failure text.  Every "order" test runs the same
file twice — the whole file and one test alone — and asserts the same verdict.
"""

from __future__ import annotations

import re
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxobs import testing

pytest_plugins = ["pytester"]

HEADER = """
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
from jaxobs import testing
"""


def write(pytester: pytest.Pytester, body: str) -> None:
    pytester.makepyfile(HEADER + textwrap.dedent(body))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def outcomes(result: pytest.RunResult) -> dict[str, str]:
    """Test name (with parameters) -> passed/failed/skipped, xfail reported as "xfailed"."""
    found = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        name = report.nodeid.split("::", 1)[1]
        if report.when == "call" or report.outcome != "passed":
            found[name] = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
    return found


# --- 1. per-test verdicts ----------------------------------------------------------------------

def test_parametrized_shapes_each_compile_once_and_pass(pytester):
    write(pytester, """
        f = jax.jit(lambda x: x * 2)

        @pytest.mark.no_recompile
        @pytest.mark.parametrize("n", [3, 4])
        def test_shape(n):
            f(jnp.ones(n)); f(jnp.ones(n))
    """)
    assert outcomes(run(pytester)) == {"test_shape[3]": "passed", "test_shape[4]": "passed"}


ORDER_EARLIER_COMPILE = """
    step = jax.jit(lambda x: x + 1)

    def test_a_unguarded_warms_one_shape():
        step(jnp.ones(3))

    @pytest.mark.no_recompile
    def test_b_guarded_new_shape_once():
        step(jnp.ones(4)); step(jnp.ones(4))
"""


def test_an_earlier_test_compiling_the_function_does_not_fail_a_later_guarded_test(pytester):
    write(pytester, ORDER_EARLIER_COMPILE)
    in_file = outcomes(run(pytester))
    alone = outcomes(run(pytester, "-k", "test_b"))
    assert in_file["test_b_guarded_new_shape_once"] == alone["test_b_guarded_new_shape_once"] == "passed"


ORDER_EARLIER_WARMUP = """
    step = jax.jit(lambda x: x + 1)

    def test_a_unguarded_warms_both_shapes():
        step(jnp.ones(3)); step(jnp.ones(4))

    @pytest.mark.no_recompile(fresh=True)
    def test_b_guarded_real_recompile():
        step(jnp.ones(3)); step(jnp.ones(4))
"""


def test_fresh_guard_sees_a_recompile_an_earlier_test_warmed_up(pytester):
    write(pytester, ORDER_EARLIER_WARMUP)
    in_file = run(pytester)
    alone = run(pytester, "-k", "test_b")
    assert outcomes(in_file)["test_b_guarded_real_recompile"] == "failed"
    assert outcomes(alone)["test_b_guarded_real_recompile"] == "failed"
    for result in (in_file, alone):
        assert "x 2. shape: x: f32[3] -> f32[4]" in result.stdout.str()


XDIST_SUITE = """
    step = jax.jit(lambda x: x * 3)
    other = jax.jit(lambda x: x - 3)

    def test_a_warm():
        step(jnp.ones(3)); other(jnp.ones(2))

    @pytest.mark.no_recompile
    @pytest.mark.parametrize("n", [3, 4, 5])
    def test_b_each_shape(n):
        step(jnp.ones(n))

    @pytest.mark.no_recompile
    def test_c_real_recompile():
        other(jnp.ones(5)); other(jnp.ones(6))

    @pytest.mark.max_compiles(1)
    def test_d_first_compile_after_others():
        step(jnp.ones(7)); other(jnp.ones(7))
"""


def test_xdist_run_gives_the_serial_verdicts(pytester):
    pytest.importorskip("xdist")
    write(pytester, XDIST_SUITE)
    serial = outcomes(run(pytester))
    parallel = run(pytester, "-n", "2", "-rA")
    parallel_outcomes = {}
    for line in parallel.stdout.lines:  # -rA summary: "PASSED test_x.py::name"
        m = re.match(r"^(PASSED|FAILED) \S+::(\S+)", line)
        if m:
            parallel_outcomes[m.group(2)] = m.group(1).lower()
    assert parallel_outcomes == serial, parallel.stdout.str()
    assert serial["test_c_real_recompile"] == "failed"
    assert sorted(v for v in serial.values()) == ["failed", "passed", "passed", "passed", "passed", "passed"]


# --- 2. exact attribution -------------------------------------------------------------------------

def test_eager_tanh_is_not_blamed_on_an_earlier_user_function_named_tanh(pytester):
    write(pytester, """
        def tanh(x):
            return x * 2

        outer = jax.jit(lambda x: jax.jit(tanh)(x) + 1)

        @pytest.mark.max_compiles(10)
        def test_a_traces_a_user_tanh_inside_another_jit():
            outer(jnp.ones(2)); outer(jnp.ones(3))

        @pytest.mark.no_recompile
        def test_b_eager_tanh_only():
            jnp.tanh(jnp.ones(7)); jnp.tanh(jnp.ones(9))
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_a_traces_a_user_tanh_inside_another_jit": "passed",
                                "test_b_eager_tanh_only": "passed"}, result.stdout.str()


def test_vmap_of_jit_recompiles_for_a_new_batch_size_are_counted(pytester):
    write(pytester, """
        f = jax.jit(lambda x: jnp.sin(x) * 2)

        @pytest.mark.max_compiles(1)
        def test_batch_sizes():
            vf = jax.vmap(f)
            vf(jnp.ones((5, 3))); vf(jnp.ones((6, 3)))
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_batch_sizes": "failed"}
    assert "compiled 2 times" in result.stdout.str()
    assert "x 2. shape: x: f32[5,3] -> f32[6,3]" in result.stdout.str()


def test_pmap_blind_spot_workaround_jit_of_pmap_is_counted():
    f = jax.jit(lambda x: jnp.sin(x) * 3)
    per_device = jax.jit(jax.pmap(f))  # documented workaround: a bare pmap is not seen
    with pytest.raises(testing.RecompileError) as info, testing.no_recompile():
        per_device(jnp.ones((1, 3)))
        per_device(jnp.ones((1, 4)))
    assert "shape: x: f32[1,3] -> f32[1,4]" in str(info.value)


def test_eager_grad_through_a_jitted_function_is_not_a_recompile(pytester):
    write(pytester, """
        f = jax.jit(lambda x: jnp.sin(x) * 2)

        @pytest.mark.no_recompile
        def test_grad():
            g = jax.grad(lambda x: jnp.sum(f(x)))
            g(jnp.ones(3)); g(jnp.ones(3))
    """)
    assert outcomes(run(pytester)) == {"test_grad": "passed"}


# --- 3. no self-inflicted failures ------------------------------------------------------------------

def test_key_reuse_marker_with_compile_markers_does_not_fail_on_its_own_switch(pytester):
    write(pytester, """
        sample = jax.jit(lambda k, x: x + jax.random.normal(k, x.shape))

        @pytest.fixture
        def warm():
            sample(jax.random.key(0), jnp.ones(3))

        @pytest.mark.no_key_reuse
        @pytest.mark.no_recompile
        def test_both_markers(warm):
            sample(jax.random.key(1), jnp.ones(3))

        @pytest.mark.no_key_reuse
        @pytest.mark.max_compiles(1)
        def test_one_real_recompile_is_within_the_limit(warm):
            sample(jax.random.key(2), jnp.ones(3)); sample(jax.random.key(3), jnp.ones(4))
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_both_markers": "passed",
                                "test_one_real_recompile_is_within_the_limit": "passed"}, result.stdout.str()


def test_jax_compiles_fixture_records_only_the_test_call(pytester):
    write(pytester, """
        f = jax.jit(lambda x: x * 5)

        @pytest.fixture
        def warm():
            f(jnp.ones(2))

        def test_listed_first(jax_compiles, warm):
            assert jax_compiles.count() == 0
            f(jnp.ones(3))
            assert jax_compiles.count(f) == 1
    """)
    assert outcomes(run(pytester)) == {"test_listed_first": "passed"}


def test_marker_failures_raise_typed_exceptions_for_xfail(pytester):
    write(pytester, """
        f = jax.jit(lambda x: x * 5)

        @pytest.mark.xfail(raises=testing.RecompileError, strict=True)
        @pytest.mark.no_recompile
        def test_recompile():
            f(jnp.ones(2)); f(jnp.ones(3))

        @pytest.mark.xfail(raises=testing.KeyReuseDetected, strict=True)
        @pytest.mark.no_key_reuse
        def test_key_reuse():
            k = jax.random.key(0)
            jax.random.normal(k); jax.random.normal(k)

        @pytest.mark.no_recompile
        def test_plain_failure_is_short():
            f(jnp.ones(4)); f(jnp.ones(5))
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_recompile": "xfailed", "test_key_reuse": "xfailed",
                                "test_plain_failure_is_short": "failed"}
    text = result.stdout.str()
    failure = text[text.index("= FAILURES ="):text.index("short test summary")]
    assert "RecompileError: jaxobs @pytest.mark.no_recompile: 1 compile over the limit" in failure
    assert "x 2. shape: x: f32[4] -> f32[5]" in failure
    assert "pluggy" not in failure and "pytest_plugin.py" not in failure and len(failure.splitlines()) < 10


def test_the_closest_compile_marker_wins(pytester):
    write(pytester, """
        pytestmark = pytest.mark.max_compiles(1)
        f = jax.jit(lambda x: x * 5)

        @pytest.mark.max_compiles(3)
        def test_relaxed():
            f(jnp.ones(2)); f(jnp.ones(3)); f(jnp.ones(4))

        def test_module_limit():
            f(jnp.ones(5)); f(jnp.ones(6))
    """)
    assert outcomes(run(pytester)) == {"test_relaxed": "passed", "test_module_limit": "failed"}


def test_only_name_that_matches_nothing_is_reported_at_collection(pytester):
    pytester.makeconftest("""
        import jaxobs
        from prometheus_client import CollectorRegistry

        PREDICT = jaxobs.jit(lambda x: x * 7, name="predict", registry=CollectorRegistry())
    """)
    write(pytester, """
        step = jax.jit(lambda x: x * 5)

        @pytest.mark.no_recompile(only="predict")      # named in conftest.py: fine
        def test_named_in_conftest():
            pass

        @pytest.mark.no_recompile(only="stpe")
        def test_typo():
            step(jnp.ones(2)); step(jnp.ones(3))
    """)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert ("test_typo: only='stpe' names no function used in "
            "test_only_name_that_matches_nothing_is_reported_at_collection.py or its conftest.py") in text
    assert "test_named_in_conftest" not in text
    assert "Traceback" not in text


def test_bad_marker_argument_is_one_line_at_collection(pytester):
    write(pytester, """
        @pytest.mark.max_compiles(1.5)
        def test_x():
            pass
    """)
    result = run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "test_x: use @pytest.mark.max_compiles(n) with an int n >= 0, got (1.5)" in text
    assert "Traceback" not in text
    assert len(text[text.index("ERROR: jaxobs"):].strip().splitlines()) == 2, text


def test_weak_type_change_is_a_dtype_cause(pytester):
    write(pytester, """
        f = jax.jit(lambda x: x * 5)

        @pytest.mark.no_recompile
        def test_weak():
            f(jnp.float32(1.0)); f(1.0)
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_weak": "failed"}
    assert "x 2. dtype: x: f32[] -> f32[]{weak}" in result.stdout.str()


def test_called_at_has_one_format_for_instrumented_and_plain_jit(pytester):
    write(pytester, """
        g = jaxobs.jit(lambda x: x * 2, name="g", registry=CollectorRegistry())
        h = jax.jit(lambda x: x * 3)

        @pytest.mark.no_recompile
        def test_both():
            g(jnp.ones(2)); g(jnp.ones(3))
            h(jnp.ones(2)); h(jnp.ones(3))
    """)
    text = run(pytester).stdout.str()
    # the failure report only: with CI set, pytest repeats the whole message in its summary
    report = text.split("short test summary info")[0]
    sites = re.findall(r"\(called at ([^)]*)\)", report)
    assert len(sites) == 4, text
    assert all(re.fullmatch(r"test_called_at_has_one_format_for_instrumented_and_plain_jit\.py:\d+", s)
               for s in sites), sites


# --- 4. legacy keys -----------------------------------------------------------------------------

def test_legacy_prngkey_reuse_is_caught(pytester):
    write(pytester, """
        def init(key):
            return jax.random.normal(key, (3,)), jax.random.normal(key, (3,))

        def init_split(key):
            k1, k2 = jax.random.split(key)
            return jax.random.normal(k1, (3,)), jax.random.normal(k2, (3,))

        @pytest.mark.no_key_reuse
        def test_eager_reuse():
            init(jax.random.PRNGKey(0))

        @pytest.mark.no_key_reuse
        def test_jit_reuse():
            jax.jit(init)(jax.random.PRNGKey(0))

        @pytest.mark.no_key_reuse
        def test_use_after_split():
            k = jax.random.PRNGKey(0)
            jax.random.split(k)
            jax.random.uniform(k)

        @pytest.mark.no_key_reuse
        def test_split_is_fine():
            init_split(jax.random.PRNGKey(0)); jax.jit(init_split)(jax.random.PRNGKey(1))

        def test_check_key_reuse_without_key_argnums():
            with pytest.raises(testing.KeyReuseDetected):
                testing.check_key_reuse(init, jax.random.PRNGKey(0))
            testing.check_key_reuse(init_split, jax.random.PRNGKey(0))
    """)
    result = run(pytester)
    assert outcomes(result) == {"test_eager_reuse": "failed", "test_jit_reuse": "failed",
                                "test_use_after_split": "failed", "test_split_is_fine": "passed",
                                "test_check_key_reuse_without_key_argnums": "passed"}, result.stdout.str()
    assert "PRNG key reused: a key already consumed by a jax.random function was used again" in result.stdout.str()


def test_typed_key_reuse_is_still_caught_in_jit_vmap_and_scan():
    def in_vmap(keys):
        return jax.vmap(lambda k: jax.random.normal(k) + jax.random.normal(k))(keys)

    def in_scan(key):
        def body(carry, _):
            return carry, jax.random.normal(carry)  # the same key every iteration
        return jax.lax.scan(body, key, None, length=3)

    for fn, arg in ((jax.jit(in_vmap), jax.random.split(jax.random.key(0), 2)),
                    (in_vmap, jax.random.split(jax.random.key(0), 2)),
                    (jax.jit(in_scan), jax.random.key(1))):
        with pytest.raises(testing.KeyReuseDetected), testing.no_key_reuse():
            fn(arg)


# --- 5. honest gradient diagnoses -----------------------------------------------------------------

def layernorm(x, g, b):
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.var(x, -1, keepdims=True)
    return g * (x - mean) / jnp.sqrt(var + 1e-5) + b


def test_correct_float32_layernorm_is_diagnosed_as_noise_not_wrong():
    rng = np.random.RandomState(0)  # a seed on which JAX's float32 order-2 check fails
    args = tuple(rng.randn(*s).astype(np.float32) for s in ((4, 16), (16,), (16,)))
    with pytest.raises(testing.GradientCheckError) as info:
        testing.check_grads(layernorm, args, order=2)
    text = str(info.value)
    assert info.value.noise and info.value.mismatches == []
    assert "finite-difference noise, not a wrong derivative" in text
    assert "wrong first-order derivatives" not in text
    assert "ACTUAL:" in text and "DESIRED:" in text


def test_wrong_custom_vjp_in_float32_names_only_the_wrong_elements():
    @jax.custom_vjp
    def softsign(x):
        return x / (1 + jnp.abs(x))

    softsign.defvjp(lambda x: (softsign(x), x), lambda x, g: (g / (1 + jnp.abs(x)),))  # wrong: squared

    def loss(params, x):
        return jnp.sum(softsign(params["w"] * x) + params["b"])

    rng = np.random.RandomState(0)
    params = {"w": rng.randn(8).astype(np.float32), "b": np.float32(0.1)}
    x = rng.randn(8).astype(np.float32)
    with pytest.raises(testing.GradientCheckError) as info:
        testing.check_grads(loss, (params, x), order=1, modes=["rev"])
    text = str(info.value)
    paths = {m.path for m in info.value.mismatches}
    assert paths == {"args[0]['w']", "args[1]"}  # the bias has the right gradient
    assert not info.value.noise
    assert "16 of 17 input elements have wrong first-order derivatives (re-checked element by element in float64)" \
        in text
    assert "ACTUAL:" in text and "DESIRED:" in text


# --- 6. assert_uses_key -------------------------------------------------------------------------

def test_assert_uses_key_does_not_flag_a_correct_scalar_bernoulli():
    for seed in range(20):
        testing.assert_uses_key(lambda k: jax.random.bernoulli(k), jax.random.key(seed))


def test_assert_uses_key_finds_keys_in_keywords_and_pytrees():
    testing.assert_uses_key(lambda x, key: x + jax.random.normal(key), 1.0, key=jax.random.key(0))
    testing.assert_uses_key(lambda p: jax.random.normal(p["rng"]["dropout"]),
                            {"rng": {"dropout": jax.random.PRNGKey(0)}})
    with pytest.raises(testing.KeyIgnoredError):
        testing.assert_uses_key(lambda x, key: x + jax.random.normal(jax.random.key(0)), 1.0,
                                key=jax.random.key(0))
    with pytest.raises(TypeError, match="no PRNG key in any argument of <lambda>"):
        testing.assert_uses_key(lambda x: x + 1, jnp.ones(2))


# --- 7. messages --------------------------------------------------------------------------------

def test_messages_carry_no_internal_codes():
    texts = []
    with pytest.raises(testing.KeyReuseDetected) as reuse, testing.no_key_reuse():
        k = jax.random.key(0)
        jax.random.normal(k)
        jax.random.normal(k)
    texts.append(str(reuse.value))
    with pytest.raises(testing.KeyIgnoredError) as ignored:
        testing.assert_uses_key(lambda k: jax.random.normal(jax.random.key(0)), jax.random.key(1))
    texts.append(str(ignored.value))
    calls = iter(range(100))
    with pytest.raises(testing.NondeterminismError) as nondet:
        testing.assert_deterministic(lambda k: jnp.float32(next(calls)), jax.random.key(0))
    texts.append(str(nondet.value))
    for text in texts:
        assert not re.search(r"\b[FM]\d+\b", text), text


# --- what keeps working: threads and asyncio ------------------------------------------------------

def test_compiles_in_worker_threads_and_asyncio_tasks_are_counted():
    import asyncio
    import threading

    f = jax.jit(lambda x: x * 11)
    with pytest.raises(testing.RecompileError) as info, testing.no_recompile():
        workers = [threading.Thread(target=f, args=(jnp.ones(n),)) for n in (2, 3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(info.value.excess) == 1

    g = jax.jit(lambda x: x * 13)

    async def main() -> None:
        async def call(n: int) -> None:
            g(jnp.ones(n))
        await asyncio.gather(call(2), call(3))

    with pytest.raises(testing.RecompileError), testing.no_recompile():
        asyncio.run(main())
