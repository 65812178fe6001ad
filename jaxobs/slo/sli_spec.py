"""Validation of an SLO's ``sli:`` field: which events are bad, read from which metrics."""

from __future__ import annotations

import difflib
import re
from typing import Any

from jaxobs import catalog
from jaxobs.slo.fields import Context as _Context
from jaxobs.slo.fields import labels as _labels
from jaxobs.slo.fields import mapping as _mapping
from jaxobs.slo.fields import string as _string
from jaxobs.slo.model import SLI

SLI_KINDS: tuple[str, ...] = ("availability", "latency", "cold_start", "cache_hit", "raw")
#: Labels a built-in SLI already matches on; a selector may not override them.
SLI_OWN_LABELS: dict[str, frozenset[str]] = {
    "availability": frozenset({"service", "outcome"}),
    "latency": frozenset({"service", "start", "le"}),
    "cold_start": frozenset({"service", "start"}),
    "cache_hit": frozenset({"cache"}),
}


def parse_sli(ctx: _Context, raw: Any, path: str) -> SLI:
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
        return ctx.fail(path, f"{value!r} is not a latency", "write seconds, e.g. 0.2, or '200ms'")
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
