"""Faults inside jaxobs are counted and isolated; the user's results never change."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from prometheus_client import generate_latest

import jaxobs
import jaxobs.runtime.causes as causes
import jaxobs.runtime.compile_events as compile_events
import jaxobs.runtime.jit as instrumented
import jaxobs.telemetry.prometheus as prom
from jaxobs import catalog as C


def _internal(component: str) -> int:
    return jaxobs.internal_error_counts().get(component, 0)


def test_failing_compile_listener_is_counted_not_raised(registry, rec, monkeypatch):
    def broken(frame):
        raise RuntimeError("listener bug")

    monkeypatch.setattr(compile_events, "find_owner", broken)
    before = _internal("compile_listener")
    f = jaxobs.jit(lambda x: x * 5, name="listener_fault", registry=registry)
    np.testing.assert_array_equal(f(jnp.arange(3.0)), [0.0, 5.0, 10.0])
    assert _internal("compile_listener") > before


def test_failing_cause_analysis_keeps_results(registry, rec, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("signature bug")

    monkeypatch.setattr(causes, "signature_of", broken)
    before = _internal("instrument")
    f = jaxobs.jit(lambda x: x - 1, name="cause_fault", registry=registry)
    np.testing.assert_array_equal(f(jnp.ones(2)), [0.0, 0.0])
    np.testing.assert_array_equal(f(jnp.ones(3)), [0.0, 0.0, 0.0])
    assert _internal("instrument") == before + 2
    assert rec.value(C.CALLS, "cause_fault", "miss") == 2  # what could be recorded still is


def test_failing_sampling_keeps_results(registry, monkeypatch):
    def broken(out):
        raise RuntimeError("sync bug")

    monkeypatch.setattr(instrumented.jax, "block_until_ready", broken)
    before = _internal("kernel_sampling")
    f = jaxobs.jit(lambda x: x + 2, name="sample_fault", registry=registry, sample_rate=1.0)
    f(jnp.ones(2))
    np.testing.assert_array_equal(f(jnp.ones(2)), [3.0, 3.0])
    assert _internal("kernel_sampling") == before + 1


def test_failing_backend_family_does_not_fail_the_scrape(registry, rec, monkeypatch):
    f = jaxobs.jit(lambda x: x, name="scrape_fault", registry=registry)
    f(jnp.ones(1))
    real = prom.family_to_metric

    def flaky(family):
        if family.spec is C.CALL_DURATION:
            raise RuntimeError("backend bug")
        return real(family)

    monkeypatch.setattr(prom, "family_to_metric", flaky)
    text = generate_latest(registry).decode()
    assert "jaxobs_calls_total" in text  # the rest of the scrape is intact
    assert "jaxobs_call_duration_seconds" not in text
    assert 'jaxobs_internal_errors_total{component="prometheus_backend"}' in generate_latest(registry).decode()


def test_failing_request_bookkeeping_never_masks_user_exception(registry, monkeypatch):
    import jaxobs.runtime.sli as sli

    def broken(self, active, exc):
        raise RuntimeError("request bug")

    monkeypatch.setattr(sli.request, "_finish", broken)
    before = jaxobs.internal_error_counts().get("request", 0)
    with pytest.raises(KeyError) as raised:  # the user's exception, unchanged, not swallowed
        with jaxobs.request("masked", registry=registry):
            raise KeyError("the user's own error")
    assert raised.value.args == ("the user's own error",)
    assert raised.value.__context__ is None  # not raised from inside jaxobs' failure
    assert jaxobs.internal_error_counts().get("request", 0) == before + 1  # the bug is counted
    with jaxobs.request("masked", registry=registry):
        pass  # and a normal request still works
