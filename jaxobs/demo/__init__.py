"""``jaxobs demo``: a real JAX workload on CPU, its SLOs, and (``--stack``) the whole alerting loop.

* :mod:`jaxobs.demo.workload` — the instrumented model and its traffic;
* :mod:`jaxobs.demo.config` — the demo's own SLO spec and the prometheus.yml /
  alertmanager.yml that go with it;
* :mod:`jaxobs.demo.stack` and :mod:`jaxobs.demo.processes` — ``--stack``: sidecar,
  Prometheus, Alertmanager and a local pager on 127.0.0.1;
* :mod:`jaxobs.demo.cli` — the command.

Importing this package does not import jax (the workload does, when it runs).
"""

from __future__ import annotations
