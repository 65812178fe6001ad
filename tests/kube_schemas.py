"""Schema checks of generated Kubernetes objects: kubernetes-models (npm), tsc, kubernetes-validate.

* ``validate_model``: ``new Model(obj).validate()`` in node (the CRD's OpenAPI schema;
  it allows unknown fields).
* ``tsc_unknown_fields``: tsc's excess-property check on an object literal typed as the
  model's interface, which rejects unknown fields.
* ``kubernetes_validate``: ``kubernetes-validate --strict`` for built-in kinds (the HPA).

Like tests/test_manifests.py: without the tools these skip locally and fail when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
TSC = NODE_MODULES / ".bin" / "tsc"
KUBERNETES_VERSION = "1.30.0"

#: (npm package, module path, class) per kind.
MODELS = {
    "ScaledObject": ("@kubernetes-models/keda", "keda.sh/v1alpha1/ScaledObject", "ScaledObject"),
    "AnalysisTemplate": ("@kubernetes-models/argo-rollouts", "argoproj.io/v1alpha1/AnalysisTemplate",
                         "AnalysisTemplate"),
}

_VALIDATE = """
import fs from "node:fs";
const [pkg, cls] = process.argv.slice(1);
const mod = await import(pkg);
const obj = JSON.parse(fs.readFileSync(0, "utf8"));
try { new mod[cls](obj).validate(); console.log("valid"); }
catch (e) { console.log(String(e.message || e)); process.exit(1); }
"""


def missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} not installed")


def _require_model(kind: str) -> tuple[str, str, str]:
    package, module, cls = MODELS[kind]
    if shutil.which("node") is None:
        missing("node")
    if not (NODE_MODULES / package).is_dir():
        missing(f"node_modules/{package} (npm install)")
    return package, module, cls


def validate_model(obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Validate ``obj`` against its kind's kubernetes-models schema (exit 0 when valid)."""
    package, module, cls = _require_model(obj["kind"])
    return subprocess.run(["node", "--input-type=module", "-e", _VALIDATE, f"{package}/{module}", cls],
                          input=json.dumps(obj), capture_output=True, text=True, cwd=ROOT, timeout=120)


def tsc_unknown_fields(tmp_path: Path, objects: dict[str, dict[str, Any]]) -> list[str]:
    """tsc errors of ``{file stem: object}``, each typed as its kind's interface."""
    if not TSC.exists():
        missing("node_modules/.bin/tsc (npm install)")
    files = []
    for stem, obj in objects.items():
        package, module, cls = _require_model(obj["kind"])
        (tmp_path / f"{stem}.ts").write_text(
            f'import type {{ I{cls} }} from "{package}/{module}";\n'
            f"export const obj: I{cls} = {json.dumps(obj)};\n")
        files.append(f"{stem}.ts")
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"strict": True, "noEmit": True, "target": "es2020", "module": "esnext",
                            "moduleResolution": "bundler", "skipLibCheck": True, "types": [],
                            "baseUrl": ".", "paths": {
                                "@kubernetes-models/*": [str(NODE_MODULES / "@kubernetes-models") + "/*"]}},
        "files": files,
    }))
    proc = subprocess.run([str(TSC), "-p", str(tmp_path / "tsconfig.json"), "--pretty", "false"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    return [line for line in proc.stdout.splitlines() if "error TS" in line]


def kubernetes_validate(obj: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        missing("kubernetes-validate (pip install kubernetes-validate)")
    path = tmp_path / f"{obj['kind'].lower()}.yaml"
    path.write_text(yaml.safe_dump(obj))
    return subprocess.run([exe, "--strict", "--kubernetes-version", KUBERNETES_VERSION, str(path)],
                          capture_output=True, text=True, timeout=120)


def promtool_check(exprs: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on one recording rule per expression (names are the keys)."""
    exe = shutil.which("promtool")
    if exe is None:
        missing("promtool")
    rules = [{"record": name, "expr": expr} for name, expr in exprs.items()]
    path = tmp_path / "queries.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    return subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=60)
