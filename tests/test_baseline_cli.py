"""``jaxobs baseline record|compare`` and ``pytest --jaxobs-record/--jaxobs-compare``, as users run them.

Recording runs real programs in child processes (a benchmark script, a pytest
session); comparing runs the Click command in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from jaxobs.cli import cli

REPO = Path(__file__).resolve().parents[1]
KERNEL = '''
import os
import jax.numpy as jnp
import jaxobs

EXTRA = os.environ.get("EXTRA_MATMUL") == "1"


@jaxobs.jit(name="step")
def step(x):
    y = jnp.tanh(x @ x)
    return jnp.tanh(y @ x) if EXTRA else y


def run(calls=20):
    x = jnp.ones((96, 96)) / 96
    for _ in range(calls):
        step(x)
'''


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def _jaxobs(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jaxobs.cli", *args], capture_output=True, text=True,
                          env=_env(**env), cwd=REPO, timeout=180)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("baseline")
    (d / "kernels.py").write_text(KERNEL)
    (d / "bench.py").write_text("import sys\nsys.path.insert(0, sys.argv[1])\nimport kernels\nkernels.run()\n")
    (d / "test_kernels.py").write_text("import kernels\n\n\ndef test_step():\n    kernels.run()\n")
    return d


@pytest.fixture(scope="module")
def old_baseline(workdir: Path) -> Path:
    out = workdir / "old.json"
    done = _jaxobs("baseline", "record", "-o", str(out), "--", sys.executable, str(workdir / "bench.py"),
                   str(workdir))
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and "step" in done.stdout
    return out


def test_record_writes_every_quantity_and_the_versions(old_baseline: Path) -> None:
    doc = json.loads(old_baseline.read_text())
    step = doc["functions"]["step"]
    assert step["compiles"] == 1
    assert set(step["compile_seconds"]) == {"trace", "lower", "backend"}
    assert step["flops"] > 0 and step["bytes_accessed"] > 0 and step["peak_memory_bytes"] > 0
    assert step["fusions"] >= 1
    assert len(step["kernel_seconds"]) == 19  # every steady call timed while recording
    assert {"jax", "jaxlib", "backend", "jaxobs"} <= set(doc["versions"])
    assert doc["command"][-2].endswith("bench.py")


def test_an_unchanged_rerun_compares_clean(old_baseline: Path) -> None:
    result = CliRunner().invoke(cli, ["baseline", "compare", str(old_baseline), str(old_baseline)])
    assert result.exit_code == 0, result.output
    assert "no regressions in 1 functions" in result.output


def test_pytest_records_and_fails_the_session_on_a_regression(workdir: Path, old_baseline: Path) -> None:
    new = workdir / "new.json"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(workdir),
                           f"--jaxobs-record={new}", f"--jaxobs-compare={old_baseline}"],
                          capture_output=True, text=True, env=_env(EXTRA_MATMUL="1"), cwd=workdir, timeout=180)
    assert done.returncode == 1, done.stdout + done.stderr  # the test passed; the gate failed the session
    assert "1 passed" in done.stdout
    assert "jaxobs baseline comparison" in done.stdout
    flops = next(line for line in done.stdout.splitlines() if " flops " in line)
    assert "REGRESSION" in flops
    assert json.loads(new.read_text())["functions"]["step"]["compiles"] == 1

    result = CliRunner().invoke(cli, ["baseline", "compare", str(old_baseline), str(new), "--markdown"])
    assert result.exit_code == 1
    assert "| step | flops |" in result.output and "**REGRESSION**" in result.output


def test_unusable_input_exits_2_with_one_line(tmp_path: Path, old_baseline: Path) -> None:
    result = CliRunner().invoke(cli, ["baseline", "compare", str(old_baseline), str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "nope.json: no such baseline" in result.output and "Traceback" not in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something"}')
    result = CliRunner().invoke(cli, ["baseline", "compare", str(bad), str(old_baseline)])
    assert result.exit_code == 2 and "field 'format'" in result.output


def test_record_reports_a_command_that_instruments_nothing_or_fails(tmp_path: Path) -> None:
    own = tmp_path / "own-site"  # the user's own sitecustomize must still run under the recording shim
    own.mkdir()
    (own / "sitecustomize.py").write_text(f"open({str(tmp_path / 'own-ran')!r}, 'w').close()\n")
    nothing = _jaxobs("baseline", "record", "-o", str(tmp_path / "b.json"), "--", sys.executable, "-c", "pass",
                      PYTHONPATH=os.pathsep.join([str(own), str(REPO)]))
    assert nothing.returncode == 2 and "ran no function instrumented" in nothing.stderr
    assert (tmp_path / "own-ran").exists()
    failing = _jaxobs("baseline", "record", "-o", str(tmp_path / "b.json"), "--", sys.executable, "-c",
                      "raise SystemExit(3)")
    assert failing.returncode == 3 and "no baseline written" in failing.stderr
    assert not (tmp_path / "b.json").exists()
