"""Canary analysis from the spec: the AnalysisTemplate's metrics, conditions, schema and
queries, its recordings, and the runbook.  (tests/test_canary_analysis_e2e.py runs it in a
real Prometheus.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from argo_conditions import evaluate, outcome
from kube_schemas import promtool_check, tsc_unknown_fields, validate_model

from jaxobs.generate import canary_analysis, generate_all, sli
from jaxobs.generate import names as n
from jaxobs.slo.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "alerts" / "kubernetes" / "inference"
EXAMPLE = ROOT / "examples" / "slo.yaml"


def template() -> dict:
    return yaml.safe_load((KUBE / "analysistemplate.yaml").read_text())


def metrics() -> dict[str, dict]:
    return {m["name"]: m for m in template()["spec"]["metrics"]}


def substituted(query: str) -> str:
    return query.replace("{{args.canary-hash}}", "abc123").replace("{{args.stable-hash}}", "def456")


# --- the spec block ---------------------------------------------------------------------------
SPEC = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: api
    slos:
      - {{name: availability, objective: 99.9, sli: {{availability: {{}}}}}}
    canary: {block}
"""


@pytest.mark.parametrize("block, path, words", [
    ("{failure_limit: 10, count: 10}", "services[0].canary.failure_limit", "can never fail"),
    ("{track_label: 'rollouts-pod-template-hash'}", "services[0].canary.track_label",
     "not allowed"),
    ("{latency_tolerance: 0.5}", "services[0].canary.latency_tolerance", "out of range"),
    ("{intervall: 1m}", "services[0].canary.intervall", "did you mean 'interval'"),
])
def test_bad_canary_blocks_fail_with_one_line(block, path, words):
    with pytest.raises(SpecError) as err:
        parse_spec(SPEC.format(block=block), "s.yaml")
    message = str(err.value)
    assert "\n" not in message and f" {path}: " in message and words in message


def test_an_empty_block_takes_the_defaults():
    canary = parse_spec(SPEC.format(block="{}"), "s.yaml").services[0].canary
    assert canary is not None and canary.track_label == "rollouts_pod_template_hash"


# --- derived from the SLOs --------------------------------------------------------------------
def test_one_burn_metric_per_alerting_slo_with_the_page_and_ticket_factors():
    spec = load_spec(EXAMPLE)
    (inference,) = [s for s in spec.services if s.name == "inference"]
    burns = {m: v for m, v in metrics().items() if m.startswith("burn-")}
    assert set(burns) == {f"burn-{slo.name}" for slo in inference.slos}
    # 30-day workbook ladder: page at 14.4x (over its 5m short window), sustainable below 1x.
    for metric in burns.values():
        assert metric["failureCondition"] == "len(result) > 0 && result[0] >= 14.4"
        assert metric["successCondition"] == "len(result) > 0 && result[0] < 1"
        query = metric["provider"]["prometheus"]["query"]
        assert n.TRACK_ERRORS_RATE in query and n.TRACK_EVENTS_RATE in query
        assert n.ERROR_BUDGET in query
        assert 'rollouts_pod_template_hash="{{args.canary-hash}}"' in query


def test_custom_tiers_move_the_conditions():
    text = SPEC.format(block="{}").replace(
        "sli: {availability: {}}}",
        "sli: {availability: {}}, alerting: {tiers: ["
        "{severity: page, burn_rate: 6, long_window: 6h, short_window: 30m},"
        "{severity: ticket, burn_rate: 2, long_window: 1d, short_window: 2h}]}}")
    spec = parse_spec(text, "s.yaml")
    (check,) = [c for c in canary_analysis.checks(spec.services[0], spec) if c.kind == "burn"]
    assert check.conditions() == ("len(result) > 0 && result[0] < 2",
                                  "len(result) > 0 && result[0] >= 6")
    assert "[30m]" in check.query  # the page tier's short window


