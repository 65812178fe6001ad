"""``jaxobs demo --stack``: the whole loop on 127.0.0.1, from a JAX request to a page.

workload (this process, writing a multiprocess directory) → ``jaxobs exporter``
(the sidecar) → Prometheus (the generated rules) → Alertmanager (the generated
routing) → a local webhook that prints each notification.  After a steady
baseline the workload injects an error burst until the page arrives, then runs
clean until the page resolves.

Alerting is shortened so that fits in a few minutes: every burn-rate window and
``for`` is divided by 60 (the 1h/5m page tier becomes 1m/5s), and so are
Alertmanager's group timings; Prometheus scrapes and evaluates every second.
Expressions, routes and inhibitions are as generated.

Every process it starts is stopped at the end, on Ctrl-C, or on SIGTERM; the
temporary directory (configs, multiprocess files, TSDB) is removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxobs.demo import config
from jaxobs.demo.processes import (
    Child,
    Pager,
    Received,
    StackError,
    free_port,
    get_json,
    listening_port,
    port_is_free,
    start,
    stop_all,
    wait_for,
)

SCALE = 60  # hours become minutes, minutes seconds
BASELINE_SECONDS = 15.0  # clean traffic before the burst, so every window has a baseline
MAX_BURST_SECONDS = 75.0
MAX_RESOLVE_SECONDS = 120.0
ERROR_RATE = 0.25
WORKDIR_PREFIX = "jaxobs-demo-stack-"


@dataclass
class StackResult:
    """What the run showed; the CLI prints it, the tests check it."""

    pids: dict[str, int] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    workdir: str = ""
    paged: Received | None = None
    resolved: Received | None = None
    report: str = ""
    seconds: float = 0.0
    interrupted: bool = False


def find_tools() -> dict[str, str]:
    """Paths of prometheus and alertmanager, or a StackError saying how to get them."""
    found = {"prometheus": shutil.which("prometheus"),
             "alertmanager": shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise StackError(
            f"--stack needs {' and '.join(missing)} on PATH. Fix: on Debian/Ubuntu "
            "`sudo apt-get install prometheus prometheus-alertmanager`, or put the release "
            "binaries from https://prometheus.io/download/ on PATH")
    return {k: str(v) for k, v in found.items()}


def _is_page(labels: dict[str, str]) -> bool:
    return labels.get("severity") == "page" and labels.get("service") == "demo-inference" \
        and labels.get("slo") == "availability"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo like Ctrl-C does (the same cleanup path)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Stack:
    """Starts the parts, runs the scenario, and stops everything it started."""

    def __init__(self, out_dir: str, spec: str | None, echo: Callable[[str], None],
                 max_seconds: float = 240.0) -> None:
        self.out_dir = out_dir
        self.spec = spec
        self.echo = echo
        self.max_seconds = max_seconds
        self.children: list[Child] = []
        self.result = StackResult()

    # -- start -------------------------------------------------------------------------

    def _start_parts(self, work: Path, pager: Pager, tools: dict[str, str]) -> tuple[str, str]:
        files = config.artifacts(self.spec, scale=SCALE)
        from jaxobs.generate import ALERTMANAGER_PATH, RULES_PATH

        rules = work / "jaxobs.rules.yaml"
        rules.write_text(files[RULES_PATH])
        am_port, prom_port = free_port(), free_port()
        (work / "alertmanager.yml").write_text(
            config.alertmanager_config(files[ALERTMANAGER_PATH], webhook_url=pager.url))
        am = self._start("alertmanager", [
            tools["alertmanager"], f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="], work)
        am.url = f"http://127.0.0.1:{am_port}"

        multiproc = work / "multiproc"
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        sidecar = self._start("sidecar", [
            sys.executable, "-m", "jaxobs.exporter", "--address", "127.0.0.1", "--port", "0",
            "--multiproc-dir", str(multiproc), "--collectors", "host", "--log-level", "warning"],
            work, env)
        sidecar_port = wait_for(lambda: listening_port(sidecar), 30, sidecar, "the sidecar to listen")
        sidecar.url = f"http://127.0.0.1:{sidecar_port}"
        self.result.ports.append(sidecar_port)

        endpoints = config.Endpoints(target=f"127.0.0.1:{sidecar_port}", alertmanager=f"127.0.0.1:{am_port}",
                                     scrape_interval="1s", evaluation_interval="1s")
        (work / "prometheus.yml").write_text(config.prometheus_config(endpoints, [str(rules)]))
        prom = self._start("prometheus", [
            tools["prometheus"], f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}"], work)
        prom.url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: get_json(f"{am.url}/api/v2/status"), 30, am, "Alertmanager to answer")
        wait_for(lambda: get_json(f"{prom.url}/api/v1/status/buildinfo"), 30, prom, "Prometheus to answer")
        for child in self.children:
            self.echo(f"  started {child.name:<12} pid {child.pid:<7} {child.url}")
        self.echo(f"  pager        (this process) {pager.url}/page and /ticket")
        return prom.url, am.url

    def _start(self, name: str, argv: list[str], work: Path, env: dict[str, str] | None = None) -> Child:
        child = start(name, argv, work, env)
        self.children.append(child)
        self.result.pids[name] = child.pid
        for arg in argv:
            if arg.startswith("--web.listen-address="):
                self.result.ports.append(int(arg.rsplit(":", 1)[1]))
        return child

    # -- run ---------------------------------------------------------------------------

    def run(self) -> StackResult:
        from jaxobs.demo import workload

        tools = find_tools()
        started = time.monotonic()
        _sweep_stale_workdirs()
        work = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (work / "owner.pid").write_text(str(os.getpid()))
        self.result.workdir = str(work)
        controls = workload.Controls(error_rate=ERROR_RATE)
        runner: threading.Thread | None = None
        previous_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.echo("the whole loop on 127.0.0.1: this process runs the JAX workload; the sidecar "
                  "serves its metrics;\nPrometheus evaluates the generated rules; Alertmanager "
                  "routes pages and tickets to a local pager\n(alerting windows divided by "
                  f"{SCALE}: the 1h/5m page tier becomes 1m/5s).  Ctrl-C stops everything.\n")
        self.echo(f"starting the stack (temporary data in {work}) …")
        try:
            with _sigterm_as_interrupt(), Pager(self.echo, f"{self.out_dir}/runbooks") as pager:
                # The workload first: its warm-up and deliberate recompiles happen before anything
                # scrapes, so the alerts start from steady traffic (as after a real rollout).
                (work / "multiproc").mkdir()
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "multiproc")  # before it records
                runner = threading.Thread(target=workload.run, name="jaxobs-demo-workload", kwargs=dict(
                    duration=self.max_seconds, port=None, echo=lambda line: self.echo(f"  workload | {line}"),
                    controls=controls, progress_every=10.0), daemon=True)
                runner.start()
                wait_for(lambda: controls.settled.is_set() or not runner.is_alive(), 180,
                         what="the workload to warm up")
                if not controls.settled.is_set():
                    raise StackError("the workload stopped before it warmed up (see its output above)")
                prom_url, am_url = self._start_parts(work, pager, tools)
                self.echo(f"\nPrometheus alerts: {prom_url}/alerts   ·   Alertmanager: {am_url}\n")
                self._scenario(prom_url, pager, controls)
                self.result.report = self._write_report(prom_url)
        except KeyboardInterrupt:
            self.result.interrupted = True
            self.echo("\ninterrupted: stopping the stack …")
        finally:
            controls.stop.set()
            if runner is not None:
                runner.join(30)
            self._stop_all(work)
            if previous_env is None:
                os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
            else:
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous_env
        self.result.seconds = time.monotonic() - started
        return self.result

    def _scenario(self, prom_url: str, pager: Pager, controls: Any) -> None:
        wait_for(lambda: _query(prom_url, 'count(up{job=~"demo-.*"} == 1) == 2'), 30,
                 what="Prometheus to scrape both demo jobs")
        self.echo(f"steady traffic for {BASELINE_SECONDS:.0f}s (every SLO records its baseline) …")
        time.sleep(BASELINE_SECONDS)
        recording = _query(prom_url, 'count(jaxobs_slo:sli_error:ratio{window="5s"})') or \
            _query(prom_url, "count(count by (service, slo) (jaxobs_slo:sli_error:ratio))")
        self.echo(f"  SLO series recording: {int(float(recording[0]['value'][1])) if recording else 0}")

        self.echo(f"\n>>> injecting an error burst: {controls.error_rate:.0%} of requests fail "
                  "(an upstream dependency times out) …")
        controls.burst.set()
        burst_start = time.monotonic()
        page = wait_for(lambda: pager.first("page", "firing", _is_page), MAX_BURST_SECONDS,
                        what="the page to arrive")
        self.result.paged = page
        self.echo(f">>> paged {page.at - burst_start:.0f}s after the burst began; errors stop now\n")
        controls.burst.clear()
        resolved = wait_for(lambda: pager.all_resolved("page", _is_page), MAX_RESOLVE_SECONDS,
                            what="every page to resolve")
        self.result.resolved = resolved
        self.echo(f">>> every page resolved, {resolved.at - page.at:.0f}s after the first one\n")

    def _write_report(self, prom_url: str) -> str:
        out = Path(self.out_dir) / "report.html"
        try:
            from jaxobs.generate.write import write_atomic
            from jaxobs.report.oncall import from_prometheus_oncall
            from jaxobs.report.page import render_oncall_html

            write_atomic(out, render_oncall_html(from_prometheus_oncall(prom_url, range_seconds=300)))
        except Exception as exc:  # the report is a bonus: the loop itself already ran
            self.echo(f"(no report: {exc})")
            return ""
        self.echo(f"wrote the live report: {out}")
        return str(out)

    # -- stop --------------------------------------------------------------------------

    def _stop_all(self, work: Path) -> None:
        from jaxobs.telemetry import prometheus

        stop_all(self.children)  # all at once: Prometheus stops evaluating as the sidecar goes
        for flusher in list(prometheus._flushers.values()):  # no writes into a removed directory
            flusher.close()
        shutil.rmtree(work, ignore_errors=True)
        busy = [p for p in self.result.ports if not port_is_free(p)]
        self.echo(f"stopped {len(self.children)} processes "
                  f"({', '.join(f'{c.name} {c.pid}' for c in self.children)}); "
                  f"removed {work}" + (f"; ports still busy: {busy}" if busy else "; ports freed"))


def _sweep_stale_workdirs() -> None:
    """Remove temporary directories of earlier runs whose demo was killed (SIGKILL skips cleanup;
    their children died with them through the parent-death signal)."""
    for path in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            owner = int((path / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):
            pass  # not ours to judge: unreadable, another user's, or still being created


def _query(prom_url: str, expr: str) -> list[dict[str, Any]]:
    import urllib.parse

    data = get_json(f"{prom_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    return list(data["data"]["result"])


def run_stack(out_dir: str, spec: str | None, echo: Callable[[str], None] = print,
              max_seconds: float = 240.0) -> StackResult:
    return Stack(out_dir, spec, echo, max_seconds).run()


__all__ = ["StackError", "StackResult", "find_tools", "run_stack"]
