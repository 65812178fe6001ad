"""Achieved FLOP/s and model FLOPs utilization (MFU) per function, from real XLA cost analysis on CPU."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
from jaxobs import catalog as C
from jaxobs.runtime import efficiency
from jaxobs.telemetry import recorder_for


def matmuls(x):
    for _ in range(4):
        x = jnp.tanh(x @ x)
    return x


def achieved_flops_per_second(rec, name: str) -> float:
    """What the dashboards compute in PromQL: flops / mean sampled kernel time."""
    series = rec.histogram(C.KERNEL_DURATION, name)
    count = rec.observation_count(C.KERNEL_DURATION, name)
    mean = series.snapshot()[1] / count
    return rec.value(C.FUNCTION_FLOPS, name) / mean


def test_cpu_reports_achieved_flops_and_no_peak():
    registry = CollectorRegistry()
    rec = recorder_for(registry)
    f = jaxobs.jit(matmuls, name="mm_cpu", registry=registry, sample_rate=1.0)
    x = jnp.ones((128, 128), jnp.float32)
    for _ in range(5):
        f(x)
    flops = rec.value(C.FUNCTION_FLOPS, "mm_cpu")
    assert flops >= 4 * 2 * 128**3  # XLA counts at least the four matmuls' multiply-adds
    assert achieved_flops_per_second(rec, "mm_cpu") > 0
    assert not rec.family(C.DEVICE_PEAK_FLOPS).items()  # no peak on CPU, so no MFU


def test_a_known_accelerator_gets_its_peak_so_mfu_is_a_ratio(monkeypatch):
    monkeypatch.setattr(efficiency, "local_device_kind", lambda: "NVIDIA H100 80GB HBM3")
    registry = CollectorRegistry()
    rec = recorder_for(registry)
    f = jaxobs.jit(matmuls, name="mm_gpu", registry=registry, sample_rate=1.0)
    for _ in range(3):
        f(jnp.ones((64, 64), jnp.float32))
    peak = rec.value(C.DEVICE_PEAK_FLOPS, "NVIDIA H100 80GB HBM3", "bfloat16")
    assert peak == 989e12
    mfu = achieved_flops_per_second(rec, "mm_gpu") / peak
    assert 0 < mfu < 1


def test_configure_overrides_the_peak_and_its_dtype(monkeypatch):
    monkeypatch.setattr(efficiency, "local_device_kind", lambda: "TPU v5 lite")
    jaxobs.configure(peak_dtype="int8")
    registry = CollectorRegistry()
    rec = recorder_for(registry)
    jaxobs.jit(lambda x: x + 1, name="p1", registry=registry)(jnp.ones(2))
    assert rec.value(C.DEVICE_PEAK_FLOPS, "TPU v5 lite", "int8") == 394e12
    jaxobs.configure(peak_flops_per_second=100e12, peak_dtype="bfloat16")
    registry2 = CollectorRegistry()
    rec2 = recorder_for(registry2)
    jaxobs.jit(lambda x: x + 1, name="p2", registry=registry2)(jnp.ones(2))
    assert rec2.value(C.DEVICE_PEAK_FLOPS, "TPU v5 lite", "bfloat16") == 100e12
    with pytest.raises(ValueError, match="peak_flops_per_second"):
        jaxobs.configure(peak_flops_per_second=0)


@pytest.mark.parametrize(("kind", "dtype", "peak"), [
    ("NVIDIA A100-SXM4-80GB", "bfloat16", 312e12),
    ("NVIDIA H200", "float32", 67e12),
    ("NVIDIA L4", "bfloat16", 121e12),
    ("TPU v4", "bfloat16", 275e12),
    ("TPU v5p", "bfloat16", 459e12),
    ("TPU v6 lite", "bfloat16", 918e12),
    ("cpu", "bfloat16", None),
    ("NVIDIA A100-SXM4-80GB", "float64", None),
])
def test_peak_table(kind, dtype, peak):
    assert efficiency.peak_flops(kind, dtype) == peak


def test_the_dashboards_mfu_query_divides_achieved_flops_by_the_peak(tmp_path):
    """The MFU panel's PromQL, evaluated by promtool on known series: 1e12 FLOPs per call in
    0.5 s kernels is 2e12 FLOP/s; on a 4e12 FLOP/s part that is 50% MFU, and without a peak
    (CPU) the query returns nothing rather than NaN."""
    import json
    import subprocess

    from realtools import require_tool

    from jaxobs.generate.panel_rows_health import MFU_ALL_FUNCTIONS

    promtool = require_tool("promtool")
    rules = {"groups": [{"name": "mfu", "rules": [{"record": "test:mfu", "expr": MFU_ALL_FUNCTIONS}]}]}
    base = 'job="app",instance="a"'
    series = [
        {"series": f'jaxobs_function_flops{{{base},function="mm"}}', "values": "1e12x20"},
        {"series": f'jaxobs_kernel_duration_seconds_sum{{{base},function="mm"}}', "values": "0+30x20"},
        {"series": f'jaxobs_kernel_duration_seconds_count{{{base},function="mm"}}', "values": "0+60x20"},
    ]
    peak = {"series": f'jaxobs_device_peak_flops_per_second{{{base},device_kind="X",dtype="bfloat16"}}',
            "values": "4e12x20"}
    cases = [
        {"interval": "1m", "input_series": [*series, peak],
         "promql_expr_test": [{"expr": "test:mfu", "eval_time": "10m",
                               "exp_samples": [{"labels": 'test:mfu{function="mm"}', "value": 0.5}]}]},
        {"interval": "1m", "input_series": series,
         "promql_expr_test": [{"expr": "test:mfu", "eval_time": "10m", "exp_samples": []}]},
    ]
    test = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": cases}
    (tmp_path / "test.yaml").write_text(json.dumps(test))
    # the dashboard's variables as Grafana fills them with "All" selected
    (tmp_path / "rules.yaml").write_text(json.dumps(rules).replace("$__rate_interval", "5m").replace("$job", ".*"))
    out = subprocess.run([promtool, "test", "rules", "test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
