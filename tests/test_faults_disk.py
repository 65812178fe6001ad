"""A full, unwritable or missing metrics directory never kills the instrumented program.

The multiprocess files are mmaps: a page that cannot be backed by the filesystem
is a SIGBUS, which no Python code can catch.  jaxobs reserves the space first, so
a full disk becomes an ``OSError``; on the first one it stops writing files,
keeps serving in-process, counts it, and leaves a marker the sidecar reports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import env_with_fakes, exporter  # noqa: E402

# A real instrumented JAX program: many functions (so many series), a request, a flush at exit.
APP = textwrap.dedent("""
    import jax.numpy as jnp
    import jaxobs
    from jaxobs.telemetry import prometheus as prom
    for i in range(40):
        f = jaxobs.jit(lambda x, i=i: x * i, name=f"fn_{i}")
        with jaxobs.request("svc"):
            f(jnp.ones(3)).block_until_ready()
    prom.flush_multiprocess()
    print("RESULT", float(f(jnp.ones(3)).sum()))
""")


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str = "256k") -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8); the full-disk case is not exercised")
    target = tmp_path / "mp"
    target.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=20)


def fill(directory: Path) -> None:
    """Fill the filesystem to the last block (bounded: the tmpfs is small)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(4096):
            try:
                os.write(fd, b"x" * 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0


def run_app(directory: Path) -> subprocess.CompletedProcess[str]:
    env = env_with_fakes(PROMETHEUS_MULTIPROC_DIR=str(directory), JAX_PLATFORMS="cpu",
                         JAXOBS_FLUSH_INTERVAL="0.05")
    return subprocess.run([sys.executable, "-c", APP], env=env, capture_output=True, text=True,
                          timeout=120)


def sidecar_metrics(directory: Path) -> str:
    with exporter(["--multiproc-dir", str(directory), "--collectors", "host"]) as ex:
        status, body = ex.get("/metrics")
    assert status == 200
    return body


def disabled_lines(body: str) -> list[str]:
    return [line for line in body.splitlines()
            if line.startswith("jaxobs_exporter_app_writers_disabled{")]


def test_a_full_metrics_disk_does_not_kill_the_app_and_the_sidecar_shows_the_loss(tmp_path):
    with small_tmpfs(tmp_path) as mp:
        fill(mp)
        done = run_app(mp)
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        assert "RESULT 117.0" in done.stdout
        lines = disabled_lines(sidecar_metrics(mp))
        assert any('reason="no_space"' in line and line.endswith(" 1.0") for line in lines), lines


def test_a_disk_that_fills_while_running_does_not_kill_the_app(tmp_path):
    """Room for the first files, not for their growth: the failure comes mid-flush."""
    with small_tmpfs(tmp_path, size="160k") as mp:
        (mp / "filler").write_bytes(b"x" * (160 * 1024 - 3 * 65536))
        done = run_app(mp)
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        assert "RESULT 117.0" in done.stdout
        assert any('reason="no_space"' in line for line in disabled_lines(sidecar_metrics(mp)))


def test_an_unwritable_directory_is_counted_and_the_app_runs(tmp_path):
    mp = tmp_path / "ro"
    mp.mkdir()
    if os.geteuid() == 0:  # root writes through permissions: make it a read-only mount instead
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mp)],
                              capture_output=True, text=True, timeout=20)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {done.stderr.strip()}")
    else:
        mp.chmod(0o555)
    try:
        env = env_with_fakes(PROMETHEUS_MULTIPROC_DIR=str(mp), JAX_PLATFORMS="cpu")
        script = APP + "\nprint('ERRORS', jaxobs.internal_error_counts())\n"
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              timeout=120)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(mp)], capture_output=True, timeout=20)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RESULT 117.0" in done.stdout
    assert "'multiprocess_write': 1" in done.stdout, done.stdout


def test_a_missing_directory_degrades_and_start_http_server_serves_in_process(tmp_path):
    missing = tmp_path / "nope"
    script = textwrap.dedent("""
        import urllib.request
        import jax.numpy as jnp
        import jaxobs
        f = jaxobs.jit(lambda x: x + 1, name="lonely")
        f(jnp.ones(2))
        server, thread = jaxobs.start_http_server(0, addr="127.0.0.1")
        port = server.server_address[1]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        assert 'jaxobs_calls_total{cache="miss",function="lonely"} 1.0' in body, body[:2000]
        assert 'jaxobs_internal_errors_total{component="multiprocess_write"}' in body
        print("OK")
    """)
    env = env_with_fakes(PROMETHEUS_MULTIPROC_DIR=str(missing), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout
