"""End to end: the generated AnalysisTemplate judges a real canary in a real Prometheus.

Two example inference servers (real JAX on CPU) run on 127.0.0.1, scraped every second with
the target label ``track="stable"`` / ``track="canary"``; Prometheus evaluates the rule file
``jaxobs generate`` made from a spec whose only differences from a production one are short
windows (99% availability and latency SLOs paging at 10x over 1m/10s, ticketing at 1x over
2m/20s) and a 10-second analysis interval.  The test runs each metric's query as Argo Rollouts would (the
``canary-hash``/``stable-hash`` arguments filled in) and evaluates the metric's own
success/failure conditions on Prometheus' answer:

1. both versions healthy under the load generator: every metric of the canary passes;
2. the load generator injects errors into 50% of the canary's requests: ``burn-availability``
   fails, while the same metric evaluated for the stable version still passes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from argo_conditions import outcome
from kube_e2e import load, prometheus_with_labels
from realtools import running_inference_server, wait_until

from jaxobs.generate import generate_all
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: jaxobs/v1
kind: SLOSpec
alerting:
  tiers:
    - {severity: page, burn_rate: 10, long_window: 1m, short_window: 10s, for: 0s}
    - {severity: ticket, burn_rate: 1, long_window: 2m, short_window: 20s, for: 0s}
services:
  - name: inference
    slos:
      - name: availability
        objective: 99
        window: 1d
        sli: {availability: {}}
      - name: latency
        objective: 99
        window: 1d
        sli: {latency: {threshold: 0.25}}
    canary:
      track_label: track
      interval: 10s
      initial_delay: 0s
      count: 5
"""


def _metrics(files: dict[str, str]) -> dict[str, dict]:
    import yaml

    template = yaml.safe_load(files["alerts/kubernetes/inference/analysistemplate.yaml"])
    return {m["name"]: m for m in template["spec"]["metrics"]}


def _measure(prom, metric: dict, canary: str, stable: str) -> tuple[str, list[float]]:
    query = metric["provider"]["prometheus"]["query"]
    query = query.replace("{{args.canary-hash}}", canary).replace("{{args.stable-hash}}", stable)
    result = [float(r["value"][1]) for r in prom.query(query)]
    return outcome(metric, result), result


def test_error_burst_in_the_canary_fails_the_analysis_a_healthy_canary_passes(tmp_path: Path):
    files = generate_all(parse_spec(SPEC, "e2e.yaml"), "e2e.yaml")
    rules = tmp_path / "jaxobs.rules.yaml"
    rules.write_text(files["alerts/jaxobs.rules.yaml"])
    metrics = _metrics(files)
    assert set(metrics) == {"burn-availability", "burn-latency", "steady-latency", "cold-start-ratio",
                            "compiles-per-replica", "version-skew"}

    with running_inference_server(["--allow-injection"]) as stable, \
            running_inference_server(["--allow-injection"]) as canary:
        targets = {stable.url.removeprefix("http://"): {"track": "stable"},
                   canary.url.removeprefix("http://"): {"track": "canary"}}
        with prometheus_with_labels(tmp_path / "prom", "inference", targets, [rules]) as prom, \
                load(stable.url, duration=90):
            # 1. healthy: every metric of the canary passes once an interval of traffic is in.
            with load(canary.url, duration=60):
                def all_pass():
                    seen = {name: _measure(prom, m, "canary", "stable")
                            for name, m in metrics.items()}
                    return seen if all(o == "Successful" for o, _ in seen.values()) else None

                healthy = wait_until(all_pass, 45, what="every metric of a healthy canary to pass")
                assert healthy["burn-availability"][1] == [0.0]
                assert healthy["version-skew"][1] == [1.0]

            # 2. an error burst: half of the canary's requests fail
            with load(canary.url, duration=60, error_rate=0.5):
                burn = metrics["burn-availability"]

                def failed():
                    phase, result = _measure(prom, burn, "canary", "stable")
                    return result if phase == "Failed" else None

                result = wait_until(failed, 40, what="the canary's burn to fail the analysis")
                assert result[0] >= 10  # ~50x a 1% budget
                phase, stable_result = _measure(prom, burn, "stable", "canary")
                assert phase == "Successful", stable_result  # the same metric, stable version
