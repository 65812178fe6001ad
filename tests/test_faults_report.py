"""``jaxobs report --snapshot`` against hostile servers and files on 127.0.0.1: one line, bounded.

Each run is the real CLI in a child process with a 2 GiB address-space limit; its own peak RSS
comes back through a file written at exit.
"""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import atexit, resource, runpy, sys
rss_file = sys.argv[1]
def _peak_kib():  # VmHWM is this program's own peak; ru_maxrss would include the forked parent's
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return line.split()[1]
    return str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
atexit.register(lambda: open(rss_file, "w").write(_peak_kib()))
sys.argv = ["jaxobs", "report", *sys.argv[2:]]
runpy.run_module("jaxobs.cli", run_name="__main__")
"""


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_report(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[int, str, float, int]:
    rss_file = tmp_path / "rss"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", CHILD, str(rss_file), *args, "-o", str(tmp_path / "r.png")],
                          capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=_limit)
    seconds = time.monotonic() - started
    rss = int(rss_file.read_text() or 0) * 1024 if rss_file.exists() else 0
    return done.returncode, done.stderr, seconds, rss


@contextmanager
def hostile_server(serve: Callable[[socket.socket], None]) -> Iterator[str]:
    """One connection at a time on 127.0.0.1; ``serve`` gets each accepted socket."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(30)
                    conn.recv(65536)
                    serve(conn)
                except OSError:
                    pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/metrics"
    finally:
        stop.set()
        t.join(timeout=10)
        srv.close()


HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"


def endless(conn: socket.socket) -> None:
    conn.sendall(HEAD)
    block = b"# " + b"x" * 65_000 + b"\n"
    for _ in range(20_000):  # at most 1.3 GB; the client hangs up long before
        conn.sendall(block)


def huge_page(conn: socket.socket) -> None:
    body_size = 300 * 1024 * 1024
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % body_size)
    block = b"# " + b"y" * 65_000 + b"\n"
    for _ in range(body_size // len(block)):
        conn.sendall(block)


def dribble(conn: socket.socket) -> None:
    conn.sendall(HEAD)
    for _ in range(60):  # one byte every 0.5 s for at most 30 s
        conn.sendall(b"#")
        time.sleep(0.5)


def test_an_endless_stream_stops_at_the_size_cap(tmp_path):
    with hostile_server(endless) as url:
        code, err, seconds, rss = run_report(tmp_path, "--snapshot", url)
    print(f"endless stream: {seconds:.1f}s, peak RSS {rss / 2**20:.0f} MiB")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "more than 67,108,864 bytes" in lines[0], err[-2000:]
    assert rss < 400 * 2**20


def test_a_300_mb_page_stops_at_the_size_cap(tmp_path):
    with hostile_server(huge_page) as url:
        code, err, seconds, rss = run_report(tmp_path, "--snapshot", url)
    print(f"300 MB page: {seconds:.1f}s, peak RSS {rss / 2**20:.0f} MiB")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "more than 67,108,864 bytes" in lines[0], err[-2000:]
    assert rss < 400 * 2**20


def test_a_dribbling_server_hits_the_total_deadline(tmp_path):
    with hostile_server(dribble) as url:
        code, err, seconds, _ = run_report(tmp_path, "--snapshot", url, "--timeout", "2")
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "not complete after 2s" in lines[0], err[-2000:]
    assert seconds < 15  # 2 s deadline + one byte interval + interpreter start


@pytest.mark.parametrize("body, expected", [
    (b"this is { not metrics\n", "not Prometheus text exposition format"),
    (b"\xff\xfe\x00garbage\n", "not UTF-8 text"),
    (b'# TYPE jaxobs_request_duration_seconds histogram\n'
     b'jaxobs_request_duration_seconds_bucket{service="s",start="warm",le="abc"} 1\n',
     "not Prometheus text exposition format"),
])
def test_bad_exposition_gets_one_line(tmp_path, body, expected):
    snap = tmp_path / "snap.txt"
    snap.write_bytes(body)
    code, err, _, _ = run_report(tmp_path, "--snapshot", str(snap))
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and expected in lines[0] and str(snap) in lines[0], err[-2000:]


def test_bad_exposition_from_a_url_gets_one_line(tmp_path):
    with hostile_server(lambda c: c.sendall(HEAD + b"\xff\xfe bad\n")) as url:
        code, err, _, _ = run_report(tmp_path, "--snapshot", url)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "not UTF-8" in lines[0], err[-2000:]


@pytest.mark.parametrize("objective", ["100", "0", "nan", "-5", "150"])
def test_the_objective_is_validated(tmp_path, objective):
    snap = tmp_path / "snap.txt"
    snap.write_text('jaxobs_requests_total{service="s",outcome="ok"} 10\n')
    code, err, _, _ = run_report(tmp_path, "--snapshot", str(snap), "--objective", objective)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "--objective" in lines[0], err[-2000:]
