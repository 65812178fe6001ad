"""``jaxobs report``: latency, compile time and burn rate as a picture (PNG) or a page (HTML).

For the people who would rather look than query: a postmortem, a PR that
changed compile times, a chat message about last night's page.  Three panels:

* **latency histogram** — ``jaxobs_request_duration_seconds`` per service,
  steady and cold apart (cold requests waited for a compile);
* **compile-time breakdown** — ``jaxobs_compile_duration_seconds`` summed
  per function and phase (trace / lower / backend), since process start;
* **burn rate** — from Prometheus, the recorded
  ``jaxobs_slo:error_budget:burn_rate`` over ``--range`` (the window closest
  to range/12 per SLO), or the availability burn computed from
  ``jaxobs_requests_total`` when no SLO rules are loaded; from a snapshot,
  which has no history, the burn since process start per service.

Sources: a Prometheus query API (``--prometheus http://…``) or a metrics
snapshot (``--snapshot`` a saved ``/metrics`` text file or its URL).  The
data is gathered into a :class:`ReportData` first (plain data, tested on its
own), then rendered; matplotlib (``pip install 'jaxobs[report]'``) is
imported only to render, with the Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from jaxobs import catalog
from jaxobs.slo import duration

PHASES: tuple[str, ...] = ("trace", "lower", "backend")
#: jaxobs_slo:error_budget:burn_rate, the recording rule the generated rules write.
BURN_RATE_RULE = "jaxobs_slo:error_budget:burn_rate"
MAX_LATENCY_SERIES = 6
MAX_BURN_SERIES = 8


# --- data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """One latency series: per-bucket (not cumulative) counts; the last bound is +Inf."""

    name: str
    bounds: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def total(self) -> float:
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """Like PromQL's histogram_quantile (linear within a bucket)."""
        total = self.total
        if total <= 0:
            return math.nan
        rank, cumulative, lower = q * total, 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts):
            if count > 0 and cumulative + count >= rank:
                if math.isinf(bound):
                    return lower
                return lower + (bound - lower) * (rank - cumulative) / count
            cumulative += count
            lower = bound
        return lower


@dataclass(frozen=True)
class BurnSeries:
    """Burn rate of one SLO over time: (unix seconds, burn) points."""

    name: str
    points: tuple[tuple[float, float], ...]

    @property
    def peak(self) -> float:
        return max((v for _, v in self.points), default=0.0)


@dataclass(frozen=True)
class ReportData:
    source: str
    latency: tuple[Histogram, ...] = ()
    #: function → phase → seconds
    compile_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    burn: tuple[BurnSeries, ...] = ()
    burn_note: str = ""
    generated_at: float = field(default_factory=time.time)

    @property
    def empty(self) -> bool:
        return not (any(h.total for h in self.latency) or self.compile_seconds or self.burn)


def _histograms(rows: list[tuple[dict[str, str], float]], keys: tuple[str, ...]) -> tuple[Histogram, ...]:
    """Cumulative ``le`` buckets (label dicts with ``le``) → per-bucket histograms, busiest first."""
    grouped: dict[tuple[str, ...], dict[float, float]] = defaultdict(dict)
    for labels, value in rows:
        le = labels.get("le")
        if le is None:
            continue
        key = tuple(labels.get(k, "") for k in keys)
        bound = math.inf if le in ("+Inf", "Inf") else float(le)
        grouped[key][bound] = grouped[key].get(bound, 0.0) + value
    out = []
    for key, cumulative in grouped.items():
        bounds = tuple(sorted(cumulative))
        counts, previous = [], 0.0
        for b in bounds:
            counts.append(max(0.0, cumulative[b] - previous))
            previous = max(previous, cumulative[b])
        out.append(Histogram(" ".join(k for k in key if k), bounds, tuple(counts)))
    out.sort(key=lambda h: (-h.total, h.name))
    return tuple(h for h in out if h.total > 0)[:MAX_LATENCY_SERIES]


