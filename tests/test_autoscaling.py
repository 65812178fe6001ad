"""Autoscaling from the spec: the block's validation, the generated KEDA/HPA/adapter objects,
their schemas, and that every query parses under promtool.

Schema checks run on the checked-in objects (alerts/kubernetes/inference/) and once on a
broken copy each, so each check is shown to be able to fail.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from kube_schemas import kubernetes_validate, promtool_check, tsc_unknown_fields, validate_model

from jaxobs import catalog as c
from jaxobs.generate import autoscaling, generate_all
from jaxobs.generate import names as n
from jaxobs.slo.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
KUBE = ROOT / "alerts" / "kubernetes" / "inference"

SPEC = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: {name}
    slos: []
    autoscaling:
{block}
"""

FULL = """\
      target: {kind: Rollout, name: api}
      min_replicas: 2
      max_replicas: 9
      scale_down_stabilization: 10m
      targets:
        in_flight_per_replica: 4
        accelerator_utilization: 0.7
        device_memory_headroom: 0.25
        queue_depth_per_replica: {metric: my_queue_depth, value: 8}
"""


def spec_with(block: str, name: str = "api"):
    return parse_spec(SPEC.format(name=name, block=block), "s.yaml")


def load(name: str) -> dict:
    return yaml.safe_load((KUBE / name).read_text())


# --- the spec block ---------------------------------------------------------------------------
def test_full_block_parses_with_rollout_defaults():
    a = spec_with(FULL).services[0].autoscaling
    assert a is not None
    assert (a.target.kind, a.target.name, a.target.api_version) == ("Rollout", "api",
                                                                    "argoproj.io/v1alpha1")
    assert (a.min_replicas, a.max_replicas, a.scale_down_stabilization) == (2, 9, "10m")
    assert a.queue_depth is not None and a.queue_depth.metric == "my_queue_depth"
    assert a.device_memory_headroom == 0.25


@pytest.mark.parametrize("block, path, words", [
    ("      targets: {}\n", "services[0].autoscaling.targets", "no scaling target"),
    ("      min_replicas: 4\n      max_replicas: 2\n      targets: {in_flight_per_replica: 1}\n",
     "services[0].autoscaling.max_replicas", "below min_replicas"),
    ("      targets: {accelerator_utilization: 70}\n",
     "services[0].autoscaling.targets.accelerator_utilization", "out of range"),
    ("      targets: {in_flight: 4}\n", "services[0].autoscaling.targets.in_flight",
     "did you mean 'in_flight_per_replica'"),
    ("      targets: {queue_depth_per_replica: {metric: 'bad name', value: 3}}\n",
     "services[0].autoscaling.targets.queue_depth_per_replica.metric", "not allowed"),
    ("      scale_down_stabilization: soon\n      targets: {in_flight_per_replica: 1}\n",
     "services[0].autoscaling.scale_down_stabilization", "bad duration"),
    ("      target: {name: Not_A_Name}\n      targets: {in_flight_per_replica: 1}\n",
     "services[0].autoscaling.target.name", "not allowed"),
])
def test_bad_blocks_fail_with_one_line_naming_the_field(block, path, words):
    with pytest.raises(SpecError) as err:
        spec_with(block)
    message = str(err.value)
    assert "\n" not in message and message.startswith("s.yaml:")
    assert f" {path}: " in message and words in message and "Fix:" in message


def test_a_service_name_that_is_no_kubernetes_name_needs_a_target_name():
    with pytest.raises(SpecError, match="target.name"):
        spec_with("      targets: {in_flight_per_replica: 1}\n", name="api_")


def test_no_block_no_objects_and_no_rules():
    files = generate_all(parse_spec(SPEC.format(name="api", block="").replace(
        "    autoscaling:\n", ""), "s.yaml"), "s.yaml")
    assert not [f for f in files if f.startswith("alerts/kubernetes/")]
    assert "jaxobs-autoscaling" not in files["alerts/jaxobs.rules.yaml"]


# --- what the queries mean ---------------------------------------------------------------------
def test_every_signal_counts_only_ready_replicas_that_are_not_compiling():
    service = spec_with(FULL).services[0]
    rules = autoscaling.recording_rules(service)
    assert [r["record"] for r in rules] == [n.AUTOSCALE_QUEUE, n.AUTOSCALE_IN_FLIGHT,
                                            n.AUTOSCALE_ACCELERATOR, n.AUTOSCALE_DEVICE_MEMORY,
                                            n.AUTOSCALE_REPLICAS]
    for rule in rules:
        expr = rule["expr"]
        assert f'{c.READY.name}{{job="api"}} == 1' in expr
        assert f"max_over_time({c.COMPILATIONS_IN_PROGRESS.name}" in expr
        assert f"increase({c.COMPILATIONS.name}" in expr and "[2m]" in expr
        assert "unless on (job, instance)" in expr
        assert rule["labels"] == {"service": "api"}


