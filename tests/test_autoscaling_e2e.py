"""End to end: the generated autoscaling query rises under load and stays flat while a new
replica warms up and compiles.

A real Prometheus scrapes two example inference servers (real JAX on CPU) every second and
evaluates the rule file ``jaxobs generate`` made from a spec with an ``autoscaling:`` block
(``warm_window: 10s`` instead of minutes).  The test reads the KEDA ScaledObject's own
trigger query:

1. replica A under the load generator (4 connections, every request held 300 ms inside
   ``jaxobs.request``): the query rises from nothing to about 4 requests in flight;
2. replica B starts and warms up 80 batch sizes, compiling for several seconds (scraped
   meanwhile: not ready, compiling); the load generator sends it requests throughout, which
   it refuses until ready (the example server's readiness gate) and then serves.  While B
   warms, and for the warm window after its compiles, the query keeps counting A's load
   only and one replica serves, although the raw in-flight sum over both replicas rises;
3. once B has been warm for the window, its load counts: the query rises and two replicas serve.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kube_e2e import load, prometheus_with_labels
from realtools import (
    INFERENCE_SERVER,
    REPO,
    free_port,
    http_get_json,
    running_inference_server,
    stop,
    wait_until,
)

from jaxobs.generate import generate_all
from jaxobs.generate import names as n
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: inference
    slos: []
    autoscaling:
      target: {name: jax-inference}
      warm_window: 10s
      targets:
        in_flight_per_replica: 2
        queue_depth_per_replica: 4
"""
SLOW = ["--slow-rate", "1", "--slow-ms", "300"]
CONCURRENCY = 4
RAW = 'sum(jaxobs_requests_in_flight{job="inference"})'
SERVING = f'sum({n.AUTOSCALE_REPLICAS}{{service="inference"}})'


def _value(prom, expr: str) -> float:
    value = prom.value(expr)
    return 0.0 if value is None else value


def test_query_rises_under_load_and_ignores_a_warming_replica(tmp_path: Path):
    files = generate_all(parse_spec(SPEC, "e2e.yaml"), "e2e.yaml")
    rules = tmp_path / "jaxobs.rules.yaml"
    rules.write_text(files["alerts/jaxobs.rules.yaml"])
    scaled = yaml.safe_load(files["alerts/kubernetes/inference/keda-scaledobject.yaml"])
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["name"] == "in-flight"]
    query = trigger["metadata"]["query"]

    b_port = free_port()
    with running_inference_server(SLOW) as a:
        targets = {a.url.removeprefix("http://"): {}, f"127.0.0.1:{b_port}": {}}
        with prometheus_with_labels(tmp_path / "prom", "inference", targets, [rules]) as prom:
            wait_until(lambda: _value(prom, SERVING) == 1, 30, what="replica A to serve")
            before = _value(prom, query)
            with load(a.url, duration=90, concurrency=CONCURRENCY):
                # 1. load on A: the query rises
                risen = prom.wait_value(query, lambda v: v >= 2, timeout=30)
                assert before < 1 <= 2 <= risen <= CONCURRENCY

                # 2. B warms up (80 compiles) under load of its own
                buckets = ",".join(str(i) for i in range(1, 81))
                b = subprocess.Popen([sys.executable, str(INFERENCE_SERVER), "--port", str(b_port),
                                      "--buckets", buckets, *SLOW],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "JAX_PLATFORMS": "cpu"}, cwd=REPO)
                try:
                    b_url = f"http://127.0.0.1:{b_port}"
                    wait_until(lambda: http_get_json(f"{b_url}/info"), 60, what="B to listen")
                    with load(b_url, duration=60, concurrency=CONCURRENCY):
                        b_sel = f'instance="127.0.0.1:{b_port}"'

                        def sample() -> tuple[float, ...]:
                            return (_value(prom, query), _value(prom, RAW), _value(prom, SERVING),
                                    _value(prom, f"up{{{b_sel}}}"),
                                    _value(prom, f"jaxobs_ready{{{b_sel}}}"),
                                    _value(prom, f"sum(jaxobs_compilations_in_progress{{{b_sel}}})"))

                        samples = [sample()]
                        deadline = time.monotonic() + 60
                        while samples[-1][4] != 1 and time.monotonic() < deadline:
                            time.sleep(0.5)
                            samples.append(sample())
                        assert samples[-1][4] == 1, "B never became ready"
                        # ready and taking load, but compiled within the warm window
                        ready_at = time.monotonic()
                        while time.monotonic() < ready_at + 5:
                            time.sleep(0.5)
                            samples.append(sample())
                        # B was scraped while it warmed up and compiled ...
                        assert any(up == 1 and ready == 0 and compiling > 0
                                   for _, _, _, up, ready, compiling in samples), samples
                        # ... and took load once ready (the raw sum over both replicas rose) ...
                        assert max(s[1] for s in samples) >= CONCURRENCY + 2, samples
                        # ... while the query counted A's load only, from one warm replica.
                        assert max(s[0] for s in samples) <= CONCURRENCY, samples
                        assert {s[2] for s in samples} == {1.0}, samples

                        # 3. B warm for the whole window: its load counts
                        prom.wait_value(SERVING, lambda v: v == 2, timeout=40)
                        prom.wait_value(query, lambda v: v > CONCURRENCY, timeout=20)
                finally:
                    stop(b)
