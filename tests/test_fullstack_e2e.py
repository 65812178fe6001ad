"""Full stack, real parts only: load → JAX server → sidecar → Prometheus → Alertmanager → pager.

Every part is the real thing, on 127.0.0.1:

* ``examples/inference_server/server.py`` (real JAX on CPU) writing its metrics into a
  ``PROMETHEUS_MULTIPROC_DIR``, its load from ``examples/inference_server/loadgen.py``;
* ``jaxobs exporter`` reading that directory (the pod's sidecar layout);
* Prometheus (Debian package) scraping the exporter as job ``inference`` and evaluating
  the rules ``jaxobs generate`` made;
* Alertmanager (Debian package) with the generated ``alertmanager.yml``, whose page and
  ticket receivers point at a webhook receiver inside this test (the "pager").

**Shortened windows** (nothing else differs from ``examples/slo.yaml`` and its generated
files): every burn-rate tier's windows and ``for`` are divided by 60 in the spec (the
1h/5m page tier becomes 1m/5s, its ``for`` 2s); in the generated rule file the resource
alerts' ``for:`` (generator constants, e.g. 15m) are divided by 60; in the generated
Alertmanager config ``group_wait``/``group_interval``/``repeat_interval`` are divided by
60.  Rule expressions, routes, receivers' wiring, inhibitions and
``deploy_grace_window`` (10m, longer than this test) are as generated.

What it proves, in order:

1. A rollout: the server warms up inside ``jaxobs.deploy_window()`` (the sidecar's
   ``/readyz`` turns 200 after it) and clients send unbucketed batch sizes that compile.
   Compile alerts fire in Prometheus, Alertmanager holds them *inhibited* by
   ``JaxobsDeployInProgress``, and no receiver ever gets them — while the ticket receiver
   does get the cold-start SLO's ticket, so the route itself works.
2. A burst of errors pages: the page receiver gets ``JaxobsErrorBudgetBurn`` with
   ``severity=page``, ``service=inference``, ``slo=availability``, the team label, the
   summary and the ``runbook_url``.
3. The errors stop and the page resolves: the receiver gets ``status: resolved``.
4. ``jaxobs report --prometheus`` renders the run (latency, compile time, burn rate).
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from realtools import (
    REPO,
    WebhookReceiver,
    http_get_json,
    running_alertmanager,
    running_inference_server,
    running_prometheus,
    scale_alertmanager_timings,
    scale_rule_for,
    shortened_spec,
    wait_until,
)

from jaxobs import catalog
from jaxobs.generate import ALERTMANAGER_PATH, RULES_PATH, generate_all, rules
from jaxobs.slo.spec import parse_spec

sys.path.insert(0, str(REPO / "tests" / "fakes"))
sys.path.insert(0, str(REPO / "examples" / "inference_server"))

import loadgen  # noqa: E402
from processes import exporter  # noqa: E402

pytestmark = pytest.mark.e2e

SERVICE = "inference"
EXAMPLE_SPEC = REPO / "examples" / "slo.yaml"
SCALE = 60


def _background_load(cfg: loadgen.LoadConfig) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()
    thread = threading.Thread(target=loadgen.run, args=(cfg, stop), daemon=True)
    thread.start()
    return stop, thread


def _am_alerts(am_url: str, **params: str) -> list[dict[str, Any]]:
    return list(http_get_json(f"{am_url}/api/v2/alerts?" + urllib.parse.urlencode(params)))


def _is_page(alert: dict[str, Any]) -> bool:
    labels = alert["labels"]
    return (labels.get("alertname") == rules.SLO_BURN and labels.get("severity") == "page"
            and labels.get("slo") == "availability")


def test_error_burst_pages_then_resolves_and_deploy_window_inhibits_compile_alerts(
        tmp_path: Path) -> None:
    started = time.monotonic()
    with WebhookReceiver() as hook:
        spec_text = shortened_spec(EXAMPLE_SPEC.read_text(), SCALE, page_url=f"{hook.url}/page",
                                   ticket_url=f"{hook.url}/ticket")
        spec = parse_spec(spec_text, "examples/slo.yaml (windows / 60)")
        files = generate_all(spec, "examples/slo.yaml")
        rules_file = tmp_path / "jaxobs.rules.yaml"
        rules_file.write_text(scale_rule_for(files[RULES_PATH], SCALE))
        am_config = scale_alertmanager_timings(files[ALERTMANAGER_PATH], SCALE)
        mp = tmp_path / "multiproc"
        mp.mkdir()

        with running_alertmanager(tmp_path / "am", am_config) as am, \
                exporter(["--multiproc-dir", str(mp), "--collectors", "host"]) as sidecar, \
                running_prometheus(tmp_path / "prom", [f"127.0.0.1:{sidecar.port}"],
                                   rule_files=[rules_file], alertmanager=am.address,
                                   job=SERVICE) as prom:
            prom.wait_value(f'up{{job="{SERVICE}"}}', lambda v: v == 1)
            # The rollout: the deploy window stays open 10 s, longer than warmup.
            with running_inference_server(["--allow-injection", "--deploy-window", "10",
                                           "--duration", "600"], multiproc_dir=mp) as server:
                # The pod's readiness probe: the sidecar reports the app's warmup as done.
                wait_until(lambda: sidecar.get("/readyz")[0] == 200, 15, what="sidecar /readyz")
                inhibited = _rollout_inhibits_compile_alerts(prom, am.url, server.url, hook)
                _error_burst_pages_then_resolves(prom, server.url, hook, spec.runbook_base_url)
                _report_renders_the_run(prom.url, tmp_path)

            # The ticket route does deliver (the rollout's cold starts burn the cold-start SLO,
            # which deploy windows do not inhibit) ...
            assert any(a["labels"].get("slo") == "cold-start" for _, a in hook.alerts("/ticket"))
            # ... yet nothing compile-related ever reached a receiver; the deploy marker neither.
            delivered = {(a["labels"]["alertname"], a["labels"].get("category")) for _, a in hook.alerts()}
            assert not {d for d in delivered if d[1] in rules.DEPLOY_SUPPRESSED_CATEGORIES}, delivered
            assert rules.DEPLOY_IN_PROGRESS not in {name for name, _ in delivered}
    elapsed = time.monotonic() - started
    print(f"\nfull-stack e2e: {elapsed:.1f}s; inhibited: {sorted(inhibited)}; delivered: "
          f"{sorted({(s, a['labels']['alertname'], a['labels'].get('slo', '')) for s, a in hook.alerts()})}")


def _rollout_inhibits_compile_alerts(prom: Any, am_url: str, url: str, hook: WebhookReceiver) -> set[str]:
    deploying = f'ALERTS{{alertname="{rules.DEPLOY_IN_PROGRESS}",alertstate="firing",service="{SERVICE}"}}'
    prom.wait_value(deploying, lambda v: v == 1, timeout=30)
    # Steady traffic first, so Prometheus has a baseline of every request series ...
    warm = loadgen.run(loadgen.LoadConfig(url=url, requests=200, duration=20, concurrency=4))
    assert warm.ok == 200, warm.format()
    count = catalog.REQUEST_DURATION.name + "_count"
    prom.wait_value(f'sum({count}{{service="{SERVICE}"}})', lambda v: v >= 200)
    # ... then clients send batch sizes that are no bucket: each new size compiles.
    rollout = loadgen.run(loadgen.LoadConfig(url=url, requests=600, duration=30, concurrency=4,
                                             unbucketed_rate=0.1, seed=1))
    assert rollout.ok == 600 and len(rollout.unbucketed_sizes) >= 10, rollout.format()

    compile_firing = f'ALERTS{{category="compile",alertstate="firing",service="{SERVICE}"}}'
    prom.wait_value(f"count({compile_firing})", lambda v: v >= 1, timeout=60)
    firing = {r["metric"]["alertname"] for r in prom.query(compile_firing)}

    def inhibited_in_alertmanager() -> list[dict[str, Any]]:
        alerts = [a for a in _am_alerts(am_url, inhibited="true")
                  if a["labels"].get("category") == "compile" and a["labels"]["alertname"] in firing]
        return alerts if alerts and all(a["status"]["state"] == "suppressed"
                                        and a["status"]["inhibitedBy"] for a in alerts) else []

    inhibited = wait_until(inhibited_in_alertmanager, 30, what="compile alerts inhibited in Alertmanager")
    assert {a["labels"]["alertname"] for a in inhibited} >= {rules.COLD_START_HIGH} & firing
    # The inhibiting alert is the deploy marker of the same service.
    sources = {fp for a in inhibited for fp in a["status"]["inhibitedBy"]}
    deploy = [a for a in _am_alerts(am_url) if a["labels"]["alertname"] == rules.DEPLOY_IN_PROGRESS]
    assert deploy and {a["fingerprint"] for a in deploy} >= sources
    # Hidden from the default (not inhibited) view that pagers and UIs show.
    visible = {a["labels"]["alertname"] for a in _am_alerts(am_url, inhibited="false")}
    assert not visible & firing
    return {a["labels"]["alertname"] for a in inhibited}


def _error_burst_pages_then_resolves(prom: Any, url: str, hook: WebhookReceiver,
                                     runbook_base: str) -> None:
    stop, thread = _background_load(loadgen.LoadConfig(
        url=url, requests=200_000, duration=90, concurrency=4, error_rate=0.5, seed=2))
    try:
        page = wait_until(lambda: next((a for s, a in hook.alerts("/page") if s == "firing" and _is_page(a)),
                                       None), 90, what="the page to reach the webhook")
    finally:
        stop.set()
        thread.join(30)
    labels, annotations = page["labels"], page["annotations"]
    assert labels["alertname"] == rules.SLO_BURN
    assert labels["severity"] == "page"
    assert labels["service"] == SERVICE
    assert labels["slo"] == "availability" and labels["team"] == "ml-serving"
    assert annotations["summary"].startswith(f"{SERVICE}/availability: error budget burning faster than")
    assert annotations["runbook_url"] == f"{runbook_base}/{rules.SLO_BURN}.md"
    assert page["status"] == "firing"

    # Errors stop; traffic goes on.  Every availability page resolves, the group says so.
    stop, thread = _background_load(loadgen.LoadConfig(
        url=url, requests=200_000, duration=120, concurrency=2, seed=3))
    try:
        def resolved() -> bool:
            notes = [n for n in list(hook.notifications)
                     if n.path == "/page" and n.payload["status"] == "resolved"]
            return any(any(_is_page(a) and a["status"] == "resolved" for a in n.payload["alerts"])
                       for n in notes)

        wait_until(resolved, 120, what="the page to resolve at the webhook")
    finally:
        stop.set()
        thread.join(30)
    assert prom.value(f'count(ALERTS{{alertname="{rules.SLO_BURN}",severity="page",'
                      f'slo="availability",alertstate="firing"}})') is None


def _report_renders_the_run(prom_url: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from jaxobs.cli import cli

    out = tmp_path / "report.png"
    result = CliRunner().invoke(cli, ["report", "--prometheus", prom_url, "--range", "5m", "-o", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
