"""Where the sidecar gets the application's metrics, and whether the app is ready.

Two ways, because both deployments exist:

* :class:`MultiprocessSource` — the app writes prometheus-client multiprocess
  files into a shared ``PROMETHEUS_MULTIPROC_DIR`` (an ``emptyDir`` in the pod)
  and the sidecar merges them with ``MultiProcessCollector``.
* :class:`ProxySource` — the app serves its own ``/metrics`` on localhost and
  the sidecar fetches and re-exposes it (``--app-url``).

Readiness ("the app reported ``jaxobs_ready`` 1 recently"):

* proxy: the value fetched *now* (the probe does the fetch), so "recently"
  is "within this probe".
* multiprocess: files carry no write time, and a crashed app leaves its
  ``jaxobs_ready 1`` behind in the ``emptyDir``.  So a value only counts while
  the process that wrote it is alive — checked by pid when the sidecar can see
  the app's processes (shared process namespace, or a local run).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from jaxobs import catalog
from jaxobs.exporter.collectors.host import pids_from_multiproc_dir_names
from jaxobs.exporter.compaction import Compactor, compact_exited
from jaxobs.exporter.dbfile import SKIP_REASONS, SkippedFile, read_entries
from jaxobs.telemetry.multiproc_files import REASONS as DISABLED_REASONS
from jaxobs.telemetry.multiproc_files import read_markers

logger = logging.getLogger("jaxobs.exporter")

#: What the proxy asks the app for: the classic text format, which the parser reads.
PROXY_ACCEPT = "text/plain; version=0.0.4"
#: Upper bound on a proxied response, so a runaway app cannot exhaust the sidecar's memory.
PROXY_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


class CachedMultiprocessReader:
    """``MultiProcessCollector.merge`` with the parsed series keys kept between scrapes.

    Why: prometheus-client re-parses every series key (a JSON string) on every
    scrape, which is half the cost of reading 1,000 series.  Keys are stable
    for the life of a series, so the sidecar parses each once.  The merge
    itself is the library's; ``tests/test_exporter_scrape.py`` checks that the
    result equals ``MultiProcessCollector.merge`` on the same files, and if the
    library's internals move, :meth:`read` falls back to the public call.

    Files are read one by one with :func:`jaxobs.exporter.dbfile.read_entries`:
    a bad file (empty, corrupt, a FIFO, one changing under the read) is
    skipped and counted in :attr:`skipped`, and the others are served.
    """

    #: Forget parsed keys when the cache is this many times the live key count (label churn).
    MAX_STALE_FACTOR = 4

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, str, dict[str, str], tuple[tuple[str, str], ...], str]] = {}
        self._fast = getattr(MultiProcessCollector, "_accumulate_metrics", None) is not None
        #: reason -> files skipped by the last read (see dbfile.SKIP_REASONS)
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)

    def _parse(self, key: str) -> tuple[str, str, dict[str, str], tuple[tuple[str, str], ...], str]:
        parsed = self._keys.get(key)
        if parsed is None:
            metric_name, name, labels, help_text = json.loads(key)
            parsed = self._keys[key] = (metric_name, name, labels, tuple(sorted(labels.items())), help_text)
        return parsed

    def read(self, files: list[str]) -> list[Metric]:
        skipped = dict.fromkeys(SKIP_REASONS, 0)
        readable: list[tuple[str, list[tuple[str, float, float]]]] = []
        for path in files:
            try:
                readable.append((path, read_entries(path, known=self._keys)))
            except FileNotFoundError:  # removed by mark_process_dead between glob and read
                continue
            except SkippedFile as exc:
                skipped[exc.reason] += 1
                logger.debug("skipping %s", exc)
        self.skipped = skipped
        if not self._fast:
            return list(MultiProcessCollector.merge([p for p, _ in readable], accumulate=True))
        metrics: dict[str, Metric] = {}
        live = 0
        for path, values in readable:
            parts = os.path.basename(path).split("_")
            typ = parts[0]
            if typ not in ("counter", "gauge", "histogram", "summary") or (typ == "gauge" and len(parts) < 3):
                skipped["corrupt"] += 1
                continue
            for key, value, timestamp in values:
                live += 1
                metric_name, name, _labels, labels_key, help_text = self._parse(key)
                metric = metrics.get(metric_name)
                if metric is None:
                    metric = metrics[metric_name] = Metric(metric_name, help_text, typ)
                if typ == "gauge":
                    metric._multiprocess_mode = parts[1]  # type: ignore[attr-defined]
                    metric.add_sample(name, labels_key + (("pid", parts[2][:-3]),), value, timestamp)  # type: ignore[arg-type]
                else:
                    metric.add_sample(name, labels_key, value)  # type: ignore[arg-type]
        if len(self._keys) > self.MAX_STALE_FACTOR * max(live, 256):
            self._keys.clear()
        return list(MultiProcessCollector._accumulate_metrics(metrics, True))  # type: ignore[attr-defined]


class MultiprocessSource:
    """The app's metrics from a prometheus-client multiprocess directory."""

    name = "app"

    def __init__(self, path: str | os.PathLike[str], *, check_pids: bool | None = None) -> None:
        self.path = str(path)
        # In a container whose pid namespace is not shared the sidecar is pid 1 and
        # cannot see the app: pid checks would call a healthy app dead.
        self.check_pids = os.getpid() != 1 if check_pids is None else check_pids
        self._reader = CachedMultiprocessReader()
        self._compactor = Compactor(self.path)  # liveness by lock only: never archive a live writer

    def collect(self) -> list[Metric]:
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"multiprocess directory {self.path} does not exist")
        with self._compactor.lock:  # archive exited writers, then read: never both at once
            compact_exited(self._compactor)
            families = self._reader.read(glob.glob(os.path.join(self.path, "*.db")))
        skipped = GaugeMetricFamily(catalog.EXPORTER_SKIPPED_FILES.name, catalog.EXPORTER_SKIPPED_FILES.help,
                                    labels=["reason"])
        for reason, count in self._reader.skipped.items():
            skipped.add_metric([reason], count)
        disabled = GaugeMetricFamily(catalog.APP_WRITERS_DISABLED.name, catalog.APP_WRITERS_DISABLED.help,
                                     labels=["reason"])
        markers = list(read_markers(self.path).values())
        for reason in DISABLED_REASONS:
            disabled.add_metric([reason], markers.count(reason))
        families += [skipped, disabled]
        if self._reader.skipped["changing"]:
            # A file kept changing under two reads: what is served may be torn, so the app
            # source is not healthy this scrape (first-seen wins over the scraper's up 1).
            up = GaugeMetricFamily(catalog.COLLECTOR_UP.name, catalog.COLLECTOR_UP.help,
                                   labels=list(catalog.COLLECTOR_UP.labels))
            up.add_metric([self.name, ""], 0)
            families.insert(0, up)
        return families

    def readiness(self) -> Readiness:
        pattern = os.path.join(self.path, f"gauge_{catalog.READY.multiprocess_mode}_*.db")
        files = sorted(glob.glob(pattern))[:10_000]
        seen_dead = False
        for f in files:
            if _ready_in_file(f) != 1:
                continue
            pid = _pid_of(f)
            if self.check_pids and pid is not None and not _alive(pid):
                seen_dead = True
                continue
            return Readiness(True, "the app reported jaxobs_ready 1")
        if seen_dead:
            return Readiness(False, "jaxobs_ready 1 was only left by processes that have exited")
        if not files:
            return Readiness(False, f"no {catalog.READY.name} in {self.path} yet (app starting or not using jaxobs)")
        return Readiness(False, f"{catalog.READY.name} is 0: warmup has not finished")


