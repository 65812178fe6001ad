"""Helpers of the Kubernetes control-loop end-to-end tests: a real Prometheus whose targets
carry their own labels (canary/stable), and the example load generator as a process."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from realtools import REPO, Prometheus, prometheus_with_config, stop

LOADGEN = REPO / "examples" / "inference_server" / "loadgen.py"


@contextlib.contextmanager
def prometheus_with_labels(workdir: Path, job: str, targets: dict[str, dict[str, str]],
                           rule_files: Sequence[Path]) -> Iterator[Prometheus]:
    """A real Prometheus on 127.0.0.1 scraping ``{host:port: labels}`` every second and
    evaluating ``rule_files`` every second."""
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": job, "static_configs": [
            {"targets": [target], "labels": labels} for target, labels in targets.items()]}],
        "rule_files": [str(p) for p in rule_files],
    }
    with prometheus_with_config(workdir, config) as prom:
        yield prom


@contextlib.contextmanager
def load(url: str, *, duration: float, concurrency: int = 2, error_rate: float = 0.0
         ) -> Iterator[subprocess.Popen[bytes]]:
    """``examples/inference_server/loadgen.py`` against ``url`` in the background."""
    proc = subprocess.Popen([sys.executable, str(LOADGEN), "--url", url, "--requests", "1000000",
                             "--duration", str(duration), "--concurrency", str(concurrency),
                             "--error-rate", str(error_rate)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            stop(proc)
