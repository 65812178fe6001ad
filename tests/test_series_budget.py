"""The series budget: what one instrumented function costs on /metrics.

Counted, not timed: the samples carrying ``function="f"`` in the exposition
text after a realistic life (a few shapes compiled, then steady traffic inside
requests).  Before the budget this scenario produced 147 samples, 72 of them
before the first call.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import pytest
from prometheus_client import generate_latest

import jaxobs
from jaxobs import catalog

BUDGET = 50  # samples per instrumented function, by default
ROOT = Path(__file__).resolve().parent.parent


def _samples_of(registry, function: str) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines()
            if not line.startswith("#") and f'function="{function}"' in line]


def test_one_function_stays_within_the_budget(registry) -> None:
    f = jaxobs.jit(lambda x: x * 2 + 1, name="f", registry=registry, sample_rate=0.05)
    assert _samples_of(registry, "f") == []  # created on first observation, not at wrap time
    for n in (3, 4, 5):
        f(jnp.ones(n))
    for _ in range(600):
        with jaxobs.request("budget-svc", registry=registry):
            f(jnp.ones(3))
    samples = _samples_of(registry, "f")
    print(f"\nsamples with function=\"f\": {len(samples)}")
    assert len(samples) <= BUDGET, "\n".join(samples)
    # what the SLOs and dashboards need is still there
    text = "\n".join(samples)
    for phase in ("trace", "lower", "backend"):
        assert f'jaxobs_compile_duration_seconds_count{{function="f",phase="{phase}"}} 3.0' in text
        assert f'jaxobs_compile_duration_seconds_sum{{function="f",phase="{phase}"}}' in text
    assert 'jaxobs_calls_total{cache="miss",function="f"} 3.0' in text
    assert 'jaxobs_call_duration_seconds_count{function="f",start="cold"} 3.0' in text
    assert 'jaxobs_kernel_duration_seconds_bucket{function="f",le="+Inf"}' in text


def test_bucket_layouts_come_from_the_catalog() -> None:
    assert catalog.buckets_for(catalog.CALL_DURATION, ("f", "steady")) == catalog.CALL_BUCKETS
    assert catalog.buckets_for(catalog.CALL_DURATION, ("f", "cold")) == catalog.COMPILE_BUCKETS
    assert catalog.buckets_for(catalog.COMPILE_DURATION, ("f", "backend")) == catalog.COMPILE_BUCKETS
    assert catalog.buckets_for(catalog.REQUEST_DURATION, ("svc", "steady")) == catalog.LATENCY_BUCKETS


def test_slo_spec_thresholds_become_request_bucket_bounds(registry, tmp_path: Path) -> None:
    spec = tmp_path / "slo.yaml"
    spec.write_text((ROOT / "examples" / "slo.yaml").read_text())
    from jaxobs.slo.spec import load_spec

    thresholds = {slo.sli.threshold_seconds for service in load_spec(spec).services
                  for slo in service.slos if slo.sli.threshold_seconds is not None}
    assert thresholds  # the example spec has latency SLOs
    try:
        jaxobs.configure(slo_spec=str(spec))
        layout = catalog.buckets_for(catalog.REQUEST_DURATION, ("svc", "steady"))
        assert thresholds <= set(layout)
        assert len(layout) < len(catalog.LATENCY_BUCKETS)  # fewer series than the default
        with jaxobs.request("derived", registry=registry):
            pass
        text = generate_latest(registry).decode()
        for t in thresholds:
            le = catalog.le_label(t)
            assert f'jaxobs_request_duration_seconds_bucket{{le="{le}",service="derived",start="steady"}}' in text
    finally:
        jaxobs.configure(slo_spec="")
    assert catalog.buckets_for(catalog.REQUEST_DURATION, ("svc", "steady")) == catalog.LATENCY_BUCKETS


def test_a_missing_slo_spec_is_a_clear_error(tmp_path: Path) -> None:
    from jaxobs.slo.spec import SpecError

    with pytest.raises(SpecError, match="nope.yaml"):
        jaxobs.configure(slo_spec=str(tmp_path / "nope.yaml"))
