"""The on-call page: one self-contained HTML file, charts as inline SVG.

No external resource, no JavaScript library, no matplotlib: the file opens from
a chat attachment or a postmortem folder, offline, years later.  Five sections,
in the order an on-call engineer reads them: alerts in the range, burn rate per
SLO, latency (steady and cold apart), compile time and its causes, device memory.
A missing section says why ("no … series in this Prometheus") instead of vanishing.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence

from jaxobs.report.data import PHASES
from jaxobs.report.oncall import AlertSpan, Latency, Memory, OnCallData, Points, SLOBurn, window_seconds

e = html.escape
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")
PHASE_COLOURS = {"trace": "#4c78a8", "lower": "#f58518", "backend": "#e45756"}

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:14px 28px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#b8c0cc;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{font-size:16px;margin:4px 0 10px}p.note{color:#5b6472;font-size:12px;margin:6px 0}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border-bottom:1px solid #e6e9ee;padding:4px 10px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}th{color:#5b6472;font-weight:600}
.hot{color:#c0392b;font-weight:600}.ok{color:#2e7d32}.badge{border-radius:3px;padding:1px 6px;font-size:11px;color:#fff}
.page{background:#c0392b}.ticket{background:#e67e22}.other{background:#7f8c8d}
.charts{display:flex;flex-wrap:wrap;gap:14px}.chart{flex:1 1 340px}
svg text{font-size:10px;fill:#5b6472}
"""


# --- formatting -------------------------------------------------------------------------


def seconds_label(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return "+Inf"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def bytes_label(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} TiB"


def clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


# --- SVG --------------------------------------------------------------------------------


def line_chart(title: str, series: Sequence[tuple[str, Points]], *, threshold: float | None = None,
               fmt: str = "x", width: int = 540, height: int = 190) -> str:
    """A small time-series chart; gaps in the data stay gaps."""
    drawn = [(name, [(t, v) for t, v in pts if not math.isnan(v)]) for name, pts in series]
    drawn = [(n, p) for n, p in drawn if p]
    if not drawn:
        return f'<div class="chart"><p class="note">{e(title)}: no data in the range</p></div>'
    left, right, top, bottom = 46, 10, 18, 22
    t0 = min(p[0][0] for _, p in drawn)
    t1 = max(p[-1][0] for _, p in drawn)
    vmax = max(max(v for _, v in p) for _, p in drawn)
    if threshold is not None:
        vmax = max(vmax, threshold * 1.2)
    vmax = vmax * 1.1 if vmax > 0 else 1.0
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return left + (t - t0) / span * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - v / vmax) * (height - top - bottom)

    parts = [f'<svg class="chart-svg" role="img" aria-label="{e(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="{left}" y="12" style="font-size:12px;fill:#1d2330;font-weight:600">{e(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#ccd"/>']
    for frac in (0.0, 0.5, 1.0):
        v = vmax * frac
        label = seconds_label(v) if fmt == "s" else f"{v:.3g}{fmt}"
        parts.append(f'<text x="{left - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{e(label)}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" stroke="#eef"/>')
    parts.append(f'<text x="{left}" y="{height - 6}">{clock(t0)}</text>')
    parts.append(f'<text x="{width - right}" y="{height - 6}" text-anchor="end">{clock(t1)}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{left}" y1="{y(threshold):.1f}" x2="{width - right}" y2="{y(threshold):.1f}" '
                     f'stroke="#c0392b" stroke-dasharray="4 3"/>')
    steps = sorted(b[0] - a[0] for _, p in drawn for a, b in zip(p, p[1:], strict=False) if b[0] > a[0])
    gap = 1.5 * steps[0] if steps else span
    for i, (name, pts) in enumerate(drawn):
        colour = PALETTE[i % len(PALETTE)]
        path, previous = [], None
        for t, v in pts:
            move = previous is None or t - previous > gap
            path.append(f"{'M' if move else 'L'}{x(t):.1f},{y(v):.1f}")
            previous = t
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6">'
                     f'<title>{e(name)}</title></path>')
        parts.append(f'<text x="{width - right - 4}" y="{top + 12 + 12 * i}" text-anchor="end" '
                     f'style="fill:{colour}">{e(name)}</text>')
    parts.append("</svg>")
    return f'<div class="chart">{"".join(parts)}</div>'


