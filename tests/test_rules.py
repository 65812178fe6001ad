"""Prometheus rules generated from the SLO model, checked with the real promtool.

promtool (and node for the PrometheusRule schema) is required in CI; locally a
missing tool skips with the reason (see tests/realtools.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from realtools import require_tool

from jaxobs import catalog
from jaxobs.generate import generate_all, promql, promtests, rules
from jaxobs.generate.names import CANARY_MISMATCH, GPU_THROTTLED, NONFINITE_OUTPUTS
from jaxobs.generate.sli import sli_rates
from jaxobs.slo.model import BurnRateTier, default_tiers
from jaxobs.slo.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "slo.yaml"
SOURCE = "examples/slo.yaml"

ONE_TIER = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: api
    slos:
      - name: availability
        objective: 99.5
        sli: {availability: {}}
        alerting:
          tiers:
            - {severity: page, burn_rate: 3, long_window: 1h}
"""


@pytest.fixture(scope="module")
def spec():
    return load_spec(EXAMPLE)


@pytest.fixture(scope="module")
def files(spec) -> dict[str, str]:
    return generate_all(spec, SOURCE)


@pytest.fixture(scope="module")
def tree(files, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _rules(files: dict[str, str]) -> list[dict]:
    return [rule for group in yaml.safe_load(files["alerts/jaxobs.rules.yaml"])["groups"]
            for rule in group["rules"]]


# --- recording rules ----------------------------------------------------------------------


def test_default_tiers_make_fourteen_recording_rules_per_slo_fewer_than_sloth(spec) -> None:
    service = spec.services[0]
    for slo in service.slos:
        recorded = rules.recording_rules(service, slo)
        windows = [r["labels"]["window"] for r in recorded if r["record"] == rules.ERROR_RATIO]
        assert windows == ["5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]  # Sloth's 8
        assert len(recorded) == 14 < 15  # 2 rates + 8 ratios + 4; Sloth: 8 ratios + 7 metadata


def test_single_tier_needs_only_its_two_windows() -> None:
    spec = parse_spec(ONE_TIER, "one.yaml")
    service = spec.services[0]
    recorded = rules.recording_rules(service, service.slos[0])
    assert [r["labels"].get("window") for r in recorded if r["record"] == rules.ERROR_RATIO] == \
        ["5m", "1h", "30d"]
    assert len(recorded) == 9


def test_windows_shared_by_tiers_are_recorded_once() -> None:
    spec = parse_spec(ONE_TIER.replace(
        "- {severity: page, burn_rate: 3, long_window: 1h}",
        "- {severity: page, burn_rate: 10, long_window: 1h}\n"
        "            - {severity: ticket, burn_rate: 2, long_window: 6h, short_window: 60m}\n"
        "            - {severity: ticket, burn_rate: 1, long_window: 30d, short_window: 6h}"),
        "x.yaml")
    service = spec.services[0]
    assert rules.alert_windows(service.slos[0]) == ("5m", "1h", "6h", "30d")
    recorded = rules.recording_rules(service, service.slos[0])
    # 30d is a tier window already, so no extra period rule.
    assert [r["labels"]["window"] for r in recorded if r["record"] == rules.ERROR_RATIO] == \
        ["5m", "1h", "6h", "30d"]


def test_steady_latency_sli_excludes_cold_calls(spec) -> None:
    service = spec.services[0]
    latency = next(s for s in service.slos if s.sli.kind == "latency")
    errors, events = sli_rates(service, latency, "5m")
    expr = errors + events
    assert expr.count('start="steady"') == 3 and "cold" not in expr
    assert f'{catalog.REQUEST_DURATION.name}_bucket{{le="0.2",service="inference",start="steady"}}' \
        in expr


def test_cold_start_sli_is_cold_over_all_requests(spec) -> None:
    service = spec.services[0]
    cold = next(s for s in service.slos if s.sli.kind == "cold_start")
    count = catalog.REQUEST_DURATION.name + "_count"
    assert sli_rates(service, cold, "1h") == (
        f'sum(rate({count}{{service="inference",start="cold"}}[1h]))\nor\n'
        f'0 * sum(rate({count}{{service="inference"}}[1h]))',
        f'sum(rate({count}{{service="inference"}}[1h]))')


def test_cache_hit_sli_is_scoped_by_the_service_targets(spec) -> None:
    service = spec.services[0]
    cache = next(s for s in service.slos if s.sli.kind == "cache_hit")
    expr = sli_rates(service, cache, "5m")[0]
    assert f'{catalog.CALLS.name}{{cache="miss",function="predict",job="inference"}}' in expr


def test_integral_thresholds_match_both_bucket_spellings() -> None:
    assert promql.le_matcher(1.0) == 'le=~"1(\\\\.0)?"'
    assert promql.le_matcher(0.25) == 'le="0.25"'


# --- alerts -------------------------------------------------------------------------------


def test_every_alert_is_named_labelled_and_annotated(spec, files) -> None:
    alerts = [r for r in _rules(files) if "alert" in r]
    assert len(alerts) == len(rules.all_alerts(spec)) == 69
    for rule in alerts:
        name = rule["alert"]
        assert name.startswith("Jaxobs"), name
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["labels"]["service"] in ("inference", "training")
        assert rule["labels"]["category"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url", "targets"}
        if name != rules.SLO_NO_DATA:  # absent() has no value to show
            assert "{{ $value" in annotations["description"], name
        assert annotations["runbook_url"] == f"{spec.runbook_base_url}/{name}.md"


def test_resource_alerts_cover_the_design(spec) -> None:
    required = {rules.DEVICE_MEMORY_HIGH, rules.CACHE_HIT_LOW, rules.COLD_START_HIGH,
                rules.RECOMPILATION_STORM, rules.OOM_ERRORS, rules.COLLECTOR_DOWN,
                rules.TARGET_DOWN, rules.GPU_XID, rules.BUILD_MISMATCH,
                rules.CONCURRENT_COMPILATION, rules.DEPLOY_IN_PROGRESS, rules.DEPLOY_STUCK,
                NONFINITE_OUTPUTS, CANARY_MISMATCH, GPU_THROTTLED}
    for service in spec.services:
        assert {a.name for a in rules.resource_alerts(service, spec.resources)} == required


def test_health_alerts_can_be_turned_off_in_the_spec(spec) -> None:
    import dataclasses

    off = dataclasses.replace(spec.resources, nonfinite_outputs=False, canary_mismatch=False,
                              gpu_throttled=False)
    names = {a.name for a in rules.resource_alerts(spec.services[0], off)}
    assert not names & {NONFINITE_OUTPUTS, CANARY_MISMATCH, GPU_THROTTLED}


def test_slo_alerts_are_multiwindow_per_tier(spec) -> None:
    service = spec.services[0]
    alerts = rules.slo_alerts(service)
    # per SLO: 2 page tiers (each with its low-traffic ticket), 2 ticket tiers, no-data
    assert len(alerts) == 7 * len(service.slos)
    page = alerts[0]
    assert (page.severity, dict(page.labels)["window"], page.for_) == ("page", "1h", "2m")
    assert page.expr.startswith(
        f'(\n{rules.BURN_RATE}{{service="inference",slo="availability",window="1h"}} > 14.4\n'
        f'and ignoring (window)\n'
        f'{rules.BURN_RATE}{{service="inference",slo="availability",window="5m"}} > 14.4\n)\n'
        f'and ignoring (window)\n')
    assert dict(page.labels)["team"] == "ml-serving"


def test_the_7d_example_spells_out_its_scaled_ladder(spec) -> None:
    training = spec.services[1]
    assert training.slos[0].tiers == default_tiers("7d")


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals
    expr = re.sub(r"\b(by|without|ignoring|on|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\boffset\s+\w+", "", expr)  # offset 10m
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    keywords = {"sum", "rate", "increase", "count", "max", "max_over_time", "sum_over_time",
                "count_over_time", "vector", "or", "and", "unless", "le", "avg_over_time",
                "absent", "bool", "ALERTS", "avg"}
    return {t for t in tokens if t not in keywords and not t.isdigit()}


def test_every_metric_name_comes_from_the_catalog(files) -> None:
    known = set(catalog.METRICS) | set(rules.RECORDING_RULE_NAMES) | {rules.UP}
    known |= {m + s for m in catalog.METRICS for s in ("_bucket", "_count", "_sum")}
    for rule in _rules(files):
        names = _metric_names(rule["expr"])
        assert names <= known, (rule.get("alert") or rule.get("record"), names - known)


def test_metric_name_scan_is_not_vacuous() -> None:
    assert _metric_names('sum by (function) (rate(foo_total{job="x"}[5m])) > 0') == {"foo_total"}
    assert _metric_names("(a unless a offset 10m) or increase(b[10m])") == {"a", "b"}


def test_dashboard_runbook_links_point_at_generated_runbooks(spec, files) -> None:
    base = re.escape(spec.runbook_base_url)
    linked = {m for rel, text in files.items() if rel.startswith("dashboards/")
              for m in re.findall(base + r"/(\w+)\.md", text)}
    assert linked, "the dashboards link no runbook"
    assert {f"runbooks/{name}.md" for name in linked} <= set(files)


# --- output files -------------------------------------------------------------------------


def test_output_is_deterministic_and_marked(spec, files) -> None:
    assert generate_all(load_spec(EXAMPLE), SOURCE) == files
    for rel in ("alerts/jaxobs.rules.yaml", "alerts/prometheusrule.yaml",
                "alerts/tests/inference.slo.test.yaml"):
        assert files[rel].startswith(
            "# Generated by `jaxobs generate examples/slo.yaml` — DO NOT EDIT.\n")


def test_prometheus_rule_carries_the_same_groups(files) -> None:
    plain = yaml.safe_load(files["alerts/jaxobs.rules.yaml"])
    custom = yaml.safe_load(files["alerts/prometheusrule.yaml"])
    assert custom["apiVersion"] == "monitoring.coreos.com/v1"
    assert custom["kind"] == "PrometheusRule"
    assert custom["spec"]["groups"] == plain["groups"]


def test_generators_do_not_import_jax() -> None:
    sources = ["slo/spec.py", "slo/duration.py", "generate/__init__.py", "generate/rules.py",
               "generate/alertmanager.py", "generate/promtests.py", "generate/runbooks.py",
               "generate/render.py", "generate/write.py", "generate/cli.py"]
    for rel in sources:
        text = (REPO / "jaxobs" / rel).read_text()
        assert not re.search(r"^\s*(import jax\b|from jax\b)", text, re.M), rel


# --- real promtool ------------------------------------------------------------------------


def test_promtool_checks_the_rules(tree) -> None:
    promtool = require_tool("promtool")
    proc = subprocess.run([promtool, "check", "rules", str(tree / "alerts/jaxobs.rules.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # 139 SLO and resource rules + 5 autoscaling and 8 canary recordings of the inference service
    assert "SUCCESS: 152 rules found" in proc.stdout


def test_promtool_checks_the_prometheus_rule_groups(tree, tmp_path) -> None:
    promtool = require_tool("promtool")
    custom = yaml.safe_load((tree / "alerts/prometheusrule.yaml").read_text())
    extracted = tmp_path / "from-crd.yaml"
    extracted.write_text(yaml.safe_dump({"groups": custom["spec"]["groups"]}))
    proc = subprocess.run([promtool, "check", "rules", str(extracted)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_runs_the_generated_rule_tests(tree) -> None:
    promtool = require_tool("promtool")
    tests = sorted((tree / "alerts/tests").glob("*.test.yaml"))
    assert [t.name for t in tests] == ["inference.resources.test.yaml", "inference.slo.test.yaml",
                                       "training.resources.test.yaml", "training.slo.test.yaml"]
    proc = subprocess.run([promtool, "test", "rules", *map(str, tests)], capture_output=True,
                          text=True, cwd=tree, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == 4


def test_generated_tests_cover_every_alert(spec) -> None:
    for service in spec.services:
        names = {c.name for c in promtests.resource_cases(service, spec.resources)}
        for alert in rules.resource_alerts(service, spec.resources):
            assert f"{service.name}: {alert.name} ({alert.severity}) fires" in names
            assert any(n.startswith(f"{service.name}: {alert.name} ({alert.severity}) silent")
                       for n in names)
        for slo in service.slos:
            slo_names = [c.name for c in promtests.slo_cases(service, slo)]
            # a burst can page unless the first page tier needs most events bad for its whole
            # long window (95%: 72% errors for an hour is an outage, not a burst)
            if slo.error_budget_ratio * slo.tiers[0].factor < 0.5:
                assert any("burst" in n and "pages" in n and "clears" in n for n in slo_names)
            assert any("zero traffic stays silent" in n for n in slo_names)
            assert any("no-data" in n for n in slo_names)
            if slo.objective < 99.5:  # a ticket tier below the page factors: a slow burn case
                assert any("files a ticket and no page" in n for n in slo_names), slo_names


def test_promtool_catches_a_broken_rule(tree, tmp_path) -> None:
    """The generated tests are not vacuous: a rule that ignores cold calls' label fails them."""
    promtool = require_tool("promtool")
    broken = tmp_path / "alerts"
    shutil.copytree(tree / "alerts", broken)
    path = broken / "jaxobs.rules.yaml"
    path.write_text(path.read_text().replace('start="steady"', 'start=~"steady|cold"'))
    proc = subprocess.run([promtool, "test", "rules", "tests/inference.slo.test.yaml"],
                          capture_output=True, text=True, cwd=broken, timeout=600)
    assert proc.returncode != 0
    assert 'slo=\\"latency\\"' in proc.stdout + proc.stderr


def test_custom_tiers_get_working_tests(tmp_path) -> None:
    """A spec with short windows and no `for` still gets passing generated tests."""
    promtool = require_tool("promtool")
    spec = parse_spec(ONE_TIER.replace(
        "- {severity: page, burn_rate: 3, long_window: 1h}",
        "- {severity: page, burn_rate: 5, long_window: 30m, short_window: 5m, for: 0h}\n"
        "            - {severity: ticket, burn_rate: 2, long_window: 2h}"), "short.yaml")
    assert spec.services[0].slos[0].tiers[1] == BurnRateTier("ticket", 2.0, "2h", "10m", "2m")
    assert spec.services[0].slos[0].tiers[0].for_ == "0s"
    for rel, text in generate_all(spec, "short.yaml").items():
        if rel.startswith("alerts/"):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    proc = subprocess.run([promtool, "test", "rules", "alerts/tests/api.slo.test.yaml",
                           "alerts/tests/api.resources.test.yaml"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- PrometheusRule schema (npm @kubernetes-models/prometheus-operator) ---------------------

_VALIDATE = """
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import fs from 'fs';
new PrometheusRule(JSON.parse(fs.readFileSync(process.argv[1], 'utf8'))).validate();
console.log('valid');
"""


def _validate_prometheus_rule(obj: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    models = REPO / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    if node is None or not models.is_dir():
        message = "node and `npm ci` (@kubernetes-models/prometheus-operator) are needed"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    path = tmp_path / "rule.json"
    path.write_text(json.dumps(obj))
    return subprocess.run([node, "--input-type=module", "-e", _VALIDATE, str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


def test_prometheus_rule_matches_the_operator_schema(files, tmp_path) -> None:
    proc = _validate_prometheus_rule(yaml.safe_load(files["alerts/prometheusrule.yaml"]), tmp_path)
    assert proc.returncode == 0 and "valid" in proc.stdout, proc.stderr


def test_schema_check_rejects_a_bad_prometheus_rule(files, tmp_path) -> None:
    obj = yaml.safe_load(files["alerts/prometheusrule.yaml"])
    obj["spec"]["groups"][0]["rules"][0]["expr"] = {"not": "a string"}
    proc = _validate_prometheus_rule(obj, tmp_path)
    assert proc.returncode != 0 and "expr" in proc.stderr


CUSTOM = r"""
apiVersion: jaxobs/v1
kind: SLOSpec
resources:
  device_memory_ratio: 0.5
  cache_hit_ratio: 0.5
  cold_start_ratio: 0.3
  recompiles_per_minute: 1
  concurrent_compiling_replicas: 2
  ratio_min_events: 0
  oom_instance_ratio: 1
  deploy_grace_window: 3m
services:
  - name: svc.a
    selector: {namespace: prod, job: "odd\"job"}
    slos:
      - {name: lat, objective: 99.99, sli: {latency: {threshold: 1}}}
      - {name: cold, objective: 98, sli: {cold_start: {selector: {function: f}}}}
      - name: raw
        objective: 99
        sli: {raw: {errors: 'sum(rate(e_total[$window]))', total: 'sum(rate(t_total[$window]))'}}
"""


def test_custom_thresholds_selectors_and_escaping_get_working_tests(tmp_path) -> None:
    """Test inputs follow the spec's thresholds; odd label values are escaped everywhere."""
    promtool = require_tool("promtool")
    files = generate_all(parse_spec(CUSTOM, "custom.yaml"), "custom.yaml")
    for rel, text in files.items():
        if rel.startswith("alerts/"):
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    check = subprocess.run([promtool, "check", "rules", "alerts/jaxobs.rules.yaml"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'job="odd\\"job"' in files["alerts/jaxobs.rules.yaml"]
    proc = subprocess.run([promtool, "test", "rules", "alerts/tests/svc.a.slo.test.yaml",
                           "alerts/tests/svc.a.resources.test.yaml"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "raw" not in files["alerts/tests/svc.a.slo.test.yaml"].split("tests:")[1]


def test_output_conventions_come_from_the_spec() -> None:
    """Severity names, runbook and dashboard links and the PrometheusRule labels."""
    spec = parse_spec(ONE_TIER.replace("services:", """\
runbook_base_url: https://runbooks.example/jaxobs/
alerting:
  severity_labels: critical-warning
outputs:
  grafana_url: https://grafana.example
  prometheus_rule_labels: {release: kube-prometheus-stack}
services:"""), "conv.yaml")
    files = generate_all(spec, "conv.yaml")
    alerts = [r for r in _rules(files) if "alert" in r]
    assert {r["labels"]["severity"] for r in alerts} == {"critical", "warning"}
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["runbook_url"] == f"https://runbooks.example/jaxobs/{rule['alert']}.md"
        assert notes["dashboard_url"].startswith("https://grafana.example/d/")
        assert notes["dashboard_url"].endswith("?var-service={{ $labels.service }}")
    metadata = yaml.safe_load(files["alerts/prometheusrule.yaml"])["metadata"]
    assert metadata["labels"] == {"release": "kube-prometheus-stack"}
    route = yaml.safe_load(files["alerts/alertmanager-route.yml"])["route"]
    assert [r["matchers"] for r in route["routes"][1:]] == [['severity="critical"'],
                                                            ['severity="warning"']]


def test_record_only_and_disabled_slos() -> None:
    spec = parse_spec(ONE_TIER + """\
      - name: quiet
        objective: 99
        record_only: true
        sli: {availability: {}}
      - name: retired
        objective: 99
        enabled: false
        sli: {availability: {}}
""", "flags.yaml")
    text = generate_all(spec, "flags.yaml")["alerts/jaxobs.rules.yaml"]
    assert "slo: quiet" in text and "retired" not in text
    alerts = [r for r in yaml.safe_load(text)["groups"][2]["rules"] if "alert" in r]
    assert alerts and all(r["labels"]["slo"] == "availability" for r in alerts
                          if r["alert"] == rules.SLO_BURN)
