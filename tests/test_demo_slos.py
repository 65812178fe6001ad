"""The demo agrees with itself: a real Prometheus started with the prometheus.yml the demo
writes, against the demo's own traffic, records data for every SLO of the demo's rules.

Nothing is adapted for the test: the config (its 5 s scrape and evaluation intervals, the two
scrape jobs, the rule file path) is the file ``jaxobs demo`` wrote; only Prometheus's listen
address and data directory are chosen here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from realtools import Prometheus, free_port, http_get_json, require_tool, stop, wait_until

from jaxobs.generate import RULES_PATH

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent


def _slos(rules_text: str) -> set[tuple[str, str]]:
    """(service, slo) of every SLI recording rule in a generated rule file."""
    doc = yaml.safe_load(rules_text)
    return {(r["labels"]["service"], r["labels"]["slo"]) for g in doc["groups"] for r in g["rules"]
            if r.get("record") == "jaxobs_slo:sli_error:ratio"}


def test_every_slo_of_the_demo_records_data_within_a_minute(tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    out = tmp_path / "demo-out"
    demo = subprocess.Popen(
        [sys.executable, "-m", "jaxobs.cli", "demo", "--duration", "120", "--port", str(free_port()),
         "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"})
    prom_proc = None
    try:
        config = out / "prometheus.yml"
        wait_until(config.exists, 60, what="the demo to write prometheus.yml")
        slos = _slos((out / RULES_PATH).read_text())
        assert len(slos) == 5, slos
        port = free_port()
        prom_proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)
        prom = Prometheus(f"http://127.0.0.1:{port}", prom_proc, tmp_path / "prometheus.log")
        wait_until(lambda: http_get_json(f"{prom.url}/api/v1/status/buildinfo"), 30, what="prometheus")
        started = time.monotonic()

        def recording() -> set[tuple[str, str]]:
            rows = prom.query('jaxobs_slo:sli_error:ratio{window="5m"}')
            return {(r["metric"]["service"], r["metric"]["slo"]) for r in rows}

        try:
            wait_until(lambda: recording() >= slos, 60, what="every SLO to record data")
        finally:
            seen = recording()
            print(f"\nSLOs recording data: {len(seen & slos)} of {len(slos)} "
                  f"after {time.monotonic() - started:.0f}s; missing: {sorted(slos - seen)}")
        # Both jobs are up and carry their own service's series, nothing of the other's.
        assert prom.value('count(up{job=~"demo-.*"} == 1)') == 2
        assert prom.value('count(jaxobs_requests_total{job="demo-training",service="demo-inference"})') is None
        assert prom.value('count(jaxobs_requests_total{job="demo-inference",service="demo-training"})') is None
        assert prom.value('count(jaxobs_calls_total{job="demo-training",function="train_step"})') is not None
        # No rule failed to evaluate.
        groups = http_get_json(f"{prom.url}/api/v1/rules")["data"]["groups"]
        errors = [(r["name"], r["lastError"]) for g in groups for r in g["rules"] if r.get("lastError")]
        assert not errors, errors
    finally:
        if prom_proc is not None:
            stop(prom_proc)
        stop(demo)


def test_the_demo_spec_is_valid_and_its_rules_pass_promtool(tmp_path: Path) -> None:
    """examples/demo-slo.yaml is checked like the example spec (and the embedded copy is it)."""
    from click.testing import CliRunner

    from jaxobs.cli import cli
    from jaxobs.demo import config

    assert config.DEMO_SPEC.read_text() == (REPO / "examples" / "demo-slo.yaml").read_text()
    result = CliRunner().invoke(cli, ["check", "examples/demo-slo.yaml"])
    assert result.exit_code == 0, result.output
    promtool = require_tool("promtool")
    files = config.artifacts(None)
    rules = tmp_path / "rules.yaml"
    rules.write_text(files[RULES_PATH])
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    prom_yml = tmp_path / "prometheus.yml"
    prom_yml.write_text(config.prometheus_config(config.Endpoints(target="127.0.0.1:9464"), [str(rules)]))
    checked = subprocess.run([promtool, "check", "config", str(prom_yml)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    amtool = require_tool("amtool")
    am_yml = tmp_path / "alertmanager.yml"
    am_yml.write_text(config.alertmanager_config(files["alerts/alertmanager.yml"]))
    checked = subprocess.run([amtool, "check-config", str(am_yml)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
