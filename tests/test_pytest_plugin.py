"""The pytest plugin and jaxobs.testing: guards that really fail, with messages that say why.

Most tests run a small test file through ``pytester`` (in-process, the plugin
loaded through its ``pytest11`` entry point like in a user's suite) and assert
on the outcome and the failure output.  Real JAX on CPU throughout.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
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


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(HEADER + textwrap.dedent(body))
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def assert_in_order(text: str, *fragments: str) -> None:
    """Each fragment appears in ``text``, on the same or later lines, in order (literal text)."""
    lines = text.splitlines()
    at = 0
    for fragment in fragments:
        for i in range(at, len(lines)):
            if fragment in lines[i]:
                at = i  # the next fragment may be on the same line
                break
        else:
            raise AssertionError(f"{fragment!r} not found (in order) in:\n{text}")


# --- recompile guard -----------------------------------------------------------------------

def test_no_recompile_marker_names_function_and_cause_of_each_extra_compile(pytester):
    result = run(pytester, """
        predict = jaxobs.jit(lambda x: x * 2, name="predict", registry=CollectorRegistry())

        @pytest.mark.no_recompile
        def test_shapes_change():
            predict(jnp.ones(3))
            predict(jnp.ones(4))
            predict(jnp.ones(4, jnp.int32))

        embed = jaxobs.jit(lambda x: x + 2, name="embed", registry=CollectorRegistry())

        @pytest.mark.no_recompile
        def test_steady_state():
            for _ in range(5):
                embed(jnp.ones(8))
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),
        "jaxobs @pytest.mark.no_recompile: 2 compiles over the limit",
        "predict (jaxobs-instrumented) compiled 3 times:",
        "1. first (called at test_no_recompile_marker_names_function_and_cause_of_each_extra_compile.py:",
        "x 2. shape: x: f32[3] -> f32[4]",
        "x 3. dtype: x: ", "-> i32[4]",
    )
    assert "During handling" not in result.stdout.str()


def test_max_compiles_marker_counts_plain_jax_jit_per_function(pytester):
    result = run(pytester, """
        scale = jax.jit(lambda x, s: x * s, static_argnums=1)
        double = jax.jit(lambda x: x * 2)

        @pytest.mark.max_compiles(1)
        def test_static_value_changes():
            x = jnp.ones(3)
            scale(x, 2)
            scale(x, 3)
            double(x)          # one compile of another function: within the limit

        @pytest.mark.max_compiles(2)
        def test_two_allowed():
            x = jnp.ones(5)
            scale(x, 4)
            scale(x, 5)
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),
        "jaxobs @pytest.mark.max_compiles(1): 1 compile over the limit (at most 1 per function)",
        "<lambda> (jax.jit, defined at test_max_compiles_marker_counts_plain_jax_jit_per_function.py:",
        "x 2. static_arg: static argument [0][1]: 2 -> 3",
    )
    assert "double" not in result.stdout.str()


def test_eager_ops_and_jax_random_inside_a_guard_are_not_recompiles(pytester):
    result = run(pytester, """
        step = jax.jit(lambda x: jnp.tanh(x) * 2)

        @pytest.fixture
        def warm():
            step(jnp.ones(4))

        @pytest.mark.no_recompile
        def test_eager_work_is_not_counted(warm):
            for n in (3, 5, 7):                       # eager primitives compile per new shape
                y = jnp.ones(n) + jnp.arange(n) * 2.0
                z = jax.random.normal(jax.random.key(n), (n, 2))
            step(jnp.ones(4))                         # warmed in the fixture: not a compile

        @pytest.mark.max_compiles(0)
        def test_warm_function_with_new_shape_fails(warm):
            step(jnp.ones(6))
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),"x 1. shape: x: f32[4] -> f32[6]")


def test_jit_recreated_in_a_loop_is_reported_as_repeated_first_compiles(pytester):
    result = run(pytester, """
        @pytest.mark.no_recompile
        def test_loop():
            for _ in range(3):
                jax.jit(lambda x: x + 1)(jnp.ones(2))
    """)
    result.assert_outcomes(failed=1)
    assert_in_order(result.stdout.str(),
        ") compiled 3 times:",
        "x 2. first: JAX saw another function defined on the same line: is it re-defined repeatedly?",
        "new function object: is jit called inside a loop or per request?",
    )


