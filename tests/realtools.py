"""Real Prometheus, Alertmanager and promtool for tests (Debian packages, 127.0.0.1 only).

Missing tools skip a test on a developer machine, but fail it when ``CI`` is
set: CI installs them (``.ci/run``), so their absence there is a bug, not a
reason to go green.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jaxobs.demo.config import _scale_tier, scale_duration  # shared with the demo


def require_tool(name: str) -> str:
    """Path of an executable; skip locally / fail in CI when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH (Debian: apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_module(module: str) -> Any:
    """Import a test dependency: skip locally when it is missing, fail in CI (CI set)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} not installed (pip install -e '.[test]')", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.5,
               what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the server may not be up yet
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server, killing it if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the result vector."""
        data = http_get_json(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert data["status"] == "success", data
        return list(data["data"]["result"])

    def value(self, expr: str) -> float | None:
        """The single value of an instant query (None when the result is empty)."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_value(self, expr: str, predicate: Callable[[float], bool], timeout: float = 60.0) -> float:
        def check() -> float | None:
            v = self.value(expr)
            return v if v is not None and predicate(v) else None

        found = wait_until(check, timeout, what=f"{expr} to satisfy the test (log: {self.log})")
        return float(found)

    def alerts(self) -> list[dict[str, Any]]:
        return list(http_get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"])


@contextlib.contextmanager
def prometheus_with_config(workdir: Path, config: dict[str, Any], *flags: str) -> Iterator[Prometheus]:
    """Start a real Prometheus on 127.0.0.1 with ``config``, its own data dir and extra ``flags``."""
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", *flags],
            stdout=log_file, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until(lambda: http_get_json(f"{prom.url}/api/v1/status/buildinfo"),
                   30, what=f"prometheus to start (log: {log})")
        yield prom
    finally:
        stop(proc)


@contextlib.contextmanager
def running_prometheus(workdir: Path, targets: Sequence[str], *, rule_files: Sequence[Path] = (),
                       alertmanager: str | None = None, job: str = "jaxobs",
                       interval: str = "1s", features: Sequence[str] = ()) -> Iterator[Prometheus]:
    """Start a real Prometheus scraping ``targets`` (host:port) with its own config and data dir."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    with prometheus_with_config(workdir, config, "--web.enable-lifecycle",
                                *(f"--enable-feature={f}" for f in features)) as prom:
        yield prom


@dataclass
class Alertmanager:
    url: str
    address: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alerts(self) -> list[dict[str, Any]]:
        return list(http_get_json(f"{self.url}/api/v2/alerts"))


@contextlib.contextmanager
def running_alertmanager(workdir: Path, config_text: str) -> Iterator[Alertmanager]:
    """Start a real Alertmanager on 127.0.0.1 (clustering off) with ``config_text``."""
    binary = require_tool("prometheus-alertmanager") if shutil.which("prometheus-alertmanager") \
        else require_tool("alertmanager")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(config_text)
    log = workdir / "alertmanager.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.path={workdir / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log_file, stderr=subprocess.STDOUT)
    am = Alertmanager(f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", proc, log)
    try:
        wait_until(lambda: http_get_json(f"{am.url}/api/v2/status"), 30,
                   what=f"alertmanager to start (log: {log})")
        yield am
    finally:
        stop(proc)


# --- shortened alerting for end-to-end tests ------------------------------------------------
#
# Burn-rate windows of hours and notification timings of minutes cannot be waited out in a
# test.  These helpers divide every duration by one factor (60: hours become minutes, minutes
# seconds) in the *inputs and outputs* of ``jaxobs generate``, so the generator itself runs
# unchanged.  Tests that use them say so in their docstring.


def shortened_spec(spec_text: str, factor: int = 60, *, page_url: str | None = None,
                   ticket_url: str | None = None) -> str:
    """The spec with every burn-rate tier's windows and ``for`` divided by ``factor``.

    SLOs that use the built-in tiers get the scaled defaults (as spec-level
    ``alerting.tiers``); SLOs with their own tiers get theirs scaled.  SLO
    windows, resource thresholds and ``deploy_grace_window`` are unchanged.
    Optionally points the page/ticket receivers at local webhooks.
    """
    import yaml

    from jaxobs.slo.model import DEFAULT_TIERS

    spec = yaml.safe_load(spec_text)
    alerting = spec.setdefault("alerting", {}) or {}
    spec["alerting"] = alerting
    defaults = alerting.get("tiers") or [
        {"severity": t.severity, "burn_rate": t.factor, "long_window": t.long_window,
         "short_window": t.short_window, "for": t.for_} for t in DEFAULT_TIERS]
    alerting["tiers"] = [_scale_tier(t, factor) for t in defaults]
    for service in spec["services"]:
        for slo in service["slos"]:
            tiers = (slo.get("alerting") or {}).get("tiers")
            if tiers:
                slo["alerting"]["tiers"] = [_scale_tier(t, factor) for t in tiers]
    receivers = alerting.setdefault("receivers", {}) or {}
    alerting["receivers"] = receivers
    if page_url:
        receivers["page"] = {"webhook_url": page_url}
    if ticket_url:
        receivers["ticket"] = {"webhook_url": ticket_url}
    return yaml.safe_dump(spec, sort_keys=False)


def scale_rule_for(rules_text: str, factor: int = 60) -> str:
    """A generated rule file with every alert's ``for:`` divided by ``factor``.

    Resource alerts' ``for`` durations (10m, 15m, 30m) are constants of the
    generator, not spec fields; expressions and their ranges stay as generated.
    """
    import yaml

    doc = yaml.safe_load(rules_text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scale_duration(rule["for"], factor)
    return yaml.safe_dump(doc, sort_keys=False)


def scale_alertmanager_timings(config_text: str, factor: int = 60) -> str:
    """A generated Alertmanager config with every route's timings divided by ``factor`` (the
    demo's own helper: ``jaxobs demo --stack`` shortens its config the same way)."""
    from jaxobs.demo.config import scale_alertmanager_timings as scale

    return scale(config_text, factor)


# --- a webhook receiver (what a pager would be) ----------------------------------------------


@dataclass
class Notification:
    path: str
    payload: dict[str, Any]


class WebhookReceiver:
    """Collects Alertmanager webhook notifications (POSTed JSON) on 127.0.0.1."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.notifications: list[Notification] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.notifications.append(Notification(self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def alerts(self, path: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every alert of every notification (``path`` filters the receiver), with the
        notification's own status ("firing"/"resolved") first."""
        with self._lock:
            notes = list(self.notifications)
        return [(n.payload["status"], alert) for n in notes if path is None or n.path == path
                for alert in n.payload["alerts"]]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the example inference server as a real process -------------------------------------------

REPO = Path(__file__).resolve().parent.parent
INFERENCE_SERVER = REPO / "examples" / "inference_server" / "server.py"


@dataclass
class RunningServer:
    proc: subprocess.Popen[str]
    url: str
    lines: list[str]


@contextlib.contextmanager
def running_inference_server(args: Sequence[str] = (), *, multiproc_dir: Path | None = None,
                             timeout: float = 90.0) -> Iterator[RunningServer]:
    """Start ``examples/inference_server/server.py --port 0 ARGS`` and wait until it is ready.

    Its stdout is collected in ``lines`` by a reader thread (the pipe never fills up);
    the server is terminated (SIGTERM: it flushes its metrics) and reaped on exit.
    """
    import queue
    import re
    import sys
    import threading

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiproc_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    proc = subprocess.Popen([sys.executable, str(INFERENCE_SERVER), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=REPO)
    lines: list[str] = []
    fresh: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            fresh.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        url = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                url = m.group(1)
            if url and "ready" in line:
                yield RunningServer(proc, url, lines)
                return
        raise AssertionError(f"inference server did not get ready in {timeout}s: {lines}")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