def _latency_rows(rows: list[tuple[str, dict[str, str], float]]) -> tuple[Histogram, ...]:
    """Request latency if there is any, else host-side call latency."""
    for metric, keys in ((catalog.REQUEST_DURATION.name, ("service", "start")),
                         (catalog.CALL_DURATION.name, ("function", "start"))):
        picked = [(labels, v) for name, labels, v in rows if name == metric + "_bucket"]
        hist = _histograms(picked, keys)
        if hist:
            return hist
    return ()


def _compile_breakdown(rows: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(PHASES, 0.0))
    for labels, value in rows:
        fn, phase = labels.get("function", "?"), labels.get("phase", "?")
        if value > 0:
            out[fn][phase] = out[fn].get(phase, 0.0) + value
    return {fn: dict(p) for fn, p in sorted(out.items(), key=lambda kv: -sum(kv[1].values()))}


# --- source: a /metrics snapshot -----------------------------------------------------


def read_snapshot(where: str) -> str:
    """The text of a saved ``/metrics`` file, or fetched from its URL."""
    if where.startswith(("http://", "https://")):
        with urllib.request.urlopen(where, timeout=10) as resp:
            return str(resp.read().decode())
    return Path(where).read_text(encoding="utf-8")


def from_snapshot(text: str, source: str, objectives: dict[str, float] | None = None,
                  default_objective: float = 99.9) -> ReportData:
    """Report data from one exposition (text format).  Burn is since process start per service."""
    from prometheus_client.parser import text_string_to_metric_families

    rows: list[tuple[str, dict[str, str], float]] = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            rows.append((s.name, dict(s.labels), float(s.value)))
    compile_rows = [(labels, v) for name, labels, v in rows
                    if name == catalog.COMPILE_DURATION.name + "_sum"]
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"ok": 0.0, "error": 0.0})
    for name, labels, v in rows:
        if name == catalog.REQUESTS.name:
            totals[labels.get("service", "")][labels.get("outcome", "ok")] += v
    now = time.time()
    burn = []
    for service, counts in sorted(totals.items()):
        total = counts["ok"] + counts["error"]
        if total <= 0:
            continue
        objective = (objectives or {}).get(service, default_objective)
        budget = 1.0 - objective / 100.0
        burn.append(BurnSeries(f"{service} (objective {objective:g}%)",
                               ((now, counts["error"] / total / budget),)))
    note = ("burn since process start: errors / requests / (1 - objective) "
            "(a snapshot has no history)")
    return ReportData(source=source, latency=_latency_rows(rows),
                      compile_seconds=_compile_breakdown(compile_rows), burn=tuple(burn),
                      burn_note=note, generated_at=now)


# --- source: Prometheus ----------------------------------------------------------------


