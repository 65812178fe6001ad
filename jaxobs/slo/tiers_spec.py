"""Validation of burn-rate tiers (``alerting.tiers``) and of their fit to an SLO."""

from __future__ import annotations

import difflib
import re
from typing import Any

from jaxobs.slo import duration
from jaxobs.slo.fields import Context as _Context
from jaxobs.slo.fields import duration_field as _duration
from jaxobs.slo.fields import labels as _labels
from jaxobs.slo.fields import mapping as _mapping
from jaxobs.slo.fields import nonempty_list as _list
from jaxobs.slo.fields import number as _number
from jaxobs.slo.model import DEFAULT_MIN_EVENTS, SLO, BurnRateTier

SEVERITIES: tuple[str, ...] = ("page", "ticket")
LOW_TRAFFIC: tuple[str, ...] = ("ticket", "silent")
#: The short window of a tier defaults to long/12 (SRE workbook, ch. 5).
SHORT_WINDOW_DIVISOR = 12
DEFAULT_FOR = "2m"
#: Labels a tier may not set (the generator sets them).
TIER_RESERVED_LABELS: frozenset[str] = frozenset(
    {"alertname", "severity", "service", "slo", "sli", "window", "category", "low_traffic"})
_ZERO = re.compile(r"^(0+[wdhms]?)+$")
_TIER_KEYS = ("severity", "burn_rate", "long_window", "short_window", "for", "min_events",
              "low_traffic", "labels")


def _for(ctx: _Context, value: Any, path: str) -> str:
    """A tier's ``for``: any duration, zero included (``0``, ``0s``, ``0h`` fire at once)."""
    if value == 0 or (isinstance(value, str) and _ZERO.match(value.strip())):
        return "0s"
    return _duration(ctx, value, path)


def _choice(ctx: _Context, value: Any, path: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        ctx.fail(path, f"unknown {what} {value!r}", f"{hint}use one of: {', '.join(allowed)}")
    return str(value)


def parse_tiers(ctx: _Context, raw: Any, path: str) -> tuple[BurnRateTier, ...]:
    items = _list(ctx, raw, path, "burn-rate tiers",
                  "add e.g. '- {severity: page, burn_rate: 3, long_window: 1h}'")
    tiers = []
    seen: dict[tuple[str, str], int] = {}
    for i, item in enumerate(items):
        sub = f"{path}[{i}]"
        body = _mapping(ctx, item, sub, _TIER_KEYS,
                        required=("severity", "burn_rate", "long_window"))
        severity = _choice(ctx, body["severity"], f"{sub}.severity", SEVERITIES, "severity")
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
        min_events = int(_number(ctx, body.get("min_events", DEFAULT_MIN_EVENTS),
                                 f"{sub}.min_events", 0, 1e12,
                                 "use a non-negative integer, e.g. 100 (0 turns the guard off)",
                                 low_open=False, integer=True))
        low_traffic = _choice(ctx, body.get("low_traffic", "ticket"), f"{sub}.low_traffic",
                              LOW_TRAFFIC, "low-traffic action")
        key = (severity, long_window)
        if key in seen:
            ctx.fail(f"{sub}.long_window", f"a second {severity} tier over {long_window} "
                     f"(also {path}[{seen[key]}]); their alerts would collide",
                     "merge them or use another long_window")
        seen[key] = i
        tiers.append(BurnRateTier(
            severity=severity,  # type: ignore[arg-type]
            factor=float(factor), long_window=long_window, short_window=short_window,
            for_=_for(ctx, body.get("for", DEFAULT_FOR), f"{sub}.for"), min_events=min_events,
            low_traffic=low_traffic,  # type: ignore[arg-type]
            labels=_labels(ctx, body.get("labels"), f"{sub}.labels", TIER_RESERVED_LABELS)))
    return tuple(tiers)


def check_tiers_fit(ctx: _Context, slo: SLO, path: str, tiers_path: str | None) -> None:
    """Tiers must be reachable: a burn that needs an error ratio above 100% never fires.

    ``tiers_path`` is None when the SLO uses the default tiers derived from its window;
    the message then points at the SLO's own field and says how to override.
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


def policy_warnings(slo: SLO) -> list[str]:
    """What an alerting policy misses (``jaxobs check`` prints these; they do not fail)."""
    if not slo.alerting:
        return []
    out = []
    if not any(t.severity == "ticket" for t in slo.tiers):
        out.append("no ticket tier: a slow burn that empties the budget over days never "
                   "alerts; add e.g. '{severity: ticket, burn_rate: 1, long_window: 3d}'")
    if not any(t.severity == "page" for t in slo.tiers):
        out.append("no page tier: a fast burn only files a ticket")
    return out
