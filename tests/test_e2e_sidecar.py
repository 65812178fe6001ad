"""End to end, the Kubernetes layout on one machine: the real `jaxobs demo` (a JAX workload)
writes to a multiprocess directory, `jaxobs exporter` serves it, a real Prometheus scrapes
the exporter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.processes import exporter
from realtools import running_prometheus, wait_until

pytestmark = pytest.mark.e2e


def test_prometheus_sees_the_demo_through_the_sidecar(tmp_path: Path):
    mp_dir = tmp_path / "multiproc"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "JAX_PLATFORMS": "cpu"}
    app = subprocess.Popen(
        [sys.executable, "-m", "jaxobs.cli", "demo", "--duration", "120", "--port", "0",
         "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        assert app.stdout is not None
        wait_until(lambda: "ready (jaxobs_ready=1)" in app.stdout.readline(), 120, interval=0,
                   what="the demo to warm up")
        with exporter(["--multiproc-dir", str(mp_dir), "--collectors", "host"]) as sidecar:
            wait_until(lambda: sidecar.get("/readyz")[0] == 200, 30, what="the sidecar's /readyz")
            with running_prometheus(tmp_path / "prom", [f"127.0.0.1:{sidecar.port}"]) as prom:
                prom.wait_value('up{job="jaxobs"}', lambda v: v == 1)
                hits = prom.wait_value('jaxobs_calls_total{function="predict",cache="hit"}', lambda v: v > 50)
                assert hits > 50
                warmups = prom.value('jaxobs_compilations_total{function="predict",cause="first"}')
                assert warmups == 1
                assert prom.wait_value('sum(jaxobs_compilations_total{function="predict"})', lambda v: v >= 6) >= 6
                assert prom.value("jaxobs_ready") == 1
                assert prom.wait_value('sum(jaxobs_requests_total{service="demo-inference"})',
                                       lambda v: v > 50) > 50
                assert prom.value('jaxobs_live_arrays{device="0"}') is not None  # in-app collector
                assert prom.value('jaxobs_process_resident_memory_bytes{process="app"}') > 0  # sidecar's host collector
    finally:
        app.kill()
        app.wait(10)