class PrometheusAPI:
    """The two calls a report needs from Prometheus' HTTP API."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        full = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(full, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode())
        except OSError as exc:
            raise click.ClickException(f"cannot query Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise click.ClickException(f"Prometheus refused {params.get('query')!r}: {body.get('error')}")
        return body["data"]["result"]

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._get("/api/v1/query", {"query": query})]

    def series(self, query: str, start: float, end: float, step: float
               ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        result = self._get("/api/v1/query_range", {"query": query, "start": f"{start:.3f}",
                                                   "end": f"{end:.3f}", "step": f"{step:g}"})
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result]


def _pick_window(windows: list[str], range_seconds: float) -> str:
    """The burn window closest to range/12: a 1h report reads 5m burn, a day reads 2h."""
    target = range_seconds / 12
    return min(windows, key=lambda w: (abs(math.log(duration.seconds(w) / target)), duration.seconds(w)))


def from_prometheus(url: str, range_seconds: float = 3600.0, objective: float = 99.9,
                    api: PrometheusAPI | None = None) -> ReportData:
    """Report data from a Prometheus server over the last ``range_seconds``."""
    api = api or PrometheusAPI(url)
    rng = duration.canonical(max(1, int(range_seconds)))
    end = time.time()
    start = end - range_seconds
    step = max(1.0, range_seconds / 240)
    buckets = api.instant(f"sum by (service, start, le) "
                          f"(increase({catalog.REQUEST_DURATION.name}_bucket[{rng}]))")
    latency = _histograms(buckets, ("service", "start"))
    if not latency:
        calls = api.instant(f"sum by (function, start, le) "
                            f"(increase({catalog.CALL_DURATION.name}_bucket[{rng}]))")
        latency = _histograms(calls, ("function", "start"))
    compile_rows = api.instant(f"sum by (function, phase) "
                               f"(last_over_time({catalog.COMPILE_DURATION.name}_sum[{rng}]))")

    burn: list[BurnSeries] = []
    recorded = api.series(BURN_RATE_RULE, start, end, step)
    if recorded:
        by_slo: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(dict)
        for labels, points in recorded:
            by_slo[(labels.get("service", ""), labels.get("slo", ""))][labels.get("window", "")] = points
        chosen_windows = set()
        for (service, slo), windows in sorted(by_slo.items()):
            valid = [w for w in windows if _is_duration(w)]
            if not valid:
                continue
            window = _pick_window(valid, range_seconds)
            chosen_windows.add(window)
            burn.append(BurnSeries(f"{service}/{slo} ({window})", tuple(windows[window])))
        note = (f"{BURN_RATE_RULE} (recorded by jaxobs' rules), per SLO the window closest "
                f"to range/12 ({', '.join(sorted(chosen_windows, key=duration.seconds))})")
    else:
        window = duration.canonical(max(60, int(range_seconds / 12)))
        budget = 1.0 - objective / 100.0
        req = catalog.REQUESTS.name
        query = (f"sum by (service) (rate({req}{{outcome=\"error\"}}[{window}]))"
                 f" / sum by (service) (rate({req}[{window}])) / {budget:g}")
        for labels, points in api.series(query, start, end, step):
            burn.append(BurnSeries(f"{labels.get('service', '')} availability ({window})", tuple(points)))
        note = (f"no SLO rules loaded: availability burn from {req} over {window}, "
                f"objective {objective:g}%")
    burn.sort(key=lambda b: -b.peak)
    return ReportData(source=url, latency=latency, compile_seconds=_compile_breakdown(compile_rows),
                      burn=tuple(burn[:MAX_BURN_SERIES]), burn_note=note, generated_at=end)


def _is_duration(text: str) -> bool:
    try:
        duration.seconds(text)
        return True
    except ValueError:
        return False


# --- rendering -------------------------------------------------------------------------


def _seconds_label(seconds: float) -> str:
    if math.isinf(seconds):
        return "+Inf"
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


def _fit_rows(ax: Any, rows: int) -> None:
    """Keep one or two horizontal bars from filling the whole panel."""
    extra = max(0.0, (3 - rows) / 2)
    ax.set_ylim(-0.5 - extra, rows - 0.5 + extra)


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this source", ha="center", va="center",
            transform=ax.transAxes, color="0.4", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])


def _plot_latency(ax: Any, data: ReportData) -> None:
    ax.set_title("Latency histogram (requests per bucket; cold = waited for a compile)", loc="left")
    if not data.latency:
        _no_data(ax, "latency histograms")
        return
    bounds = sorted({b for h in data.latency for b in h.bounds})
    used = [b for b in bounds if any(c > 0 for h in data.latency for hb, c in zip(h.bounds, h.counts) if hb == b)]
    lo, hi = bounds.index(used[0]), bounds.index(used[-1])
    shown = bounds[max(0, lo - 1): hi + 2]
    width = 0.8 / len(data.latency)
    for i, h in enumerate(data.latency):
        counts = dict(zip(h.bounds, h.counts))
        xs = [j + (i - (len(data.latency) - 1) / 2) * width for j in range(len(shown))]
        p99 = h.quantile(0.99)
        ax.bar(xs, [counts.get(b, 0.0) for b in shown], width=width,
               label=f"{h.name}: {h.total:,.0f} (p99 ≈ {_seconds_label(p99)})")
    ax.set_xticks(range(len(shown)), [f"≤{_seconds_label(b)}" for b in shown], rotation=45, ha="right")
    ax.set_ylabel("requests")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)


def _plot_compile(ax: Any, data: ReportData) -> None:
    ax.set_title("Compile time by function and phase (since process start)", loc="left")
    if not data.compile_seconds:
        _no_data(ax, "compile-time metrics")
        return
    functions = list(data.compile_seconds)[:10][::-1]
    left = [0.0] * len(functions)
    colors = {"trace": "#4c78a8", "lower": "#f58518", "backend": "#e45756"}
    for phase in PHASES:
        widths = [data.compile_seconds[f].get(phase, 0.0) for f in functions]
        ax.barh(functions, widths, left=left, label=phase, color=colors[phase], height=0.6)
        left = [a + b for a, b in zip(left, widths)]
    for y, total in enumerate(left):
        ax.text(total, y, f"  {_seconds_label(total)}", va="center", fontsize=8)
    _fit_rows(ax, len(functions))
    ax.set_xlabel("seconds")
    ax.set_xlim(0, max(left) * 1.2 if max(left) > 0 else 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)


def _plot_burn(ax: Any, data: ReportData) -> None:
    ax.set_title("Error-budget burn rate (1 = the budget lasts exactly the SLO window)", loc="left")
    if not data.burn:
        _no_data(ax, "request or SLO series")
        return
    if all(len(b.points) == 1 for b in data.burn):
        names = [b.name for b in data.burn]
        values = [b.points[0][1] for b in data.burn]
        ax.barh(names, values, color=["#e45756" if v > 1 else "#54a24b" for v in values], height=0.6)
        for y, v in enumerate(values):
            ax.text(v, y, f"  {v:.2f}x", va="center", fontsize=8)
        ax.axvline(1.0, color="0.3", linestyle="--", linewidth=1)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(2.0, max(values) * 4))  # room for the value labels on a log axis
        _fit_rows(ax, len(names))
        ax.set_xlabel("burn rate")
    else:
        from datetime import datetime

        import matplotlib.dates as mdates

        for b in data.burn:
            times, values = _with_gaps(b.points)
            ax.plot([datetime.fromtimestamp(t) for t in times], values,
                    label=f"{b.name}, peak {b.peak:.1f}x", linewidth=1.5)
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
        ax.set_yscale("symlog", linthresh=1)
        # Burn is never negative (symlog would show a mirrored half); headroom above the peak.
        ax.set_ylim(0, max(2.0, max(b.peak for b in data.burn) * 3))
        ax.set_ylabel("burn rate")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    ax.annotate(data.burn_note, (0, -0.22), xycoords="axes fraction", fontsize=7, color="0.35")


def _with_gaps(points: tuple[tuple[float, float], ...]) -> tuple[list[float], list[float]]:
    """Times and values with NaN where samples are missing, so a line never bridges a gap.

    (Without traffic the ratio has no sample: ``total > 0`` filters it.  Drawing a
    line across would show a burn that did not happen.)
    """
    steps = [b[0] - a[0] for a, b in zip(points, points[1:]) if b[0] > a[0]]
    step = min(steps) if steps else 0.0
    times: list[float] = []
    values: list[float] = []
    for i, (t, v) in enumerate(points):
        if i and step and t - points[i - 1][0] > 1.5 * step:
            times.append(points[i - 1][0] + step)
            values.append(math.nan)
        times.append(t)
        values.append(v)
    return times, values


def render_png(data: ReportData) -> bytes:
    """The three panels as one PNG."""
    try:
        import matplotlib
    except ImportError:
        raise click.ClickException("jaxobs report needs matplotlib: pip install 'jaxobs[report]'") from None
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 13), dpi=100, layout="constrained")
    axes = fig.subplots(3, 1, height_ratios=(1.1, 1.0, 1.0))
    _plot_latency(axes[0], data)
    _plot_compile(axes[1], data)
    _plot_burn(axes[2], data)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.generated_at))
    fig.suptitle(f"jaxobs report — {data.source} — {stamp}", fontsize=12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def render_html(data: ReportData) -> str:
    """A standalone page: the PNG inline, and the numbers behind it as tables."""
    png = base64.b64encode(render_png(data)).decode()
    e = html.escape
    latency_rows = "".join(
        f"<tr><td>{e(h.name)}</td><td>{h.total:,.0f}</td>"
        + "".join(f"<td>{_seconds_label(h.quantile(q))}</td>" for q in (0.5, 0.95, 0.99)) + "</tr>"
        for h in data.latency)
    compile_rows = "".join(
        f"<tr><td>{e(fn)}</td>" + "".join(f"<td>{p.get(ph, 0.0):.3f}</td>" for ph in PHASES)
        + f"<td>{sum(p.values()):.3f}</td></tr>" for fn, p in data.compile_seconds.items())
    burn_rows = "".join(f"<tr><td>{e(b.name)}</td><td>{b.peak:.2f}</td><td>{b.points[-1][1]:.2f}</td></tr>"
                        for b in data.burn if b.points)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>jaxobs report — {e(data.source)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style>
</head><body>
<h1>jaxobs report</h1><p>Source: <code>{e(data.source)}</code></p>
<img alt="latency histogram, compile-time breakdown and burn rate" src="data:image/png;base64,{png}" width="1100">
<h2>Latency</h2><table><tr><th>series</th><th>requests</th><th>p50</th><th>p95</th><th>p99</th></tr>{latency_rows}</table>
<h2>Compile time (seconds)</h2><table><tr><th>function</th>{''.join(f'<th>{p}</th>' for p in PHASES)}<th>total</th></tr>{compile_rows}</table>
<h2>Burn rate</h2><p>{e(data.burn_note)}</p><table><tr><th>SLO</th><th>peak</th><th>last</th></tr>{burn_rows}</table>
</body></html>
"""


