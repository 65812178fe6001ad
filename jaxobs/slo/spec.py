"""Parse and validate an SLO spec (YAML, ``apiVersion: jaxobs/v1``) into the model.

Why a hand-written validator instead of a schema library: every mistake must
come back as *one* line naming the file, the line, the field path
(``services[0].slos[1].objective``) and the fix — the person reading it is an
on-call engineer editing YAML, not a Python developer reading a traceback.
All problems raise :class:`SpecError`; nothing else escapes :func:`load_spec`.
The checks of single values live in :mod:`jaxobs.slo.fields`, the SLI in
:mod:`jaxobs.slo.sli_spec`, the burn-rate tiers in :mod:`jaxobs.slo.tiers_spec`.

The accepted format, with every default (docs/slos.md explains each field)::

    apiVersion: jaxobs/v1
    kind: SLOSpec
    runbook_base_url: https://github.com/jaxobs/jaxobs/blob/main/runbooks
    alerting:                       # optional, spec-wide
      group_by: []                  # labels every SLO is evaluated by, e.g. [cluster, env]
      severity_labels: page-ticket  # or critical-warning (kube-prometheus, Grafana SLO)
      tiers:                        # default: the workbook ladder scaled to each SLO window
        - {severity: page, burn_rate: 14.4, long_window: 1h, short_window: 5m, for: 2m,
           min_events: 100, low_traffic: ticket, labels: {}}
      receivers:
        page: {webhook_url: http://127.0.0.1:9095/page}
        ticket: {webhook_url: http://127.0.0.1:9096/ticket}
    outputs:
      grafana_url: null             # set it to add dashboard_url annotations
      prometheus_rule_labels: {...} # metadata.labels of the PrometheusRule
    resources: {device_memory_ratio: 0.8, ...}   # ResourceThresholds fields
    dashboards: {accelerator_cost_per_hour: 2.5, currency: USD}
    services:
      - name: inference             # the `service` label of jaxobs.request(...)
        labels: {team: serving}     # copied onto every alert of the service
        selector: {job: inference}  # its scrape targets (default job=<name>)
        group_by: [cluster]         # overrides alerting.group_by for this service
        slos:                       # may be empty: resource alerts only
          - name: availability
            objective: 99.9         # percent
            window: 30d
            enabled: true           # false: generate nothing for it
            record_only: false      # true: recording rules and dashboards, no alerts
            group_by: [cluster]     # overrides the service's
            sli: {availability: {}} # or latency: {threshold: 0.2}, cold_start: {},
                                    # cache_hit: {selector: {function: f}},
                                    # raw: {errors: 'PromQL [$window]', total: '...'}
            alerting: {no_data: true, tiers: [{severity: page, burn_rate: 3, long_window: 1h}]}
        autoscaling: {...}          # KEDA/HPA objects (jaxobs.slo.kube_spec, docs/autoscaling.md)
        canary: {...}               # an Argo Rollouts AnalysisTemplate (same)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from jaxobs.slo.fields import Context as _Context
from jaxobs.slo.fields import SpecError
from jaxobs.slo.fields import boolean as _boolean
from jaxobs.slo.fields import duration_field as _duration
from jaxobs.slo.fields import kind_of as _kind
from jaxobs.slo.fields import label_names as _label_names
from jaxobs.slo.fields import labels as _labels
from jaxobs.slo.fields import mapping as _mapping
from jaxobs.slo.fields import nonempty_list as _list
from jaxobs.slo.fields import number as _number
from jaxobs.slo.fields import string as _string
from jaxobs.slo.kube_spec import parse_autoscaling, parse_canary
from jaxobs.slo.load import read_spec_text, safe_compose_load
from jaxobs.slo.model import (
    SEVERITY_LABELS,
    SLO,
    BurnRateTier,
    Dashboards,
    Outputs,
    ResourceThresholds,
    Routing,
    Service,
    Spec,
    default_tiers,
)
from jaxobs.slo.sli_spec import SLI_KINDS, SLI_OWN_LABELS, parse_sli
from jaxobs.slo.tiers_spec import SEVERITIES, check_tiers_fit, parse_tiers

__all__ = ["API_VERSION", "KIND", "RESERVED_LABELS", "SEVERITIES", "SLI_KINDS", "SLI_OWN_LABELS",
           "SpecError", "load_spec", "parse_spec"]

API_VERSION = "jaxobs/v1"
KIND = "SLOSpec"
#: Labels the generators set themselves; user labels may not shadow them.
RESERVED_LABELS: frozenset[str] = frozenset(
    {"alertname", "severity", "service", "slo", "sli", "window", "category", "low_traffic"})
#: Labels an SLO cannot be grouped by: they identify the SLO or the rule itself.
GROUP_RESERVED: frozenset[str] = frozenset(
    {"alertname", "severity", "service", "slo", "sli", "window", "category", "le"})

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_URL = re.compile(r"^https?://\S+$")


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate the spec at ``path``."""
    source = str(path)
    try:
        text = read_spec_text(path)
    except FileNotFoundError:
        raise SpecError(source, "(file)", "no such file",
                        "check the path, or start from examples/slo.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(source, "(file)", f"cannot read it ({exc.__class__.__name__}: {exc})",
                        "make it a readable UTF-8 text file") from None
    return parse_spec(text, source)


