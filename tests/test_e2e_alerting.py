"""End to end: generated rules in a real Prometheus page on a real failing JAX service.

An instrumented JAX process fails half of its ``jaxobs.request`` s; a real
Prometheus scrapes it every second and evaluates the rules that ``jaxobs
generate`` made from a spec.  The spec is the ordinary format with *short
burn-rate windows* (one page tier: 2x over 1m, confirmed over 20s, ``for: 10s``)
instead of hours — the rule generator is unchanged, only the data is — so the
page alert goes pending and then firing within a minute.  The page is asserted
through Prometheus' HTTP API.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from realtools import free_port, running_prometheus, wait_until

from jaxobs.generate import generate_all, rules
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SERVICE = "e2e_alerting"

SPEC = f"""\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: {SERVICE}
    slos:
      - name: availability
        objective: 90            # budget 10%; the app fails 50% -> burn 5x
        sli: {{availability: {{}}}}
        alerting:
          tiers:
            - {{severity: page, burn_rate: 2, long_window: 1m, short_window: 20s, for: 10s}}
"""

WORKLOAD = """
    import itertools, sys, time
    import jax.numpy as jnp
    import jaxobs
    jaxobs.start_http_server({port}, addr="127.0.0.1")
    predict = jaxobs.jit(lambda x: jnp.tanh(x).sum(), name="predict")
    print("ready", flush=True)
    for i in itertools.count():
        try:
            with jaxobs.request("{service}"):
                y = predict(jnp.ones(4))
                if i % 2:
                    raise RuntimeError("injected failure")
        except RuntimeError:
            pass
        time.sleep(0.02)
"""


def test_page_alert_goes_pending_then_firing(tmp_path: Path) -> None:
    spec = parse_spec(SPEC, "e2e.yaml")
    rules_file = tmp_path / "jaxobs.rules.yaml"
    rules_file.write_text(generate_all(spec, "e2e.yaml")["alerts/jaxobs.rules.yaml"])

    port = free_port()
    code = textwrap.dedent(WORKLOAD.replace("{port}", str(port)).replace("{service}", SERVICE))
    app = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready", app.stderr.read() if app.stderr else ""
        # job = the service name: the default target selector of the spec's service.
        with running_prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"],
                                rule_files=[rules_file], job=SERVICE) as prom:
            prom.wait_value(f'up{{job="{SERVICE}"}}', lambda v: v == 1)
            burn = prom.wait_value(
                f'{rules.BURN_RATE}{{service="{SERVICE}",slo="availability",window="20s"}}',
                lambda v: v > 2, timeout=60)
            assert 2 < burn <= 10  # half the requests fail: ~5x a 10% budget

            def page(state: str) -> dict | None:
                return next((a for a in prom.alerts()
                             if a["labels"]["alertname"] == rules.SLO_BURN
                             and a["labels"]["severity"] == "page" and a["state"] == state), None)

            pending = wait_until(lambda: page("pending"), 60,
                                 what="the page alert to go pending")
            firing = wait_until(lambda: page("firing"), 60, what="the page alert to fire")
            assert pending["labels"]["service"] == firing["labels"]["service"] == SERVICE
            assert firing["labels"]["slo"] == "availability"
            assert firing["labels"]["window"] == "1m"
            assert firing["annotations"]["runbook_url"].endswith(f"/{rules.SLO_BURN}.md")
            assert "faster than sustainable" in firing["annotations"]["description"]
            value = float(firing["value"])
            assert 2 < value <= 10
            assert prom.value(
                f'ALERTS{{alertname="{rules.SLO_BURN}",alertstate="firing",severity="page"}}') == 1
    finally:
        app.kill()
        app.wait(10)
