"""``jaxobs exporter``: the sidecar that Prometheus scrapes next to a JAX application.

It serves ``/metrics`` (the app's metrics, from a shared multiprocess
directory or proxied from the app's own endpoint, plus GPU/TPU/host
collectors), ``/healthz`` (this process is alive) and ``/readyz`` (the app
reported ``jaxobs_ready 1``; 503 with the reason otherwise).

It must never import ``jax`` (docs/architecture.md): its start-up and memory stay
small, and it keeps working when the app's JAX is broken.  Everything it
imports is prometheus-client, psutil, click and — only when those collectors
are enabled — the NVML binding and grpc.

Run it as ``jaxobs exporter`` or, in the container image, as
``python -m jaxobs.exporter`` (which skips the CLI's other sub-commands).
"""

from __future__ import annotations

import errno
import logging
import signal
import sys

import click

from jaxobs.exporter.app import (
    DEFAULT_PORT,
    Exporter,
    ExporterConfig,
    HttpConfig,
    _read_password,
    port_in_use_message,
    resolve_collectors,
)
from jaxobs.exporter.tls import TlsConfigError, read_key_password


@click.command("exporter")
@click.option("--address", envvar="JAXOBS_EXPORTER_ADDRESS", default="0.0.0.0", show_default=True,
              help="Bind address (use :: for IPv6).")
@click.option("--port", envvar="JAXOBS_EXPORTER_PORT", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
              show_default=True, help="Port for /metrics, /healthz and /readyz (0 = any free port).")
@click.option("--multiproc-dir", envvar=["JAXOBS_EXPORTER_MULTIPROC_DIR", "PROMETHEUS_MULTIPROC_DIR"],
              type=click.Path(file_okay=False), default=None,
              help="The app's prometheus-client multiprocess directory (shared emptyDir).")
@click.option("--app-url", envvar="JAXOBS_EXPORTER_APP_URL", default=None,
              help="Proxy the app's own endpoint instead, e.g. http://127.0.0.1:8000/metrics.")
@click.option("--app-profile-url", envvar="JAXOBS_EXPORTER_APP_PROFILE_URL", default=None,
              help="Forward POST /debug/jaxobs/profile to the app's metrics server, e.g. "
                   "http://127.0.0.1:9464 (the app serves it with profiling=True).")
@click.option("--app-pid", envvar="JAXOBS_EXPORTER_APP_PID", type=int, default=None,
              help="The app's pid for host metrics (default: from the multiprocess file names).")
@click.option("--collectors", envvar="JAXOBS_EXPORTER_COLLECTORS", default="auto", show_default=True,
              help="Comma-separated: auto, host, nvml, tpu.")
@click.option("--tpu-address", envvar="JAXOBS_EXPORTER_TPU_ADDRESS", default="localhost:8431",
              show_default=True, help="The TPU runtime metrics service (gRPC).")
@click.option("--scrape-timeout", envvar="JAXOBS_EXPORTER_SCRAPE_TIMEOUT", type=click.FloatRange(0.1, 300),
              default=5.0, show_default=True,
              help="Seconds a /metrics request may spend collecting (capped by Prometheus's own timeout).")
@click.option("--request-timeout", envvar="JAXOBS_EXPORTER_REQUEST_TIMEOUT", type=click.FloatRange(0.1, 300),
              default=5.0, show_default=True, help="Seconds a client has to send its request headers.")
@click.option("--max-connections", envvar="JAXOBS_EXPORTER_MAX_CONNECTIONS", type=click.IntRange(1, 10000),
              default=64, show_default=True, help="Concurrent connections; more get an immediate 503.")
@click.option("--max-connections-per-ip", envvar="JAXOBS_EXPORTER_MAX_CONNECTIONS_PER_IP",
              type=click.IntRange(0, 10000), default=0, show_default=True,
              help="Concurrent connections from one client IP (0: half of --max-connections).")