def test_triggers_divide_the_warm_sum_by_the_per_replica_target():
    service = spec_with(FULL).services[0]
    so = autoscaling.scaled_object(service, service.autoscaling)
    by_name = {t["name"]: t for t in so["spec"]["triggers"]}
    assert set(by_name) == {"queue-depth", "in-flight", "accelerator", "device-memory"}
    assert {t["metricType"] for t in by_name.values()} == {"AverageValue"}
    assert by_name["device-memory"]["metadata"]["threshold"] == "0.75"  # 1 - headroom
    assert by_name["in-flight"]["metadata"]["query"] == \
        f'sum({n.AUTOSCALE_IN_FLIGHT}{{service="api"}})'
    assert {t["metadata"]["ignoreNullValues"] for t in by_name.values()} == {"false"}
    assert so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == \
        {"scaleDown": {"stabilizationWindowSeconds": 600}}
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1",
                                            "kind": "Rollout", "name": "api"}
    hpa = autoscaling.hpa(service, service.autoscaling)
    targets = {m["external"]["metric"]["name"]: m["external"]["target"]
               for m in hpa["spec"]["metrics"]}
    assert targets["jaxobs_api_accelerator"] == {"type": "AverageValue", "averageValue": "700m"}
    adapter = autoscaling.adapter_rules(service, service.autoscaling)["externalRules"]
    assert {r["name"]["as"] for r in adapter} == set(targets)


def test_queue_depth_defaults_to_the_catalog_gauge_of_the_service():
    service = spec_with(FULL.replace("{metric: my_queue_depth, value: 8}", "8")).services[0]
    (queue,) = [r for r in autoscaling.recording_rules(service) if r["record"] == n.AUTOSCALE_QUEUE]
    assert f'{c.QUEUE_DEPTH.name}{{job="api",service="api"}}' in queue["expr"]
    custom = spec_with(FULL).services[0]
    (queue,) = [r for r in autoscaling.recording_rules(custom) if r["record"] == n.AUTOSCALE_QUEUE]
    assert 'my_queue_depth{job="api"}' in queue["expr"]


def test_quantities():
    assert [autoscaling.quantity(v) for v in (4, 4.0, 0.7, 1.5, 0.85)] == \
        ["4", "4", "700m", "1500m", "850m"]


# --- the checked-in objects -------------------------------------------------------------------
def test_checked_in_objects_come_from_the_example_spec():
    files = generate_all(load_spec(ROOT / "examples" / "slo.yaml"), "examples/slo.yaml")
    for name in ("keda-scaledobject.yaml", "hpa.yaml", "prometheus-adapter.yaml"):
        assert files[f"alerts/kubernetes/inference/{name}"] == (KUBE / name).read_text()


def test_scaledobject_matches_the_keda_schema():
    proc = validate_model(load("keda-scaledobject.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_keda_schema_check_can_fail():
    broken = copy.deepcopy(load("keda-scaledobject.yaml"))
    broken["spec"]["minReplicaCount"] = "two"
    del broken["spec"]["triggers"][0]["type"]
    proc = validate_model(broken)
    assert proc.returncode != 0
    assert "minReplicaCount" in proc.stdout and "type" in proc.stdout


def test_scaledobject_has_no_unknown_fields(tmp_path):
    broken = copy.deepcopy(load("keda-scaledobject.yaml"))
    broken["spec"]["maxReplicas"] = 3  # the HPA's spelling, not KEDA's
    errors = tsc_unknown_fields(tmp_path, {"good": load("keda-scaledobject.yaml"), "broken": broken})
    assert not [e for e in errors if not e.startswith("broken.ts")], "\n".join(errors)
    assert any("maxReplicas" in e for e in errors), errors


def test_hpa_validates_strictly(tmp_path):
    proc = kubernetes_validate(load("hpa.yaml"), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout + proc.stderr


def test_hpa_strict_validation_can_fail(tmp_path):
    broken = copy.deepcopy(load("hpa.yaml"))
    broken["spec"]["metrics"][0]["external"]["target"]["averageValu"] = "4"
    proc = kubernetes_validate(broken, tmp_path)
    assert proc.returncode != 0 and "averageValu" in proc.stdout + proc.stderr


def test_every_query_parses_under_promtool(tmp_path):
    queries = {f"keda_{i}": t["metadata"]["query"]
               for i, t in enumerate(load("keda-scaledobject.yaml")["spec"]["triggers"])}
    for i, rule in enumerate(load("prometheus-adapter.yaml")["externalRules"]):
        queries[f"adapter_metrics_{i}"] = rule["metricsQuery"]
        queries[f"adapter_series_{i}"] = rule["seriesQuery"]
    service = spec_with(FULL).services[0]
    queries.update({f"rule_{i}": r["expr"]
                    for i, r in enumerate(autoscaling.recording_rules(service))})
    proc = promtool_check(queries, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = promtool_check({"broken": queries["keda_0"] + ")"}, tmp_path)
    assert broken.returncode != 0


def test_hpa_and_adapter_name_the_same_metrics():
    names = {m["external"]["metric"]["name"] for m in load("hpa.yaml")["spec"]["metrics"]}
    adapter = load("prometheus-adapter.yaml")["externalRules"]
    assert names == {r["name"]["as"] for r in adapter}
    keda = load("keda-scaledobject.yaml")["spec"]["triggers"]
    assert sorted(t["metadata"]["query"] for t in keda) == sorted(r["metricsQuery"] for r in adapter)
