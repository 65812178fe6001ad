"""End to end: a real Prometheus scrapes a real instrumented JAX process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from realtools import free_port, running_prometheus, wait_until

pytestmark = pytest.mark.e2e

WORKLOAD = """
    import sys, time
    import jax.numpy as jnp
    import jaxobs
    server, _ = jaxobs.start_http_server({port}, addr="127.0.0.1")
    f = jaxobs.jit(lambda x: jnp.tanh(x) * 2, name="e2e_fn")
    for n in (3, 3, 4):
        with jaxobs.request("e2e_svc"):
            f(jnp.ones(n))
    try:
        with jaxobs.request("e2e_svc"):
            f(jnp.ones((2, 2)), jnp.ones(1))  # wrong arity: a real TypeError
    except TypeError:
        pass
    jaxobs.set_ready()
    print("ready", flush=True)
    time.sleep(600)
"""


def test_prometheus_scrapes_compile_cache_and_latency_series(tmp_path: Path):
    port = free_port()
    app = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKLOAD.replace("{port}", str(port)))],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready", app.stderr.read() if app.stderr else ""
        with running_prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"]) as prom:
            prom.wait_value('up{job="jaxobs"}', lambda v: v == 1)
            selector = 'function="e2e_fn"'
            # 2 compiles + 1 call that missed the cache and failed while tracing
            assert prom.wait_value(f'jaxobs_calls_total{{{selector},cache="miss"}}', lambda v: v > 0) == 3
            assert prom.value(f'jaxobs_calls_total{{{selector},cache="hit"}}') == 1
            causes = {r["metric"]["cause"]: float(r["value"][1])
                      for r in prom.query(f"jaxobs_compilations_total{{{selector}}}")}
            assert causes == {"first": 1.0, "shape": 1.0}
            for phase, expected in (("trace", 3), ("lower", 2), ("backend", 2)):
                count = prom.value(f'jaxobs_compile_duration_seconds_count{{{selector},phase="{phase}"}}')
                assert count == expected, phase
            cold_p50 = prom.value(
                'histogram_quantile(0.5, sum by (le) '
                f'(jaxobs_call_duration_seconds_bucket{{{selector},start="cold"}}))')
            assert cold_p50 is not None and 0 < cold_p50 < 30
            assert prom.value('jaxobs_requests_total{service="e2e_svc",outcome="ok"}') == 3
            assert prom.value('jaxobs_requests_total{service="e2e_svc",outcome="error"}') == 1
            assert prom.value('jaxobs_errors_total{function="e2e_fn",error="trace"}') == 1
            assert prom.value('jaxobs_request_duration_seconds_count{service="e2e_svc",start="cold"}') == 3
            assert prom.value("jaxobs_ready") == 1
            assert prom.value('count(jaxobs_build_info{backend="cpu"})') == 1
            assert prom.value(f"jaxobs_function_flops{{{selector}}}") is not None
            # series stay put across scrapes (no reset, no vanishing)
            wait_until(lambda: prom.value(f'changes(jaxobs_calls_total{{{selector},cache="miss"}}[1m])') == 0
                       and prom.value(f'count_over_time(jaxobs_calls_total{{{selector},cache="miss"}}[1m])') >= 3,
                       30, what="three stable scrapes")
    finally:
        app.kill()
        app.wait(10)