def parse_spec(text: str, source: str = "<memory>") -> Spec:
    """Validate YAML ``text`` (``source`` names it in messages) into a :class:`Spec`."""
    try:
        node, data = safe_compose_load(text, source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, "(document)", f"YAML syntax error: {problem}",
                        "fix the YAML at that line (indentation, quoting, a missing ':')",
                        line=mark.line + 1 if mark else None) from None
    ctx = _Context(source)
    if node is not None:
        ctx.index(node, "")
    if data is None:
        ctx.fail("(document)", "the file is empty",
                 f"start with 'apiVersion: {API_VERSION}', 'kind: {KIND}' and 'services:'")
    return _spec(ctx, data)


# --------------------------------------------------------------------------- sections


def _spec(ctx: _Context, data: Any) -> Spec:
    top = _mapping(ctx, data, "", ("apiVersion", "kind", "runbook_base_url", "alerting",
                                   "outputs", "resources", "dashboards", "services"),
                   required=("apiVersion", "kind", "services"))
    if top["apiVersion"] != API_VERSION:
        ctx.fail("apiVersion", f"unsupported apiVersion {top['apiVersion']!r}",
                 f"use 'apiVersion: {API_VERSION}'")
    if top["kind"] != KIND:
        ctx.fail("kind", f"unsupported kind {top['kind']!r}", f"use 'kind: {KIND}'")
    alerting = _mapping(ctx, top.get("alerting"), "alerting",
                        ("tiers", "receivers", "group_by", "severity_labels"))
    defaults = _Defaults(
        tiers=(parse_tiers(ctx, alerting["tiers"], "alerting.tiers")
               if "tiers" in alerting else None),
        group_by=_label_names(ctx, alerting.get("group_by"), "alerting.group_by", GROUP_RESERVED))
    services_raw = _list(ctx, top["services"], "services", "services",
                         "add at least one service with 'name:' (and usually 'slos:')")
    services = tuple(_service(ctx, raw, f"services[{i}]", defaults)
                     for i, raw in enumerate(services_raw))
    _unique(ctx, [s.name for s in services], "services", "name", "service names must be unique")
    _unique(ctx, [s.target_selector for s in services], "services", "selector",
            "give each service its own scrape-target selector, or resource alerts fire twice")
    kwargs: dict[str, Any] = {}
    if top.get("runbook_base_url") is not None:
        url = _string(ctx, top["runbook_base_url"], "runbook_base_url", _URL,
                      "use an http(s) URL of the directory holding <AlertName>.md")
        kwargs["runbook_base_url"] = url.rstrip("/")
    return Spec(services=services,
                resources=_resources(ctx, top.get("resources")),
                dashboards=_dashboards(ctx, top.get("dashboards")),
                routing=_routing(ctx, alerting.get("receivers")),
                outputs=_outputs(ctx, top.get("outputs"), alerting.get("severity_labels")),
                source=ctx.source, **kwargs)


