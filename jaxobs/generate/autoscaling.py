"""Autoscaling from the spec: recording rules, a KEDA ScaledObject, an HPA and adapter rules.

Why sums over *serving* replicas with an ``AverageValue`` target
-----------------------------------------------------------------
A replica that is warming up compiles: its requests wait, its in-flight count
and queue grow, its accelerator may sit idle or spike.  Counted as load, that
asks for more replicas, which compile too (a thundering compilation).  So each
signal is recorded as a sum over the replicas that are ready
(``jaxobs_ready`` 1) and have not compiled within ``warm_window`` (neither
``jaxobs_compilations_in_progress`` above 0 nor a new ``jaxobs_compilations_total``).
KEDA and the HPA divide the sum by the per-replica target (``AverageValue``):
desired replicas = ceil(load of warm replicas / target), independent of how
many replicas exist.  A new replica adds no load while it warms, so it cannot
drive the next scale-up; once warm it shares the load and the sum is unchanged.
(A per-replica *average* with a ``Value`` target would multiply by the current
replica count, warm or not, and scale up again while the new one compiles.)

Outputs per service with ``autoscaling:`` (see docs/autoscaling.md):
``alerts/kubernetes/<service>/keda-scaledobject.yaml``, ``hpa.yaml`` and
``prometheus-adapter.yaml``; the recordings go into the main rule file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import names as n
from jaxobs.generate import promql as q
from jaxobs.generate.render import dump_yaml
from jaxobs.slo import duration
from jaxobs.slo.kube_model import Autoscaling
from jaxobs.slo.model import Service, Spec

#: Where the Kubernetes objects of a service are written.
KUBE_DIR = "alerts/kubernetes"
#: Labels of every generated object (kubectl can select them).
OBJECT_LABELS = {"app.kubernetes.io/managed-by": "jaxobs", "app.kubernetes.io/part-of": "jaxobs"}
#: The scrape-target labels that identify one replica.
REPLICA = ("job", "instance")


@dataclass(frozen=True)
class Signal:
    """One scaling signal: its recording and its per-replica target."""

    key: str  # short name: trigger name and external metric suffix
    record: str
    expr: str
    per_replica: float


def kube_dir(service: Service) -> str:
    return f"{KUBE_DIR}/{service.name}"


def serving_replicas(service: Service, warm_window: str) -> str:
    """The ``jaxobs_ready`` series (value 1) of the replicas that serve warm.

    Not ready (still warming up), compiling now or within ``warm_window`` (a compile shorter
    than a scrape interval still bumps the counter): not serving, not counted.
    """
    s = q.matchers(service.target_selector)
    on = f"on ({', '.join(REPLICA)})"
    return (f"{q.selector(c.READY.name, *s)} == 1\n"
            f"unless {on} (\n"
            f"  max_over_time({q.selector(c.COMPILATIONS_IN_PROGRESS.name, *s)}[{warm_window}]) > 0\n"
            f"  or\n"
            f"  {q.increase(q.selector(c.COMPILATIONS.name, *s), warm_window)} > 0\n"
            f")")


def _on_serving(series: str, service: Service, warm_window: str) -> str:
    on = f"on ({', '.join(REPLICA)})"
    return f"{series}\nand {on} (\n{_indent(serving_replicas(service, warm_window))}\n)"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def signals(service: Service, a: Autoscaling) -> list[Signal]:
    """The signals the spec asks for, in a fixed order."""
    s = q.matchers(service.target_selector)
    g = service.group_by
    w = a.warm_window
    per_replica = (*REPLICA, *g)
    out: list[Signal] = []
    if a.queue_depth is not None:
        queue = (q.selector(a.queue_depth.metric, *s) if a.queue_depth.metric else
                 q.selector(c.QUEUE_DEPTH.name, *s, q.eq("service", service.name)))
        out.append(Signal("queue-depth", n.AUTOSCALE_QUEUE, q.agg("sum", g, _on_serving(
            queue, service, w)), a.queue_depth.per_replica))
    if a.in_flight_per_replica is not None:
        in_flight = q.selector(c.REQUESTS_IN_FLIGHT.name, *s, q.eq("service", service.name))
        out.append(Signal("in-flight", n.AUTOSCALE_IN_FLIGHT,
                          q.agg("sum", g, _on_serving(in_flight, service, w)),
                          a.in_flight_per_replica))
    if a.accelerator_utilization is not None:
        busy = (f"{q.selector(c.GPU_UTILIZATION.name, *s)}\nor\n"
                f"{q.selector(c.TPU_DUTY_CYCLE.name, *s)}")
        out.append(Signal("accelerator", n.AUTOSCALE_ACCELERATOR, q.agg("sum", g, _on_serving(
            q.agg("avg", per_replica, busy), service, w)), a.accelerator_utilization))
    if a.device_memory_headroom is not None:
        used = q.selector(c.DEVICE_MEMORY_UTILIZATION.name, *s)
        out.append(Signal("device-memory", n.AUTOSCALE_DEVICE_MEMORY, q.agg("sum", g, _on_serving(
            q.agg("max", per_replica, used), service, w)), round(1 - a.device_memory_headroom, 6)))
    return out


def recording_rules(service: Service) -> list[dict[str, Any]]:
    """The service's autoscaling recordings (empty without ``autoscaling:``)."""
    a = service.autoscaling
    if a is None:
        return []
    labels = {"service": service.name}
    rules = [{"record": sig.record, "expr": sig.expr, "labels": dict(labels)}
             for sig in signals(service, a)]
    rules.append({"record": n.AUTOSCALE_REPLICAS, "labels": dict(labels),
                  "expr": q.agg("count", service.group_by,
                                serving_replicas(service, a.warm_window))})
    return rules


