"""``jaxobs demo --stack``: the whole loop on 127.0.0.1, and nothing left behind.

Run as a user runs it (a subprocess of the CLI, real Prometheus and Alertmanager from
Debian).  First a run interrupted with Ctrl-C (SIGINT) once the stack is up; then, at once,
a full run: the injected error burst pages the local pager, with summary, runbook path and
labels, and every page resolves.  After each run every process it started is gone, its
ports are free and its temporary directory is removed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from realtools import require_tool

from jaxobs.demo.processes import port_is_free

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent


def _start(out: Path) -> tuple[subprocess.Popen[str], list[str]]:
    # Ctrl-C must reach the demo even when this run ignores SIGINT (a background job, nohup,
    # some CI runners): an ignored signal stays ignored across exec, a caught one is reset to
    # the default, which is what the demo gets from a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "jaxobs.cli", "demo", "--stack", "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                env={**os.environ, "JAX_PLATFORMS": "cpu"})
    finally:
        signal.signal(signal.SIGINT, previous)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too; so is a reused pid running something else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that name ``text`` (e.g. the stack's temp dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def _check_nothing_left(output: str) -> dict[str, int]:
    pids = {name: int(pid) for name, pid in re.findall(r"started (\w+)\s+pid (\d+)", output)}
    assert set(pids) == {"alertmanager", "sidecar", "prometheus"}, output
    ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", output)]
    workdir = re.search(r"temporary data in (\S+)\)", output)
    assert workdir, output
    assert not [name for name, pid in pids.items() if _alive(pid)], output
    assert all(port_is_free(p) for p in ports), (ports, output)
    assert not Path(workdir.group(1)).exists()
    assert not _processes_mentioning(workdir.group(1))
    return pids


def _exit_code(proc: subprocess.Popen[str], lines: list[str], timeout: float) -> int:
    """The demo's exit code; if it hangs, kill it and fail with what it printed (where it stopped)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"the demo did not stop within {timeout:.0f}s; its output:\n" + "\n".join(lines))


def test_stack_interrupted_then_full_run_pages_resolves_and_leaves_nothing(tmp_path: Path) -> None:
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")

    # 0. What a demo killed with SIGKILL leaves: its temporary directory (the children die with it).
    import tempfile

    exited = subprocess.Popen(["true"])
    exited.wait()  # reaped: its pid belongs to no process now
    stale = Path(tempfile.mkdtemp(prefix="jaxobs-demo-stack-"))
    (stale / "owner.pid").write_text(str(exited.pid))

    # 1. Ctrl-C once the stack is up: every part stops (and the stale directory is swept).
    proc, lines = _start(tmp_path / "first")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not any("Prometheus alerts:" in line for line in lines):
        assert proc.poll() is None, "\n".join(lines)
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert _exit_code(proc, lines, 120) == 130, "\n".join(lines)
    time.sleep(0.2)  # the reader thread drains the last lines
    output = "\n".join(lines)
    assert "interrupted: stopping the stack" in output
    _check_nothing_left(output)
    assert not stale.exists()

    # 2. A second run works at once, and this time runs to the end.
    started = time.monotonic()
    proc, lines = _start(tmp_path / "second")
    try:
        code = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    output = "\n".join(lines)
    assert code == 0, output
    page = re.search(r"^\[PAGE\] FIRING\s+JaxobsErrorBudgetBurn\n"
                     r"    summary: (demo-inference/availability: error budget burning .*)\n"
                     r"    runbook: (\S+)\n"
                     r"    labels:  (.*)$", output, re.M)
    assert page, output
    runbook = Path(page.group(2))
    assert runbook == tmp_path / "second" / "runbooks" / "JaxobsErrorBudgetBurn.md" and runbook.exists()
    for label in ("severity=page", "service=demo-inference", "slo=availability", "team=demo"):
        assert label in page.group(3)
    assert re.search(r"^\[PAGE\] RESOLVED\s+JaxobsErrorBudgetBurn$", output, re.M), output
    assert ">>> every page resolved" in output
    assert (tmp_path / "second" / "report.html").stat().st_size > 1000
    _check_nothing_left(output)
    print(f"\ndemo --stack: full run {time.monotonic() - started:.0f}s; "
          + next(line for line in lines if line.startswith(">>> paged")))


def test_stack_without_prometheus_says_how_to_get_it(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "jaxobs.cli", "demo", "--stack", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120, cwd=REPO,
                         env={**os.environ, "PATH": str(tmp_path)})  # nothing on PATH
    assert out.returncode == 1
    assert out.stderr.startswith("Error: --stack needs prometheus and alertmanager on PATH. Fix: ")
    assert "apt-get install prometheus prometheus-alertmanager" in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written before the check