def write_report(data: ReportData, out: Path, fmt: str | None = None) -> Path:
    """Render ``data`` to ``out`` (format from ``fmt`` or the file suffix: png or html)."""
    kind = (fmt or out.suffix.lstrip(".") or "png").lower()
    if kind not in ("png", "html"):
        raise click.ClickException(f"unknown report format {kind!r}: use .png or .html")
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "png":
        out.write_bytes(render_png(data))
    else:
        out.write_text(render_html(data), encoding="utf-8")
    return out


def _objectives_from_spec(path: str) -> dict[str, float]:
    from jaxobs.slo.spec import load_spec

    spec = load_spec(path)
    return {svc.name: slo.objective for svc in spec.services for slo in svc.slos
            if slo.sli.kind == "availability"}


@click.command("report")
@click.option("--prometheus", "prometheus_url", metavar="URL",
              help="Prometheus server to query, e.g. http://127.0.0.1:9090.")
@click.option("--snapshot", metavar="FILE|URL",
              help="A saved /metrics text file, or a /metrics URL to read once.")
@click.option("--range", "range_", default="1h", show_default=True,
              help="With --prometheus: how far back (a Prometheus duration).")
@click.option("--objective", default=99.9, show_default=True,
              help="Availability objective (percent) when no SLO rules or --spec say otherwise.")
