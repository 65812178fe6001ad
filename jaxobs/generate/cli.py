"""``jaxobs generate``, ``jaxobs check`` and ``jaxobs runbook``.

Bad input is the user's YAML, not a bug: it ends in one ``Error: ...`` line
naming the file, field and fix, with exit code 2 (like any usage error), never
a traceback.  ``generate --check`` exits 1 when the directory is stale.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from jaxobs.slo.model import Spec

#: Recording rules Sloth generates per SLO (8 window ratios + 7 metadata rules).
SLOTH_RULES_PER_SLO = 15


class BadInput(click.ClickException):
    """A usage-level error: one line, exit code 2."""

    exit_code = 2


def _load(path: Path) -> Spec:
    from jaxobs.slo.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        raise BadInput(str(exc)) from None


def display_source(spec_path: Path, out_dir: Path) -> str:
    """The spec path that generated headers name, POSIX-style.

    Relative to ``out_dir`` when the spec lives inside it, so checked-in files
    do not depend on where the repository is cloned (``jaxobs generate
    examples/slo.yaml -o .`` names ``examples/slo.yaml``); otherwise the path
    as given on the command line.
    """
    try:
        rel = Path(os.path.relpath(spec_path.resolve(), out_dir.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return spec_path.as_posix()
    return spec_path.as_posix() if rel.startswith("../") else rel


@click.command("generate")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write alerts/, runbooks/ and dashboards/ into.")
@click.option("--check", is_flag=True,
              help="Write nothing; exit 1 and print a unified diff if OUTPUT is stale.")
def generate_command(spec: Path, out: Path, check: bool) -> None:
    """Generate rules, Alertmanager config, promtool tests, runbooks and dashboards from SPEC."""
    from jaxobs.generate import generate_all
    from jaxobs.generate.write import diff, sync

    model = _load(spec)
    files = generate_all(model, display_source(spec, out))
    if check:
        stale = diff(out, files)
        if stale:
            click.echo(stale, nl=False)
            click.echo(f"{out} is stale: run `jaxobs generate {spec} -o {out}`", err=True)
            raise SystemExit(1)
        click.echo(f"{out}: {len(files)} generated files up to date")
        return
    try:
        written, deleted = sync(out, files)
    except OSError as exc:
        raise click.ClickException(f"cannot write to {out}: {exc}") from None
    click.echo(f"{out}: wrote {len(written)}, deleted {len(deleted)} stale, "
               f"{len(files) - len(written)} unchanged ({len(files)} generated files)")


@click.command("check")
@click.argument("spec", type=click.Path(path_type=Path))
def check_command(spec: Path) -> None:
    """Validate SPEC and summarise its services, SLOs, rules and alerts.

    Warnings (an SLO without a ticket tier, …) are printed but do not fail.
    """
    from jaxobs.generate import rules
    from jaxobs.slo.tiers_spec import policy_warnings

    model = _load(spec)
    click.echo(f"{spec}: valid ({len(model.services)} services)")
    warnings = 0
    for service in model.services:
        selector = ",".join(f"{k}={v}" for k, v in service.target_selector)
        click.echo(f"service {service.name} (targets {selector})")
        for slo in service.slos:
            tiers = ", ".join(f"{t.severity} {t.factor:g}x {t.long_window}/{t.short_window}"
                              for t in slo.tiers) if slo.alerting else "record only"
            n_alerts = sum(1 for a in rules.slo_alerts(service) if dict(a.labels)["slo"] == slo.name)
            click.echo(f"  slo {slo.name}: {slo.objective:g}% over {slo.window}, "
                       f"{rules.sli_words(slo.sli)}; "
                       f"{len(rules.recording_rules(service, slo))} recording rules "
                       f"(Sloth: {SLOTH_RULES_PER_SLO}), {n_alerts} alerts; {tiers}")
            for warning in policy_warnings(slo):
                warnings += 1
                click.echo(f"  warning: {service.name}/{slo.name}: {warning}", err=True)
    alerts = rules.all_alerts(model)
    click.echo(f"{len(alerts)} alerting rules, {len(rules.alert_names(model))} alert names: "
               f"{', '.join(rules.alert_names(model))}")
    if warnings:
        click.echo(f"{warnings} warning(s)", err=True)


@click.command("runbook")
@click.argument("alertname", required=False)
def runbook_command(alertname: str | None) -> None:
    """Print the runbook of ALERTNAME (without it: list the alerts that have one)."""
    from jaxobs.generate import runbooks

    if alertname is None:
        click.echo("\n".join(runbooks.runbook_names()))
        return
    if alertname not in runbooks.RUNBOOKS:
        close = runbooks.suggest(alertname)
        hint = f"did you mean {close!r}?" if close else \
            "run `jaxobs runbook` to list the alerts"
        raise BadInput(f"no runbook for alert {alertname!r}; {hint}")
    click.echo(runbooks.render_runbook(alertname), nl=False)


COMMANDS = (generate_command, check_command, runbook_command)


def register(group: click.Group) -> None:
    """Attach the commands above to the ``jaxobs`` group."""
    for command in COMMANDS:
        group.add_command(command)
