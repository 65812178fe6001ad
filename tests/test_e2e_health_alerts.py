"""End to end: NaN outputs and a drifting determinism canary fire their generated alerts in a
real Prometheus scraping a real JAX process, and resolve once the process is healthy again.

The rules are generated from a spec as usual; only the alerts' look-back windows are
shortened (minutes to seconds), as the other end-to-end tests shorten burn-rate windows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from realtools import free_port, running_prometheus, wait_until

from jaxobs.generate import generate_all, health_alerts, names
from jaxobs.slo.spec import parse_spec

pytestmark = pytest.mark.e2e

SERVICE = "e2e_health"
SPEC = f"""\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: {SERVICE}
    slos: []
"""

#: NaN outputs and canary drift for the first BAD seconds, healthy afterwards.
WORKLOAD = """
    import time
    import jax, jax.numpy as jnp, numpy as np
    import jaxobs
    jaxobs.start_http_server({port}, addr="127.0.0.1")
    t0 = time.monotonic()
    BAD = 12.0
    bad = lambda: 2.0 < time.monotonic() - t0 < BAD
    model = jaxobs.jit(lambda x: jnp.log(x), name="model", sample_rate=1.0)

    def drifting(x):
        bump = jax.pure_callback(lambda: np.float32(1e-3 if bad() else 0.0),
                                 jax.ShapeDtypeStruct((), jnp.float32))
        return x * 2 + bump

    jaxobs.canary(jax.jit(drifting), jnp.ones(4), every=0.25, name="drifting")
    jaxobs.canary(jax.jit(lambda x: jnp.tanh(x) @ x), jnp.ones((8, 8)), every=0.25, name="steady")
    print("ready", flush=True)
    while True:
        model(jnp.zeros(3) if bad() else jnp.ones(3))  # log(0) = -inf while bad
        time.sleep(0.05)
"""


def test_nonfinite_and_canary_alerts_fire_then_resolve(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(health_alerts, "NONFINITE_WINDOW", "10s")
    monkeypatch.setattr(health_alerts, "CANARY_WINDOW", "10s")
    rules_file = tmp_path / "jaxobs.rules.yaml"
    rules_file.write_text(generate_all(parse_spec(SPEC, "e2e.yaml"), "e2e.yaml")["alerts/jaxobs.rules.yaml"])
    port = free_port()
    code = textwrap.dedent(WORKLOAD.replace("{port}", str(port)))
    app = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready", app.stderr.read() if app.stderr else ""
        with running_prometheus(tmp_path / "prom", [f"127.0.0.1:{port}"], rule_files=[rules_file],
                                job=SERVICE) as prom:
            def firing(alert: str) -> list[dict]:
                return [a for a in prom.alerts()
                        if a["labels"]["alertname"] == alert and a["state"] == "firing"]

            nan = wait_until(lambda: firing(names.NONFINITE_OUTPUTS), 90, what="the NaN alert to fire")
            assert nan[0]["labels"]["function"] == "model"
            assert nan[0]["annotations"]["runbook_url"].endswith(f"/{names.NONFINITE_OUTPUTS}.md")
            canary = wait_until(lambda: firing(names.CANARY_MISMATCH), 90, what="the canary alert to fire")
            assert {a["labels"]["function"] for a in canary} == {"drifting"}  # the steady one stays silent
            wait_until(lambda: not firing(names.NONFINITE_OUTPUTS) and not firing(names.CANARY_MISMATCH),
                       90, what="both alerts to resolve once the process is healthy")
            assert prom.value('jaxobs_canary_runs_total{function="steady",outcome="mismatch"}') == 0
            assert prom.value('jaxobs_canary_runs_total{function="steady",outcome="match"}') > 10
    finally:
        app.kill()
        app.wait(10)
