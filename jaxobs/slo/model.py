"""The validated SLO model: what every generator consumes.

``jaxobs.slo.spec`` turns a YAML file into these objects (with defaults and
clear errors); generators (rules, alertmanager, dashboards, runbooks) are pure
functions of a :class:`Spec`.  Nothing here imports jax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jaxobs.slo import duration
from jaxobs.slo.kube_model import Autoscaling, Canary

Severity = Literal["page", "ticket"]
SLIKind = Literal["availability", "latency", "cold_start", "cache_hit", "raw"]
#: What a tier does while its long window holds fewer than ``min_events`` events.
LowTraffic = Literal["ticket", "silent"]

#: A tier may page only with at least this many events in its long window.  At 100 events
#: one failure is a 1% error ratio, a 10x burn of a 99.9% SLO, so a single unlucky request
#: of a quiet service cannot page (SRE workbook, "Low-traffic services").
DEFAULT_MIN_EVENTS = 100


@dataclass(frozen=True)
class BurnRateTier:
    """One multi-window burn-rate alert: fire when both windows burn faster than ``factor``."""

    severity: Severity
    factor: float
    long_window: str  # Prometheus duration, e.g. "1h"
    short_window: str  # e.g. "5m"; by convention long/12
    for_: str = "2m"
    #: fewer events than this in the long window: the tier does ``low_traffic`` instead.
    min_events: int = DEFAULT_MIN_EVENTS
    #: "ticket": a page tier files a ticket instead (a ticket tier ignores the guard);
    #: "silent": the tier stays quiet.
    low_traffic: LowTraffic = "ticket"
    labels: tuple[tuple[str, str], ...] = ()  # extra alert labels of this tier


#: The workbook's ladder for a 30-day SLO as (severity, share of the budget spent, long
#: window): page when 2% is gone in 1h or 5% in 6h, ticket when 10% is gone in 1d or 3d.
WORKBOOK_LADDER: tuple[tuple[Severity, float, str], ...] = (
    ("page", 0.02, "1h"),
    ("page", 0.05, "6h"),
    ("ticket", 0.10, "1d"),
    ("ticket", 0.10, "3d"),
)
#: Shortest windows a derived ladder uses: below them a 5-minute rate has too few samples.
MIN_LONG_WINDOW_S = 3600
MIN_SHORT_WINDOW_S = 300


def default_tiers(window: str = "30d") -> tuple[BurnRateTier, ...]:
    """The workbook ladder scaled to an SLO ``window``.

    The long windows shrink or grow with the SLO window (1h of 30d is 14m of 7d, clamped
    to at least 1h; short windows are long/12, at least 5m, on whole minutes), and each
    burn factor is derived so the tier still fires after the same share of the budget:
    ``factor = share * window / long_window``.  For 30d this is exactly the workbook's
    14.4x/1h, 6x/6h, 3x/1d, 1x/3d.
    """
    total = duration.seconds(window)
    tiers = []
    for severity, share, base in WORKBOOK_LADDER:
        scaled = duration.seconds(base) * total // duration.seconds("30d")
        long_s = max(MIN_LONG_WINDOW_S, scaled // 60 * 60)
        short_s = max(MIN_SHORT_WINDOW_S, long_s // 12 // 60 * 60)
        tiers.append(BurnRateTier(severity, round(share * total / long_s, 6),
                                  duration.canonical(long_s), duration.canonical(short_s)))
    return tuple(tiers)


#: Google SRE workbook, ch. 5 ("Alerting on SLOs"), multiwindow multi-burn-rate table.
DEFAULT_TIERS: tuple[BurnRateTier, ...] = default_tiers("30d")


@dataclass(frozen=True)
class SLI:
    """What counts as a bad event.

    Built-in kinds read jaxobs metrics; ``raw`` takes the user's own PromQL
    ``errors``/``total`` queries (rates over ``[$window]``).
    """

    kind: SLIKind
    #: latency: a request slower than this (seconds, a histogram bucket bound) is bad.
    threshold_seconds: float | None = None
    #: raw: PromQL with the literal placeholder ``$window`` for the range.
    errors_query: str | None = None
    total_query: str | None = None
    #: optional extra label matchers, e.g. {"function": "predict"}.
    selector: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SLO:
    name: str  # [a-z0-9_-]+, unique within the service
    objective: float  # percent, 0 < objective < 100, e.g. 99.9
    sli: SLI
    window: str = "30d"
    description: str = ""
    tiers: tuple[BurnRateTier, ...] = DEFAULT_TIERS
    labels: tuple[tuple[str, str], ...] = ()
    #: labels the SLO is evaluated by (every sum keeps them), e.g. ("cluster", "env");
    #: empty means one fleet-wide SLO.
    group_by: tuple[str, ...] = ()
    #: False: generate nothing for this SLO.
    enabled: bool = True
    #: True: recording rules (dashboards, budget) but no alerts.
    record_only: bool = False
    #: alert when the SLI's series are absent (its targets or labels are gone).
    no_data: bool = True

    @property
    def alerting(self) -> bool:
        """Whether the SLO gets alerts at all."""
        return self.enabled and not self.record_only

    @property
    def error_budget_ratio(self) -> float:
        """Allowed bad-event ratio, e.g. 0.001 for 99.9 %."""
        return round(1.0 - self.objective / 100.0, 12)


@dataclass(frozen=True)
class ResourceThresholds:
    """Thresholds of the alerts that need no SLO, overridable in the spec."""

    device_memory_ratio: float = 0.80
    cache_hit_ratio: float = 0.95
    cold_start_ratio: float = 0.01
    recompiles_per_minute: float = 10.0  # a recompilation storm, per function
    concurrent_compiling_replicas: int = 3  # replicas compiling one function at once
    #: ratio alerts (cache hit, cold start) stay quiet below this many events per window,
    #: so one cold call of a rarely used function does not open a ticket.
    ratio_min_events: int = 100
    #: page on OOMs once this fraction of a service's instances keeps hitting them.
    oom_instance_ratio: float = 0.5
    #: compile alerts stay inhibited this long after ``jaxobs_deploy_in_progress`` drops to 0
    #: (replicas that started late in the rollout still compile).
    deploy_grace_window: str = "10m"
    #: a deploy window open longer than this is stuck: inhibition stops and a ticket says so.
    deploy_max_duration: str = "2h"
    #: ticket when sampled calls return NaN or Inf
    nonfinite_outputs: bool = True
    #: ticket when a determinism canary (jaxobs.canary) differs from its reference
    canary_mismatch: bool = True
    #: ticket when a busy GPU spends more than ``gpu_throttle_ratio`` of 30 minutes
    #: throttled by power or heat
    gpu_throttled: bool = True
    gpu_throttle_ratio: float = 0.5


@dataclass(frozen=True)
class Service:
    name: str
    slos: tuple[SLO, ...]
    labels: tuple[tuple[str, str], ...] = ()  # team, tier, … copied onto alerts
    #: label matchers selecting the service's scrape targets (resource alerts, cache-hit SLI);
    #: empty means ``job="<name>"``.
    selector: tuple[tuple[str, str], ...] = ()
    #: labels the service's resource alerts are evaluated by (see ``SLO.group_by``).
    group_by: tuple[str, ...] = ()
    #: Kubernetes control loops generated for the service (``autoscaling:``, ``canary:``).
    autoscaling: Autoscaling | None = None
    canary: Canary | None = None

    @property
    def target_selector(self) -> tuple[tuple[str, str], ...]:
        """The matchers of the service's targets, defaulting to ``job="<name>"``."""
        return self.selector or (("job", self.name),)


