"""Rendering a report: PNG charts (matplotlib, Agg backend, imported only here) or one HTML page."""

from __future__ import annotations

import base64
import html
import io
import math
import time
from pathlib import Path
from typing import Any

import click

from jaxobs.report.data import PHASES, ReportData

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
    used = [b for b in bounds
            if any(c > 0 for h in data.latency
                   for hb, c in zip(h.bounds, h.counts, strict=False) if hb == b)]
    lo, hi = bounds.index(used[0]), bounds.index(used[-1])
    shown = bounds[max(0, lo - 1): hi + 2]
    width = 0.8 / len(data.latency)
    for i, h in enumerate(data.latency):
        counts = dict(zip(h.bounds, h.counts, strict=False))
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
        left = [a + b for a, b in zip(left, widths, strict=False)]
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
    steps = [b[0] - a[0] for a, b in zip(points, points[1:], strict=False) if b[0] > a[0]]
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
