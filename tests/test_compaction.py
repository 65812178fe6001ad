"""Exited writers' multiprocess files are archived with their totals kept.

Real processes write the files (jaxobs with ``PROMETHEUS_MULTIPROC_DIR``);
liveness is the lock each writer holds, so these tests never look at pids.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from jaxobs.exporter import compaction
from jaxobs.exporter.compaction import Compactor
from jaxobs.exporter.sources import MultiprocessSource

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import sys, jaxobs
n = int(sys.argv[1])
for i in range(n):
    with jaxobs.request("archive-svc"):
        pass
jaxobs.set_ready(True)
jaxobs.flush_multiprocess()
print("written", flush=True)
if sys.argv[2] == "stay":
    sys.stdin.readline()
"""


def _writer(directory: Path, n: int, stay: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT),
           "JAXOBS_FLUSH_INTERVAL": "3600", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(n), "stay" if stay else "exit"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    return proc


def _totals(directory: Path) -> dict[str, float]:
    """What prometheus-client itself reads from the directory (no compaction involved)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return _parse(generate_latest(registry).decode())


def _parse(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("jaxobs_request") and "archive-svc" in line:
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
        if line.startswith("jaxobs_ready "):
            out["ready"] = float(line.rsplit(" ", 1)[1])
    return out


def _via_sidecar(directory: Path) -> dict[str, float]:
    from prometheus_client.exposition import generate_latest as gen

    class One:
        def collect(self):  # noqa: ANN202
            return MultiprocessSource(directory).collect()

    registry = CollectorRegistry()
    registry.register(One())
    return _parse(gen(registry).decode())


@pytest.fixture
def mpdir(tmp_path: Path) -> Path:
    d = tmp_path / "mp"
    d.mkdir()
    return d


def test_exited_writers_are_archived_and_totals_kept(mpdir: Path) -> None:
    for n in (2, 3, 4):
        _writer(mpdir, n, stay=False).wait(timeout=60)
    live = _writer(mpdir, 5, stay=True)
    try:
        before = _totals(mpdir)
        assert before['jaxobs_requests_total{outcome="ok",service="archive-svc"}'] == 14
        files_before = sorted(p.name for p in mpdir.glob("*.db"))
        after = _via_sidecar(mpdir)  # the sidecar's first scrape compacts
        assert {k: v for k, v in after.items() if k != "ready"} == {
            k: v for k, v in before.items() if k != "ready"}
        names = sorted(p.name for p in mpdir.glob("*.db"))
        assert len(names) < len(files_before)
        assert all(n.endswith((f"_{live.pid}.db", "_archive.db")) for n in names), names
        assert sorted(p.name for p in mpdir.glob("*.lock")) == [f"jaxobs-{live.pid}.lock"]
        # the live writer is never touched, and its readiness still counts
        assert after["ready"] == 1
        assert MultiprocessSource(mpdir).readiness().ready
    finally:
        live.kill()
        live.wait()
    # kill -9: the kernel drops the lock, so the next compaction archives it too
    result = Compactor(str(mpdir)).compact()
    assert result.pids == (live.pid,)
    final = _totals(mpdir)
    assert final['jaxobs_requests_total{outcome="ok",service="archive-svc"}'] == 2 + 3 + 4 + 5
    assert final['jaxobs_request_duration_seconds_count{service="archive-svc",start="steady"}'] == 14
    assert "ready" not in final  # a dead process's readiness is not archived
    assert not MultiprocessSource(mpdir).readiness().ready
    assert sorted(p.name for p in mpdir.glob("*")) == sorted(
        p.name for p in mpdir.glob("*_archive.db"))


def test_a_compaction_interrupted_midway_is_finished_on_restart(mpdir: Path, monkeypatch) -> None:
    for n in (2, 3):
        _writer(mpdir, n, stay=False).wait(timeout=60)
    before = _totals(mpdir)
    real_apply = Compactor._apply
    monkeypatch.setattr(Compactor, "_apply", lambda self, plan: None)  # killed after the journal
    Compactor(str(mpdir)).compact()
    assert (mpdir / compaction.JOURNAL).exists()
    monkeypatch.setattr(Compactor, "_apply", real_apply)
    # everything but the live-only gauges (in flight, ready), which exited writers drop
    assert _via_sidecar(mpdir) == {k: v for k, v in before.items()
                                   if k != "ready" and "in_flight" not in k}
    assert not (mpdir / compaction.JOURNAL).exists()
    assert not list(mpdir.glob("*.tmp"))


def test_writers_without_a_lock_file_are_left_alone(mpdir: Path) -> None:
    _writer(mpdir, 2, stay=False).wait(timeout=60)
    for lock in mpdir.glob("*.lock"):  # e.g. a plain prometheus-client process
        lock.unlink()
    files = sorted(p.name for p in mpdir.glob("*.db"))
    assert Compactor(str(mpdir)).compact().files == 0
    assert sorted(p.name for p in mpdir.glob("*.db")) == files


FORKING_WRITER = """
import os, sys, jaxobs
with jaxobs.request("archive-svc"):
    pass
jaxobs.flush_multiprocess()
child = os.fork()
if child == 0:  # a worker: writes under its own pid, outlives its parent
    with jaxobs.request("archive-svc"):
        pass
    jaxobs.flush_multiprocess()
    print(os.getpid(), flush=True)
    sys.stdin.readline()
    os._exit(0)
os._exit(0)  # the parent exits at once; its lock must not live on in the child
"""


def test_a_forked_worker_does_not_keep_its_parent_alive(mpdir: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mpdir), "PYTHONPATH": str(ROOT),
           "JAXOBS_FLUSH_INTERVAL": "3600", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-W", "ignore", "-c", FORKING_WRITER], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        proc.wait(timeout=60)
        before = _totals(mpdir)
        result = Compactor(str(mpdir)).compact()
        assert result.pids == (proc.pid,)  # the parent is archived, the live worker is not
        assert sorted(p.name for p in mpdir.glob("*.lock")) == [f"jaxobs-{child}.lock"]
        after = _totals(mpdir)
        key = 'jaxobs_requests_total{outcome="ok",service="archive-svc"}'
        assert after[key] == before[key] >= 2
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # the worker reads EOF and exits