def test_context_managers_work_inside_a_test_with_only_filter(pytester):
    result = run(pytester, """
        f = jax.jit(lambda x: x - 1)
        g = jax.jit(lambda y: y + 1)

        def test_only_f_is_watched():
            f(jnp.ones(2)); g(jnp.ones(2))
            with testing.max_compiles(0, only=[g]):
                f(jnp.ones(3))             # not watched
            with testing.no_recompile(only=["<lambda>"]):
                pass

        def test_block_fails():
            f(jnp.ones(2))
            with testing.no_recompile():
                f(jnp.ones(9))
                f(jnp.ones(10))
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),
        "with testing.no_recompile():",
        "RecompileError: jaxobs no_recompile(): 1 compile over the limit",
        "x 2. shape: x: f32[9] -> f32[10]",
    )


def test_jax_compiles_fixture_records_compiles_for_assertions(pytester):
    result = run(pytester, """
        f = jaxobs.jit(lambda x: x * 3, name="f3", registry=CollectorRegistry())
        g = jax.jit(lambda x: x / 3)

        def test_counts(jax_compiles):
            f(jnp.ones(2)); f(jnp.ones(2)); f(jnp.ones(3))
            g(jnp.ones(2)); g(jnp.ones(2))
            assert jax_compiles.count(f) == 2
            assert [c.cause for c in jax_compiles.compiles if c.function == "f3"] == ["first", "shape"]
            assert jax_compiles.count(g) == 1
    """)
    result.assert_outcomes(passed=1)


def test_bad_marker_argument_is_a_usage_error(pytester):
    result = run(pytester, """
        @pytest.mark.max_compiles("one")
        def test_x():
            pass
    """)
    assert result.ret != 0
    assert "use @pytest.mark.max_compiles(n) with an int n >= 0" in result.stdout.str() + result.stderr.str()


# --- gradients ----------------------------------------------------------------------------

def test_check_grads_names_the_parameter_with_wrong_gradients(pytester):
    result = run(pytester, """
        @jax.custom_vjp
        def softsign(x):
            return x / (1 + jnp.abs(x))

        def _fwd(x):
            return softsign(x), x

        def _bwd(x, g):
            return (g / (1 + jnp.abs(x)),)     # wrong: the derivative is 1 / (1 + |x|)**2

        softsign.defvjp(_fwd, _bwd)

        def loss(params, x):
            return jnp.sum(softsign(params["w"] * x) + params["b"])

        PARAMS = {"w": np.array([0.5, -1.0, 2.0]), "b": np.array(0.1)}
        X = np.array([1.0, 2.0, -0.5])

        def test_wrong_rule():
            with jax.enable_x64(True):
                testing.check_grads(loss, (PARAMS, X), order=1, modes=["rev"])

        def test_right_function_passes():
            with jax.enable_x64(True):
                testing.check_grads(lambda p, x: jnp.sum(jnp.tanh(p["w"] * x) * p["b"]),
                                    (PARAMS, X), order=2)
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),
        "GradientCheckError: gradient check failed for loss (order 1, modes rev)",
        "6 of 7 input elements have wrong first-order derivatives, in args[0]['w'], args[1]; worst first:",
        "rev: d/d args[", "jax.test_util.check_grads said:", "DESIRED:",
    )


def test_check_grads_reports_elementwise_results_without_pytest():
    @jax.custom_jvp
    def cube(x):
        return x ** 3

    @cube.defjvp
    def _cube_jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return cube(x), 3 * x * t          # wrong: 3 x**2 t

    with jax.enable_x64(True):
        x = jnp.array([0.5, 2.0, 3.0])
        with pytest.raises(testing.GradientCheckError) as info:
            testing.check_grads(lambda v: jnp.sum(cube(v)), (x,), order=1, modes=("fwd",))
    worst = info.value.mismatches[0]
    assert (worst.mode, worst.path, worst.index) == ("fwd", "args[0]", (2,))
    assert worst.autodiff == pytest.approx(9.0) and worst.numerical == pytest.approx(27.0, rel=1e-6)
    assert [m.index for m in info.value.mismatches] == [(2,), (1,), (0,)]  # worst first


# --- determinism and keys -------------------------------------------------------------

