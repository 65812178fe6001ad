"""Hostile clients against a real exporter on 127.0.0.1: probes keep answering, memory stays bounded.

Every loop is bounded in count and time; every socket targets an exporter this module started.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import exporter, fake_app  # noqa: E402


def status_of(port: int, path: str, timeout: float = 5.0, headers: str = "") -> bytes:
    """The status line's code, or b'' (reset / closed without a status line)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\n{headers}\r\n".encode())
            data = b""
            for _ in range(64):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                if b"\r\n" in data:
                    break
    except OSError:
        return b""
    parts = data.split(b"\r\n", 1)[0].split(b" ")
    return parts[1] if len(parts) > 1 and data.startswith(b"HTTP/") else b""


class SlowClients:
    """``n`` connections that send a request line and then one header byte every ``every`` seconds."""

    def __init__(self, port: int, n: int, every: float = 0.5) -> None:
        self.port, self.n, self.every = port, n, every
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._one, daemon=True) for _ in range(n)]

    def _one(self) -> None:
        while not self.stop.is_set():  # reconnect when cut: the pressure lasts until stopped
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            except OSError:
                self.stop.wait(0.05)
                continue
            try:
                s.sendall(b"GET /metrics HTTP/1.0\r\n")
                for _ in range(100):
                    if self.stop.wait(self.every):
                        break
                    s.sendall(b"X")
            except OSError:
                pass
            finally:
                s.close()

    def __enter__(self) -> SlowClients:
        for t in self.threads:
            t.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    mp = tmp_path_factory.mktemp("mp")
    with fake_app(multiproc_dir=mp, ready=1.0):
        yield mp


def test_probes_answer_while_200_slow_clients_hold_every_slot(app_dir):
    with exporter(["--multiproc-dir", str(app_dir), "--collectors", "host",
                   "--max-connections", "64"]) as ex:
        assert status_of(ex.port, "/readyz") == b"200"
        answers: list[tuple[bytes, bytes]] = []
        with SlowClients(ex.port, 200):
            for _ in range(10):
                answers.append((status_of(ex.port, "/healthz"), status_of(ex.port, "/readyz")))
                time.sleep(0.1)
            refused = status_of(ex.port, "/metrics")
        assert answers == [(b"200", b"200")] * 10, answers
        assert refused in (b"200", b"503"), refused  # a status line either way, never a reset
        assert ex.proc.poll() is None


