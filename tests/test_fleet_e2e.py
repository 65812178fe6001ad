"""A fleet behind remote-write, end to end, with real Prometheus and Alertmanager.

Topology (everything on 127.0.0.1):

* cluster ``a`` and cluster ``b``: two instrumented JAX processes each, scraped
  by one Prometheus per cluster with ``external_labels: {cluster: a|b}``, which
  remote-writes everything to
* a central Prometheus (``--web.enable-remote-write-receiver``) that evaluates
  the generated rules and sends alerts to one Alertmanager.  The spec has the
  same availability SLO twice: ``availability`` with ``group_by: [cluster]``
  (evaluated and paged per cluster) and ``availability-fleet`` (one fleet-wide
  ratio).

The spec has short burn-rate windows (one page tier: 2x over 1m, confirmed over
20s, ``for: 10s``) so the page fires within a minute; the rule generator is
unchanged.  Cluster ``a`` fails half of its requests, ``b`` none.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from realtools import free_port, http_get_json, prometheus_with_config, running_alertmanager, wait_until

from jaxobs.generate import generate_all, rules
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SERVICE = "fleet_svc"
SPEC = f"""\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: {SERVICE}
    slos:
      - name: availability
        objective: 90            # budget 10%: cluster a fails 50% (5x), the fleet ~25% (2.5x)
        group_by: [cluster]
        sli: {{availability: {{}}}}
        alerting:
          tiers:
            - {{severity: page, burn_rate: 2, long_window: 1m, short_window: 20s, for: 10s}}
      - name: availability-fleet
        objective: 90
        sli: {{availability: {{}}}}
        alerting:
          tiers:
            - {{severity: page, burn_rate: 2, long_window: 1m, short_window: 20s, for: 10s}}
"""

WORKLOAD = """
    import itertools, sys, time
    import jax.numpy as jnp
    import jaxobs
    jaxobs.start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    failing = sys.argv[2] == "fail"
    predict = jaxobs.jit(lambda x: jnp.tanh(x).sum(), name="predict")
    print("ready", flush=True)
    for i in itertools.count():
        try:
            with jaxobs.request("{service}"):
                predict(jnp.ones(4))
                if failing and i % 2:
                    raise RuntimeError("injected outage")
        except RuntimeError:
            pass
        time.sleep(0.05)
""".replace("{service}", SERVICE)

AM_CONFIG = """\
route: {receiver: sink, group_by: [alertname, cluster], group_wait: 1s, group_interval: 1s}
receivers: [{name: sink}]
"""


@contextlib.contextmanager
def _app(port: int, mode: str) -> Iterator[None]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKLOAD), str(port), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        yield
    finally:
        proc.kill()
        proc.wait(10)


def _cluster_config(name: str, targets: list[str], central: str) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "external_labels": {"cluster": name}},
        "scrape_configs": [{"job_name": SERVICE, "static_configs": [{"targets": targets}]}],
        "remote_write": [{"url": f"{central}/api/v1/write",
                          "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms"}}],
    }


def test_an_outage_in_one_cluster_pages_for_that_cluster_and_the_fleet_slo_sees_it(tmp_path: Path) -> None:
    spec = parse_spec(SPEC, "fleet.yaml")
    rules_file = tmp_path / "jaxobs.rules.yaml"
    rules_file.write_text(generate_all(spec, "fleet.yaml")["alerts/jaxobs.rules.yaml"])
    ports = {c: [free_port(), free_port()] for c in ("a", "b")}

    with running_alertmanager(tmp_path / "am", AM_CONFIG) as am, \
            _app(ports["a"][0], "fail"), _app(ports["a"][1], "fail"), \
            _app(ports["b"][0], "ok"), _app(ports["b"][1], "ok"), \
            prometheus_with_config(tmp_path / "central", {
                "global": {"evaluation_interval": "1s"}, "rule_files": [str(rules_file)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [am.address]}]}]},
            }, "--web.enable-remote-write-receiver") as central:
        clusters = [
            prometheus_with_config(tmp_path / c, _cluster_config(c, [f"127.0.0.1:{p}" for p in ports[c]], central.url))
            for c in ("a", "b")]
        with clusters[0], clusters[1]:
            # dashboards' queries answer per cluster on the central Prometheus
            per_cluster = f'sum by (cluster) (rate(jaxobs_requests_total{{job="{SERVICE}"}}[30s]))'
            wait_until(lambda: len(central.query(per_cluster)) == 2, 90,
                       what="both clusters' series on the central Prometheus")
            errors = f'sum by (cluster) (rate(jaxobs_requests_total{{job="{SERVICE}",outcome="error"}}[30s]))'
            by_cluster = wait_until(lambda: {r["metric"]["cluster"]: float(r["value"][1])
                                             for r in central.query(errors)} or None, 60,
                                    what="error rates per cluster")
            assert by_cluster.get("a", 0) > 0 and by_cluster.get("b", 0) == 0

            # the per-cluster SLO and the fleet-wide one, both recorded by the central Prometheus
            def ratio(slo: str, cluster: str | None = None) -> str:
                where = f',cluster="{cluster}"' if cluster else ""
                return f'{rules.ERROR_RATIO}{{service="{SERVICE}",slo="{slo}",window="20s"{where}}}'

            in_a = central.wait_value(ratio("availability", "a"), lambda v: v > 0.3, timeout=90)
            wait_until(lambda: central.value(ratio("availability", "b")) == 0, 60,
                       what="cluster b's own ratio (0: it fails nothing)")
            fleet = central.wait_value(ratio("availability-fleet"), lambda v: 0.1 < v < 0.4, timeout=60)
            assert fleet < in_a  # cluster b's good traffic dilutes the fleet's ratio

            def pages(slo: str) -> list[dict[str, Any]]:
                return [a for a in http_get_json(f"{am.url}/api/v2/alerts")
                        if a["labels"].get("alertname") == rules.SLO_BURN
                        and a["labels"].get("severity") == "page" and a["labels"].get("slo") == slo]

            wait_until(lambda: any(p["labels"].get("cluster") == "a" for p in pages("availability")), 120,
                       what="cluster a's page at Alertmanager")
            wait_until(lambda: pages("availability-fleet"), 90, what="the fleet-wide page at Alertmanager")
            assert all("cluster" not in p["labels"] for p in pages("availability-fleet"))
            assert not [p for p in pages("availability") if p["labels"].get("cluster") != "a"]