def _pid_of(path: str) -> int | None:
    """The writer's pid from a multiprocess file name (``gauge_max_<pid>.db``)."""
    pids = pids_from_multiproc_dir_names([os.path.basename(path)])
    return next(iter(pids), None)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return psutil.pid_exists(pid)


def _ready_in_file(path: str) -> float | None:
    """``jaxobs_ready`` in one file (non-blocking, validated read); None if absent or unreadable."""
    try:
        entries = read_entries(path)
    except (OSError, SkippedFile):
        return None
    values = [v for key, v, _ in entries if json.loads(key)[1] == catalog.READY.name]
    return max(values) if values else None


def _ready_value(families: object) -> float | None:
    for fam in families:  # type: ignore[attr-defined]
        if fam.name == catalog.READY.name:
            values = [s.value for s in fam.samples if s.name == catalog.READY.name]
            return max(values) if values else None
    return None


class ProxySource:
    """The app's metrics fetched from its own endpoint, e.g. ``http://127.0.0.1:8000/metrics``."""

    name = "app"

    def __init__(self, url: str, *, timeout: float = 3.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--app-url must be an http(s) URL, got {url!r}")
        self.url = url
        self.timeout = timeout

    def _fetch(self) -> str:
        req = urllib.request.Request(self.url, headers={"Accept": PROXY_ACCEPT})
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - operator-given URL
            body = resp.read(PROXY_MAX_BYTES + 1)
        if len(body) > PROXY_MAX_BYTES:
            raise ValueError(f"{self.url} returned more than {PROXY_MAX_BYTES} bytes")
        return body.decode("utf-8")

    def collect(self) -> list[Metric]:
        return list(text_string_to_metric_families(self._fetch()))

    def readiness(self) -> Readiness:
        try:
            families = self.collect()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            return Readiness(False, f"cannot fetch {self.url}: {exc}")
        value = _ready_value(families)
        if value is None:
            return Readiness(False, f"{self.url} exposes no {catalog.READY.name}")
        if value != 1:
            return Readiness(False, f"{catalog.READY.name} is {value:g}: warmup has not finished")
        return Readiness(True, "the app reported jaxobs_ready 1")


class NeighbourSource:
    """Another local ``/metrics`` endpoint merged into the sidecar's (``--scrape [NAME=]URL``).

    Orbax and Grain serve their own Prometheus metrics (port 9431 by default);
    merging them here gives a pod one scrape target and one health story.  Each
    neighbour has its own deadline (``deadline``, seconds; the scraper stops
    waiting for it then and reports ``jaxobs_collector_up{collector=NAME} 0``)
    and a size cap, so a slow or runaway neighbour cannot stall or bloat the
    sidecar's answer.
    """

    reports_up = True  # the scraper writes this source's up series (it has none of its own)

    def __init__(self, spec: str, *, deadline: float = 2.0, max_bytes: int = 8 * 1024 * 1024) -> None:
        name, sep, url = spec.partition("=")
        if not sep or "://" in name:
            name, url = "", spec
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--scrape needs an http(s) URL (optionally NAME=URL), got {spec!r}")
        parsed = urllib.parse.urlsplit(url)
        self.name = name or f"scrape:{parsed.netloc}"
        self.url = url
        self.deadline = deadline
        self.max_bytes = max_bytes

    def collect(self) -> list[Metric]:
        req = urllib.request.Request(self.url, headers={"Accept": PROXY_ACCEPT})
        with urllib.request.urlopen(req, timeout=self.deadline) as resp:  # noqa: S310 - operator-given URL
            body = resp.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise ValueError(f"{self.url} returned more than {self.max_bytes} bytes (--scrape-max-bytes)")
        return list(text_string_to_metric_families(body.decode("utf-8")))


AppSource = MultiprocessSource | ProxySource


def app_source(multiproc_dir: str | Path | None, app_url: str | None, *,
               timeout: float = 3.0) -> AppSource | None:
    """The configured source; the proxy wins when both are given (explicit beats ambient env)."""
    if app_url:
        return ProxySource(app_url, timeout=timeout)
    if multiproc_dir:
        return MultiprocessSource(multiproc_dir)
    return None


__all__ = ["AppSource", "MultiprocessSource", "NeighbourSource", "ProxySource", "Readiness", "app_source"]
