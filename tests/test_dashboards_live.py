"""Every panel of the three generated dashboards, evaluated against live data.

A real Prometheus scrapes, on 127.0.0.1:

* job ``inference``: the sidecar (``jaxobs exporter`` with the host, NVML and TPU collectors;
  NVML is ``tests/fakes/fake_pynvml`` with 2 GPUs, the TPU runtime is
  ``tests/fakes/fake_tpu_runtime`` with 4 chips) reading the multiprocess directory of
  ``examples/inference_server/server.py`` under load from ``loadgen.py`` (some errors, slow
  requests and unbucketed batch sizes);
* job ``training``: ``examples/training_loop/train.py`` serving its own ``/metrics``
  (checkpoints, input stalls and straggling steps, so badput has reasons);

and evaluates the rules generated from ``examples/slo.yaml`` (unchanged).  Each panel
query of the generated dashboards is then run as Grafana would, over the test's time range:
template variables match all (``.*``), ``$__rate_interval`` is 30s (Grafana's 4 × the 1 s
scrape interval would be 4s; 30s leaves room for a loaded CI machine), constants take their
values.  There must be no query error, and every panel returns data unless it is listed in
``EXPECTED_EMPTY`` with the reason; a listed panel that does return data fails too, so the
list cannot go stale.

Set ``JAXOBS_DASHBOARD_TABLE=path.md`` to write the panel-by-panel table (docs/dashboards-live.md
is made that way).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realtools import (
    REPO,
    Prometheus,
    free_port,
    http_get_json,
    require_module,
    require_tool,
    running_inference_server,
    stop,
    wait_until,
)

from jaxobs.generate import RULES_PATH, generate_all
from jaxobs.slo.spec import load_spec

sys.path.insert(0, str(REPO / "tests" / "fakes"))
sys.path.insert(0, str(REPO / "examples" / "inference_server"))

require_module("grpc")
require_module("tpu_info")

import loadgen  # noqa: E402
from fake_tpu_runtime import FakeTpuRuntime  # noqa: E402
from processes import env_with_fakes, exporter  # noqa: E402

pytestmark = pytest.mark.e2e

SPEC = REPO / "examples" / "slo.yaml"
RATE_INTERVAL = "30s"
TRAIN = REPO / "examples" / "training_loop" / "train.py"

#: (dashboard, panel title) → why it is empty against this workload.  Nothing else may be.
EXPECTED_EMPTY: dict[tuple[str, str], str] = {
    ("jaxobs-debug", "Device memory by kind"):
        "JAX's allocator has no statistics on CPU (Device.memory_stats() is None); the NVML and "
        "TPU memory panels show the doubles' memory",
    ("jaxobs-oncall", "Device memory utilization"): "as above: no JAX allocator statistics on CPU",
    ("jaxobs-oncall", "Device memory in use and limit"): "as above: no JAX allocator statistics on CPU",
    ("jaxobs-oncall", "OOM errors"): "no out-of-memory error happened; the series appears with the first",
    ("jaxobs-debug", "GPU XID errors"): "the fake GPUs report no XID error; the series appears with the first",
    ("jaxobs-debug", "Profile captures"): "nobody ran `jaxobs profile` against these processes",
    ("jaxobs-oncall", "Rejected (overload)"):
        "the series starts with the first request refused for a full queue; whether the load "
        "generator fills the queue depends on the machine's speed",
    ("jaxobs-executive", "Accelerator efficiency (MFU)"):
        "MFU needs the accelerator's peak FLOP/s; a CPU has none (achieved FLOP/s panels have data)",
    ("jaxobs-debug", "Model FLOPs utilization (MFU)"): "as above: no peak FLOP/s on CPU",
    ("jaxobs-oncall", "Determinism canary: max abs difference"):
        "the examples run no determinism canary (it is opt-in)",
    ("jaxobs-debug", "Compile time saved"):
        "JAX reports time saved only when loading from the persistent cache beat compiling; for "
        "the examples' small programs it often does not (the hit ratio panel shows the hits)",
    ("jaxobs-debug", "Internal errors"):
        "jaxobs itself failed nowhere in this run (a run where it does shows the component)",
    ("jaxobs-oncall", "Errors by function and class"):
        "jaxobs_errors_total counts exceptions raised inside instrumented calls; the example "
        "server rejects bad input before the model runs and raises its injected failures outside "
        "it (the demo's shape error does show here)",
}

#: listed panels whose data depends on the run (a stray internal error is not a failure here)
MAY_HAVE_DATA = {("jaxobs-debug", "Internal errors"), ("jaxobs-debug", "Compile time saved"),
                 ("jaxobs-oncall", "Rejected (overload)")}

#: Panels whose query is broken in the generated dashboards, with the fix.  Listed so the
#: rest of the proof stays green while the fix lands; an entry that stops failing fails the test.
KNOWN_BROKEN: dict[tuple[str, str], str] = {}


@dataclass
class PanelResult:
    dashboard: str
    title: str
    ref: str
    series: int
    error: str = ""


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _grafana_vars(dashboard: dict[str, Any]) -> dict[str, str]:
    """Template variables as Grafana sets them with "All" selected; constants by value."""
    values = {"__rate_interval": RATE_INTERVAL, "__interval": "5s", "__range": "5m"}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "constant":
            values[var["name"]] = str(var["query"])
        elif var.get("type") == "query":
            values[var["name"]] = var.get("allValue") or ".*"
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def _query_range(prom_url: str, expr: str, start: float, end: float) -> tuple[int, str]:
    params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                     "step": "2"})
    try:
        data = http_get_json(f"{prom_url}/api/v1/query_range?{params}", timeout=30)
    except Exception as exc:  # HTTP 400: a bad query; the body says why
        body = getattr(exc, "read", lambda: b"")()
        return 0, (body.decode(errors="replace") or str(exc))[:300]
    if data.get("status") != "success":
        return 0, str(data.get("error"))
    return sum(1 for r in data["data"]["result"] if r["values"]), ""


def evaluate_dashboards(files: dict[str, str], prom_url: str, start: float) -> list[PanelResult]:
    out = []
    end = time.time()
    for rel in sorted(p for p in files if p.startswith("dashboards/") and p.endswith(".json")):
        dashboard = json.loads(files[rel])
        values = _grafana_vars(dashboard)
        name = Path(rel).stem
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr:
                    continue
                try:
                    series, error = _query_range(prom_url, substitute(expr, values), start, end)
                except KeyError as exc:
                    series, error = 0, str(exc)
                out.append(PanelResult(name, panel.get("title", ""), target.get("refId", ""), series, error))
    return out


@contextlib.contextmanager
def _prometheus(workdir: Path, jobs: dict[str, str], rules: Path) -> Iterator[Prometheus]:
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(rules)],
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                 for job, target in jobs.items()]}
    (workdir / "prometheus.yml").write_text(json.dumps(config))
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={workdir / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log_file, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until(lambda: http_get_json(f"{prom.url}/api/v1/status/buildinfo"), 30, what="prometheus")
        yield prom
    finally:
        stop(proc)


def _persistent_cache(directory: Path) -> dict[str, str]:
    """JAX's environment variables that turn its persistent compilation cache on for everything."""
    return {"JAX_COMPILATION_CACHE_DIR": str(directory),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@contextlib.contextmanager
def _training_loop(workdir: Path) -> Iterator[str]:
    """The example training loop serving /metrics; yields host:port.

    JAX's persistent compilation cache is on (JAX's own environment variables), warmed by a
    short run first, so the long run's training step is a persistent-cache hit (the
    inference server's fresh cache gives the misses).
    """
    env = {**env_with_fakes(), "JAX_PLATFORMS": "cpu", **_persistent_cache(workdir / "jax-cache")}
    log = workdir / "train.log"
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(TRAIN), "--steps", "2", "--batch-size", "64", "--no-grad-check",
                    "--checkpoint-every", "0"], env=env, cwd=REPO, check=True, timeout=120,
                   stdout=subprocess.DEVNULL)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(TRAIN), "--steps", "1000000", "--batch-size", "64", "--no-grad-check",
             "--checkpoint-every", "40", "--checkpoint-dir", str(workdir / "ckpt"),
             "--stall-every", "15", "--slow-step-every", "30", "--metrics-port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        port = wait_until(lambda: re.search(r"serving metrics on http://127\.0\.0\.1:(\d+)", log.read_text()),
                          90, what=f"the training loop to serve /metrics ({log})").group(1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)  # type: ignore[arg-type]


