"""The rule-cost benchmark measures what it says: its Sloth-shaped rules are Sloth's
shapes for our SLOs, and its fleet model agrees with the generated SLI rules.

``benchmarks/rule_cost.py`` writes 30 days of 5-minute recordings from its model rather
than evaluating the rules over 30 days of raw series. That is the same thing only if
the model's bad and total event rates are what the generated rules compute from the
model's own series, which the second test checks in a real Prometheus.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
import yaml

from jaxobs.generate.sli import sli_rates
from jaxobs.slo.spec import load_spec
from tests.realtools import http_get_json, require_tool, running_prometheus

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
from fleet_model import Fleet  # noqa: E402
from sloth_shaped import sloth_rule_groups  # noqa: E402

SPEC = load_spec(REPO / "examples" / "slo.yaml")
pytestmark = pytest.mark.e2e


def test_sloth_shaped_rules_pass_promtool_and_read_raw_series_for_every_window(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    groups = sloth_rule_groups(SPEC)
    path = tmp_path / "sloth.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run([promtool, "check", "rules", "--lint=none", str(path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    enabled = sum(len(s.slos) for s in SPEC.services)
    assert len(groups) == 3 * enabled  # SLI recordings, metadata, alerts per SLO
    availability = groups[0]["rules"]
    windows = [r["labels"]["sloth_window"] for r in availability]
    assert windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
    # Sloth reads the raw counters over every alert window, up to 3 days ...
    assert 'rate(jaxobs_requests_total{service="inference"}[3d])' in availability[6]["expr"]
    # ... and averages the 5-minute ratios over the SLO window.
    assert availability[7]["expr"].startswith("sum_over_time(slo:sli_error:ratio_rate5m{")
    assert "count_over_time(slo:sli_error:ratio_rate5m{" in availability[7]["expr"]


def test_fleet_model_rates_equal_the_generated_sli_rules_in_prometheus(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    fleet = Fleet(pods=3, functions=3, training_pods=2)
    origin = float(int(time.time() - 86400) // 7200 * 7200)
    start = origin + 4 * 7200
    om = tmp_path / "fleet.om"
    om.write_text(fleet.openmetrics(origin, np.arange(start, start + 7200, 60.0)))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(om),
                    str(tmp_path / "prom" / "data")], check=True)

    at = start + 3600.0
    compared = 0
    with running_prometheus(tmp_path / "prom", []) as prom:
        for service in SPEC.services:
            for slo in service.slos:
                t = np.array([at - origin, at - origin - 300])
                bad, total = fleet.sli_totals(service, slo, t)
                errors_expr, events_expr = sli_rates(service, slo, "5m")
                for expr, want in ((errors_expr, (bad[0] - bad[1]) / 300),
                                   (events_expr, (total[0] - total[1]) / 300)):
                    query = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}"})
                    result = http_get_json(f"{prom.url}/api/v1/query?{query}")["data"]["result"]
                    assert len(result) == 1, (slo.name, expr, json.dumps(result))
                    got = float(result[0]["value"][1])
                    assert want > 0
                    assert got == pytest.approx(want, rel=0.01), (service.name, slo.name, expr)
                    compared += 1
    assert compared == 2 * sum(len(s.slos) for s in SPEC.services)
