"""The Kubernetes manifests wire the warm start: cache volume, manifest ConfigMap, environment.

(Schema validation of the new resources is tests/test_manifests.py's job: they are listed in
the kustomization, which that module validates one by one.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jaxobs.runtime import manifest as manifests
from jaxobs.runtime import signature_json

K8S = Path(__file__).resolve().parents[1] / "exporters" / "kubernetes"


def _docs() -> dict[str, dict[str, Any]]:
    names = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    return {yaml.safe_load((K8S / n).read_text())["kind"]: yaml.safe_load((K8S / n).read_text()) for n in names}


def test_the_app_warms_from_the_configmap_and_caches_on_the_shared_volume(tmp_path: Path) -> None:
    docs = _docs()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (app,) = [c for c in pod["containers"] if c["name"] == "app"]
    env = {e["name"]: e["value"] for e in app["env"]}
    mounts = {m["mountPath"]: m["name"] for m in app["volumeMounts"]}

    cache_mount = mounts[env["JAX_COMPILATION_CACHE_DIR"]]
    claim = volumes[cache_mount]["persistentVolumeClaim"]["claimName"]
    assert claim == docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in docs["PersistentVolumeClaim"]["spec"]["accessModes"]  # shared by replicas
    assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == 0

    manifest_dir, filename = env["JAXOBS_MANIFEST"].rsplit("/", 1)
    config_volume = volumes[mounts[manifest_dir]]["configMap"]
    assert config_volume["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert env["JAXOBS_MANIFEST_OUT"].startswith(env["JAX_COMPILATION_CACHE_DIR"] + "/")  # the writable volume
    sidecar = [c for c in pod["containers"] if c["name"] != "app"]
    assert all(m["name"] != cache_mount for c in sidecar for m in c.get("volumeMounts", []))

    sample = tmp_path / filename
    sample.write_text(docs["ConfigMap"]["data"][filename])
    doc = manifests.load_manifest(sample)  # the example is a valid manifest
    for sig in doc["functions"]["predict"]["signatures"]:
        signature_json.decode_call(sig)  # every sample signature rebuilds
