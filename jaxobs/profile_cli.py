"""``jaxobs profile URL``: ask a running app (or its sidecar) for a profile and unpack it locally.

This module never imports jax: it is an HTTP client.  It lives next to the
profiler so the request format has one home.
"""

from __future__ import annotations

import io
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click

PROFILE_PATH = "/debug/jaxobs/profile"
#: a capture is at most a few hundred MB; more than this is not a profile
MAX_DOWNLOAD_BYTES = 1024 * 1024 * 1024


def profile_url(base: str, seconds: float, perfetto: bool) -> str:
    parts = urllib.parse.urlsplit(base if "://" in base else f"http://{base}")
    path = parts.path.rstrip("/")
    if not path.endswith(PROFILE_PATH):
        path += PROFILE_PATH
    query = urllib.parse.urlencode({"seconds": f"{seconds:g}", "perfetto": int(perfetto), "format": "tar"})
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


@click.command("profile")
@click.argument("url")
@click.option("--seconds", type=click.FloatRange(0.01, 600), default=5.0, show_default=True,
              help="How long to trace the running process.")
@click.option("--perfetto/--no-perfetto", default=True, show_default=True,
              help="Also write a Perfetto JSON trace (opens in ui.perfetto.dev).")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), default="jaxobs-profile",
              show_default=True, help="Directory to unpack the capture into.")
def profile_command(url: str, seconds: float, perfetto: bool, out_dir: str) -> None:
    """Capture a jax.profiler trace of a running app through its /debug/jaxobs/profile endpoint."""
    target = profile_url(url, seconds, perfetto)
    request = urllib.request.Request(target, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=seconds + 60) as response:
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except urllib.error.HTTPError as exc:
        detail = exc.read(2000).decode("utf-8", "replace").strip()
        raise click.ClickException(f"{target}: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"{target}: {getattr(exc, 'reason', exc)}; is the app serving with "
                                   "profiling=True (or the sidecar with --app-url)?") from None
    if len(body) > MAX_DOWNLOAD_BYTES:
        raise click.ClickException(f"{target}: the capture is over {MAX_DOWNLOAD_BYTES} bytes; capture fewer seconds")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            names = tar.getnames()
            tar.extractall(out, filter="data")  # refuses absolute paths, .. and devices
    except (tarfile.TarError, OSError) as exc:
        raise click.ClickException(f"{target}: the answer is not a profile archive ({exc})") from None
    xplane = sorted(n for n in names if n.endswith(".xplane.pb"))
    trace = sorted(n for n in names if n.endswith("perfetto_trace.json.gz"))
    click.echo(f"profile written to {out}/")
    top = names[0].split("/")[0] if names else ""
    if xplane:
        click.echo(f"  XProf / TensorBoard: pip install xprof && xprof --logdir {out}/{top}   "
                   f"(or tensorboard --logdir {out}/{top})")
    if trace:
        click.echo(f"  Perfetto: open https://ui.perfetto.dev and load {out}/{trace[0]}")