def test_every_dashboard_panel_has_data_or_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The inference server compiles with a fresh persistent cache: its misses.
    for key, value in _persistent_cache(tmp_path / "inference-jax-cache").items():
        monkeypatch.setenv(key, value)
    files = generate_all(load_spec(SPEC), "examples/slo.yaml")
    rules = tmp_path / "jaxobs.rules.yaml"
    rules.write_text(files[RULES_PATH])
    mp = tmp_path / "multiproc"
    mp.mkdir()
    with FakeTpuRuntime() as tpu, \
            running_inference_server(["--allow-injection", "--duration", "900"], multiproc_dir=mp) as server, \
            exporter(["--multiproc-dir", str(mp), "--collectors", "host,nvml,tpu",
                      "--nvml-module", "fake_pynvml", "--tpu-address", tpu.address],
                     env=env_with_fakes(FAKE_PYNVML_GPUS="2")) as sidecar, \
            _training_loop(tmp_path / "train") as training, \
            _prometheus(tmp_path / "prom", {"inference": f"127.0.0.1:{sidecar.port}",
                                            "training": training}, rules) as prom:
        start = time.time()
        stop_load = threading.Event()
        load = threading.Thread(target=loadgen.run, args=(loadgen.LoadConfig(
            url=server.url, requests=10_000_000, duration=600, concurrency=2, error_rate=0.05,
            slow_rate=0.02, unbucketed_rate=0.01, seed=4), stop_load), daemon=True)
        load.start()
        try:
            prom.wait_value('count(up{job=~"inference|training"} == 1)', lambda v: v == 2, timeout=60)
            # Every SLO of the spec recording, and enough scrapes for 30s rate windows.
            prom.wait_value('count(count by (service, slo) (jaxobs_slo:sli_error:ratio{window="5m"}))',
                            lambda v: v == 5, timeout=90)
            time.sleep(35)
            results = evaluate_dashboards(files, prom.url, start)
        finally:
            stop_load.set()
            load.join(30)
    _report(results)
    errors = [(r.dashboard, r.title, r.error) for r in results
              if r.error and (r.dashboard, r.title) not in KNOWN_BROKEN]
    assert not errors, errors
    fixed = sorted(set(KNOWN_BROKEN) - {(r.dashboard, r.title) for r in results if r.error})
    assert not fixed, f"these work now, drop them from KNOWN_BROKEN: {fixed}"
    empty = {(r.dashboard, r.title) for r in results if not r.series and not r.error}
    unexplained = sorted(empty - set(EXPECTED_EMPTY))
    assert not unexplained, f"panels without data and without a reason: {unexplained}"
    stale = sorted(set(EXPECTED_EMPTY) - empty - MAY_HAVE_DATA)
    assert not stale, f"listed as empty but have data now (drop them from EXPECTED_EMPTY): {stale}"
    _executive_slo_panels_read_the_alerts_recording_rules(files, results)