def scaler_query(service: Service, sig: Signal) -> str:
    """What KEDA and prometheus-adapter ask Prometheus: the recording, one number."""
    return f"sum({q.selector(sig.record, q.eq('service', service.name))})"


def quantity(value: float) -> str:
    """A Kubernetes quantity: ``4``, ``700m`` (0.7), ``1500m`` (1.5)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def _scale_target_ref(a: Autoscaling) -> dict[str, str]:
    return {"apiVersion": a.target.api_version, "kind": a.target.kind, "name": a.target.name}


def _scale_down(a: Autoscaling) -> dict[str, Any]:
    return {"scaleDown": {"stabilizationWindowSeconds": duration.seconds(a.scale_down_stabilization)}}


def _metadata(service: Service, suffix: str) -> dict[str, Any]:
    return {"name": f"{service.name.lower().replace('_', '-')}-{suffix}",
            "labels": {**OBJECT_LABELS, "jaxobs.dev/service": service.name}}


def scaled_object(service: Service, a: Autoscaling) -> dict[str, Any]:
    """The KEDA ScaledObject: one Prometheus trigger per signal, AverageValue per replica."""
    triggers = [{
        "type": "prometheus",
        "name": sig.key,
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": a.prometheus_address,
            "query": scaler_query(service, sig),
            "threshold": q.number(sig.per_replica),
            # No warm replica answers: an error (the HPA holds), never a zero (a scale-down).
            "ignoreNullValues": "false",
        },
    } for sig in signals(service, a)]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(service, "jaxobs"),
        "spec": {
            "scaleTargetRef": _scale_target_ref(a),
            "minReplicaCount": a.min_replicas,
            "maxReplicaCount": a.max_replicas,
            "pollingInterval": a.polling_interval_seconds,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _scale_down(a)}},
            "triggers": triggers,
        },
    }


def external_metric_name(service: Service, sig: Signal) -> str:
    """The name prometheus-adapter serves a signal under (external metrics API)."""
    base = service.name.lower().replace("-", "_").replace(".", "_")
    return f"jaxobs_{base}_{sig.key.replace('-', '_')}"


def hpa(service: Service, a: Autoscaling) -> dict[str, Any]:
    """An autoscaling/v2 HPA over prometheus-adapter's external metrics (clusters without KEDA)."""
    metrics = [{"type": "External", "external": {
        "metric": {"name": external_metric_name(service, sig)},
        "target": {"type": "AverageValue", "averageValue": quantity(sig.per_replica)},
    }} for sig in signals(service, a)]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(service, "jaxobs"),
        "spec": {
            "scaleTargetRef": _scale_target_ref(a),
            "minReplicas": a.min_replicas,
            "maxReplicas": a.max_replicas,
            "behavior": _scale_down(a),
            "metrics": metrics,
        },
    }


def adapter_rules(service: Service, a: Autoscaling) -> dict[str, Any]:
    """prometheus-adapter ``externalRules`` serving each recording under the HPA's name."""
    rules = [{
        "seriesQuery": q.selector(sig.record, q.eq("service", service.name)),
        "resources": {"namespaced": False},
        "name": {"matches": f"^{sig.record}$", "as": external_metric_name(service, sig)},
        "metricsQuery": scaler_query(service, sig),
    } for sig in signals(service, a)]
    return {"externalRules": rules}


def build_autoscaling(spec: Spec, source: str) -> dict[str, str]:
    """``{path: text}`` of every service's autoscaling objects."""
    files: dict[str, str] = {}
    for service in spec.services:
        a = service.autoscaling
        if a is None:
            continue
        base = kube_dir(service)
        files[f"{base}/keda-scaledobject.yaml"] = dump_yaml(
            scaled_object(service, a), source,
            f"KEDA ScaledObject of {service.name}: scales on the load of warm replicas only.\n"
            f"Needs the recording rules of alerts/jaxobs.rules.yaml (group "
            f"jaxobs-autoscaling-{service.name}); docs/autoscaling.md.\n"
            f"Apply: kubectl apply -n <namespace> -f {base}/keda-scaledobject.yaml")
        files[f"{base}/hpa.yaml"] = dump_yaml(
            hpa(service, a), source,
            f"HPA v2 of {service.name} for clusters without KEDA: external metrics served by\n"
            f"prometheus-adapter with the rules of {base}/prometheus-adapter.yaml.\n"
            f"Use it or the KEDA ScaledObject, not both.")
        files[f"{base}/prometheus-adapter.yaml"] = dump_yaml(
            adapter_rules(service, a), source,
            "prometheus-adapter external rules (the adapter's config file; with the Helm chart\n"
            "put the list under values `rules.external`).")
    return files
