"""Golden pairs, as Sloth keeps them: one input spec per feature and its expected output.

``tests/testdata/generate/<case>/spec.yaml`` is regenerated and compared byte for
byte with the files next to it (the rules, the Alertmanager sub-route and the
promtool tests; dashboards and runbooks are covered by the example's golden tree).
To accept an intended change: ``JAXOBS_UPDATE_GOLDEN=1 pytest tests/test_golden.py``
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jaxobs.generate import generate_all
from jaxobs.slo.spec import load_spec

CASES = Path(__file__).parent / "testdata" / "generate"
KEPT = ("alerts/jaxobs.rules.yaml", "alerts/alertmanager-route.yml", "alerts/tests/")


def _kept(files: dict[str, str]) -> dict[str, str]:
    return {rel: text for rel, text in files.items() if rel.startswith(KEPT)}


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden_pair(case: str) -> None:
    root = CASES / case
    files = _kept(generate_all(load_spec(root / "spec.yaml"), "spec.yaml"))
    if os.environ.get("JAXOBS_UPDATE_GOLDEN"):
        for path in (root / "expected").rglob("*"):
            if path.is_file():
                path.unlink()
        for rel, text in files.items():
            (root / "expected" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "expected" / rel).write_text(text, encoding="utf-8")
    expected = {p.relative_to(root / "expected").as_posix(): p.read_text(encoding="utf-8")
                for p in (root / "expected").rglob("*") if p.is_file()}
    assert sorted(files) == sorted(expected)
    for rel, text in files.items():
        assert text == expected[rel], f"{case}/{rel} differs; regenerate with JAXOBS_UPDATE_GOLDEN=1"


def test_every_golden_case_has_its_feature() -> None:
    assert {p.name for p in CASES.iterdir()} >= {
        "raw-sli", "custom-tiers", "window-7d", "no-slos", "grouping"}


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_golden_outputs_pass_promtool(case: str) -> None:
    """The expected files are not just stable but right: promtool accepts the rules and
    the generated tests pass on them (grouped, custom-tier and 7-day SLOs included)."""
    import subprocess

    from realtools import require_tool

    promtool = require_tool("promtool")
    alerts = CASES / case / "expected" / "alerts"
    check = subprocess.run([promtool, "check", "rules", "jaxobs.rules.yaml"], cwd=alerts,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted(p.name for p in (alerts / "tests").iterdir())
    run = subprocess.run([promtool, "test", "rules", *(f"tests/{t}" for t in tests)],
                         cwd=alerts, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
