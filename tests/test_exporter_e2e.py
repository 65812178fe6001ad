"""End to end: a real Prometheus scrapes ``jaxobs exporter`` serving a multiprocess directory.

Prometheus, the exporter and the fake app all run as real processes on
127.0.0.1 with their own temporary directories; the assertions go through
Prometheus's HTTP API, so what is checked is what a dashboard would see.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import exporter, fake_app  # noqa: E402

from jaxobs import catalog  # noqa: E402

pytestmark = pytest.mark.e2e


def prometheus_binary() -> str:
    exe = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is required in CI (apt-get install prometheus)")
        pytest.skip("prometheus not installed")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(base: str, promql: str, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)
            if result:
                return result
            last = result
        except OSError as exc:  # Prometheus still starting
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{promql!r} returned nothing within {timeout}s (last: {last})")


def test_prometheus_scrapes_app_and_host_series_through_the_exporter(tmp_path):
    prom = prometheus_binary()
    mp = tmp_path / "multiproc"
    mp.mkdir()
    with fake_app(multiproc_dir=mp, series=20), \
            exporter(["--multiproc-dir", str(mp), "--collectors", "host,nvml", "--nvml-module", "fake_pynvml"]) as ex:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n"
            "  - job_name: jax-inference\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{ex.port}']\n")
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen([prom, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            up = wait_for(base, 'up{job="jax-inference"} == 1')
            assert up[0]["metric"]["instance"] == f"127.0.0.1:{ex.port}"
            ready = wait_for(base, catalog.READY.name)
            assert ready[0]["value"][1] == "1"
            requests = wait_for(base, f"count({catalog.REQUESTS.name})")
            assert requests[0]["value"][1] == "20"
            assert wait_for(base, f'{catalog.PROCESS_RESIDENT_MEMORY.name}{{process="app"}} > 0')
            assert wait_for(base, f"{catalog.HOST_MEMORY_AVAILABLE.name} > 0")
            gpus = wait_for(base, f'count({catalog.COLLECTOR_UP.name}{{collector="nvml",device!=""}} == 1)')
            assert gpus[0]["value"][1] == "8"
            # Prometheus accepted every sample: nothing dropped for duplicates or bad format.
            dropped = query(base, 'scrape_samples_post_metric_relabeling{job="jax-inference"}')
            scraped = query(base, 'scrape_samples_scraped{job="jax-inference"}')
            assert dropped and dropped[0]["value"][1] == scraped[0]["value"][1]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
