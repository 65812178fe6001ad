"""The ``jaxobs demo`` command: the README's first command."""

from __future__ import annotations

import click

DEFAULT_DURATION = 15.0
DEFAULT_STACK_SECONDS = 240.0


@click.command("demo")
@click.option("--duration", default=None, type=float,
              help=f"Seconds of workload to run [default: {DEFAULT_DURATION:g}; with --stack the "
                   f"longest run, {DEFAULT_STACK_SECONDS:g}].")
@click.option("--port", default=9464, show_default=True, help="Port for /metrics (0 picks a free one).")
@click.option("--addr", default="127.0.0.1", show_default=True, help="Address to bind /metrics to.")
@click.option("--out", "out_dir", default="jaxobs-demo", show_default=True,
              type=click.Path(file_okay=False),
              help="Where to write the generated rules, dashboards, prometheus.yml and alertmanager.yml.")
@click.option("--spec", default=None, type=click.Path(dir_okay=False),
              help="SLO spec to generate from (default: the demo's own, examples/demo-slo.yaml).")
@click.option("--serve/--no-serve", default=False, help="Keep serving /metrics after the run until Ctrl-C.")
@click.option("--stack", is_flag=True, default=False,
              help="Run the whole loop on 127.0.0.1: sidecar, Prometheus, Alertmanager and a local "
                   "pager; inject an error burst and watch the page arrive and resolve (2-3 minutes).")
def demo_command(duration: float | None, port: int, addr: str, out_dir: str, spec: str | None,
                 serve: bool, stack: bool) -> None:
    """Run a real JAX workload on CPU, serve its metrics and generate SLO artifacts."""
    from jaxobs.demo import config, workload
    from jaxobs.slo.spec import SpecError
    from jaxobs.telemetry.prometheus import PortInUseError

    try:
        files = config.artifacts(spec)  # validate the spec before spending time on the workload
    except SpecError as exc:
        raise click.ClickException(str(exc)) from None
    if stack:
        _run_stack(out_dir, spec, files, duration or DEFAULT_STACK_SECONDS)
        return
    def write_before_traffic(bound: int) -> None:
        # Written (and the commands printed) before the traffic starts, so Prometheus can be
        # started while the demo runs: recording rules need live traffic to record.
        _write(out_dir, files, config.Endpoints(target=f"{addr}:{bound}"))

    try:
        result = workload.run(duration=DEFAULT_DURATION if duration is None else duration,
                              port=port, addr=addr, echo=click.echo, on_serving=write_before_traffic)
    except PortInUseError as exc:
        raise click.ClickException(getattr(exc, "strerror", None) or str(exc)) from None
    click.echo("")
    click.echo(workload.summary(result))
    if serve:
        click.echo("serving /metrics until Ctrl-C")
        try:
            import time

            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _write(out_dir: str, files: dict[str, str], endpoints: object) -> None:
    from pathlib import Path

    from jaxobs.demo import config
    from jaxobs.generate.write import sync

    assert isinstance(endpoints, config.Endpoints)
    try:
        # one sync: it also deletes stale files, so the configs go in with the rules
        sync(Path(out_dir), {**files, **config.configs(files, endpoints)})
    except OSError as exc:
        raise click.ClickException(f"cannot write into {out_dir}: {exc.strerror or exc}. "
                                   "Fix: pass --out with a writable directory") from None
    kinds = sorted({rel.split("/", 1)[0] for rel in files})
    click.echo(f"generated {len(files)} files ({', '.join(k + '/' for k in kinds)}) and "
               f"{config.PROMETHEUS_CONFIG}, {config.ALERTMANAGER_CONFIG} into {out_dir}/")
    prom, am = config.start_commands(out_dir, endpoints)
    click.echo("to watch its SLOs, run the demo longer (--duration 600) and start, from here:")
    click.echo(f"  Prometheus:   {prom}")
    click.echo(f"  Alertmanager: {am}")
    click.echo("  then open http://127.0.0.1:9090/alerts  ·  import "
               f"{out_dir}/dashboards/*.json into Grafana  ·  runbooks in {out_dir}/runbooks/")
    click.echo("  or run the whole loop at once: jaxobs demo --stack "
               "(needs prometheus and prometheus-alertmanager on PATH)\n")


def _run_stack(out_dir: str, spec: str | None, files: dict[str, str], max_seconds: float) -> None:
    from jaxobs.demo import config, stack

    try:
        stack.find_tools()
    except stack.StackError as exc:
        raise click.ClickException(str(exc)) from None
    # The user's copy: the same files a plain run writes (unshortened), for reading afterwards.
    _write(out_dir, files, config.Endpoints(target="127.0.0.1:9464"))
    try:
        result = stack.run_stack(out_dir, spec, echo=click.echo, max_seconds=max_seconds)
    except stack.StackError as exc:
        raise click.ClickException(str(exc)) from None
    if result.interrupted:
        raise SystemExit(130)
    if result.paged is None or result.resolved is None:
        raise click.ClickException("the run ended before the page arrived and resolved")
    click.echo(f"\ndemo stack: paged and resolved in {result.seconds:.0f}s; every process stopped")
