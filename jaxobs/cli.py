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


def _attach() -> None:
    # Sub-commands: one import per module that owns a command.
    # (Imports are local so `jaxobs --help` does not import jax.)
    from jaxobs.demo.cli import demo_command
    from jaxobs.exporter.cli import exporter_command
    from jaxobs.generate.cli import register  # generate, check, runbook
    from jaxobs.profile_cli import profile_command
    from jaxobs.report import report_command

    cli.add_command(demo_command)
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