class _Defaults:
    """What the spec-wide ``alerting`` section hands down to services and SLOs."""

    def __init__(self, tiers: tuple[BurnRateTier, ...] | None, group_by: tuple[str, ...]):
        self.tiers = tiers
        self.group_by = group_by


def _unique(ctx: _Context, values: list[Any], path: str, field_name: str, fix: str) -> None:
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            shown = value if isinstance(value, str) else dict(value)
            ctx.fail(f"{path}[{i}].{field_name}",
                     f"duplicate {field_name} {shown!r} (also {path}[{seen[value]}])", fix)
        seen[value] = i


def _service(ctx: _Context, raw: Any, path: str, defaults: _Defaults) -> Service:
    body = _mapping(ctx, raw, path, ("name", "labels", "selector", "group_by", "slos",
                                     "autoscaling", "canary"), required=("name",))
    name = _string(ctx, body["name"], f"{path}.name", _SERVICE_NAME,
                   "use the `service` label of jaxobs.request(...): letters, digits, '_', '.', '-' (at most 63)")
    group_by = (_label_names(ctx, body["group_by"], f"{path}.group_by", GROUP_RESERVED)
                if "group_by" in body else defaults.group_by)
    slos_raw = body.get("slos") or []
    if not isinstance(slos_raw, list):
        ctx.fail(f"{path}.slos", f"expected a list of SLOs, got {_kind(slos_raw)}",
                 "add SLOs with 'name:', 'objective:' and 'sli:', or '[]' for none")
    slos = tuple(_slo(ctx, raw_slo, f"{path}.slos[{i}]", defaults, group_by)
                 for i, raw_slo in enumerate(slos_raw))
    _unique(ctx, [s.name for s in slos], f"{path}.slos", "name",
            "SLO names must be unique within a service (they label the rules and alerts)")
    return Service(name=name, slos=tuple(s for s in slos if s.enabled),
                   labels=_labels(ctx, body.get("labels"), f"{path}.labels", RESERVED_LABELS),
                   selector=_labels(ctx, body.get("selector"), f"{path}.selector"),
                   group_by=group_by,
                   autoscaling=(parse_autoscaling(ctx, body["autoscaling"], f"{path}.autoscaling",
                                                  name) if body.get("autoscaling") else None),
                   canary=(parse_canary(ctx, body["canary"], f"{path}.canary")
                           if "canary" in body else None))


