"""exporters/: Kubernetes manifests validate against real schemas, and the wiring is what the docs promise.

* Core resources: ``kubernetes-validate --strict`` (unknown fields rejected)
  against Kubernetes 1.30, one of the versions it bundles.
* The PodMonitor: prometheus-operator's schema through
  ``@kubernetes-models/prometheus-operator`` — ``new PodMonitor(obj).validate()``
  in node, plus ``tsc`` typing the object as ``IPodMonitor`` to reject unknown
  fields (the runtime validator allows them).
* Each check is run once on a deliberately broken copy too: proof it can fail.

Without the tools these tests skip locally and fail when ``CI=true``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from jaxobs.exporter import DEFAULT_PORT

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "exporters" / "kubernetes"
DOCKERFILE = ROOT / "exporters" / "Dockerfile"
NODE_MODULES = ROOT / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
PROM_OPERATOR = NODE_MODULES / "@kubernetes-models" / "prometheus-operator"
KUBERNETES_VERSION = "1.30.0"

VALIDATE_PODMONITOR = """
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import fs from "node:fs";
const obj = JSON.parse(fs.readFileSync(0, "utf8"));
try { new PodMonitor(obj).validate(); console.log("valid"); }
catch (e) { console.log(String(e.message || e)); process.exit(1); }
"""


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not installed")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())


def kustomization() -> dict[str, Any]:
    return load("kustomization.yaml")


def resources() -> dict[str, dict[str, Any]]:
    return {name: load(name) for name in kustomization()["resources"]}


def core_resources() -> dict[str, dict[str, Any]]:
    return {n: r for n, r in resources().items() if "monitoring.coreos.com" not in r["apiVersion"]}


def podmonitor() -> dict[str, Any]:
    (pm,) = [r for r in resources().values() if r["kind"] == "PodMonitor"]
    return pm


def containers() -> dict[str, dict[str, Any]]:
    (dep,) = [r for r in resources().values() if r["kind"] == "Deployment"]
    return {c["name"]: c for c in dep["spec"]["template"]["spec"]["containers"]}


# --- schema validation ----------------------------------------------------------------------
def kubernetes_validate(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        _missing("kubernetes-validate (pip install kubernetes-validate)")
    return subprocess.run([exe, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(core_resources()))
def test_core_resources_validate_strictly(name):
    proc = kubernetes_validate(K8S / name)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout + proc.stderr


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    broken = copy.deepcopy(load("deployment.yaml"))
    broken["spec"]["template"]["spec"]["containers"][1]["livenessProb"] = {"httpGet": {"path": "/healthz"}}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    proc = kubernetes_validate(tmp_path / "broken.yaml")
    assert proc.returncode != 0 and "livenessProb" in proc.stdout + proc.stderr


def validate_podmonitor(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    if shutil.which("node") is None:
        _missing("node")
    if not PROM_OPERATOR.is_dir():
        _missing("node_modules/@kubernetes-models/prometheus-operator (npm install)")
    return subprocess.run(["node", "--input-type=module", "-e", VALIDATE_PODMONITOR], input=json.dumps(obj),
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_podmonitor_matches_prometheus_operator_schema():
    proc = validate_podmonitor(podmonitor())
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_podmonitor_schema_check_can_fail():
    broken = copy.deepcopy(podmonitor())
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    del broken["spec"]["selector"]
    proc = validate_podmonitor(broken)
    assert proc.returncode != 0
    assert "interval" in proc.stdout and "selector" in proc.stdout


def test_podmonitor_has_no_unknown_fields(tmp_path):
    """tsc's excess-property check on an object literal typed as the operator's IPodMonitor."""
    if not (TSC.exists() and PROM_OPERATOR.is_dir()) or shutil.which("node") is None:
        _missing("node_modules (npm install: typescript, @kubernetes-models/prometheus-operator)")
    broken = copy.deepcopy(podmonitor())
    broken["spec"]["podMetricsEndpoints"][0]["scrapeTimout"] = "10s"
    header = ('import type { IPodMonitor } from '
              '"@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";\n')
    (tmp_path / "podmonitor.ts").write_text(header + f"export const pm: IPodMonitor = {json.dumps(podmonitor())};\n")
    (tmp_path / "broken.ts").write_text(header + f"export const pm: IPodMonitor = {json.dumps(broken)};\n")
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"strict": True, "noEmit": True, "target": "es2020", "module": "esnext",
                            "moduleResolution": "bundler", "skipLibCheck": True, "types": [], "baseUrl": ".",
                            "paths": {"@kubernetes-models/*": [str(NODE_MODULES / "@kubernetes-models") + "/*"]}},
        "files": ["podmonitor.ts", "broken.ts"],
    }))
    proc = subprocess.run([str(TSC), "-p", str(tmp_path / "tsconfig.json"), "--pretty", "false"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    errors = [line for line in proc.stdout.splitlines() if "error TS" in line]
    assert not [e for e in errors if not e.startswith("broken.ts")], "\n".join(errors)
    assert any("scrapeTimout" in e for e in errors), "tsc accepted an unknown PodMonitor field:\n" + proc.stdout


# --- wiring ---------------------------------------------------------------------------------
def test_kustomization_lists_every_manifest():
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_app_and_sidecar_share_the_multiprocess_dir():
    (dep,) = [r for r in resources().values() if r["kind"] == "Deployment"]
    spec = dep["spec"]["template"]["spec"]
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    paths = {}
    for name, c in containers().items():
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        shared = [n for n in mounts if n in empty_dirs]
        assert shared, f"{name} does not mount the shared emptyDir"
        assert env["PROMETHEUS_MULTIPROC_DIR"] == mounts[shared[0]]
        paths[name] = mounts[shared[0]]
    assert len(set(paths.values())) == 1
    assert spec["shareProcessNamespace"] is True  # app pids visible: host metrics and readiness liveness


def test_gpu_is_requested_by_the_app_and_visible_to_the_sidecar():
    cs = containers()
    assert cs["app"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    sidecar = cs["jaxobs-exporter"]
    assert "nvidia.com/gpu" not in sidecar["resources"].get("limits", {})
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert "utility" in env["NVIDIA_DRIVER_CAPABILITIES"]


def test_every_container_has_requests_and_limits():
    for name, c in containers().items():
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        assert "memory" in c["resources"]["limits"], name


def test_sidecar_probes_and_port_match_the_exporter():
    sidecar = containers()["jaxobs-exporter"]
    (port,) = sidecar["ports"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert port["containerPort"] == int(env["JAXOBS_EXPORTER_PORT"]) == DEFAULT_PORT
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    endpoint = podmonitor()["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"
    # The exporter must answer before Prometheus gives up.
    assert float(env["JAXOBS_EXPORTER_SCRAPE_TIMEOUT"]) < float(endpoint["scrapeTimeout"].rstrip("s"))
    (dep,) = [r for r in resources().values() if r["kind"] == "Deployment"]
    assert podmonitor()["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"][
        "labels"].items()


# --- the sidecar image ----------------------------------------------------------------------
def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_dockerfile_installs_the_pyproject_pins_of_what_the_exporter_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r): r for r in
                project["dependencies"] + project["optional-dependencies"]["gpu"]
                + project["optional-dependencies"]["tpu"]}
    text = DOCKERFILE.read_text()
    installed = re.findall(r'pip install --no-cache-dir ([^&\\\n]*?)(?:;|\s*\\|\s*&&|$)', text, flags=re.M)
    pinned = [r for chunk in installed for r in re.findall(r'"([^"]+)"', chunk)]
    names = {_requirement_name(r) for r in pinned}
    assert {"prometheus-client", "psutil", "click", "nvidia-ml-py", "tpu-info", "grpcio"} <= names
    for req in pinned:
        assert req == declared[_requirement_name(req)], f"Dockerfile pins {req!r}, pyproject says " \
                                                        f"{declared[_requirement_name(req)]!r}"
    assert "jax" not in names and "jaxlib" not in names
    assert "--no-deps ." in text
    assert 'ENTRYPOINT ["python", "-m", "jaxobs.exporter"]' in text
    assert re.search(rf"EXPOSE {DEFAULT_PORT}\b", text)


def test_the_image_entrypoint_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "jaxobs.exporter", "--help"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and "/readyz" in out.stdout
