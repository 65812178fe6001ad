"""``jaxobs report``: the Click command."""

from __future__ import annotations

import math
from pathlib import Path

import click

from jaxobs.report.render import write_report
from jaxobs.report.sources import SNAPSHOT_DEADLINE_SECONDS, from_prometheus, from_snapshot, read_snapshot
from jaxobs.slo import duration


def _objectives_from_spec(path: str) -> dict[str, float]:
    from jaxobs.slo.spec import SpecError, load_spec

    try:
        spec = load_spec(path)
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    return {svc.name: slo.objective for svc in spec.services for slo in svc.slos
            if slo.sli.kind == "availability"}


def _write_oncall_page(url: str, range_seconds: float, out: Path) -> None:
    """The HTML page from Prometheus: the on-call essentials, self-contained (inline SVG)."""
    from jaxobs.generate.write import write_atomic
    from jaxobs.report.oncall import from_prometheus_oncall
    from jaxobs.report.page import render_oncall_html

    if out.suffix.lower() == ".png":  # the default name, with --format html
        out = out.with_suffix(".html")
    data = from_prometheus_oncall(url, range_seconds)
    try:
        write_atomic(out, render_oncall_html(data))
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}. "
                                   "Fix: pass -o with a writable path") from None
    click.echo(f"wrote {out} ({out.stat().st_size:,} bytes): {len(data.burn)} SLOs, "
               f"{len(data.latency)} latency series, {len(data.compile_seconds)} compiled functions, "
               f"{len(data.memory)} devices, {len(data.alerts)} alerts in the range")


@click.command("report")
@click.option("--prometheus", "prometheus_url", metavar="URL",
              help="Prometheus server to query, e.g. http://127.0.0.1:9090.")
@click.option("--snapshot", metavar="FILE|URL",
              help="A saved /metrics text file, or a /metrics URL to read once.")
@click.option("--range", "range_", default="1h", show_default=True,
              help="With --prometheus: how far back (a Prometheus duration).")
@click.option("--objective", default=99.9, show_default=True,
              help="Availability objective (percent) when no SLO rules or --spec say otherwise.")
@click.option("--timeout", "timeout", type=float, default=SNAPSHOT_DEADLINE_SECONDS, show_default=True,
              help="With a --snapshot URL: total seconds to fetch it (the page is also capped at 64 MiB).")
@click.option("--spec", type=click.Path(dir_okay=False, exists=True),
              help="With --snapshot: take each service's availability objective from this SLO spec.")
@click.option("-o", "--out", default="jaxobs-report.png", show_default=True,
              type=click.Path(dir_okay=False), help="Output file: .png or .html.")
@click.option("--format", "fmt", type=click.Choice(["png", "html"]), default=None,
              help="Override the format the suffix implies.")
def report_command(prometheus_url: str | None, snapshot: str | None, range_: str, objective: float,
                   timeout: float, spec: str | None, out: str, fmt: str | None) -> None:
    """Render a latency histogram, compile-time breakdown and burn-rate chart to PNG or HTML.

    From --prometheus, HTML is the on-call page: burn rate per SLO, steady and cold latency,
    compile time and causes, device memory and the alerts of the range, in one file.
    """
    if bool(prometheus_url) == bool(snapshot):
        raise click.UsageError("pass exactly one of --prometheus URL or --snapshot FILE|URL")
    if not (math.isfinite(objective) and 0 < objective < 100):
        raise click.ClickException(f"--objective {objective:g} is not a percentage strictly between 0 "
                                   f"and 100; pass e.g. 99.9")
    if not (math.isfinite(timeout) and 0 < timeout <= 3600):
        raise click.ClickException(f"--timeout {timeout:g} must be a number of seconds in (0, 3600]")
    try:
        range_seconds = duration.seconds(range_)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--range") from None
    kind = (fmt or Path(out).suffix.lstrip(".") or "png").lower()
    if prometheus_url and kind == "html":
        _write_oncall_page(prometheus_url, range_seconds, Path(out))
        return
    if prometheus_url:
        data = from_prometheus(prometheus_url, range_seconds, objective)
    else:
        assert snapshot is not None
        text = read_snapshot(snapshot, deadline_seconds=timeout)  # SnapshotError is one line
        objectives = _objectives_from_spec(spec) if spec else None
        data = from_snapshot(text, snapshot, objectives, objective)
    path = write_report(data, Path(out), fmt)
    summary = (f"{len(data.latency)} latency series, {len(data.compile_seconds)} compiled functions, "
               f"{len(data.burn)} burn series")
    click.echo(f"wrote {path} ({path.stat().st_size:,} bytes): {summary}")
    if data.empty:
        click.echo("note: the source had no jaxobs series; the panels say 'no data'", err=True)