def _slo(ctx: _Context, raw: Any, path: str, defaults: _Defaults,
         service_group_by: tuple[str, ...]) -> SLO:
    body = _mapping(ctx, raw, path, ("name", "objective", "window", "description", "labels",
                                     "sli", "alerting", "group_by", "enabled", "record_only"),
                    required=("name", "objective", "sli"))
    name = _string(ctx, body["name"], f"{path}.name", _NAME,
                   "use lower-case letters, digits, '_' and '-' (at most 63), e.g. 'availability'")
    objective = _number(ctx, body["objective"], f"{path}.objective", 0, 100,
                        "write the target as a percentage strictly between 0 and 100, e.g. 99.9",
                        high_open=True)
    if objective <= 1:
        ctx.fail(f"{path}.objective", f"{objective!r} looks like a ratio, but objectives are percent",
                 f"write {objective * 100:g} for {objective * 100:g}%")
    window = _duration(ctx, body.get("window", "30d"), f"{path}.window")
    description = body.get("description", "")
    if not isinstance(description, str):
        ctx.fail(f"{path}.description", f"expected a string, got {_kind(description)}", "quote it")
    sli = parse_sli(ctx, body["sli"], f"{path}.sli")
    alerting = _mapping(ctx, body.get("alerting"), f"{path}.alerting", ("tiers", "no_data"))
    tiers_path: str | None
    if "tiers" in alerting:
        tiers = parse_tiers(ctx, alerting["tiers"], f"{path}.alerting.tiers")
        tiers_path = f"{path}.alerting.tiers"
    elif defaults.tiers is not None:
        tiers, tiers_path = defaults.tiers, "alerting.tiers"
    else:
        tiers, tiers_path = default_tiers(window), None
    flags: dict[str, bool] = {key: _boolean(ctx, body[key], f"{path}.{key}")
             for key in ("enabled", "record_only") if key in body}
    if "no_data" in alerting:
        flags["no_data"] = _boolean(ctx, alerting["no_data"], f"{path}.alerting.no_data")
    slo = SLO(name=name, objective=float(objective), sli=sli, window=window,
              description=description, tiers=tiers,
              labels=_labels(ctx, body.get("labels"), f"{path}.labels", RESERVED_LABELS),
              group_by=(_label_names(ctx, body["group_by"], f"{path}.group_by", GROUP_RESERVED)
                        if "group_by" in body else service_group_by),
              **flags)
    _check_group_by(ctx, slo, path)
    if slo.alerting:
        check_tiers_fit(ctx, slo, path, tiers_path)
    return slo


def _check_group_by(ctx: _Context, slo: SLO, path: str) -> None:
    """A built-in SLI matches some labels itself; grouping by them would split the SLI."""
    own = SLI_OWN_LABELS.get(slo.sli.kind, frozenset())
    clash = sorted(set(slo.group_by) & own)
    if clash:
        ctx.fail(f"{path}.group_by", f"the {slo.sli.kind} SLI already matches on "
                 f"{', '.join(clash)}", "group by labels of the targets, e.g. cluster or env")



_RESOURCE_RULES: dict[str, Callable[[_Context, Any, str], Any]] = {
    "device_memory_ratio": lambda c, v, p: float(_number(c, v, p, 0, 1, "use a ratio, e.g. 0.8")),
    "cache_hit_ratio": lambda c, v, p: float(_number(c, v, p, 0, 1, "use a ratio, e.g. 0.95")),
    "cold_start_ratio": lambda c, v, p: float(_number(c, v, p, 0, 1, "use a ratio, e.g. 0.01")),
    "recompiles_per_minute": lambda c, v, p: float(_number(c, v, p, 0, 1e9, "use e.g. 10")),
    "concurrent_compiling_replicas": lambda c, v, p: int(_number(
        c, v, p, 2, 1e6, "use an integer of at least 2", low_open=False, integer=True)),
    "ratio_min_events": lambda c, v, p: int(_number(
        c, v, p, 0, 1e12, "use a non-negative integer, e.g. 100", low_open=False, integer=True)),
    "oom_instance_ratio": lambda c, v, p: float(_number(c, v, p, 0, 1, "use a ratio, e.g. 0.5")),
    "deploy_grace_window": _duration,
    "deploy_max_duration": _duration,
    "nonfinite_outputs": _boolean,
    "canary_mismatch": _boolean,
    "gpu_throttled": _boolean,
    "gpu_throttle_ratio": lambda c, v, p: float(_number(c, v, p, 0, 1, "use a ratio, e.g. 0.5")),
}


def _resources(ctx: _Context, raw: Any) -> ResourceThresholds:
    names = tuple(f.name for f in fields(ResourceThresholds))
    body = _mapping(ctx, raw, "resources", names)
    return ResourceThresholds(**{k: _RESOURCE_RULES[k](ctx, v, f"resources.{k}")
                                 for k, v in body.items()})


