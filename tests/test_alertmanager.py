"""The generated Alertmanager config, checked with amtool and a real Alertmanager."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from realtools import require_tool, running_alertmanager, wait_until

from jaxobs.generate import alertmanager, generate_all, rules
from jaxobs.slo.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "slo.yaml"


@pytest.fixture(scope="module")
def config_text() -> str:
    return generate_all(load_spec(EXAMPLE), "examples/slo.yaml")["alerts/alertmanager.yml"]


@pytest.fixture()
def config_file(config_text: str, tmp_path: Path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(config_text)
    return path


def test_amtool_accepts_the_config(config_file: Path) -> None:
    amtool = require_tool("amtool")
    proc = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "3 inhibit rules" in proc.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=page", "service=inference", "alertname=JaxobsErrorBudgetBurn"], "jaxobs-page"),
    (["severity=ticket", "service=inference", "alertname=JaxobsOOMErrors"], "jaxobs-ticket"),
    (["severity=ticket", f"alertname={rules.DEPLOY_IN_PROGRESS}"], "jaxobs-blackhole"),
    # someone else's alerts never reach a jaxobs receiver
    (["alertname=SomethingElse"], "others"),
    (["alertname=NodeDown", "severity=critical"], "others"),
    (["alertname=KubeJobFailed", "severity=page"], "others"),
])
def test_pages_and_tickets_reach_different_receivers(config_file: Path, labels: list[str],
                                                     receiver: str) -> None:
    amtool = require_tool("amtool")
    proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config_file}",
                           *labels], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == receiver


def test_grouping_and_receivers_come_from_the_spec() -> None:
    spec = parse_spec("""\
