"""Parse and validate an SLO spec (YAML, ``apiVersion: jaxobs/v1``) into the model.

Why a hand-written validator instead of a schema library: every mistake must
come back as *one* line naming the file, the line, the field path
(``services[0].slos[1].objective``) and the fix — the person reading it is an
on-call engineer editing YAML, not a Python developer reading a traceback.
All problems raise :class:`SpecError`; nothing else escapes :func:`load_spec`.

The accepted format, with every default::

    apiVersion: jaxobs/v1
    kind: SLOSpec
    runbook_base_url: https://github.com/jaxobs/jaxobs/blob/main/runbooks
    alerting:                       # optional, spec-wide
      tiers:                        # default burn-rate tiers of every SLO
        - {severity: page, burn_rate: 14.4, long_window: 1h, short_window: 5m, for: 2m}
      receivers:
        page: {webhook_url: http://127.0.0.1:9095/page}
        ticket: {webhook_url: http://127.0.0.1:9096/ticket}
    resources: {device_memory_ratio: 0.8, ...}   # ResourceThresholds fields
    dashboards: {accelerator_cost_per_hour: 2.5, currency: USD}
    services:
      - name: inference             # the `service` label of jaxobs.request(...)
        labels: {team: serving}     # copied onto every alert of the service
        selector: {job: inference}  # its scrape targets (default job=<name>)
        slos:
          - name: availability
            objective: 99.9         # percent
            window: 30d
            sli: {availability: {}} # or latency: {threshold: 0.2}, cold_start: {},
                                    # cache_hit: {selector: {function: f}},
                                    # raw: {errors: 'PromQL [$window]', total: '...'}
            alerting: {tiers: [{severity: page, burn_rate: 3, long_window: 1h}]}
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from jaxobs import catalog
from jaxobs.slo import duration
from jaxobs.slo.load import read_spec_text, safe_compose_load
from jaxobs.slo.model import (
    DEFAULT_TIERS,
    SLI,
    SLO,
    BurnRateTier,
    Dashboards,
    ResourceThresholds,
    Routing,
    Service,
    Spec,
)

API_VERSION = "jaxobs/v1"
KIND = "SLOSpec"
SLI_KINDS: tuple[str, ...] = ("availability", "latency", "cold_start", "cache_hit", "raw")
SEVERITIES: tuple[str, ...] = ("page", "ticket")
#: Labels the generators set themselves; user labels may not shadow them.
RESERVED_LABELS: frozenset[str] = frozenset(
    {"alertname", "severity", "service", "slo", "sli", "window", "category"})
#: Labels a built-in SLI already matches on; a selector may not override them.
SLI_OWN_LABELS: dict[str, frozenset[str]] = {
    "availability": frozenset({"service", "outcome"}),
    "latency": frozenset({"service", "start", "le"}),
    "cold_start": frozenset({"service", "start"}),
    "cache_hit": frozenset({"cache"}),
}
#: The short window of a tier defaults to long/12 (SRE workbook, ch. 5).
SHORT_WINDOW_DIVISOR = 12
DEFAULT_FOR = "2m"

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_URL = re.compile(r"^https?://\S+$")


class SpecError(ValueError):
    """An invalid spec: the message names the file, line, field path and the fix."""

    def __init__(self, source: str, path: str, problem: str, fix: str, line: int | None = None):
        self.source, self.path, self.problem, self.fix, self.line = source, path, problem, fix, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {path}: {problem}. Fix: {fix}")


# --------------------------------------------------------------------------- loading


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


# --------------------------------------------------------------------------- context


class _Context:
    """Where we are: the file, and the line of every field path (for messages)."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[str, int] = {}

    def index(self, node: yaml.Node, path: str) -> None:
        """Record the line of every path and reject duplicate keys (YAML keeps the last)."""
        self.lines.setdefault(path or "(document)", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                if key in seen:
                    self.fail(child, f"duplicate key {key!r}", "keep one of them",
                              line=key_node.start_mark.line + 1)
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self.index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.index(item, f"{path}[{i}]")

    def line_of(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
            if parent == path:  # a top-level key
                break
            path = parent
        return self.lines.get("(document)")

    def fail(self, path: str, problem: str, fix: str, line: int | None = None) -> Any:
        raise SpecError(self.source, path or "(document)", problem, fix,
                        line=line or self.line_of(path))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- primitives


def _mapping(ctx: _Context, value: Any, path: str, allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping, got {_kind(value)}",
                 f"write it as 'key: value' lines (allowed keys: {', '.join(allowed)})")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            ctx.fail(_join(path, str(key)), f"unknown key {key!r}", hint)
    for key in required:
        if value.get(key) is None:
            ctx.fail(_join(path, key), "is required", f"add '{key}:' under {path or 'the top level'}")
    return value


def _kind(value: Any) -> str:
    return {type(None): "nothing", bool: "a boolean", int: "a number", float: "a number",
            str: "a string", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _string(ctx: _Context, value: Any, path: str, pattern: re.Pattern[str] | None = None,
            fix: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        ctx.fail(path, f"expected a non-empty string, got {_kind(value)}", fix or "quote the value")
    if pattern is not None and not pattern.fullmatch(value):
        ctx.fail(path, f"{value!r} is not allowed here", fix)
    return value


def _number(ctx: _Context, value: Any, path: str, low: float, high: float, fix: str,
            low_open: bool = True, high_open: bool = False, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        ctx.fail(path, f"expected {'an integer' if integer else 'a number'}, got {_kind(value)} "
                       f"{value!r}", fix)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        ctx.fail(path, f"{value!r} is out of range {lo}{low:g}, {high:g}{hi}", fix)
    return value


def _duration(ctx: _Context, value: Any, path: str) -> str:
    if not isinstance(value, str):
        ctx.fail(path, f"expected a duration string, got {_kind(value)} {value!r}",
                 "quote a number with a unit, e.g. '5m', '1h', '30d'")
    try:
        return duration.canonical(value)
    except ValueError as exc:
        return ctx.fail(path, f"bad duration: {exc}", "use e.g. 5m, 1h, 6h, 1d, 30d")


def _labels(ctx: _Context, value: Any, path: str, reserved: frozenset[str] = frozenset()
            ) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping of label names to values, got {_kind(value)}",
                 "write e.g. 'team: serving'")
    out = []
    for key, val in value.items():
        sub = _join(path, str(key))
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
            ctx.fail(sub, f"{key!r} is not a valid Prometheus label name",
                     "use letters, digits and underscores, not starting with a digit or '__'")
        if key in reserved:
            ctx.fail(sub, f"label {key!r} is set by jaxobs itself",
                     f"rename it (reserved here: {', '.join(sorted(reserved))})")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            ctx.fail(sub, f"expected a label value (string), got {_kind(val)}", "quote the value")
        out.append((key, str(val)))
    return tuple(sorted(out))


def _list(ctx: _Context, value: Any, path: str, what: str, fix: str) -> list[Any]:
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of {what}, got {_kind(value)}", fix)
    if not value:
        ctx.fail(path, f"the list of {what} is empty", fix)
    return value


# --------------------------------------------------------------------------- sections


def _spec(ctx: _Context, data: Any) -> Spec:
    top = _mapping(ctx, data, "", ("apiVersion", "kind", "runbook_base_url", "alerting",
                                   "resources", "dashboards", "services"),
                   required=("apiVersion", "kind", "services"))
    if top["apiVersion"] != API_VERSION:
        ctx.fail("apiVersion", f"unsupported apiVersion {top['apiVersion']!r}",
                 f"use 'apiVersion: {API_VERSION}'")
    if top["kind"] != KIND:
        ctx.fail("kind", f"unsupported kind {top['kind']!r}", f"use 'kind: {KIND}'")
    alerting = _mapping(ctx, top.get("alerting"), "alerting", ("tiers", "receivers"))
    default_tiers = (_tiers(ctx, alerting["tiers"], "alerting.tiers")
                     if "tiers" in alerting else None)
    services_raw = _list(ctx, top["services"], "services", "services",
                         "add at least one service with 'name:' and 'slos:'")
    services = tuple(_service(ctx, raw, f"services[{i}]", default_tiers)
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
                source=ctx.source, **kwargs)


def _unique(ctx: _Context, values: list[Any], path: str, field_name: str, fix: str) -> None:
    seen: dict[Any, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            shown = value if isinstance(value, str) else dict(value)
            ctx.fail(f"{path}[{i}].{field_name}",
                     f"duplicate {field_name} {shown!r} (also {path}[{seen[value]}])", fix)
        seen[value] = i


def _service(ctx: _Context, raw: Any, path: str, default_tiers: tuple[BurnRateTier, ...] | None
             ) -> Service:
    body = _mapping(ctx, raw, path, ("name", "labels", "selector", "slos"),
                    required=("name", "slos"))
    name = _string(ctx, body["name"], f"{path}.name", _SERVICE_NAME,
                   "use the `service` label of jaxobs.request(...): letters, digits, '_', '.', '-' "
                   "(at most 63)")
    slos_raw = _list(ctx, body["slos"], f"{path}.slos", "SLOs",
                     "add at least one SLO with 'name:', 'objective:' and 'sli:'")
    slos = tuple(_slo(ctx, raw_slo, f"{path}.slos[{i}]", default_tiers)
                 for i, raw_slo in enumerate(slos_raw))
    _unique(ctx, [s.name for s in slos], f"{path}.slos", "name",
            "SLO names must be unique within a service (they label the rules and alerts)")
    return Service(name=name, slos=slos,
                   labels=_labels(ctx, body.get("labels"), f"{path}.labels", RESERVED_LABELS),
                   selector=_labels(ctx, body.get("selector"), f"{path}.selector"))


def _slo(ctx: _Context, raw: Any, path: str, default_tiers: tuple[BurnRateTier, ...] | None) -> SLO:
    body = _mapping(ctx, raw, path, ("name", "objective", "window", "description", "labels",
                                     "sli", "alerting"), required=("name", "objective", "sli"))
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
    sli = _sli(ctx, body["sli"], f"{path}.sli")
    alerting = _mapping(ctx, body.get("alerting"), f"{path}.alerting", ("tiers",))
    if "tiers" in alerting:
        tiers = _tiers(ctx, alerting["tiers"], f"{path}.alerting.tiers")
        tiers_path = f"{path}.alerting.tiers"
    else:
        tiers = default_tiers if default_tiers is not None else DEFAULT_TIERS
        tiers_path = "alerting.tiers" if default_tiers is not None else None
    slo = SLO(name=name, objective=float(objective), sli=sli, window=window,
              description=description, tiers=tiers,
              labels=_labels(ctx, body.get("labels"), f"{path}.labels", RESERVED_LABELS))
    _check_tiers_fit(ctx, slo, path, tiers_path)
    return slo


def _check_tiers_fit(ctx: _Context, slo: SLO, path: str, tiers_path: str | None) -> None:
    """Tiers must be reachable: a burn that needs an error ratio above 100% never fires.

    ``tiers_path`` is None when the SLO uses the built-in default tiers; the
    message then points at the SLO's own field and says how to override.
    """
    for i, tier in enumerate(slo.tiers):
        which = f"tier {i} ({tier.severity} {tier.factor:g}x over {tier.long_window})"
        where = "" if tiers_path else f" of the default {which}"
        override = "" if tiers_path else f", or set {path}.alerting.tiers"
        needed = tier.factor * slo.error_budget_ratio
        if needed >= 1:
            ctx.fail(f"{tiers_path}[{i}].burn_rate" if tiers_path else f"{path}.objective",
                     f"a {tier.factor:g}x burn{where} of the {slo.error_budget_ratio:.6g} error "
                     f"budget of {path} needs an error ratio of {needed:.0%}, so the alert can "
                     f"never fire",
                     f"raise the objective or use a burn_rate below {1 / slo.error_budget_ratio:g}"
                     f"{override}")
        if duration.seconds(tier.long_window) > duration.seconds(slo.window):
            ctx.fail(f"{tiers_path}[{i}].long_window" if tiers_path else f"{path}.window",
                     f"long_window {tier.long_window}{where} is longer than the SLO window "
                     f"{slo.window} of {path}",
                     f"use a longer SLO window or a shorter long_window{override}")


def _sli(ctx: _Context, raw: Any, path: str) -> SLI:
    body = _mapping(ctx, raw, path, SLI_KINDS)
    present = [k for k in SLI_KINDS if k in body]
    if not present:
        ctx.fail(path, "empty SLI", f"set exactly one of: {', '.join(SLI_KINDS)} "
                                    "(e.g. 'sli: {availability: {}}')")
    if len(present) > 1:
        ctx.fail(path, f"several SLI kinds ({', '.join(present)})",
                 "an SLO measures one SLI; split it into one SLO per kind")
    kind = present[0]
    sub = f"{path}.{kind}"
    if kind == "raw":
        raw_body = _mapping(ctx, body[kind], sub, ("errors", "total"), required=("errors", "total"))
        queries = {}
        for key in ("errors", "total"):
            query = _string(ctx, raw_body[key], f"{sub}.{key}",
                            fix="write a PromQL query over your own metrics")
            if "$window" not in query:
                ctx.fail(f"{sub}.{key}", "the query has no '$window' placeholder",
                         "use '$window' as the range, e.g. 'sum(rate(my_errors_total[$window]))', "
                         "so each alert window gets its own rate")
            _check_metric_names(ctx, query, f"{sub}.{key}")
            queries[key] = query.strip()
        return SLI(kind="raw", errors_query=queries["errors"], total_query=queries["total"])
    allowed = ("threshold", "selector") if kind == "latency" else ("selector",)
    kind_body = _mapping(ctx, body[kind], sub, allowed,
                         required=("threshold",) if kind == "latency" else ())
    selector = _labels(ctx, kind_body.get("selector"), f"{sub}.selector", SLI_OWN_LABELS[kind])
    threshold = None
    if kind == "latency":
        threshold = _threshold(ctx, kind_body["threshold"], f"{sub}.threshold")
    return SLI(kind=kind, threshold_seconds=threshold, selector=selector)  # type: ignore[arg-type]


def _threshold(ctx: _Context, value: Any, path: str) -> float:
    """Seconds (a number, or a string like '200ms') that must be a histogram bucket bound."""
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text[:-2]) / 1000 if text.endswith("ms") else (
                float(text[:-1]) if text.endswith("s") else float(text))
        except ValueError:
            seconds = None
    valid = ", ".join(f"{b:g}" for b in catalog.LATENCY_BUCKETS)
    if seconds is None:
        ctx.fail(path, f"{value!r} is not a latency", "write seconds, e.g. 0.2, or '200ms'")
    for bucket in catalog.LATENCY_BUCKETS:
        if abs(bucket - seconds) <= 1e-9 * max(1.0, bucket):
            return bucket
    return ctx.fail(path, f"{seconds:g}s is not a bucket bound of "
                          f"{catalog.REQUEST_DURATION.name}, so the SLI could not be exact",
                    f"pick one of: {valid} (seconds)")


_JAXOBS_NAME = re.compile(r"\bjaxobs_[a-z0-9_]+")
_SERIES_SUFFIXES = ("_bucket", "_sum", "_count")


def _check_metric_names(ctx: _Context, query: str, path: str) -> None:
    """A raw query may use jaxobs metrics, but only names the catalog defines."""
    for name in _JAXOBS_NAME.findall(query):
        base = next((name[: -len(sfx)] for sfx in _SERIES_SUFFIXES
                     if name.endswith(sfx) and name[: -len(sfx)] in catalog.METRICS), name)
        if base in catalog.METRICS or name.startswith("jaxobs_slo"):
            continue
        close = difflib.get_close_matches(name, list(catalog.METRICS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "see jaxobs/catalog.py for the metric names"
        ctx.fail(path, f"unknown jaxobs metric {name!r}", hint)


def _tiers(ctx: _Context, raw: Any, path: str) -> tuple[BurnRateTier, ...]:
    items = _list(ctx, raw, path, "burn-rate tiers",
                  "add e.g. '- {severity: page, burn_rate: 3, long_window: 1h}'")
    tiers = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        sub = f"{path}[{i}]"
        body = _mapping(ctx, item, sub, ("severity", "burn_rate", "long_window", "short_window",
                                         "for"), required=("severity", "burn_rate", "long_window"))
        severity = body["severity"]
        if severity not in SEVERITIES:
            close = difflib.get_close_matches(str(severity), SEVERITIES, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            ctx.fail(f"{sub}.severity", f"unknown severity {severity!r}",
                     f"{hint}use one of: {', '.join(SEVERITIES)}")
        factor = _number(ctx, body["burn_rate"], f"{sub}.burn_rate", 0, 1e6,
                         "a burn rate is how many times faster than sustainable, e.g. 14.4 or 3")
        long_window = _duration(ctx, body["long_window"], f"{sub}.long_window")
        if "short_window" in body:
            short_window = _duration(ctx, body["short_window"], f"{sub}.short_window")
        else:
            short_window = duration.divide(long_window, SHORT_WINDOW_DIVISOR)
        if duration.seconds(short_window) >= duration.seconds(long_window):
            ctx.fail(f"{sub}.short_window",
                     f"short_window {short_window} is not shorter than long_window {long_window}",
                     f"make it shorter (the usual choice is long/12, here "
                     f"{duration.divide(long_window, SHORT_WINDOW_DIVISOR)})")
        for_ = body.get("for", DEFAULT_FOR)
        if for_ in ("0", "0s", "0m", 0):
            for_ = "0s"
        else:
            for_ = _duration(ctx, for_, f"{sub}.for")
        key = (severity, long_window)
        if key in seen:
            ctx.fail(f"{sub}.long_window", f"a second {severity} tier over {long_window} "
                     f"(also {path}[{seen[key]}]); their alerts would collide",
                     "merge them or use another long_window")
        seen[key] = i
        tiers.append(BurnRateTier(severity=severity, factor=float(factor), long_window=long_window,
                                  short_window=short_window, for_=for_))
    return tuple(tiers)


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