def test_track_recordings_reuse_the_alerts_sli_expressions():
    spec = load_spec(EXAMPLE)
    (inference,) = [s for s in spec.services if s.name == "inference"]
    groups = {g["name"]: g for g in yaml.safe_load(
        (ROOT / "alerts" / "jaxobs.rules.yaml").read_text())["groups"]}
    rules = groups["jaxobs-canary-inference"]["rules"]
    assert len(rules) == 2 * len(inference.slos)
    by_slo = {(r["record"], r["labels"]["slo"]): r["expr"] for r in rules}
    for slo in inference.slos:
        alert_rules = {r["record"]: r["expr"] for r in groups[f"jaxobs-slo-inference-{slo.name}"]["rules"]}
        tracked = by_slo[(n.TRACK_ERRORS_RATE, slo.name)]
        # the same expression, grouped by the track label as well
        assert tracked == alert_rules[n.ERRORS_RATE].replace(
            "sum(", "sum by (rollouts_pod_template_hash) (")
        errors, _ = sli.sli_rates(inference, canary_analysis._tracked(slo, inference.canary), "5m")
        assert tracked == errors


def test_conditions_on_prometheus_answers():
    m = metrics()
    assert outcome(m["burn-availability"], [20.0]) == "Failed"
    assert outcome(m["burn-availability"], [0.2]) == "Successful"
    assert outcome(m["burn-availability"], [5.0]) == "Inconclusive"  # burning, not page-fast
    assert outcome(m["burn-availability"], []) == "Inconclusive"  # no canary traffic yet
    assert outcome(m["steady-latency"], [1.3]) == "Failed"
    assert outcome(m["steady-latency"], [0.9]) == "Successful"
    assert outcome(m["cold-start-ratio"], [0.05]) == "Failed"
    assert outcome(m["cold-start-ratio"], [0.0]) == "Successful"
    assert outcome(m["compiles-per-replica"], [3.0]) == "Failed"
    assert outcome(m["version-skew"], [2.0]) == "Failed"
    assert outcome(m["version-skew"], [1.0]) == "Successful"


def test_condition_evaluator_can_fail_on_what_argo_rejects():
    with pytest.raises(ValueError):
        evaluate("result[0] ~ 3", [1.0])
    with pytest.raises(IndexError):
        evaluate("result[0] > 3", [])  # unguarded: Argo errors too


# --- schema, promtool, regeneration -----------------------------------------------------------
def test_checked_in_template_and_runbook_come_from_the_example_spec():
    files = generate_all(load_spec(EXAMPLE), "examples/slo.yaml")
    for name in ("analysistemplate.yaml", "canary-analysis.md"):
        assert files[f"alerts/kubernetes/inference/{name}"] == (KUBE / name).read_text()


def test_template_matches_the_argo_rollouts_schema():
    proc = validate_model(template())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_argo_schema_check_can_fail():
    broken = copy.deepcopy(template())
    broken["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = 42
    del broken["spec"]["metrics"][1]["name"]
    proc = validate_model(broken)
    assert proc.returncode != 0
    assert "query" in proc.stdout and "name" in proc.stdout


def test_template_has_no_unknown_fields(tmp_path):
    broken = copy.deepcopy(template())
    broken["spec"]["metrics"][0]["failureLimits"] = 2
    errors = tsc_unknown_fields(tmp_path, {"good": template(), "broken": broken})
    assert not [e for e in errors if not e.startswith("broken.ts")], "\n".join(errors)
    assert any("failureLimits" in e for e in errors), errors


def test_every_analysis_query_parses_under_promtool(tmp_path):
    queries = {f"q_{name.replace('-', '_')}": substituted(m["provider"]["prometheus"]["query"])
               for name, m in metrics().items()}
    proc = promtool_check(queries, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert promtool_check({"broken": queries["q_version_skew"] + " by"}, tmp_path).returncode != 0


def test_runbook_covers_every_metric_and_says_how_to_roll_back():
    text = (KUBE / "canary-analysis.md").read_text()
    for name in metrics():
        assert f"`{name}`" in text
    assert "kubectl argo rollouts undo" in text and "kubectl argo rollouts abort" in text
    assert 'job="inference"' in text and "$targets" not in text
    assert "../shared" not in text and "DESIGN" not in text