@dataclass(frozen=True)
class Dashboards:
    """Settings of the generated Grafana dashboards."""

    accelerator_cost_per_hour: float = 2.50  # price of one accelerator-hour, in ``currency``
    currency: str = "USD"
    #: link from an exemplar's trace id to your trace backend, e.g. Jaeger's
    #: ``http://jaeger:16686/trace/${__value.raw}``; None: no datasource file is generated
    trace_url: str | None = None


@dataclass(frozen=True)
class Routing:
    """Alertmanager receivers: pages and tickets go to different webhooks.

    The defaults are local placeholders so the generated config passes
    ``amtool check-config`` before anyone has wired a pager.
    """

    page_webhook_url: str = "http://127.0.0.1:9095/page"
    ticket_webhook_url: str = "http://127.0.0.1:9096/ticket"


#: The value of the ``severity`` label per jaxobs severity.  kube-prometheus and Grafana SLO
#: use ``critical``/``warning``; jaxobs' own default keeps the words of its policy.
SEVERITY_LABELS: dict[str, dict[str, str]] = {
    "page-ticket": {"page": "page", "ticket": "ticket"},
    "critical-warning": {"page": "critical", "ticket": "warning"},
}


@dataclass(frozen=True)
class Outputs:
    """How generated files name and link things (conventions differ between stacks)."""

    #: the ``severity`` label of pages and tickets.
    severity_labels: tuple[tuple[str, str], ...] = (("page", "page"), ("ticket", "ticket"))
    #: ``metadata.labels`` of the PrometheusRule (``release: <helm release>`` for the
    #: kube-prometheus-stack chart).
    prometheus_rule_labels: tuple[tuple[str, str], ...] = (
        ("app.kubernetes.io/name", "jaxobs"), ("app.kubernetes.io/part-of", "jaxobs"),
        ("prometheus", "k8s"), ("role", "alert-rules"))
    #: Grafana base URL; when set, alerts get a ``dashboard_url`` annotation.
    grafana_url: str | None = None

    def severity(self, severity: str) -> str:
        """The ``severity`` label value of a jaxobs severity (page or ticket)."""
        return dict(self.severity_labels)[severity]


@dataclass(frozen=True)
class Spec:
    services: tuple[Service, ...]
    runbook_base_url: str = "https://github.com/jaxobs/jaxobs/blob/main/runbooks"
    resources: ResourceThresholds = field(default_factory=ResourceThresholds)
    dashboards: Dashboards = field(default_factory=Dashboards)
    routing: Routing = field(default_factory=Routing)
    outputs: Outputs = field(default_factory=Outputs)
    source: str = "<memory>"  # the file the spec came from (for messages and headers)

    @property
    def group_labels(self) -> tuple[str, ...]:
        """Every grouping label of every service and SLO, in first-seen order (Alertmanager
        groups and inhibits by all of them; an alert without one compares as empty)."""
        seen: dict[str, None] = {}
        for service in self.services:
            for label in service.group_by + tuple(x for s in service.slos for x in s.group_by):
                seen.setdefault(label)
        return tuple(seen)
