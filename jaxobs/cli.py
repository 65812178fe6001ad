"""The ``jaxobs`` command line (Click).

Each sub-command lives next to the code it drives and is attached here, so
this file stays a table of contents.
"""

from __future__ import annotations

import click

from jaxobs import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="jaxobs")
def cli() -> None:
    """Observability and SLO toolkit for JAX workloads."""


@cli.command()
@click.option("--duration", default=15.0, show_default=True, help="Seconds of workload to run.")
@click.option("--port", default=9464, show_default=True, help="Port for /metrics (0 picks a free one).")
@click.option("--addr", default="127.0.0.1", show_default=True, help="Address to bind /metrics to.")
@click.option("--out", "out_dir", default="jaxobs-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where to write the generated rules and dashboards.")
@click.option("--spec", default=None, type=click.Path(dir_okay=False),
              help="SLO spec to generate from (default: the embedded example).")
@click.option("--serve/--no-serve", default=False, help="Keep serving /metrics after the run until Ctrl-C.")
def demo(duration: float, port: int, addr: str, out_dir: str, spec: str | None, serve: bool) -> None:
    """Run a real JAX workload on CPU, serve its metrics and generate SLO artifacts."""
    from jaxobs import demo as demo_module
    from jaxobs.slo.spec import SpecError
    from jaxobs.telemetry.prometheus import PortInUseError

    try:
        files = demo_module.artifacts(spec)  # validate the spec before spending time on the workload
        result = demo_module.run(duration=duration, port=port, addr=addr, echo=click.echo)
    except (SpecError, PortInUseError) as exc:
        raise click.ClickException(getattr(exc, "strerror", None) or str(exc)) from None
    click.echo("")
    click.echo(demo_module.summary(result))
    try:
        demo_module.write_artifacts(files, out_dir, echo=click.echo)
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out_dir}: {exc.strerror or exc}. "
                                   "Fix: pass --out with a writable directory") from None
    if serve:
        click.echo("serving /metrics until Ctrl-C")
        try:
            import time

            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _attach() -> None:
    # Sub-commands: one import per module that owns a command.
    # (Imports are local so `jaxobs --help` does not import jax.)
    from jaxobs.exporter.cli import exporter_command
    from jaxobs.generate.cli import register  # generate, check, runbook
    from jaxobs.profile_cli import profile_command
    from jaxobs.report import report_command

    cli.add_command(exporter_command)
    register(cli)
    cli.add_command(report_command)
    cli.add_command(profile_command)
    from jaxobs.baseline.cli import baseline_command  # record, compare

    cli.add_command(baseline_command)
    pass


_attach()


def main() -> None:
    cli(prog_name="jaxobs")


if __name__ == "__main__":  # pragma: no cover
    main()