@click.option("--tls-cert", envvar="JAXOBS_EXPORTER_TLS_CERT", type=click.Path(exists=True, dir_okay=False),
              default=None, help="PEM certificate chain; serves HTTPS with --tls-key.")
@click.option("--tls-key", envvar="JAXOBS_EXPORTER_TLS_KEY", type=click.Path(exists=True, dir_okay=False),
              default=None, help="PEM private key for --tls-cert.")
@click.option("--tls-key-password-file", envvar="JAXOBS_EXPORTER_TLS_KEY_PASSWORD_FILE",
              type=click.Path(exists=True, dir_okay=False), default=None,
              help="Password of an encrypted --tls-key (or set JAXOBS_EXPORTER_TLS_KEY_PASSWORD); "
                   "the exporter never prompts.")
@click.option("--basic-auth-user", envvar="JAXOBS_EXPORTER_BASIC_AUTH_USER", default=None,
              help="Require HTTP basic auth on /metrics (password from the file or "
                   "JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD).")
@click.option("--basic-auth-password-file", envvar="JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD_FILE",
              type=click.Path(exists=True, dir_okay=False), default=None)
@click.option("--nvml-module", envvar="JAXOBS_EXPORTER_NVML_MODULE", default="pynvml", hidden=True,
              help="Import name of the NVML binding (a seam for test doubles).")
@click.option("--log-level", envvar="JAXOBS_EXPORTER_LOG_LEVEL", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def exporter_command(address: str, port: int, multiproc_dir: str | None, app_url: str | None,
                     app_profile_url: str | None,
                     app_pid: int | None, collectors: str, tpu_address: str, scrape_timeout: float,
                     request_timeout: float, max_connections: int, max_connections_per_ip: int,
                     tls_cert: str | None, tls_key: str | None, tls_key_password_file: str | None,
                     basic_auth_user: str | None, basic_auth_password_file: str | None, nvml_module: str,
                     log_level: str) -> None:
    """Run the sidecar exporter: /metrics, /healthz, /readyz."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    password = _read_password(basic_auth_password_file)
    try:
        key_password = read_key_password(tls_key_password_file)
    except TlsConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if basic_auth_user and not password:
        raise click.UsageError("--basic-auth-user needs --basic-auth-password-file or "
                               "JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD")
    config = ExporterConfig(
        http=HttpConfig(address=address, port=port, request_timeout=request_timeout,
                        scrape_timeout=scrape_timeout, max_connections=max_connections,
                        max_connections_per_ip=max_connections_per_ip, tls_cert=tls_cert, tls_key=tls_key,
                        tls_key_password=key_password, basic_auth_user=basic_auth_user,
                        basic_auth_password=password),
        multiproc_dir=multiproc_dir, app_url=app_url, app_pid=app_pid, app_profile_url=app_profile_url,
        collectors=tuple(c.strip() for c in collectors.split(",")), nvml_module=nvml_module,
        tpu_address=tpu_address,
    )
    try:
        resolve_collectors(config.collectors, nvml_module)
        exporter = Exporter(config)
    except TlsConfigError as exc:
        click.echo(f"jaxobs exporter: {exc}", err=True)
        sys.exit(2)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            click.echo(port_in_use_message(address, port), err=True)
        elif exc.errno in (errno.EACCES, errno.EADDRNOTAVAIL):
            click.echo(f"jaxobs exporter: cannot listen on {address}:{port}: {exc.strerror}; "
                       f"pick another --address/--port", err=True)
        else:
            click.echo(f"jaxobs exporter: cannot start: {exc}", err=True)
        sys.exit(2)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: exporter.shutdown())
    scheme = "https" if tls_cert else "http"
    sources = ", ".join(s.name for s in exporter.scraper.sources) or "none"
    click.echo(f"jaxobs exporter listening on {scheme}://{address}:{exporter.port} (sources: {sources})",
               err=True)
    exporter.serve_forever()
