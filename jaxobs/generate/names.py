"""The names the generated rules define: recording rules, alerts, categories.

Dashboards, runbooks, Alertmanager routes and tests all refer to these
constants, so a rename happens in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Prometheus' own scrape-health series (not a jaxobs metric, so not in the catalog).
UP = "up"

# --- recording rules (level:metric:operations) -------------------------------------------
#: bad and all events per second of an SLI over the base window (5m), by the SLO's labels.
ERRORS_RATE = "jaxobs_slo:sli_errors:rate"
EVENTS_RATE = "jaxobs_slo:sli_events:rate"
#: bad/all events over a window (label ``window``): a ratio of sums of the two rates above.
ERROR_RATIO = "jaxobs_slo:sli_error:ratio"
OBJECTIVE = "jaxobs_slo:objective:ratio"
ERROR_BUDGET = "jaxobs_slo:error_budget:ratio"
BURN_RATE = "jaxobs_slo:error_budget:burn_rate"
BUDGET_REMAINING = "jaxobs_slo:error_budget_remaining:ratio"
RECORDING_RULE_NAMES: tuple[str, ...] = (ERRORS_RATE, EVENTS_RATE, ERROR_RATIO, OBJECTIVE,
                                         ERROR_BUDGET, BURN_RATE, BUDGET_REMAINING)

# --- alert names -------------------------------------------------------------------------
SLO_BURN = "JaxobsErrorBudgetBurn"
SLO_NO_DATA = "JaxobsSLONoData"
DEVICE_MEMORY_HIGH = "JaxobsDeviceMemoryHigh"
OOM_ERRORS = "JaxobsOOMErrors"
CACHE_HIT_LOW = "JaxobsCompileCacheHitRatioLow"
COLD_START_HIGH = "JaxobsColdStartRatioHigh"
RECOMPILATION_STORM = "JaxobsRecompilationStorm"
CONCURRENT_COMPILATION = "JaxobsConcurrentCompilation"
TARGET_DOWN = "JaxobsTargetDown"
COLLECTOR_DOWN = "JaxobsCollectorDown"
GPU_XID = "JaxobsGPUXidErrors"
BUILD_MISMATCH = "JaxobsBuildInfoMismatch"
DEPLOY_IN_PROGRESS = "JaxobsDeployInProgress"
DEPLOY_STUCK = "JaxobsDeployWindowStuck"
NONFINITE_OUTPUTS = "JaxobsNonFiniteOutputs"
CANARY_MISMATCH = "JaxobsCanaryMismatch"
GPU_THROTTLED = "JaxobsGPUThrottled"

#: Every alert jaxobs can generate (runbooks exist for exactly these).
ALERT_NAMES: tuple[str, ...] = (
    SLO_BURN, SLO_NO_DATA, DEVICE_MEMORY_HIGH, OOM_ERRORS, CACHE_HIT_LOW, COLD_START_HIGH,
    RECOMPILATION_STORM, CONCURRENT_COMPILATION, TARGET_DOWN, COLLECTOR_DOWN, GPU_XID,
    BUILD_MISMATCH, DEPLOY_IN_PROGRESS, DEPLOY_STUCK, NONFINITE_OUTPUTS, CANARY_MISMATCH, GPU_THROTTLED,
)
#: Alertmanager matches jaxobs' alerts by this name pattern (the sub-route and inhibitions
#: never touch anyone else's alerts).
ALERT_NAME_PATTERN = "Jaxobs.+"

#: Alert categories that a deploy window suppresses (Alertmanager inhibition): a rollout
#: compiles everything once and briefly runs mixed versions.
DEPLOY_SUPPRESSED_CATEGORIES: tuple[str, ...] = ("compile", "version")


@dataclass(frozen=True)
class Alert:
    """One alerting rule before it becomes YAML.  ``severity`` is jaxobs' own word (page or
    ticket); the spec's ``severity_labels`` decide the label value written out."""

    name: str
    severity: str
    expr: str
    for_: str
    summary: str
    description: str
    category: str
    service: str
    labels: tuple[tuple[str, str], ...] = ()


#: The on-call dashboard (``dashboard_url`` annotations open it filtered to the alert).
ONCALL_DASHBOARD_TITLE = "jaxobs / On-call"


def dashboard_uid(title: str) -> str:
    """A stable Grafana UID: a short hash of the title (as kubernetes-mixin does)."""
    import hashlib

    return hashlib.sha256(title.encode("utf-8")).hexdigest()[:16]


# --- Kubernetes control loops (jaxobs.generate.autoscaling, jaxobs.generate.canary_analysis) --
#: The SLI rates again, by the canary's track label as well (level ``jaxobs_slo_track``):
#: the same expressions as ERRORS_RATE/EVENTS_RATE, so a canary is judged by the SLI that pages.
TRACK_ERRORS_RATE = "jaxobs_slo_track:sli_errors:rate"
TRACK_EVENTS_RATE = "jaxobs_slo_track:sli_events:rate"
#: Load of the serving replicas (ready and not compiling), summed per service: an autoscaler
#: divides each by its per-replica target.
AUTOSCALE_IN_FLIGHT = "jaxobs_autoscale:requests_in_flight:sum"
AUTOSCALE_QUEUE = "jaxobs_autoscale:queue_depth:sum"
AUTOSCALE_ACCELERATOR = "jaxobs_autoscale:accelerator_utilization:sum"
AUTOSCALE_DEVICE_MEMORY = "jaxobs_autoscale:device_memory_utilization:sum"
AUTOSCALE_REPLICAS = "jaxobs_autoscale:serving_replicas:count"
