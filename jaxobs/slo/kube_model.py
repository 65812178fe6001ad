"""The Kubernetes control loops a service may ask for: autoscaling and canary analysis.

Part of the validated model (:mod:`jaxobs.slo.model` hangs them on a
:class:`~jaxobs.slo.model.Service`); :mod:`jaxobs.slo.kube_spec` parses them and
:mod:`jaxobs.generate.autoscaling` / :mod:`jaxobs.generate.canary_analysis` turn
them into KEDA, HPA, prometheus-adapter and Argo Rollouts objects.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Where the generated objects look for Prometheus by default (prometheus-operator's
#: governing service in a ``monitoring`` namespace).
DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


@dataclass(frozen=True)
class ScaleTarget:
    """The workload the autoscaler resizes (a Deployment, or an Argo Rollout)."""

    name: str
    kind: str = "Deployment"
    api_version: str = "apps/v1"


@dataclass(frozen=True)
class QueueTarget:
    """Queue depth per replica: the catalog's ``jaxobs_queue_depth`` of the service, or a
    gauge the server exports under its own name (``metric``)."""

    metric: str | None
    per_replica: float


@dataclass(frozen=True)
class Autoscaling:
    """Scale on load signals of warm replicas only.

    Every signal is summed over *serving* replicas: ready (``jaxobs_ready`` 1) and not
    compiling within ``warm_window``.  The autoscaler divides the sum by its per-replica
    target, so a replica that is still warming up adds neither load nor capacity and
    cannot trigger more scale-up (see docs/autoscaling.md).
    """

    target: ScaleTarget
    min_replicas: int = 1
    max_replicas: int = 10
    scale_down_stabilization: str = "5m"
    #: a replica that compiled (or was compiling) within this window does not count.
    warm_window: str = "2m"
    in_flight_per_replica: float | None = None
    accelerator_utilization: float | None = None
    #: keep this share of device memory free (target utilization = 1 - headroom).
    device_memory_headroom: float | None = None
    queue_depth: QueueTarget | None = None
    prometheus_address: str = DEFAULT_PROMETHEUS
    polling_interval_seconds: int = 30


@dataclass(frozen=True)
class Canary:
    """Argo Rollouts analysis of a canary against the stable version."""

    #: the target label whose value tells the canary's pods from the stable ones
    #: (prometheus-operator turns the pod label ``rollouts-pod-template-hash`` into this).
    track_label: str = "rollouts_pod_template_hash"
    interval: str = "1m"
    count: int = 10
    #: failed measurements tolerated before the analysis fails (and the rollout aborts).
    failure_limit: int = 1
    #: no measurement before this: the canary's replicas warm up and compile first.
    initial_delay: str = "2m"
    #: the canary's steady p99 may exceed the stable one by this factor (or the SLO threshold).
    latency_tolerance: float = 1.2
    #: compilations per warm canary replica tolerated within one interval.
    max_compiles_per_replica: float = 1.0
    prometheus_address: str = DEFAULT_PROMETHEUS
