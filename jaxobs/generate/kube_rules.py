"""The rule groups the Kubernetes control loops read (appended to the main rule file).

Kept apart from the SLO and resource groups so a service without ``autoscaling:`` or
``canary:`` gets exactly the rules it had before.
"""

from __future__ import annotations

from typing import Any

from jaxobs.generate import autoscaling, canary_analysis
from jaxobs.slo.model import Service


def kube_rule_groups(service: Service) -> list[dict[str, Any]]:
    """``jaxobs-autoscaling-<service>`` and ``jaxobs-canary-<service>``, when asked for."""
    groups = []
    scaling = autoscaling.recording_rules(service)
    if scaling:
        groups.append({"name": f"jaxobs-autoscaling-{service.name}", "rules": scaling})
    canary = canary_analysis.recording_rules(service)
    if canary:
        groups.append({"name": f"jaxobs-canary-{service.name}", "rules": canary})
    return groups
