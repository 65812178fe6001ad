"""`jaxobs demo` — the README's first command — end to end in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from realtools import free_port


def test_demo_runs_serves_metrics_and_generates_artifacts(tmp_path: Path):
    port = free_port()
    out_dir = tmp_path / "demo-out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxobs.cli", "demo", "--duration", "6", "--port", str(port),
         "--out", str(out_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    scraped: list[str] = []

    def scrape_while_running() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
                if 'cache="hit"' in text:
                    scraped.append(text)
                    return
            except OSError:
                pass
            time.sleep(0.3)

    scraper = threading.Thread(target=scrape_while_running)
    scraper.start()
    output, _ = proc.communicate(timeout=180)
    scraper.join()
    assert proc.returncode == 0, output
    # progress, then a summary with real numbers
    assert "ready (jaxobs_ready=1)" in output
    assert re.search(r"requests=\d+", output)
    row = re.search(r"^predict\s+(\d+)\s+([\d.]+)%\s+(\d+)\s.*first=1.*shape=8", output, re.M)
    assert row, output
    assert int(row.group(3)) == 11  # 6 warmed buckets + 3 unbucketed sizes + dtype + static arg
    assert re.search(r"demo-inference: \d+ requests, errors [\d.]+%, cold starts [\d.]+%, "
                     r"steady latency p50 [\d.]+ ms\s+p95 [\d.]+ ms\s+p99 [\d.]+ ms", output)
    assert "errors by function/kind: {'predict/trace': 1}" in output
    # it served metrics while running
    assert scraped and 'jaxobs_calls_total{cache="hit",function="predict"}' in scraped[0]
    # and generated the SLO artifacts
    for rel in ("alerts/jaxobs.rules.yaml", "alerts/alertmanager.yml", "dashboards/jaxobs-oncall.json",
                "runbooks/JaxobsOOMErrors.md"):
        assert (out_dir / rel).stat().st_size > 100, rel
    # and a ready Prometheus and Alertmanager config, with the one command that starts each
    assert f"- 127.0.0.1:{port}" in (out_dir / "prometheus.yml").read_text()
    assert (out_dir / "alertmanager.yml").stat().st_size > 100
    assert f"Prometheus:   prometheus --config.file={out_dir}/prometheus.yml " in output
    assert f"Alertmanager: prometheus-alertmanager --config.file={out_dir}/alertmanager.yml " in output


def test_demo_port_in_use_is_one_clear_line():
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "jaxobs.cli", "demo", "--port", str(port), "--duration", "1"],
                             capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"Error: port {port} on 127.0.0.1 is already in use" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_rejects_a_bad_spec_before_running(tmp_path: Path):
    bad = tmp_path / "slo.yaml"
    bad.write_text("apiVersion: jaxobs/v1\nservices: []\n")
    out = subprocess.run([sys.executable, "-m", "jaxobs.cli", "demo", "--spec", str(bad), "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert f"Error: {bad}:1: kind: is required" in out.stderr
    assert "Traceback" not in out.stderr and "serving metrics" not in out.stdout
