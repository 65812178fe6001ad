"""The sidecar's parts wired together: sources, collectors, the scraper and the HTTP server.

``Exporter`` is what ``jaxobs exporter`` (:mod:`jaxobs.exporter.cli`) runs; tests and
benchmarks build one directly.  See docs/architecture.md for where it sits in the data flow.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxobs import catalog
from jaxobs.exporter.http import Endpoints, ExporterServer, HttpConfig
from jaxobs.exporter.scrape import Scraper, Source
from jaxobs.exporter.sources import AppSource, Readiness, app_source
from jaxobs.telemetry.collector import Collector

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
    #: where the app serves POST /debug/jaxobs/profile (None: the sidecar answers 404)
    app_profile_url: str | None = None
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


def _app_pids(config: ExporterConfig) -> Callable[[], set[int]]:
    """The workload's pids, as the sidecar can see them: ``--app-pid`` and the multiprocess files."""
    from jaxobs.exporter.collectors.host import pids_from_multiproc_dir

    def pids() -> set[int]:
        found = {config.app_pid} if config.app_pid else set()
        if config.multiproc_dir:
            found |= pids_from_multiproc_dir(config.multiproc_dir)
        return found

    return pids


def build_collectors(config: ExporterConfig) -> list[Collector]:
    collectors: list[Collector] = []
    for name in resolve_collectors(config.collectors, config.nvml_module):
        if name == "host":
            from jaxobs.exporter.collectors.host import HostCollector

            collectors.append(HostCollector(app_pid=config.app_pid,
                                            multiproc_dir=None if config.app_url else config.multiproc_dir))
        elif name == "nvml":
            from jaxobs.exporter.collectors.nvml import NvmlCollector, load_nvml

            try:
                module = load_nvml(config.nvml_module)
            except ImportError:
                module = None  # reported as up 0 by the collector's own import on scrape
            collectors.append(NvmlCollector(module, app_pids=_app_pids(config)))
        elif name == "tpu":
            from jaxobs.exporter.collectors.tpu import TpuCollector

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
        profile = forward_profile(config.app_profile_url) if config.app_profile_url else None
        self.server = ExporterServer(config.http, Endpoints(metrics=self._metrics, readiness=self._readiness,
                                                            profile=profile))

    def _metrics(self, timeout: float) -> _Families:
        families = self.scraper.collect(timeout)
        if self.config.http.basic_auth_user:
            from prometheus_client.core import CounterMetricFamily

            spec = catalog.EXPORTER_AUTH_FAILURES
            families.append(CounterMetricFamily(spec.base_name, spec.help, value=self.server.auth.failures))
        return _Families(families)

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


#: a profile archive larger than this is refused rather than buffered in the sidecar
MAX_PROFILE_BYTES = 1024 * 1024 * 1024


def forward_profile(app_base_url: str) -> Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]:
    """Forward the profile request to the app, so a pod exposes one port for everything."""
    import urllib.error
    import urllib.parse
    import urllib.request

    from jaxobs.profile_cli import PROFILE_PATH

    base = app_base_url.rstrip("/")

    def forward(method: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        url = f"{base}{PROFILE_PATH}?{urllib.parse.urlencode(query, doseq=True)}"
        try:
            seconds = float((query.get("seconds") or ["5"])[-1])
        except ValueError:
            seconds = 5.0
        request = urllib.request.Request(url, method=method, data=b"")
        try:
            with urllib.request.urlopen(request, timeout=min(max(seconds, 0.0), 3600) + 60) as response:
                body = response.read(MAX_PROFILE_BYTES + 1)
                if len(body) > MAX_PROFILE_BYTES:
                    return 502, "text/plain; charset=utf-8", b"the app's capture is too large to forward\n"
                return response.status, response.headers.get("Content-Type", "application/octet-stream"), body
        except urllib.error.HTTPError as exc:
            return exc.code, "text/plain; charset=utf-8", exc.read(4096)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return 502, "text/plain; charset=utf-8", f"cannot reach the app at {base}: {reason}\n".encode()

    return forward

