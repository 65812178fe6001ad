"""A real Prometheus: the executive dashboard's budget panel, the recording rule and the
counters agree on one number.

A tiny exporter serves request counters that this test moves: first busy and
error-free, then quiet with 10% errors.  Prometheus scrapes it every second and
evaluates the generated rules (tier windows divided by 60 so the base window is
5s; the SLO window and the budget are the ordinary ones).  The budget panel's
query and ``jaxobs_slo:error_budget_remaining:ratio`` must be the same number,
and within a few percent of what the raw counters say.  (Averaging the short
ratios instead, as the earlier generator did, gives a deeply negative budget here.)
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest
from realtools import running_prometheus, shortened_spec, wait_until

from jaxobs.generate import generate_all, rules
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: api
    slos:
      - name: availability
        objective: 99.9
        sli: {availability: {}}
"""


class _Counters:
    """``jaxobs_requests_total`` for service ``api``, served at ``/metrics``."""

    def __init__(self) -> None:
        self.ok = 0.0
        self.error = 0.0
        self.lock = threading.Lock()
        counters = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with counters.lock:
                    body = ("# TYPE jaxobs_requests_total counter\n"
                            f'jaxobs_requests_total{{service="api",outcome="ok"}} {counters.ok}\n'
                            f'jaxobs_requests_total{{service="api",outcome="error"}} '
                            f"{counters.error}\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def run(self, seconds: float, ok_per_s: float, error_per_s: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                self.ok += ok_per_s / 10
                self.error += error_per_s / 10
            time.sleep(0.1)


def test_budget_panel_recording_rule_and_counters_agree(tmp_path: Path) -> None:
    spec = parse_spec(shortened_spec(SPEC), "spec.yaml")
    files = generate_all(spec, "spec.yaml")
    (tmp_path / "rules.yaml").write_text(files["alerts/jaxobs.rules.yaml"])
    panel = next(p for p in json.loads(files["dashboards/jaxobs-executive.json"])["panels"]
                 if p.get("title") == "api / availability: error budget remaining")
    panel_expr = panel["targets"][0]["expr"]
    counters = _Counters()
    try:
        with running_prometheus(tmp_path / "prom", [counters.address],
                                rule_files=[tmp_path / "rules.yaml"], job="api") as prom:
            prom.wait_value('up{job="api"}', lambda v: v == 1)
            counters.run(15, ok_per_s=10_000, error_per_s=0)  # busy, no errors
            counters.run(15, ok_per_s=9, error_per_s=1)  # quiet, 10% errors
            time.sleep(6)  # the last 5s rates and the ratios are recorded
            truth = prom.value(
                '1 - (sum(increase(jaxobs_requests_total{outcome="error"}[1h]))'
                ' / sum(increase(jaxobs_requests_total[1h]))) / 0.001')
            rule = wait_until(lambda: prom.value(rules.BUDGET_REMAINING), 20,
                              what="the budget recording")
            panel_value = prom.value(panel_expr)
    finally:
        counters.server.shutdown()
    assert truth is not None and 0.5 < truth < 0.99, truth  # about 15 bad of 150,150
    assert panel_value == rule
    assert abs(rule - truth) < 0.1, (rule, truth)