def _dashboards(ctx: _Context, raw: Any) -> Dashboards:
    body = _mapping(ctx, raw, "dashboards", tuple(f.name for f in fields(Dashboards)))
    kwargs: dict[str, Any] = {}
    if "accelerator_cost_per_hour" in body:
        kwargs["accelerator_cost_per_hour"] = float(_number(
            ctx, body["accelerator_cost_per_hour"], "dashboards.accelerator_cost_per_hour", 0, 1e9,
            "use the price of one accelerator-hour, e.g. 2.5", low_open=False))
    if "currency" in body:
        kwargs["currency"] = _string(ctx, body["currency"], "dashboards.currency",
                                     re.compile(r"^[A-Z]{3}$"), "use an ISO 4217 code, e.g. USD")
    if "trace_url" in body:
        kwargs["trace_url"] = _string(
            ctx, body["trace_url"], "dashboards.trace_url",
            re.compile(r"^https?://[^\s]*\$\{__value\.raw\}[^\s]*$"),
            "use an http(s) URL with ${__value.raw} where the trace id goes, "
            "e.g. http://jaeger:16686/trace/${__value.raw}")
    return Dashboards(**kwargs)


def _routing(ctx: _Context, raw: Any) -> Routing:
    body = _mapping(ctx, raw, "alerting.receivers", SEVERITIES)
    kwargs = {}
    for severity in SEVERITIES:
        if severity in body:
            sub = f"alerting.receivers.{severity}"
            receiver: Mapping[str, Any] = _mapping(ctx, body[severity], sub, ("webhook_url",),
                                                   required=("webhook_url",))
            kwargs[f"{severity}_webhook_url"] = _string(
                ctx, receiver["webhook_url"], f"{sub}.webhook_url", _URL,
                "use an http(s) URL, e.g. http://127.0.0.1:9095/page")
    return Routing(**kwargs)


_OUTPUT_KEYS = ("grafana_url", "prometheus_rule_labels")


def _outputs(ctx: _Context, raw: Any, severity_raw: Any) -> Outputs:
    body = _mapping(ctx, raw, "outputs", _OUTPUT_KEYS)
    kwargs: dict[str, Any] = {}
    if body.get("grafana_url") is not None:
        kwargs["grafana_url"] = _string(ctx, body["grafana_url"], "outputs.grafana_url", _URL,
                                        "use the http(s) base URL of Grafana, e.g. "
                                        "http://grafana:3000").rstrip("/")
    if "prometheus_rule_labels" in body:
        kwargs["prometheus_rule_labels"] = _labels(
            ctx, body["prometheus_rule_labels"], "outputs.prometheus_rule_labels")
    if severity_raw is not None:
        kwargs["severity_labels"] = _severity_labels(ctx, severity_raw)
    return Outputs(**kwargs)


def _severity_labels(ctx: _Context, raw: Any) -> tuple[tuple[str, str], ...]:
    """``page-ticket``, ``critical-warning`` or an explicit ``{page: .., ticket: ..}``."""
    path = "alerting.severity_labels"
    if isinstance(raw, str):
        if raw not in SEVERITY_LABELS:
            ctx.fail(path, f"unknown severity convention {raw!r}",
                     f"use one of: {', '.join(SEVERITY_LABELS)}, or a mapping "
                     "'{page: critical, ticket: warning}'")
        return tuple(SEVERITY_LABELS[raw].items())
    body = _mapping(ctx, raw, path, SEVERITIES, required=SEVERITIES)
    values = {sev: _string(ctx, body[sev], f"{path}.{sev}", re.compile(r"^[A-Za-z0-9_.-]+$"),
                           "use a plain word, e.g. critical") for sev in SEVERITIES}
    if values["page"] == values["ticket"]:
        ctx.fail(f"{path}.ticket", "pages and tickets would carry the same severity",
                 "give them different values, or Alertmanager cannot route them apart")
    return tuple(values.items())
