"""jaxobs.observe_all(): compile telemetry for jits nobody wrapped, as libraries create them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jaxobs
from jaxobs import catalog as C


@pytest.fixture
def observe(registry):
    stops = []

    def start(**kwargs):
        stops.append(jaxobs.observe_all(registry=registry, **kwargs))

    yield start
    for stop in stops:
        stop()


def _compiles(rec, name: str) -> float:
    return rec.value(C.COMPILATIONS, name, "other")


def _phases(rec, name: str) -> dict[str, float]:
    return {p: rec.observation_count(C.COMPILE_DURATION, name, p) for p in ("trace", "lower", "backend")}


def test_library_style_nested_jits_are_recorded_by_name(registry, rec, observe):
    # what a library does: a jitted helper called from another jitted function
    def lib_helper_scale(x):
        return x * 2

    helper = jax.jit(lib_helper_scale)

    @jax.jit
    def lib_update_step(x):
        return helper(x) + 1

    observe()
    x = jnp.arange(3.0)
    assert lib_update_step(x).tolist() == [1.0, 3.0, 5.0]
    assert _compiles(rec, "lib_update_step") == 1
    assert _phases(rec, "lib_update_step") == {"trace": 1, "lower": 1, "backend": 1}
    for _ in range(5):  # steady calls emit no event: nothing more is recorded
        lib_update_step(x)
    assert _compiles(rec, "lib_update_step") == 1
    helper(x)  # the helper on its own is a compilation of its own
    assert _compiles(rec, "lib_helper_scale") == 1
    lib_update_step(jnp.arange(4.0))  # a new shape recompiles
    assert _compiles(rec, "lib_update_step") == 2


def test_a_wrapped_function_is_counted_once(registry, rec, observe):
    def wrapped_body(x):
        return x - 1

    observe()
    fn = jaxobs.jit(wrapped_body, name="wrapped_once", registry=registry)
    fn(jnp.ones(2))
    assert rec.value(C.COMPILATIONS, "wrapped_once", "first") == 1
    assert _compiles(rec, "wrapped_body") == 0
    assert _phases(rec, "wrapped_body") == {"trace": 0, "lower": 0, "backend": 0}


def test_distinct_names_are_capped(registry, rec, observe):
    observe(max_functions=2)
    names = []
    for i in range(4):
        def f(x, i=i):
            return x + i
        f.__name__ = f.__qualname__ = f"capped_{i}"
        names.append(f.__name__)
        jax.jit(f)(jnp.ones(1))
    seen = [n for n in names if _compiles(rec, n)]
    assert len(seen) <= 2
    assert _compiles(rec, "_other") >= 4 - len(seen)


def test_stop_switches_it_off(registry, rec, observe):
    def after_stop(x):
        return x * 7

    stop = jaxobs.observe_all(registry=registry)
    stop()
    jax.jit(after_stop)(jnp.ones(2))
    assert _compiles(rec, "after_stop") == 0
