"""``jaxobs exporter``: the sidecar that Prometheus scrapes next to a JAX application.

It serves ``/metrics`` (the app's metrics, from a shared multiprocess
directory or proxied from the app's own endpoint, plus GPU/TPU/host
collectors), ``/healthz`` (this process is alive) and ``/readyz`` (the app
reported ``jaxobs_ready 1``; 503 with the reason otherwise).

It must never import ``jax`` (DESIGN.md §3): its start-up and memory stay
small, and it keeps working when the app's JAX is broken.  Everything it
imports is prometheus-client, psutil, click and — only when those collectors
are enabled — the NVML binding and grpc.

Run it as ``jaxobs exporter`` or, in the container image, as
``python -m jaxobs.exporter`` (which skips the CLI's other sub-commands).
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from jaxobs.collectors.base import Collector
from jaxobs.exporter_http import Endpoints, ExporterServer, HttpConfig
from jaxobs.exporter_scrape import Scraper, Source
from jaxobs.exporter_sources import AppSource, Readiness, app_source

logger = logging.getLogger("jaxobs.exporter")

DEFAULT_PORT = 9402
#: Collectors by name; ``auto`` picks those whose library is importable.
COLLECTOR_NAMES: tuple[str, ...] = ("host", "nvml", "tpu")


@dataclass(frozen=True)
class ExporterConfig:
    http: HttpConfig = field(default_factory=HttpConfig)
    multiproc_dir: str | None = None
    app_url: str | None = None
    app_pid: int | None = None
    collectors: tuple[str, ...] = ("auto",)
    nvml_module: str = "pynvml"
    tpu_address: str = "localhost:8431"


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def resolve_collectors(names: Sequence[str], nvml_module: str = "pynvml") -> tuple[str, ...]:
    """Expand ``auto``: host always, nvml/tpu when their Python packages are installed.

    A GPU image installs ``jaxobs[gpu]`` and a TPU image ``jaxobs[tpu]``, so
    "installed" is the deployer's statement of intent; on a node without the
    driver the collector then reports ``up 0`` rather than silently nothing.
    """
    wanted: list[str] = []
    for name in names:
        if name == "auto":
            wanted.append("host")
            if _importable(nvml_module):
                wanted.append("nvml")
            if _importable("tpu_info") and _importable("grpc"):
                wanted.append("tpu")
        elif name in COLLECTOR_NAMES:
            wanted.append(name)
        elif name:
            raise ValueError(f"unknown collector {name!r}; choose from auto, {', '.join(COLLECTOR_NAMES)}")
    return tuple(dict.fromkeys(wanted))


def build_collectors(config: ExporterConfig) -> list[Collector]:
    collectors: list[Collector] = []
    for name in resolve_collectors(config.collectors, config.nvml_module):
        if name == "host":
            from jaxobs.collectors.host import HostCollector

            collectors.append(HostCollector(app_pid=config.app_pid,
                                            multiproc_dir=None if config.app_url else config.multiproc_dir))
        elif name == "nvml":
            from jaxobs.collectors.nvml import NvmlCollector, load_nvml

            try:
                module = load_nvml(config.nvml_module)
            except ImportError:
                module = None  # reported as up 0 by the collector's own import on scrape
            collectors.append(NvmlCollector(module))
        elif name == "tpu":
            from jaxobs.collectors.tpu import TpuCollector

            collectors.append(TpuCollector(config.tpu_address,
                                           timeout=min(2.0, config.http.scrape_timeout / 2)))
    return collectors


class _Families:
    """Adapts a list of families to what prometheus-client's encoders take (``collect()``)."""

    def __init__(self, families: Iterable[Any]) -> None:
        self._families = list(families)

    def collect(self) -> list[Any]:
        return self._families


class Exporter:
    """Sources + scraper + HTTP server, with a clean shutdown."""

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.app: AppSource | None = app_source(config.multiproc_dir, config.app_url,
                                                timeout=config.http.scrape_timeout)
        self.collectors = build_collectors(config)
        sources: list[Source] = ([self.app] if self.app else []) + list(self.collectors)
        self.scraper = Scraper(sources)
        self.server = ExporterServer(config.http, Endpoints(metrics=self._metrics, readiness=self._readiness))

    def _metrics(self, timeout: float) -> _Families:
        return _Families(self.scraper.collect(timeout))

    def _readiness(self) -> Readiness:
        if self.app is None:
            return Readiness(False, "no app metrics configured (--multiproc-dir or --app-url)")
        try:
            return self.app.readiness()
        except Exception as exc:
            return Readiness(False, f"cannot read readiness: {exc}")

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever(poll_interval=0.5)
        finally:
            self.close()

    def shutdown(self) -> None:
        """Stop serving (from another thread or a signal handler)."""
        threading.Thread(target=self.server.shutdown, daemon=True).start()

    def close(self) -> None:
        self.server.server_close()
        for c in self.collectors:
            c.close()


def port_in_use_message(address: str, port: int) -> str:
    return (f"jaxobs exporter: port {port} on {address} is already in use; "
            f"choose another with --port or JAXOBS_EXPORTER_PORT, or stop the process listening there")


def _read_password(password_file: str | None) -> str | None:
    if password_file:
        return Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
    return os.environ.get("JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD")


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
@click.option("--tls-cert", envvar="JAXOBS_EXPORTER_TLS_CERT", type=click.Path(exists=True, dir_okay=False),
              default=None, help="PEM certificate chain; serves HTTPS with --tls-key.")
@click.option("--tls-key", envvar="JAXOBS_EXPORTER_TLS_KEY", type=click.Path(exists=True, dir_okay=False),
              default=None, help="PEM private key for --tls-cert.")
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
                     app_pid: int | None, collectors: str, tpu_address: str, scrape_timeout: float,
                     request_timeout: float, max_connections: int, tls_cert: str | None, tls_key: str | None,
                     basic_auth_user: str | None, basic_auth_password_file: str | None, nvml_module: str,
                     log_level: str) -> None:
    """Run the sidecar exporter: /metrics, /healthz, /readyz."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    password = _read_password(basic_auth_password_file)
    if basic_auth_user and not password:
        raise click.UsageError("--basic-auth-user needs --basic-auth-password-file or "
                               "JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD")
    config = ExporterConfig(
        http=HttpConfig(address=address, port=port, request_timeout=request_timeout,
                        scrape_timeout=scrape_timeout, max_connections=max_connections,
                        tls_cert=tls_cert, tls_key=tls_key, basic_auth_user=basic_auth_user,
                        basic_auth_password=password),
        multiproc_dir=multiproc_dir, app_url=app_url, app_pid=app_pid,
        collectors=tuple(c.strip() for c in collectors.split(",")), nvml_module=nvml_module,
        tpu_address=tpu_address,
    )
    try:
        resolve_collectors(config.collectors, nvml_module)
        exporter = Exporter(config)
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


main = exporter_command

if __name__ == "__main__":  # pragma: no cover - the container entrypoint
    exporter_command(prog_name="jaxobs exporter")