def test_determinism_check_reports_first_differing_leaf(pytester):
    result = run(pytester, """
        def sample(key, n):
            noise = np.random.default_rng().normal(size=n)      # not derived from the key
            return {"mean": jnp.zeros(()), "z": jax.random.normal(key, (n,)) + noise}

        def pure(key, n):
            return {"z": jax.random.normal(key, (n,)), "n": n}

        def test_hidden_randomness():
            testing.assert_deterministic(sample, jax.random.key(0), 4)

        def test_pure_function():
            out = testing.assert_deterministic(pure, jax.random.key(0), 4, runs=3)
            assert out["n"] == 4
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),
        "NondeterminismError: non-deterministic output from sample: run 2 differs from run 1",
        "first differing leaf: out['z']: float32[4]: 4 of 4 elements differ, max abs diff ",
        "draws randomness from somewhere other than its key",
    )


def test_assert_uses_key_catches_a_constant_key_inside_the_function(pytester):
    result = run(pytester, """
        def dropout_mask(key, shape):
            return jax.random.bernoulli(jax.random.PRNGKey(0), 0.5, shape)   # ignores `key`

        def test_ignored_key():
            testing.assert_uses_key(dropout_mask, jax.random.key(1), (64,))

        def test_used_key():
            testing.assert_uses_key(lambda k, s: jax.random.bernoulli(k, 0.5, s), jax.random.key(1), (64,))
    """)
    result.assert_outcomes(failed=1, passed=1)
    assert_in_order(result.stdout.str(),"KeyIgnoredError: dropout_mask ignores its PRNG key")


def test_no_key_reuse_marker_fails_on_reuse_and_names_the_line(pytester):
    result = run(pytester, """
        def init(key):
            w1 = jax.random.normal(key, (3,))
            w2 = jax.random.normal(key, (3,))     # reuse: w1 == w2
            return w1, w2

        def init_split(key):
            k1, k2 = jax.random.split(key)
            return jax.random.normal(k1, (3,)), jax.random.normal(k2, (3,))

        @pytest.mark.no_key_reuse
        def test_reuse():
            init(jax.random.key(0))

        @pytest.mark.no_key_reuse
        def test_reuse_under_jit():
            jax.jit(init)(jax.random.key(0))

        @pytest.mark.no_key_reuse
        def test_split():
            init_split(jax.random.key(0))

        def test_legacy_keys_with_check_key_reuse():
            testing.check_key_reuse(init_split, jax.random.PRNGKey(0), key_argnums=(0,))
            with pytest.raises(testing.KeyReuseDetected):
                testing.check_key_reuse(init, jax.random.PRNGKey(0), key_argnums=(0,))
    """)
    result.assert_outcomes(failed=2, passed=2)
    assert_in_order(result.stdout.str(),
        "PRNG key reused: a key already consumed by a jax.random function was used again",
        "test_no_key_reuse_marker_fails_on_reuse_and_names_the_line.py:",
        "Split instead of reusing: key, subkey = jax.random.split(key)",
        "JAX: In jit, argument 0 is already consumed.",
    )


def test_key_reuse_checker_setting_is_restored():
    before = jax.config.jax_debug_key_reuse
    with pytest.raises(testing.KeyReuseDetected), testing.no_key_reuse():
        key = jax.random.key(3)
        jax.random.uniform(key)
        jax.random.uniform(key)
    assert jax.config.jax_debug_key_reuse == before


def test_guard_restores_explain_cache_misses_and_stays_quiet(caplog):
    f = jax.jit(lambda x: x * 5)
    f(jnp.ones(2))
    with testing.CompileLog() as log:
        f(jnp.ones(3))
    assert log.count(f) == 1
    assert jax.config.jax_explain_cache_misses is False
    assert not [r for r in caplog.records if "TRACING CACHE MISS" in r.getMessage()]


def test_guard_keeps_jax_quiet_with_the_persistent_cache_on(tmp_path):
    """Switching explanations on makes JAX log persistent-cache bookkeeping at WARNING: not ours to show."""
    script = textwrap.dedent(f"""
        import logging
        import jax, jax.numpy as jnp
        from jaxobs import testing
        logging.basicConfig(level=logging.WARNING, format="LOG %(name)s %(message)s")
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path)!r})
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        f = jax.jit(lambda x: x * 7)
        f(jnp.ones(2))
        with testing.CompileLog() as log:
            f(jnp.ones(3))
        print("compiles:", log.count(f))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         check=True)
    assert "compiles: 1" in out.stdout
    assert "LOG " not in out.stderr, out.stderr


# --- packaging -----------------------------------------------------------------------------

def test_plugin_import_does_not_import_jax():
    code = "import sys, jaxobs.pytest_plugin; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dash_p_jaxobs_loads_the_plugin_without_autoload(pytester):
    pytester.makepyfile(HEADER + textwrap.dedent("""
        f = jax.jit(lambda x: x + 2)

        @pytest.mark.no_recompile
        def test_recompiles():
            f(jnp.ones(1)); f(jnp.ones(2))
    """))
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "jaxobs", "-p", "no:cacheprovider", "-q"],
                          cwd=pytester.path, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert "1 failed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x 2. shape: x: f32[1] -> f32[2]" in proc.stdout