def test_a_refused_client_that_never_finishes_its_request_gets_a_status_line(app_dir):
    with exporter(["--multiproc-dir", str(app_dir), "--collectors", "host",
                   "--max-connections", "4"]) as ex:
        held = [socket.create_connection(("127.0.0.1", ex.port), timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", ex.port), timeout=5) as s:
                s.sendall(b"GET /metr")  # and nothing more
                answer = s.recv(200)
            assert answer.startswith(b"HTTP/1.0 408"), answer
        finally:
            for s in held:
                s.close()


def test_the_per_ip_limit_leaves_room_for_other_clients(app_dir):
    with exporter(["--multiproc-dir", str(app_dir), "--collectors", "host",
                   "--max-connections", "64", "--max-connections-per-ip", "6"]) as ex:
        held = [socket.create_connection(("127.0.0.1", ex.port), timeout=5) for _ in range(6)]
        try:
            time.sleep(0.2)
            assert status_of(ex.port, "/metrics") == b"503"  # this IP is at its limit...
            assert status_of(ex.port, "/healthz") == b"200"  # ...but probes still pass
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        assert status_of(ex.port, "/metrics") == b"200"


def test_readiness_blocked_on_a_fifo_neither_hangs_nor_leaks_threads(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    os.mkfifo(mp / "gauge_max_4242.db")  # named like the app's readiness file; nobody writes it
    with exporter(["--multiproc-dir", str(mp), "--collectors", "host"]) as ex:
        proc = psutil.Process(ex.proc.pid)
        started = time.monotonic()
        codes = [status_of(ex.port, "/readyz", timeout=10) for _ in range(80)]
        assert time.monotonic() - started < 30
        assert set(codes) == {b"503"}, codes  # not ready, said at once, every time
        assert proc.num_threads() < 40
        assert status_of(ex.port, "/metrics") == b"200"
        assert status_of(ex.port, "/healthz") == b"200"


def test_a_stalled_proxy_target_bounds_readiness_by_its_deadline():
    stall = socket.socket()
    stall.bind(("127.0.0.1", 0))
    stall.listen(200)  # accepts (in the backlog) and never answers
    try:
        url = f"http://127.0.0.1:{stall.getsockname()[1]}/metrics"
        with exporter(["--app-url", url, "--collectors", "host", "--scrape-timeout", "30"]) as ex:
            proc = psutil.Process(ex.proc.pid)
            results: list[tuple[bytes, float]] = []

            def probe() -> None:
                t0 = time.monotonic()
                results.append((status_of(ex.port, "/readyz", timeout=20), time.monotonic() - t0))

            threads = [threading.Thread(target=probe) for _ in range(30)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
            assert [c for c, _ in results] == [b"503"] * 30
            assert max(d for _, d in results) < 8, results
            assert proc.num_threads() < 45  # one readiness flight, not one per probe
    finally:
        stall.close()


def _peak_rss_during(pid: int, attack) -> int:
    proc = psutil.Process(pid)
    peak, stop = [proc.memory_info().rss], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak.append(proc.memory_info().rss)
            except psutil.Error:
                return
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        attack()
    finally:
        stop.set()
        sampler.join(timeout=5)
    return max(peak)


def header_bomb(port: int, clients: int = 64, lines: int = 99, line_bytes: int = 64 * 1024 - 64) -> None:
    """Legal-but-huge headers from ``clients`` at once: each holds its request open until all have sent."""
    line = b"X-Bomb: " + b"b" * (line_bytes - 10) + b"\r\n"
    auth = b"Authorization: Basic " + base64.b64encode(b"prom:" + b"p" * 40_000) + b"\r\n"
    barrier = threading.Barrier(clients)

    def one() -> None:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            s = None
        try:
            if s is not None:
                s.sendall(b"GET /metrics HTTP/1.0\r\n" + auth)
                for _ in range(lines):
                    s.sendall(line)
        except OSError:
            pass
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        if s is None:
            return
        try:
            s.sendall(b"\r\n")
            s.recv(100)
        except OSError:
            pass
        finally:
            s.close()

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)


def test_a_header_bomb_from_64_clients_keeps_rss_under_128_mib(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    with exporter(["--collectors", "host", "--max-connections", "64",
                   "--basic-auth-user", "prom", "--basic-auth-password-file", str(secret)]) as ex:
        peak = _peak_rss_during(ex.proc.pid, lambda: header_bomb(ex.port))
        print(f"peak RSS under the header bomb: {peak / 2**20:.1f} MiB")
        assert peak < 128 * 2**20, peak
        assert status_of(ex.port, "/healthz") == b"200"


def test_failed_basic_auth_backs_off_and_is_counted(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    wrong = "Authorization: Basic " + base64.b64encode(b"prom:guess").decode() + "\r\n"
    right = "Authorization: Basic " + base64.b64encode(b"prom:s3cret").decode() + "\r\n"
    with exporter(["--collectors", "host", "--basic-auth-user", "prom",
                   "--basic-auth-password-file", str(secret)]) as ex:
        codes: list[bytes] = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len(codes) < 2000:
            codes.append(status_of(ex.port, "/metrics", headers=wrong))
        checked = codes.count(b"401")
        assert codes.count(b"429") > 0
        assert checked <= 12, (checked, len(codes))  # 662 guesses a second before; a handful now
        for _ in range(30):  # the longest backoff reached in 2 s is under 3 s
            code = status_of(ex.port, "/metrics", headers=right)
            if code == b"200":
                break
            time.sleep(0.2)
        status, body = ex.get("/metrics", headers={"Authorization": right.split(": ", 1)[1].strip()})
        assert status == 200
        assert f"jaxobs_exporter_auth_failures_total {float(checked)}" in body, \
            [line for line in body.splitlines() if "auth_failures" in line]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "plain.key"),
            "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1")
    openssl("pkey", "-in", str(d / "plain.key"), "-aes256", "-passout", "pass:hunter2",
            "-out", str(d / "enc.key"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "other.key"))
    (d / "pw").write_text("hunter2\n")
    (d / "bad-pw").write_text("nope\n")
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    return d


def run_exporter_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-m", "jaxobs.exporter", "--address", "127.0.0.1", "--port", "0",
                           "--collectors", "host", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30, env=full_env)


@pytest.mark.parametrize("key, extra, expected", [
    ("enc.key", [], "the key is encrypted; pass its password with --tls-key-password-file"),
    ("enc.key", ["--tls-key-password-file", "bad-pw"], "wrong password for the encrypted key"),
    ("other.key", [], "does not belong to --tls-cert"),
])
def test_tls_key_problems_are_one_line_naming_the_file(certs, key, extra, expected):
    extra = [str(certs / a) if a.endswith("pw") else a for a in extra]
    done = run_exporter_cli("--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / key), *extra)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(certs / key) in lines[0], done.stderr


def test_a_bad_certificate_is_named(certs):
    done = run_exporter_cli("--tls-cert", str(certs / "garbage.pem"), "--tls-key", str(certs / "plain.key"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tls-cert" in lines[0] and "garbage.pem" in lines[0], done.stderr


@pytest.mark.parametrize("how", ["file", "env"])
def test_an_encrypted_key_with_its_password_serves_https(certs, how):
    import ssl

    args = ["--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / "enc.key")]
    env = None
    if how == "file":
        args += ["--tls-key-password-file", str(certs / "pw")]
    else:
        env = {**os.environ, "JAXOBS_EXPORTER_TLS_KEY_PASSWORD": "hunter2",
               "PYTHONPATH": str(Path(__file__).parent.parent)}
    with exporter(args, env=env, module=True) as ex:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        assert ex.get("/healthz", context=ctx)[0] == 200


def test_probes_over_the_cap_are_answered_over_tls_too(certs):
    import ssl

    args = ["--tls-cert", str(certs / "cert.pem"), "--tls-key", str(certs / "plain.key"),
            "--max-connections", "2"]
    with exporter(args, module=True) as ex:
        held = [socket.create_connection(("127.0.0.1", ex.port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.2)
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", ex.port), timeout=5) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    assert s.recv(100).startswith(b"HTTP/1.0 200")
        finally:
            for s in held:
                s.close()