def stacked_bars(title: str, rows: dict[str, dict[str, float]], keys: Sequence[str],
                 colours: dict[str, str], *, fmt: str = "s", width: int = 1080) -> str:
    """Horizontal stacked bars, one row per name (e.g. function → phase seconds)."""
    if not rows:
        return f'<p class="note">{e(title)}: no data</p>'
    names = list(rows)[:12]
    label_w, bar_h, gap, top = 170, 16, 6, 22
    height = top + len(names) * (bar_h + gap) + 20
    total_max = max(sum(rows[n].values()) for n in names) or 1.0
    scale = (width - label_w - 90) / total_max
    parts = [f'<svg class="chart-svg" role="img" aria-label="{e(title)}" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
             f'<text x="0" y="12" style="font-size:12px;fill:#1d2330;font-weight:600">{e(title)}</text>']
    for i, name in enumerate(names):
        yy = top + i * (bar_h + gap)
        parts.append(f'<text x="{label_w - 6}" y="{yy + 12}" text-anchor="end">{e(name)}</text>')
        xx = float(label_w)
        for key in keys:
            w = rows[name].get(key, 0.0) * scale
            if w > 0:
                parts.append(f'<rect x="{xx:.1f}" y="{yy}" width="{w:.1f}" height="{bar_h}" '
                             f'fill="{colours.get(key, "#999")}"><title>{e(name)} {e(key)}: '
                             f'{rows[name].get(key, 0.0):.3g}</title></rect>')
                xx += w
        total = sum(rows[name].values())
        shown = seconds_label(total) if fmt == "s" else f"{total:.3g}"
        parts.append(f'<text x="{xx + 4:.1f}" y="{yy + 12}">{e(shown)}</text>')
    legend_y = height - 6
    for i, key in enumerate(keys):
        lx = label_w + i * 90
        parts.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" '
                     f'fill="{colours.get(key, "#999")}"/><text x="{lx + 14}" y="{legend_y}">{e(key)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- sections ---------------------------------------------------------------------------


def _alerts_section(alerts: Sequence[AlertSpan]) -> str:
    if not alerts:
        return "<p class=note>No alert fired in the range.</p>"
    def row(a: AlertSpan) -> str:
        badge = a.severity if a.severity in ("page", "ticket") else "other"
        state = "<b class=hot>firing now</b>" if a.firing_now else f"resolved {clock(a.last)}"
        return (f"<tr><td>{e(a.name)}</td><td><span class='badge {badge}'>{e(a.severity or '-')}</span></td>"
                f"<td>{e(a.subject)}</td><td>{e(a.labels.get('window', ''))}</td><td>{clock(a.first)}</td>"
                f"<td>{state}</td><td style='text-align:left'>{e(a.summary)}</td></tr>")

    rows = "".join(row(a) for a in alerts[:40])
    return ("<table><tr><th>alert</th><th>severity</th><th>subject</th><th>window</th><th>first seen</th>"
            f"<th>state</th><th style='text-align:left'>summary</th></tr>{rows}</table>")


def _burn_section(burn: Sequence[SLOBurn]) -> str:
    if not burn:
        return ("<p class=note>No <code>jaxobs_slo:error_budget:burn_rate</code> series: load the rules "
                "<code>jaxobs generate</code> writes into this Prometheus.</p>")
    windows = sorted({w for b in burn for w in b.now}, key=window_seconds)
    rows = []
    for b in burn:
        cells = "".join(
            f"<td class={'hot' if b.now.get(w, 0) > 1 else 'ok'}>{b.now[w]:.2f}x</td>" if w in b.now else "<td>-</td>"
            for w in windows)
        objective = f"{b.objective * 100:.4g}%" if b.objective is not None else "-"
        remaining = f"{b.budget_remaining:.1%}" if b.budget_remaining is not None else "-"
        rows.append(f"<tr><td>{e(b.service)}/{e(b.slo)}</td><td>{objective}</td><td>{remaining}</td>{cells}</tr>")
    table = (f"<table><tr><th>SLO</th><th>objective</th><th>budget left</th>"
             f"{''.join(f'<th>{e(w)}</th>' for w in windows)}</tr>{''.join(rows)}</table>")
    charts = "".join(line_chart(f"{b.service}/{b.slo}: burn rate over {b.window}", [(b.window, b.points)],
                                threshold=1.0) for b in burn if b.points)
    return (table + "<p class=note>Burn rate now per window (1x spends the budget exactly over the SLO "
            "window; the dashed line). Charts: the shortest window over the range.</p>"
            f"<div class=charts>{charts}</div>")


