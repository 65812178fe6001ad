"""jaxobs.jit behaves exactly like jax.jit: results, errors, signatures, AOT, transformations."""

from __future__ import annotations

import functools
import inspect
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxobs
from jaxobs import catalog as C


def _same(a, b) -> None:
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def model(params, x, *, scale=1.0):
    """A tiny pytree model."""
    return {"y": jnp.tanh(x @ params["w"] + params["b"]) * scale, "norm": jnp.linalg.norm(x)}


PARAMS = {"w": jnp.arange(12.0).reshape(4, 3) / 10, "b": jnp.ones(3)}
X = jnp.linspace(-1, 1, 8).reshape(2, 4)


def test_same_results_pytrees_and_kwargs(registry):
    raw, inst = jax.jit(model), jaxobs.jit(model, registry=registry)
    _same(raw(PARAMS, X, scale=2.0), inst(PARAMS, X, scale=2.0))
    _same(raw(PARAMS, X), inst(PARAMS, X))


def test_keeps_name_doc_and_signature(registry):
    inst = jaxobs.jit(model, registry=registry)
    assert inst.__name__ == "model"
    assert inst.__doc__ == "A tiny pytree model."
    assert inst.__wrapped__ is model
    assert inspect.signature(inst) == inspect.signature(model)


def test_decorator_with_and_without_arguments(registry, rec):
    @jaxobs.jit
    def plain(x):
        return x + 1

    @jaxobs.jit(static_argnums=1, name="powered", registry=registry)
    def power(x, n):
        return x ** n

    assert float(plain(1.0)) == 2.0
    assert float(power(3.0, 2)) == 9.0
    assert float(power(2.0, 3)) == 8.0
    assert rec.value(C.COMPILATIONS, "powered", "static_arg") == 1


def test_static_argnames_and_donation(registry):
    @functools.partial(jaxobs.jit, static_argnames="mode", donate_argnums=0, registry=registry,
                       sample_rate=1.0)
    def update(buf, delta, mode="add"):
        return buf + delta if mode == "add" else buf * delta

    before = jaxobs.internal_error_counts().get("kernel_sampling", 0)  # process-wide: other tests count too
    buf = jnp.ones(16)
    out = update(buf, 2.0, mode="add")
    np.testing.assert_array_equal(out, np.full(16, 3.0))
    out2 = update(out, 2.0, mode="mul")  # donated + sampled (block_until_ready on outputs only)
    np.testing.assert_array_equal(out2, np.full(16, 6.0))
    out3 = update(out2, 1.0, mode="mul")  # a steady, sampled call with a donated input
    np.testing.assert_array_equal(out3, np.full(16, 6.0))
    assert jaxobs.internal_error_counts().get("kernel_sampling", 0) == before


def test_methods_bind_self(registry):
    class Scaler:
        def __init__(self, k: float) -> None:
            self.k = k

        def __hash__(self) -> int:
            return hash(self.k)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Scaler) and other.k == self.k

        @functools.partial(jaxobs.jit, static_argnums=0, registry=registry)
        def __call__(self, x):
            return x * self.k

    assert float(Scaler(3.0)(2.0)) == 6.0
    assert float(Scaler(4.0)(2.0)) == 8.0


def test_exceptions_propagate_unchanged(registry):
    inst = jaxobs.jit(lambda a, b: a @ b, registry=registry)
    raw = jax.jit(lambda a, b: a @ b)
    with pytest.raises(TypeError) as raw_err:
        raw(jnp.ones((2, 3)), jnp.ones((4, 5)))
    with pytest.raises(TypeError) as inst_err:
        inst(jnp.ones((2, 3)), jnp.ones((4, 5)))
    assert str(inst_err.value) == str(raw_err.value)

    class Mine(Exception):
        pass

    def boom(x):
        raise Mine("user error")

    with pytest.raises(Mine, match="user error") as info:
        jaxobs.jit(boom, registry=registry)(1.0)
    assert type(info.value) is Mine


def test_aot_surface(registry, rec):
    def fresh_model(params, x):  # JAX caches traces per function: use one no other test used
        return model(params, x)

    inst = jaxobs.jit(fresh_model, name="aot", registry=registry)
    lowered = inst.lower(PARAMS, X)
    assert "tanh" in lowered.as_text()
    compiled = lowered.compile()
    _same(compiled(PARAMS, X), jax.jit(model)(PARAMS, X))
    traced = inst.trace(PARAMS, X)
    assert traced.jaxpr is not None
    shapes = inst.eval_shape(PARAMS, X)
    assert shapes["y"].shape == (2, 3)
    assert rec.observation_count(C.COMPILE_DURATION, "aot", "lower") >= 1  # attributed to this function
    inst(PARAMS, X)
    inst.clear_cache()
    _same(inst(PARAMS, X), jax.jit(model)(PARAMS, X))
    # a call is a miss only if it really compiled (JAX's lowering caches can survive clear_cache)
    assert rec.value(C.CALLS, "aot", "hit") + rec.value(C.CALLS, "aot", "miss") == 2


def test_transformations_trace_through_without_recording(registry, rec):
    inst = jaxobs.jit(lambda x: jnp.sin(x) * 2, name="inner", registry=registry)
    x = jnp.linspace(0, 1, 5)
    inst(x)  # one real call
    before = {s: rec.value(C.CALLS, "inner", s) for s in ("hit", "miss")}
    np.testing.assert_allclose(jax.grad(lambda v: inst(v).sum())(x), 2 * jnp.cos(x), rtol=1e-6)
    assert jax.vmap(inst)(jnp.ones((3, 5))).shape == (3, 5)
    np.testing.assert_allclose(jax.jit(lambda v: inst(v) + 1)(x), jnp.sin(x) * 2 + 1, rtol=1e-6)
    after = {s: rec.value(C.CALLS, "inner", s) for s in ("hit", "miss")}
    assert after == before  # traced calls are not calls


def test_instrument_wraps_existing_jit_and_keeps_settings(registry, rec):
    jitted = jax.jit(lambda x, n: x * n, static_argnums=1)
    inst = jaxobs.instrument(jitted, name="wrapped", registry=registry)
    assert inst.jitted is jitted
    assert float(inst(2.0, 3)) == 6.0
    assert float(inst(2.0, 4)) == 8.0
    assert rec.value(C.COMPILATIONS, "wrapped", "static_arg") == 1
    assert jaxobs.instrument(inst) is inst  # idempotent


def test_threads_count_exactly(registry, rec):
    inst = jaxobs.jit(lambda x: x * 2, name="threaded", registry=registry, sample_rate=0.1)
    inst(jnp.ones(3))
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(500):
            inst(jnp.ones(3))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.value(C.CALLS, "threaded", "hit") == 2000
    assert rec.value(C.CALLS, "threaded", "miss") == 1


def test_controller_is_callable_too(registry, rec):
    ctl = jaxobs.InstrumentedJit(lambda x: x * 4, name="ctl", registry=registry)
    assert float(ctl(2.0)) == 8.0
    assert float(ctl.call(3.0)) == 12.0
    assert rec.value(C.CALLS, "ctl", "hit") + rec.value(C.CALLS, "ctl", "miss") == 2
