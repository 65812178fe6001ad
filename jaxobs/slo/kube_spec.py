"""Parse a service's ``autoscaling:`` and ``canary:`` blocks (one-line errors, like the rest).

The accepted format, with every default::

    autoscaling:
      target: {kind: Deployment, name: <service>, api_version: apps/v1}
      min_replicas: 1
      max_replicas: 10
      scale_down_stabilization: 5m
      warm_window: 2m               # a replica that compiled within it does not count
      prometheus_address: http://prometheus-operated.monitoring.svc:9090
      polling_interval_seconds: 30
      targets:                      # at least one
        in_flight_per_replica: 4    # jaxobs_requests_in_flight of the service
        accelerator_utilization: 0.7  # GPU utilization or TPU duty cycle
        device_memory_headroom: 0.2   # keep 20% of device memory free
        queue_depth_per_replica: 8  # jaxobs_queue_depth, or {metric: my_queue_depth, value: 8}
    canary:
      track_label: rollouts_pod_template_hash
      interval: 1m
      count: 10
      failure_limit: 1
      initial_delay: 2m
      latency_tolerance: 1.2
      max_compiles_per_replica: 1
      prometheus_address: http://prometheus-operated.monitoring.svc:9090
"""

from __future__ import annotations

import re
from typing import Any

from jaxobs.slo.fields import Context, mapping, number, string
from jaxobs.slo.fields import duration_field as duration
from jaxobs.slo.kube_model import DEFAULT_PROMETHEUS, Autoscaling, Canary, QueueTarget, ScaleTarget

_URL = re.compile(r"^https?://\S+$")
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_KIND = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")
_API_VERSION = re.compile(r"^([a-z0-9.-]+/)?v[0-9]+((alpha|beta)[0-9]+)?$")
_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

_TARGET_KEYS = ("in_flight_per_replica", "accelerator_utilization", "device_memory_headroom",
                "queue_depth_per_replica")
_URL_FIX = "use the http(s) address of Prometheus as seen from the cluster, e.g. " + DEFAULT_PROMETHEUS


def _int(ctx: Context, value: Any, path: str, low: int, fix: str) -> int:
    return int(number(ctx, value, path, low, 1e6, fix, low_open=False, integer=True))


def parse_autoscaling(ctx: Context, raw: Any, path: str, service: str) -> Autoscaling:
    body = mapping(ctx, raw, path, ("target", "min_replicas", "max_replicas",
                                    "scale_down_stabilization", "warm_window",
                                    "prometheus_address", "polling_interval_seconds", "targets"),
                   required=("targets",))
    kwargs: dict[str, Any] = {"target": _scale_target(ctx, body.get("target"), f"{path}.target",
                                                      service)}
    if "min_replicas" in body:
        kwargs["min_replicas"] = _int(ctx, body["min_replicas"], f"{path}.min_replicas", 1,
                                      "use at least 1 (a replica must stay warm to measure load)")
    if "max_replicas" in body:
        kwargs["max_replicas"] = _int(ctx, body["max_replicas"], f"{path}.max_replicas", 1,
                                      "use a positive integer, e.g. 10")
    for key in ("scale_down_stabilization", "warm_window"):
        if key in body:
            kwargs[key] = duration(ctx, body[key], f"{path}.{key}")
    if "prometheus_address" in body:
        kwargs["prometheus_address"] = string(ctx, body["prometheus_address"],
                                              f"{path}.prometheus_address", _URL, _URL_FIX)
    if "polling_interval_seconds" in body:
        kwargs["polling_interval_seconds"] = _int(
            ctx, body["polling_interval_seconds"], f"{path}.polling_interval_seconds", 1,
            "use seconds between KEDA's queries, e.g. 30")
    kwargs.update(_targets(ctx, body["targets"], f"{path}.targets"))
    out = Autoscaling(**kwargs)
    if out.max_replicas < out.min_replicas:
        ctx.fail(f"{path}.max_replicas", f"{out.max_replicas} is below min_replicas "
                 f"{out.min_replicas}", "raise max_replicas or lower min_replicas")
    return out


def _scale_target(ctx: Context, raw: Any, path: str, service: str) -> ScaleTarget:
    body = mapping(ctx, raw, path, ("kind", "name", "api_version"))
    name = service.lower().replace("_", "-").replace(".", "-")
    if "name" in body:
        name = string(ctx, body["name"], f"{path}.name", _K8S_NAME,
                      "use the Deployment's (or Rollout's) metadata.name")
    elif not _K8S_NAME.fullmatch(name):
        ctx.fail(f"{path}.name", f"the service name {service!r} is no Kubernetes name",
                 "set target.name to the Deployment's metadata.name")
    kind = string(ctx, body.get("kind", "Deployment"), f"{path}.kind", _KIND,
                  "use the workload's kind, e.g. Deployment or Rollout")
    default_api = "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1"
    api = string(ctx, body.get("api_version", default_api), f"{path}.api_version", _API_VERSION,
                 "use e.g. apps/v1 or argoproj.io/v1alpha1")
    return ScaleTarget(name=name, kind=kind, api_version=api)


