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


def require_tool(name: str) -> str:
    """Path of an executable; skip locally / fail in CI when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found on PATH (Debian: apt-get install prometheus prometheus-alertmanager)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


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
def running_prometheus(workdir: Path, targets: Sequence[str], *, rule_files: Sequence[Path] = (),
                       alertmanager: str | None = None, job: str = "jaxobs",
                       interval: str = "1s") -> Iterator[Prometheus]:
    """Start a real Prometheus scraping ``targets`` (host:port) with its own config and data dir."""
    binary = require_tool("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(targets)}]}],
    }
    if rule_files:
        config["rule_files"] = [str(p) for p in rule_files]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    log = workdir / "prometheus.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=log_file, stderr=subprocess.STDOUT)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_until(lambda: http_get_json(f"{prom.url}/api/v1/status/buildinfo"),
                   30, what=f"prometheus to start (log: {log})")
        yield prom
    finally:
        stop(proc)


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
