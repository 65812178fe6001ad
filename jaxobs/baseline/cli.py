"""``jaxobs baseline record|compare``: the regression gate for JAX, XLA and driver upgrades.

Imports neither jax nor the user's program: ``record`` runs the program as a
child process (see :mod:`jaxobs.baseline.child`), ``compare`` reads two JSON files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from jaxobs.baseline import child, compare, session

#: exit code of `compare` when a file or threshold is unusable (1 means "regression")
EXIT_BAD_INPUT = 2


class _BadInput(click.ClickException):
    exit_code = EXIT_BAD_INPUT


@click.group("baseline")
def baseline_command() -> None:
    """Record a performance baseline of instrumented functions, and gate on regressions."""


@baseline_command.command("record", context_settings={"ignore_unknown_options": True})
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Baseline file to write (JSON).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def record_command(output: str, command: tuple[str, ...]) -> None:
    """Run COMMAND (after --) and record what each instrumented function cost.

    Per function: compile count, compile seconds per phase, FLOPs, bytes
    accessed, peak memory, fusions and the kernel-latency samples (every
    steady call is timed while recording), plus the versions of jax, jaxlib,
    the backend and the driver.  Example:

        jaxobs baseline record -o old.json -- python bench.py
    """
    with tempfile.TemporaryDirectory(prefix="jaxobs-baseline-") as tmp:
        shim_dir, parts = Path(tmp) / "shim", Path(tmp) / "parts"
        shim_dir.mkdir()
        parts.mkdir()
        (shim_dir / "sitecustomize.py").write_text(child.SHIM)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim_dir), env.get("PYTHONPATH", "")) if p)
        env[child.ENV_DIR] = str(parts)
        try:
            code = subprocess.call(list(command), env=env)
        except OSError as exc:
            raise _BadInput(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        if code != 0:
            failed = click.ClickException(f"{' '.join(command)} exited with {code}; no baseline written")
            failed.exit_code = code if 0 < code < 256 else 1  # type: ignore[misc]  # a ClassVar in click 8.5 stubs
            raise failed
        docs = [json.loads(p.read_text()) for p in sorted(parts.glob("*.json"))]
    if not docs:
        raise _BadInput("the command ran no function instrumented with jaxobs.jit/jaxobs.instrument "
                        "(in a Python process). Fix: decorate the benchmarked functions with @jaxobs.jit")
    doc = session.merge(docs)
    doc["command"] = list(command)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp_out, out)
    click.echo(f"wrote {out}: {len(doc['functions'])} functions "
               f"({', '.join(sorted(doc['functions']))})")


@baseline_command.command("compare")
@click.argument("old", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
@click.option("--thresholds", type=click.Path(dir_okay=False), default=None,
              help="YAML/JSON thresholds per quantity and per function (see docs/upgrades.md).")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for a pull-request comment).")
def compare_command(old: str, new: str, thresholds: str | None, markdown: bool) -> None:
    """Compare baseline NEW against OLD; exit 1 on a regression, 2 on unusable input."""
    try:
        result = compare.compare(compare.load_baseline(old), compare.load_baseline(new),
                                 compare.load_thresholds(thresholds))
    except compare.BaselineError as exc:
        raise _BadInput(str(exc)) from None
    click.echo(compare.render_markdown(result) if markdown else compare.render_text(result), nl=False)
    if result.regressions:
        sys.exit(1)
