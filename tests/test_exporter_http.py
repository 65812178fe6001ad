"""Bad HTTP input against a real exporter on 127.0.0.1: it never crashes and never blocks a scrape.

Every loop here is bounded in count and time; every socket targets the
exporter this module started.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import exporter  # noqa: E402

REQUEST_TIMEOUT = 1.0
MAX_CONNECTIONS = 48


@pytest.fixture(scope="module")
def ex():
    with exporter(["--collectors", "host", "--request-timeout", str(REQUEST_TIMEOUT),
                   "--max-connections", str(MAX_CONNECTIONS)]) as running:
        yield running


def raw(ex, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes, return whatever the server answers before closing."""
    with socket.create_connection(("127.0.0.1", ex.port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def timed_scrape(ex) -> float:
    started = time.monotonic()
    status, body = ex.get("/metrics", timeout=10)
    assert status == 200 and "jaxobs_host_memory_available_bytes" in body
    return time.monotonic() - started


def assert_alive(ex) -> None:
    assert ex.proc.poll() is None, "exporter died"
    assert ex.get("/healthz", timeout=5)[0] == 200


@pytest.mark.parametrize("payload, status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET\r\n\r\n", b"400"),
    (b"GET /metrics HTTP/9.9\r\n\r\n", b"505"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n", b"414"),
    (b"GET /metrics HTTP/1.0\r\nX-Big: " + b"b" * 70_000 + b"\r\n\r\n", b"431"),
    (b"GET /metrics HTTP/1.0\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n", b"431"),
    (b"POST /metrics HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello", b"501"),
    (b"GET /metrics HTTP/1.0\r\nContent-Length: 100000000\r\n\r\n", b"400"),
    (b"GET /nope HTTP/1.0\r\n\r\n", b"404"),
])
def test_malformed_requests_get_an_error_status_and_the_server_lives(ex, payload, status):
    answer = raw(ex, payload)
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1:2] == [status], answer[:200]
    assert_alive(ex)


def test_a_client_that_connects_and_says_nothing_is_cut_at_the_request_timeout(ex):
    with socket.create_connection(("127.0.0.1", ex.port), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(10) == b""
        assert time.monotonic() - started < REQUEST_TIMEOUT + 2


def test_slowloris_neither_blocks_scrapes_nor_survives_its_deadline(ex):
    """Clients dribbling one header byte at a time, each well inside a per-recv timeout."""
    stop = threading.Event()
    cut: list[float] = []
    n_clients = 20

    def loris() -> None:
        try:
            s = socket.create_connection(("127.0.0.1", ex.port), timeout=10)
        except OSError:
            return
        started = time.monotonic()
        try:
            s.sendall(b"GET /metrics HTTP/1.0\r\n")
            for _ in range(40):  # at most 40 x 0.2 s
                if stop.is_set():
                    return
                s.sendall(b"X")
                time.sleep(0.2)
        except OSError:
            cut.append(time.monotonic() - started)
        finally:
            s.close()

    threads = [threading.Thread(target=loris, daemon=True) for _ in range(n_clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        durations = [timed_scrape(ex) for _ in range(10)]
        assert max(durations) < 2.0, durations
        for t in threads:
            t.join(timeout=12)
    finally:
        stop.set()
    # The server cut every dribbling client at about the request timeout (+ reaper tick + slack).
    assert len(cut) == n_clients
    assert max(cut) < REQUEST_TIMEOUT + 2.5, cut
    assert_alive(ex)


def test_a_flood_of_idle_connections_is_refused_not_queued_and_then_recovers(ex):
    held = []
    try:
        for _ in range(MAX_CONNECTIONS + 10):
            held.append(socket.create_connection(("127.0.0.1", ex.port), timeout=5))
        time.sleep(0.2)
        # Beyond the cap: an immediate 503 from the accept loop, not a hang.
        answer = raw(ex, b"GET /metrics HTTP/1.0\r\n\r\n", timeout=5)
        assert answer.startswith(b"HTTP/1.0 503"), answer[:100]
    finally:
        for s in held:
            s.close()
    # Idle ones are reaped or closed; scrapes work again right away.
    deadline = time.monotonic() + REQUEST_TIMEOUT + 3
    while True:
        try:
            timed_scrape(ex)
            break
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert_alive(ex)


def test_a_client_that_never_reads_the_response_does_not_block_others(ex):
    hogs = []
    try:
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", ex.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            hogs.append(s)
        assert timed_scrape(ex) < 2.0
    finally:
        for s in hogs:
            s.close()
    assert_alive(ex)


def test_many_concurrent_scrapes_all_succeed(ex):
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                timed_scrape(ex)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
