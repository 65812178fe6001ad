"""The validated SLO model: what every generator consumes.

``jaxobs.slo.spec`` turns a YAML file into these objects (with defaults and
clear errors); generators (rules, alertmanager, dashboards, runbooks) are pure
functions of a :class:`Spec`.  Nothing here imports jax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["page", "ticket"]
SLIKind = Literal["availability", "latency", "cold_start", "cache_hit", "raw"]


@dataclass(frozen=True)
class BurnRateTier:
    """One multi-window burn-rate alert: fire when both windows burn faster than ``factor``."""

    severity: Severity
    factor: float
    long_window: str  # Prometheus duration, e.g. "1h"
    short_window: str  # e.g. "5m"; by convention long/12
    for_: str = "2m"


#: Google SRE workbook, ch. 5 ("Alerting on SLOs"), multiwindow multi-burn-rate table.
DEFAULT_TIERS: tuple[BurnRateTier, ...] = (
    BurnRateTier("page", 14.4, "1h", "5m"),
    BurnRateTier("page", 6.0, "6h", "30m"),
    BurnRateTier("ticket", 3.0, "1d", "2h"),
    BurnRateTier("ticket", 1.0, "3d", "6h"),
)


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

    @property
    def error_budget_ratio(self) -> float:
        """Allowed bad-event ratio, e.g. 0.001 for 99.9 %."""
        return round(1.0 - self.objective / 100.0, 12)


@dataclass(frozen=True)
class ResourceThresholds:
    """Thresholds of the alerts that need no SLO (DESIGN.md §5), overridable in the spec."""

    device_memory_ratio: float = 0.80
    cache_hit_ratio: float = 0.95
    cold_start_ratio: float = 0.01
    recompiles_per_minute: float = 10.0  # a recompilation storm, per function
    concurrent_compiling_replicas: int = 3  # thundering compilation (F6)
    #: ratio alerts (cache hit, cold start) stay quiet below this many events per window,
    #: so one cold call of a rarely used function does not open a ticket.
    ratio_min_events: int = 100
    #: page on OOMs once this fraction of a service's instances keeps hitting them.
    oom_instance_ratio: float = 0.5
    #: compile alerts stay inhibited this long after ``jaxobs_deploy_in_progress`` drops to 0
    #: (replicas that started late in the rollout still compile).
    deploy_grace_window: str = "10m"


@dataclass(frozen=True)
class Service:
    name: str
    slos: tuple[SLO, ...]
    labels: tuple[tuple[str, str], ...] = ()  # team, tier, … copied onto alerts
    #: label matchers selecting the service's scrape targets (resource alerts, cache-hit SLI);
    #: empty means ``job="<name>"``.
    selector: tuple[tuple[str, str], ...] = ()

    @property
    def target_selector(self) -> tuple[tuple[str, str], ...]:
        """The matchers of the service's targets, defaulting to ``job="<name>"``."""
        return self.selector or (("job", self.name),)


@dataclass(frozen=True)
class Dashboards:
    """Settings of the generated Grafana dashboards."""

    accelerator_cost_per_hour: float = 2.50  # price of one accelerator-hour, in ``currency``
    currency: str = "USD"


@dataclass(frozen=True)
class Routing:
    """Alertmanager receivers: pages and tickets go to different webhooks.

    The defaults are local placeholders so the generated config passes
    ``amtool check-config`` before anyone has wired a pager.
    """

    page_webhook_url: str = "http://127.0.0.1:9095/page"
    ticket_webhook_url: str = "http://127.0.0.1:9096/ticket"


@dataclass(frozen=True)
class Spec:
    services: tuple[Service, ...]
    runbook_base_url: str = "https://github.com/jaxobs/jaxobs/blob/main/runbooks"
    resources: ResourceThresholds = field(default_factory=ResourceThresholds)
    dashboards: Dashboards = field(default_factory=Dashboards)
    routing: Routing = field(default_factory=Routing)
    source: str = "<memory>"  # the file the spec came from (for messages and headers)
