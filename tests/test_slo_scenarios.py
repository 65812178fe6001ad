"""Production scenarios of the SLO alerts, run with the real promtool on generated rules.

Each scenario is one bullet of "what went wrong" with the earlier generator: the
budget averaged 5-minute ratios, nothing fired when data vanished, a quiet
service paged on one failure, 7-day SLOs kept the 30-day tiers, every sum was
fleet-wide, a stuck deploy window muted alerts forever, and the generated tests
passed on broken rules.  Each test fails on that generator (checked by running
this file against the commit before these changes).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from realtools import require_tool

from jaxobs.generate import generate_all, rules
from jaxobs.slo.spec import parse_spec

HEAD = "apiVersion: jaxobs/v1\nkind: SLOSpec\n"
API = HEAD + """services:
  - name: api
    slos:
      - name: availability
        objective: 99.9
        sli: {availability: {}}
"""


def _promtool(tmp_path: Path, spec_text: str, tests: list[dict], interval: str = "1m",
              rules_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Generate the rules of ``spec_text`` and run ``tests`` against them."""
    files = generate_all(parse_spec(spec_text, "spec.yaml"), "spec.yaml")
    (tmp_path / "rules.yaml").write_text(rules_text or files["alerts/jaxobs.rules.yaml"])
    order = [g["name"] for g in yaml.safe_load(files["alerts/jaxobs.rules.yaml"])["groups"]]
    doc = {"rule_files": ["rules.yaml"], "evaluation_interval": interval,
           "group_eval_order": order, "tests": tests}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return subprocess.run([require_tool("promtool"), "test", "rules", str(tmp_path / "t.yaml")],
                          capture_output=True, text=True, timeout=300)


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


REQ = 'jaxobs_requests_total{{job="api",instance="a:1",service="api",outcome="{o}"{extra}}}'


def test_budget_is_a_ratio_of_sums_and_the_dashboard_reads_the_same_number(tmp_path) -> None:
    """1h at 10k req/min without errors, then 1h at 10 req/min with 10% errors: the counters
    say 60 bad of 600,600, so 0.90 of a 99.9% budget remains (the averaged ratio said -45.7)."""
    files = generate_all(parse_spec(API, "spec.yaml"), "spec.yaml")
    executive = files["dashboards/jaxobs-executive.json"]
    panel = next(p for p in __import__("json").loads(executive)["panels"]
                 if p.get("title", "").endswith("error budget remaining"))
    panel_expr = panel["targets"][0]["expr"]
    series = [
        {"series": REQ.format(o="ok", extra=""), "values": "0+10000x60 600009+9x59"},
        {"series": REQ.format(o="error", extra=""), "values": "0x60 1+1x59"},
    ]
    check = {"eval_time": "2h", "exp_samples": [
        {"labels": '{service="api", slo="availability", window="30d"}', "value": 0.9}]}
    _ok(_promtool(tmp_path, API, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": f"round({rules.BUDGET_REMAINING}, 0.01)", **check},
        {"expr": f"round({panel_expr}, 0.01)", **check},
    ]}]))


def test_a_quiet_service_with_one_failure_files_a_ticket_not_a_page(tmp_path) -> None:
    """Two requests an hour and one failure burn 500x, but 2 events cannot page."""
    series = [
        {"series": REQ.format(o="ok", extra=""), "values": "0+0x29 1+0x29 2+0x29 3+0x29 4+0x29"},
        {"series": REQ.format(o="error", extra=""), "values": "0+0x119 1+0x29"},
    ]
    alerts = 'ALERTS{alertname="JaxobsErrorBudgetBurn",alertstate="firing",severity="%s"}'
    _ok(_promtool(tmp_path, API, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": alerts % "page", "eval_time": "2h20m", "exp_samples": []},
        {"expr": f"clamp_max(count({alerts % 'ticket'}), 1)", "eval_time": "2h20m",
         "exp_samples": [{"labels": "{}", "value": 1}]},
    ]}]))


def test_vanished_series_fire_the_no_data_alert(tmp_path) -> None:
    """The service label was renamed by a deploy: the SLO's series are gone."""
    series = [{"series": REQ.format(o="ok", extra="").replace('service="api"', 'service="api-v2"'),
               "values": "0+100x60"}]
    _ok(_promtool(tmp_path, API, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": 'count(ALERTS{alertname="JaxobsSLONoData",alertstate="firing",slo="availability"})',
         "eval_time": "30m", "exp_samples": [{"labels": "{}", "value": 1}]},
    ]}]))


def test_targets_leaving_service_discovery_fire_the_no_data_alert(tmp_path) -> None:
    """The targets are reclaimed after an hour: their series end (stale), nothing is down."""
    series = [{"series": REQ.format(o="ok", extra=""), "values": "0+100x60 stale"},
              {"series": REQ.format(o="error", extra=""), "values": "0x60 stale"}]
    no_data = 'ALERTS{alertname="JaxobsSLONoData",alertstate="firing",slo="availability"}'
    _ok(_promtool(tmp_path, API, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": no_data, "eval_time": "55m", "exp_samples": []},
        {"expr": f"count({no_data})", "eval_time": "1h20m",
         "exp_samples": [{"labels": "{}", "value": 1}]},
    ]}]))