@click.option("--spec", type=click.Path(dir_okay=False, exists=True),
              help="With --snapshot: take each service's availability objective from this SLO spec.")
@click.option("-o", "--out", default="jaxobs-report.png", show_default=True,
              type=click.Path(dir_okay=False), help="Output file: .png or .html.")
@click.option("--format", "fmt", type=click.Choice(["png", "html"]), default=None,
              help="Override the format the suffix implies.")
def report_command(prometheus_url: str | None, snapshot: str | None, range_: str, objective: float,
                   spec: str | None, out: str, fmt: str | None) -> None:
    """Render a latency histogram, compile-time breakdown and burn-rate chart to PNG or HTML."""
    if bool(prometheus_url) == bool(snapshot):
        raise click.UsageError("pass exactly one of --prometheus URL or --snapshot FILE|URL")
    try:
        range_seconds = duration.seconds(range_)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--range") from None
    if prometheus_url:
        data = from_prometheus(prometheus_url, range_seconds, objective)
    else:
        assert snapshot is not None
        try:
            text = read_snapshot(snapshot)
        except OSError as exc:
            raise click.ClickException(f"cannot read {snapshot}: {exc}") from None
        objectives = _objectives_from_spec(spec) if spec else None
        data = from_snapshot(text, snapshot, objectives, objective)
    path = write_report(data, Path(out), fmt)
    summary = (f"{len(data.latency)} latency series, {len(data.compile_seconds)} compiled functions, "
               f"{len(data.burn)} burn series")
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes): {summary}")
    if data.empty:
        click.echo("note: the source had no jaxobs series; the panels say 'no data'", err=True)