def _latency_section(latency: Sequence[Latency]) -> str:
    if not latency:
        return "<p class=note>No <code>jaxobs_request_duration_seconds</code> series in the range.</p>"
    rows = "".join(f"<tr><td>{e(x.service)}</td><td>{e(x.start)}</td><td>{x.requests:,.0f}</td>"
                   f"<td>{seconds_label(x.p50)}</td><td>{seconds_label(x.p95)}</td><td>{seconds_label(x.p99)}</td></tr>"
                   for x in latency)
    table = ("<table><tr><th>service</th><th>start</th><th>requests</th><th>p50</th><th>p95</th><th>p99</th></tr>"
             f"{rows}</table><p class=note>cold = the request waited for a JIT compile; steady = it did not. "
             "Quantiles over the whole range.</p>")
    charts = "".join(line_chart(f"{x.service} {x.start}: p99 latency", [(f"{x.start} p99", x.p99_points)], fmt="s")
                     for x in latency if x.p99_points)
    return table + f"<div class=charts>{charts}</div>"


def _compile_section(data: OnCallData) -> str:
    if not data.compile_seconds and not data.compile_causes:
        return "<p class=note>No compile-time series: no instrumented function compiled.</p>"
    causes = sorted({c for v in data.compile_causes.values() for c in v})
    rows = "".join(f"<tr><td>{e(fn)}</td>" + "".join(f"<td>{int(v.get(c, 0))}</td>" for c in causes)
                   + f"<td>{int(sum(v.values()))}</td></tr>" for fn, v in data.compile_causes.items())
    colours = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(causes)}
    return (stacked_bars("Compile time by function and phase (since process start)", data.compile_seconds,
                         PHASES, PHASE_COLOURS)
            + stacked_bars("Compilations by cause", data.compile_causes, causes, colours, fmt="n")
            + f"<table><tr><th>function</th>{''.join(f'<th>{e(c)}</th>' for c in causes)}<th>total</th></tr>"
              f"{rows}</table>")


def _memory_section(memory: Sequence[Memory]) -> str:
    if not memory:
        return ("<p class=note>No device memory series: JAX's allocator reports nothing on CPU, and no "
                "NVML or TPU collector answered.</p>")
    rows = []
    for m in memory:
        ratio = m.used / m.limit if m.limit else None
        bar = ""
        if ratio is not None:
            colour = "#c0392b" if ratio > 0.8 else "#4c78a8"
            bar = (f"<svg width='160' height='10'><rect width='160' height='10' fill='#e6e9ee'/>"
                   f"<rect width='{160 * min(ratio, 1):.0f}' height='10' fill='{colour}'/></svg>")
        rows.append(f"<tr><td>{e(m.source)}</td><td>{e(m.device)}</td><td>{bytes_label(m.used)}</td>"
                    f"<td>{bytes_label(m.limit) if m.limit else '-'}</td>"
                    f"<td>{f'{ratio:.0%}' if ratio is not None else '-'}</td><td>{bar}</td></tr>")
    return ("<table><tr><th>source</th><th>device</th><th>used</th><th>limit</th><th>used %</th><th></th></tr>"
            f"{''.join(rows)}</table>")


def render_oncall_html(data: OnCallData) -> str:
    """The whole page as one string."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data.generated_at))
    rng = f"{data.range_seconds / 60:.0f} min" if data.range_seconds < 7200 else f"{data.range_seconds / 3600:.0f} h"
    firing = sum(1 for a in data.alerts if a.firing_now)
    sections = (("Alerts in the range", _alerts_section(data.alerts)),
                ("Burn rate per SLO", _burn_section(data.burn)),
                ("Latency: steady and cold", _latency_section(data.latency)),
                ("Compile time and causes", _compile_section(data)),
                ("Device memory", _memory_section(data.memory)))
    body = "".join(f"<section><h2>{e(title)}</h2>{content}</section>" for title, content in sections)
    # The one script: count what rendered, so a headless check (and a reader) can see it.
    script = ("<script>document.addEventListener('DOMContentLoaded',function(){"
              "var n=document.querySelectorAll('svg.chart-svg').length;"
              "document.body.setAttribute('data-charts',n);"
              "document.getElementById('rendered').textContent=n+' charts rendered';});</script>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>jaxobs on-call report — {e(data.source)}</title><style>{STYLE}</style>{script}</head>
<body><header><h1>jaxobs on-call report</h1>
<p>{e(data.source)} · last {e(rng)} · {e(stamp)} · {firing} alert(s) firing now</p></header>
<main>{body}<p class=note id=rendered></p></main></body></html>
"""