apiVersion: jaxobs/v1
kind: SLOSpec
alerting:
  receivers:
    page: {webhook_url: https://pager.example/hook}
services:
  - name: api
    slos: [{name: availability, objective: 99.9, sli: {availability: {}}}]
""", "x.yaml")
    config = alertmanager.config(spec)
    assert config["route"]["routes"][0]["group_by"] == ["alertname", "service", "slo", "function"]
    urls = {r["name"]: r.get("webhook_configs", [{}])[0].get("url") for r in config["receivers"]}
    assert urls == {"jaxobs-page": "https://pager.example/hook",
                    "jaxobs-ticket": "http://127.0.0.1:9096/ticket", "jaxobs-blackhole": None,
                    "others": None}


def test_deploy_inhibition_targets_the_compile_categories(config_text: str) -> None:
    rules_by_source = {tuple(r["source_matchers"]): r
                       for r in yaml.safe_load(config_text)["inhibit_rules"]}
    deploy = rules_by_source[(f'alertname="{rules.DEPLOY_IN_PROGRESS}"',)]
    assert deploy["target_matchers"] == ['alertname=~"Jaxobs.+"', 'category=~"compile|version"']
    assert deploy["equal"] == ["service"]
    compile_alerts = {a.name for a in rules.all_alerts(load_spec(EXAMPLE))
                      if a.category in rules.DEPLOY_SUPPRESSED_CATEGORIES}
    assert compile_alerts == {rules.CACHE_HIT_LOW, rules.COLD_START_HIGH, rules.RECOMPILATION_STORM,
                              rules.CONCURRENT_COMPILATION, rules.BUILD_MISMATCH}


# --- a real Alertmanager applies the inhibitions --------------------------------------------


def _post(url: str, alerts: list[dict[str, dict[str, str]]]) -> None:
    req = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _alert(alertname: str, severity: str, **labels: str) -> dict[str, dict[str, str]]:
    return {"labels": {"alertname": alertname, "severity": severity, **labels}}


@pytest.mark.e2e
def test_real_alertmanager_inhibits_tickets_and_deploy_noise(config_text: str,
                                                             tmp_path: Path) -> None:
    burn = rules.SLO_BURN
    alerts = [
        _alert(burn, "page", service="inference", slo="availability", window="1h"),
        _alert(burn, "ticket", service="inference", slo="availability", window="1d"),  # inhibited
        _alert(burn, "ticket", service="inference", slo="latency", window="1d"),  # other SLO
        _alert(rules.TARGET_DOWN, "page", service="training", category="availability"),
        _alert(rules.TARGET_DOWN, "ticket", service="training", category="availability",
               instance="a"),  # inhibited by its own page
        _alert(rules.DEVICE_MEMORY_HIGH, "ticket", service="training", category="memory"),
        _alert(rules.DEPLOY_IN_PROGRESS, "ticket", service="inference", category="deploy"),
        _alert(rules.RECOMPILATION_STORM, "ticket", service="inference", category="compile",
               function="predict"),  # inhibited: deploy window
        _alert(rules.RECOMPILATION_STORM, "ticket", service="training", category="compile",
               function="step"),  # no deploy of training
    ]
    expected_inhibited = {
        (burn, "ticket", "availability", ""),
        (rules.TARGET_DOWN, "ticket", "", "a"),
        (rules.RECOMPILATION_STORM, "ticket", "", ""),
    }
    with running_alertmanager(tmp_path, config_text) as am:
        _post(am.url, alerts)

        def states() -> dict[tuple[str, str, str, str, str], str] | None:
            got = {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("slo", ""),
                    a["labels"].get("instance", ""), a["labels"]["service"]): a["status"]["state"]
                   for a in am.alerts()}
            return got if len(got) == len(alerts) else None

        got = wait_until(states, 20, what="alertmanager to list the posted alerts")
    inhibited = {(n, sev, slo, inst) for (n, sev, slo, inst, svc), state in got.items()
                 if state == "suppressed"}
    assert inhibited == expected_inhibited, got
    storm = {svc: state for (n, _, _, _, svc), state in got.items() if n == rules.RECOMPILATION_STORM}
    assert storm == {"inference": "suppressed", "training": "active"}


# --- the sub-route merges under someone else's root ----------------------------------------

GROUPED = """\
apiVersion: jaxobs/v1
kind: SLOSpec
alerting:
  group_by: [cluster, env]
  severity_labels: critical-warning
services:
  - name: api
    slos: [{name: availability, objective: 99.9, sli: {availability: {}}}]
"""

USER_ROOT = {
    "route": {"receiver": "team-default", "group_by": ["alertname"],
              "routes": [{"matchers": ['severity="critical"'], "receiver": "team-pager"}]},
    "receivers": [{"name": "team-default"}, {"name": "team-pager"}],
}


def _merged(spec_text: str) -> dict:
    """The user's config with jaxobs' sub-route pasted first under the root, as the file
    header says."""
    part = yaml.safe_load(generate_all(parse_spec(spec_text, "s.yaml"), "s.yaml")[
        "alerts/alertmanager-route.yml"])
    config = json.loads(json.dumps(USER_ROOT))
    config["route"]["routes"].insert(0, part["route"])
    config["receivers"] += part["receivers"]
    config["inhibit_rules"] = part["inhibit_rules"]
    return config


@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=NodeDown", "severity=critical", "env=production"], "team-pager"),
    (["alertname=DiskFull", "severity=warning"], "team-default"),
    (["alertname=JaxobsErrorBudgetBurn", "severity=critical", "service=api"], "jaxobs-page"),
    (["alertname=JaxobsErrorBudgetBurn", "severity=warning", "service=api"], "jaxobs-ticket"),
])
def test_the_sub_route_merges_under_a_foreign_root(tmp_path: Path, labels: list[str],
                                                   receiver: str) -> None:
    amtool = require_tool("amtool")
    path = tmp_path / "merged.yml"
    path.write_text(yaml.safe_dump(_merged(GROUPED)))
    check = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={path}", *labels],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == receiver


def test_grouping_labels_go_into_group_by_and_every_equal() -> None:
    config = _merged(GROUPED)
    jaxobs_route = config["route"]["routes"][0]
    assert jaxobs_route["group_by"] == ["alertname", "service", "slo", "function", "cluster", "env"]
    for rule in config["inhibit_rules"]:
        assert {"cluster", "env"} <= set(rule["equal"]), rule
        assert 'alertname=~"Jaxobs.+"' in rule["target_matchers"], rule


@pytest.mark.e2e
def test_a_staging_deploy_does_not_mute_production(tmp_path: Path) -> None:
    """A real Alertmanager with the merged config: a deploy window open in staging
    inhibits staging's compile alerts only, and no foreign alert is touched."""
    config = yaml.safe_dump(_merged(GROUPED))
    storm = {"alertname": rules.RECOMPILATION_STORM, "severity": "warning", "service": "api",
             "category": "compile", "function": "predict", "cluster": "c1"}
    alerts = [
        {"labels": {"alertname": rules.DEPLOY_IN_PROGRESS, "severity": "warning",
                    "service": "api", "category": "deploy", "cluster": "c1", "env": "staging"}},
        {"labels": {**storm, "env": "staging"}},
        {"labels": {**storm, "env": "production"}},
        {"labels": {"alertname": "OtherTeamCompile", "severity": "warning", "service": "api",
                    "category": "compile", "cluster": "c1", "env": "staging"}},
    ]
    with running_alertmanager(tmp_path, config) as am:
        _post(am.url, alerts)

        def states() -> dict[tuple[str, str], str] | None:
            got = {(a["labels"]["alertname"], a["labels"]["env"]): a["status"]["state"]
                   for a in am.alerts()}
            return got if len(got) == len(alerts) else None

        got = wait_until(states, 20, what="alertmanager to list the posted alerts")
    assert got == {(rules.DEPLOY_IN_PROGRESS, "staging"): "active",
                   (rules.RECOMPILATION_STORM, "staging"): "suppressed",
                   (rules.RECOMPILATION_STORM, "production"): "active",
                   ("OtherTeamCompile", "staging"): "active"}
