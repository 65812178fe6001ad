"""The in-process ``/metrics`` server inside the user's program: slow clients cannot pile up threads."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import jaxobs

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import env_with_fakes  # noqa: E402

APP = textwrap.dedent("""
    import sys
    import jax.numpy as jnp
    import jaxobs
    f = jaxobs.jit(lambda x: x * 2, name="served")
    f(jnp.ones(2))
    server, _ = jaxobs.start_http_server(0, addr="127.0.0.1", request_timeout=1.0)
    print(server.server_address[1], flush=True)
    sys.stdin.readline()
""")


def test_500_slow_connections_neither_pile_up_threads_nor_block_scrapes():
    proc = subprocess.Popen([sys.executable, "-c", APP], env=env_with_fakes(JAX_PLATFORMS="cpu"),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        me = psutil.Process(proc.pid)
        base_threads = me.num_threads()
        for _ in range(500):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.0\r\nX-Slow: ")
                held.append(s)
            except OSError:
                break
        time.sleep(0.3)
        peak_threads = me.num_threads()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.0 200")
        time.sleep(2.0)  # past the 1 s request timeout plus the reaper tick
        cut = 0
        for s in held:  # the server has answered (408/503) and closed, or reset: never still waiting
            s.settimeout(0.01)
            try:
                s.recv(100)
                cut += 1
            except (TimeoutError, BlockingIOError):
                pass
            except OSError:
                cut += 1
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        print(f"threads: {base_threads} before, {peak_threads} with 500 slow clients; {cut} cut")
        assert 'jaxobs_calls_total{cache="miss",function="served"} 1.0' in body
        assert peak_threads - base_threads <= 20, (base_threads, peak_threads)
        assert cut == len(held)
    finally:
        for s in held:
            s.close()
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=20)


def test_start_http_server_raises_only_its_own_error(registry):
    with pytest.raises(jaxobs.MetricsServerError) as bad_addr:
        jaxobs.start_http_server(0, addr="not an address", registry=registry)
    assert "not an address" in str(bad_addr.value)
    with pytest.raises(jaxobs.MetricsServerError):
        jaxobs.start_http_server(70000, addr="127.0.0.1", registry=registry)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(jaxobs.PortInUseError):  # a MetricsServerError too
            jaxobs.start_http_server(taken.getsockname()[1], addr="127.0.0.1", registry=registry)
    finally:
        taken.close()
    assert issubclass(jaxobs.PortInUseError, jaxobs.MetricsServerError)
    assert not [t for t in threading.enumerate() if t.name == "jaxobs-metrics-http"]