def _targets(ctx: Context, raw: Any, path: str) -> dict[str, Any]:
    body = mapping(ctx, raw, path, _TARGET_KEYS)
    if not any(body.get(k) is not None for k in _TARGET_KEYS):
        ctx.fail(path, "no scaling target", f"set at least one of {', '.join(_TARGET_KEYS)}")
    out: dict[str, Any] = {}
    if body.get("in_flight_per_replica") is not None:
        out["in_flight_per_replica"] = float(number(
            ctx, body["in_flight_per_replica"], f"{path}.in_flight_per_replica", 0, 1e9,
            "use the concurrent requests one warm replica should hold, e.g. 4"))
    if body.get("accelerator_utilization") is not None:
        out["accelerator_utilization"] = float(number(
            ctx, body["accelerator_utilization"], f"{path}.accelerator_utilization", 0, 1,
            "use a ratio, e.g. 0.7"))
    if body.get("device_memory_headroom") is not None:
        out["device_memory_headroom"] = float(number(
            ctx, body["device_memory_headroom"], f"{path}.device_memory_headroom", 0, 1,
            "use the share of device memory to keep free, e.g. 0.2", high_open=True))
    if body.get("queue_depth_per_replica") is not None:
        out["queue_depth"] = _queue(ctx, body["queue_depth_per_replica"],
                                    f"{path}.queue_depth_per_replica")
    return out


def _queue(ctx: Context, raw: Any, path: str) -> QueueTarget:
    """A number (the catalog's ``jaxobs_queue_depth`` of the service) or ``{metric, value}``
    naming the server's own queue-depth gauge."""
    fix = "use the queued requests one warm replica should hold, e.g. 8"
    if not isinstance(raw, dict):
        return QueueTarget(metric=None, per_replica=float(number(ctx, raw, path, 0, 1e9, fix)))
    body = mapping(ctx, raw, path, ("metric", "value"), required=("value",))
    metric = None
    if body.get("metric") is not None:
        metric = string(ctx, body["metric"], f"{path}.metric", _METRIC,
                        "name the queue-depth gauge your server exports, e.g. my_queue_depth")
    return QueueTarget(metric=metric,
                       per_replica=float(number(ctx, body["value"], f"{path}.value", 0, 1e9, fix)))


def parse_canary(ctx: Context, raw: Any, path: str) -> Canary:
    body = mapping(ctx, raw, path, ("track_label", "interval", "count", "failure_limit",
                                    "initial_delay", "latency_tolerance",
                                    "max_compiles_per_replica", "prometheus_address"))
    kwargs: dict[str, Any] = {}
    if "track_label" in body:
        kwargs["track_label"] = string(
            ctx, body["track_label"], f"{path}.track_label", _LABEL,
            "use the Prometheus label that tells canary from stable, e.g. "
            "rollouts_pod_template_hash")
    if "interval" in body:
        kwargs["interval"] = duration(ctx, body["interval"], f"{path}.interval")
    if "initial_delay" in body:  # 0s: measure at once
        kwargs["initial_delay"] = "0s" if body["initial_delay"] in ("0", "0s", "0m", 0) else \
            duration(ctx, body["initial_delay"], f"{path}.initial_delay")
    if "count" in body:
        kwargs["count"] = _int(ctx, body["count"], f"{path}.count", 1,
                               "use the number of measurements per analysis, e.g. 10")
    if "failure_limit" in body:
        kwargs["failure_limit"] = int(number(ctx, body["failure_limit"], f"{path}.failure_limit",
                                             0, 1e6, "use 0 (abort on the first failure) or more",
                                             low_open=False, integer=True))
    if "latency_tolerance" in body:
        kwargs["latency_tolerance"] = float(number(
            ctx, body["latency_tolerance"], f"{path}.latency_tolerance", 1, 100,
            "use a factor of at least 1, e.g. 1.2 (20% slower than stable)", low_open=False))
    if "max_compiles_per_replica" in body:
        kwargs["max_compiles_per_replica"] = float(number(
            ctx, body["max_compiles_per_replica"], f"{path}.max_compiles_per_replica", 0, 1e6,
            "use compilations per warm replica and interval, e.g. 1", low_open=False))
    if "prometheus_address" in body:
        kwargs["prometheus_address"] = string(ctx, body["prometheus_address"],
                                              f"{path}.prometheus_address", _URL, _URL_FIX)
    out = Canary(**kwargs)
    if out.count > 1 and out.failure_limit >= out.count:
        ctx.fail(f"{path}.failure_limit", f"{out.failure_limit} failures tolerated out of "
                 f"{out.count} measurements: the analysis can never fail",
                 "use a failure_limit below count")
    return out
