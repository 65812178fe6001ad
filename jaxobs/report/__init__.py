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

from jaxobs.report.cli import report_command
from jaxobs.report.data import BurnSeries, Histogram, ReportData
from jaxobs.report.render import render_html, render_png, write_report
from jaxobs.report.sources import PrometheusAPI, from_prometheus, from_snapshot, read_snapshot

__all__ = [
    "BurnSeries",
    "Histogram",
    "PrometheusAPI",
    "ReportData",
    "from_prometheus",
    "from_snapshot",
    "read_snapshot",
    "render_html",
    "render_png",
    "report_command",
    "write_report",
]