def test_a_7d_slo_gets_a_ladder_for_its_window(tmp_path) -> None:
    """A steady 2x burn empties a 7-day budget in 3.5 days: it must at least file a ticket
    within a day (the 30-day ladder's 3d tier needed 43% of the budget gone first)."""
    spec = API.replace("objective: 99.9", "objective: 99\n        window: 7d")
    ok, bad = 1000, 20  # 2% errors: a 2x burn of a 99% SLO
    series = [{"series": REQ.format(o="ok", extra=""), "values": f"0+1000x4320 {ok * 4321}+{ok - bad}x1440"},
              {"series": REQ.format(o="error", extra=""), "values": f"0x4320 {bad}+{bad}x1439"}]
    firing = 'ALERTS{alertname="JaxobsErrorBudgetBurn",alertstate="firing"}'
    _ok(_promtool(tmp_path, spec, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": f"count by (severity) ({firing})", "eval_time": "3d20h",
         "exp_samples": [{"labels": '{severity="ticket"}', "value": 1}]},
    ]}], interval="5m"))


def test_grouping_labels_keep_one_cluster_from_hiding_in_the_fleet(tmp_path) -> None:
    """Cluster a fails 5% of 100 req/min, cluster b serves 100k req/min without errors:
    fleet-wide that is 0.005%, per cluster it is a 50x burn of a 99.9% SLO."""
    spec = API.replace("services:", "alerting:\n  group_by: [cluster]\nservices:")
    series = [
        {"series": REQ.format(o="ok", extra=',cluster="a"'), "values": "0+95x120"},
        {"series": REQ.format(o="error", extra=',cluster="a"'), "values": "0+5x120"},
        {"series": REQ.format(o="ok", extra=',cluster="b"'), "values": "0+100000x120"},
    ]
    _ok(_promtool(tmp_path, spec, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": 'count by (cluster) (ALERTS{alertstate="firing",severity="page",window="1h"})',
         "eval_time": "1h30m", "exp_samples": [{"labels": '{cluster="a"}', "value": 1}]},
    ]}]))
    text = generate_all(parse_spec(spec, "s.yaml"), "s.yaml")["alerts/jaxobs.rules.yaml"]
    bare = [line for line in text.splitlines() if re.search(r"\b(sum|count|max)\(", line)]
    assert not bare, bare[:3]


def test_a_stuck_deploy_window_stops_inhibiting_and_files_a_ticket(tmp_path) -> None:
    series = [{"series": 'jaxobs_deploy_in_progress{job="api",instance="a:1"}', "values": "1x200"}]
    at = 'ALERTS{alertname="%s",alertstate="firing"}'
    _ok(_promtool(tmp_path, API, [{"interval": "1m", "input_series": series, "promql_expr_test": [
        {"expr": f"count({at % 'JaxobsDeployInProgress'})", "eval_time": "1h",
         "exp_samples": [{"labels": "{}", "value": 1}]},
        {"expr": at % "JaxobsDeployInProgress", "eval_time": "2h10m", "exp_samples": []},
        {"expr": f"count({at % 'JaxobsDeployWindowStuck'})", "eval_time": "2h10m",
         "exp_samples": [{"labels": "{}", "value": 1}]},
    ]}]))


# --- the generated tests kill mutants of the generated rules -------------------------------


def _mutants(rules_text: str) -> dict[str, str]:
    burn = rules.BURN_RATE
    return {
        "and -> or": rules_text.replace("and ignoring (window)", "or ignoring (window)"),
        "every tier on the 5m window": re.sub(
            rf'({re.escape(burn)}\{{[^}}]*window=")[^"]+(")', r"\g<1>5m\g<2>", rules_text),
    }


@pytest.mark.parametrize("mutant", ["and -> or", "every tier on the 5m window"])
def test_generated_tests_catch_mutated_rules(tmp_path, mutant) -> None:
    files = generate_all(parse_spec(API, "spec.yaml"), "spec.yaml")
    for rel, text in files.items():
        if rel.startswith("alerts/"):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    test_file = tmp_path / "alerts/tests/api.slo.test.yaml"
    promtool = require_tool("promtool")
    passed = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True,
                            text=True, timeout=300)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    rules_file = tmp_path / "alerts/jaxobs.rules.yaml"
    mutated = _mutants(rules_file.read_text())[mutant]
    assert mutated != rules_file.read_text()
    rules_file.write_text(mutated)
    failed = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True,
                            text=True, timeout=300)
    assert failed.returncode != 0, f"the generated tests missed the mutant {mutant!r}"