def _executive_slo_panels_read_the_alerts_recording_rules(files: dict[str, str],
                                                          results: list[PanelResult]) -> None:
    """The SLI and budget panels read the series the alerts' rules record (and those have data)."""
    import yaml

    recorded = {r["record"] for g in yaml.safe_load(files[RULES_PATH])["groups"] for r in g["rules"]
                if "record" in r}
    executive = json.loads(files["dashboards/jaxobs-executive.json"])
    slo_panels = [p for p in _panels(executive["panels"])
                  if "SLI over" in p.get("title", "") or "error budget remaining" in p.get("title", "")]
    assert len(slo_panels) == 10, [p.get("title") for p in slo_panels]  # 5 SLOs x (SLI, budget)
    for panel in slo_panels:
        for target in panel["targets"]:
            names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\{)", target["expr"]))
            assert names and names <= recorded, (panel["title"], target["expr"])
    with_data = {(r.dashboard, r.title) for r in results if r.series}
    assert all(("jaxobs-executive", p["title"]) in with_data for p in slo_panels)


def _report(results: list[PanelResult]) -> None:
    lines = ["| dashboard | panel | query | series | result |", "|---|---|---|---:|---|"]
    for r in results:
        if r.error and (r.dashboard, r.title) in KNOWN_BROKEN:
            verdict = "BROKEN: " + KNOWN_BROKEN[(r.dashboard, r.title)]
        elif r.error:
            verdict = f"query error: {r.error}"
        elif r.series:
            verdict = "data"
        else:
            verdict = "empty: " + EXPECTED_EMPTY.get((r.dashboard, r.title), "NO REASON GIVEN")
        lines.append(f"| {r.dashboard} | {r.title} | {r.ref} | {r.series} | {verdict} |")
    with_data = sum(1 for r in results if r.series)
    summary = (f"{len(results)} panel queries: {with_data} with data, "
               f"{sum(1 for r in results if not r.series and not r.error)} empty, "
               f"{sum(1 for r in results if r.error)} query errors")
    print("\n" + summary + "\n" + "\n".join(lines))
    target = os.environ.get("JAXOBS_DASHBOARD_TABLE")
    if target:
        Path(target).write_text(summary + "\n\n" + "\n".join(lines) + "\n")
