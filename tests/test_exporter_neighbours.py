"""``jaxobs exporter --scrape``: Orbax/Grain-style neighbour endpoints merged into one /metrics.

The exporter runs as a real process; the neighbours are real HTTP servers on
127.0.0.1 serving the Prometheus text format the way Orbax's and Grain's
telemetry servers do (prometheus-client's exposition).  What is checked is what
Prometheus would read from the sidecar.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import REPO, env_with_fakes, exporter, fake_app  # noqa: E402

from jaxobs import catalog  # noqa: E402


def orbax_like_exposition() -> bytes:
    registry = CollectorRegistry()
    Counter("orbax_checkpoint_saves", "Checkpoints saved.", registry=registry).inc(3)
    Gauge("orbax_checkpoint_last_save_step", "Step of the last save.", registry=registry).set(1200)
    return generate_latest(registry)


@contextmanager
def neighbour(body: bytes, *, delay: float = 0.0) -> Iterator[http.server.ThreadingHTTPServer]:
    """A local /metrics endpoint answering ``body`` after ``delay`` seconds."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the sidecar gave up on us
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/metrics"


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → {labels: value}; fails on duplicate families (an invalid exposition)."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    names = []
    for fam in text_string_to_metric_families(text):
        names.append(fam.name)
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    assert len(names) == len(set(names)), f"duplicate families in {sorted(names)}"
    return out


def up(series: dict, collector: str) -> float | None:
    return series.get(catalog.COLLECTOR_UP.name, {}).get((("collector", collector), ("device", "")))


def test_merges_a_neighbour_and_reports_its_health_when_it_goes_down():
    with fake_app(serve=True, series=2) as app, neighbour(orbax_like_exposition()) as orbax:
        app_url = f"http://127.0.0.1:{app.port}/metrics"
        with exporter(["--app-url", app_url, "--collectors", "host", "--scrape", f"orbax={url_of(orbax)}"]) as ex:
            status, text = ex.get("/metrics")
            assert status == 200
            series = parse(text)
            assert series["orbax_checkpoint_saves_total"][()] == 3
            assert series["orbax_checkpoint_last_save_step"][()] == 1200
            assert up(series, "orbax") == 1 and up(series, "app") == 1
            assert catalog.REQUESTS.name in series  # the app's own series are still there

            orbax.shutdown()
            orbax.server_close()
            status, text = ex.get("/metrics")
            assert status == 200
            series = parse(text)
            assert up(series, "orbax") == 0  # the neighbour's health, per source
            assert "orbax_checkpoint_saves_total" not in series
            assert up(series, "app") == 1 and catalog.REQUESTS.name in series
            assert ex.get("/readyz")[0] == 200  # a neighbour never decides readiness


def test_a_slow_or_oversized_neighbour_is_cut_off_and_the_rest_is_served():
    big = b"# TYPE filler gauge\n" + b"".join(b"filler{i=\"%d\"} 1\n" % i for i in range(5000))
    with neighbour(orbax_like_exposition(), delay=5.0) as slow, neighbour(big) as huge, \
            neighbour(orbax_like_exposition()) as fine:
        args = ["--collectors", "host", "--scrape-deadline", "0.5", "--scrape-max-bytes", "4096",
                "--scrape", f"slow={url_of(slow)}", "--scrape", f"huge={url_of(huge)}", "--scrape", url_of(fine)]
        with exporter(args) as ex:
            status, text = ex.get("/metrics")
            assert status == 200
            series = parse(text)
            assert up(series, "slow") == 0
            assert up(series, "huge") == 0 and "filler" not in series
            fine_name = f"scrape:127.0.0.1:{fine.server_address[1]}"  # the default name: host:port
            assert up(series, fine_name) == 1
            assert series["orbax_checkpoint_saves_total"][()] == 3
            assert series[catalog.HOST_MEMORY_AVAILABLE.name][()] > 0


def test_a_bad_scrape_url_is_one_clear_line():
    env = env_with_fakes()
    for args, message in ((["--scrape", "localhost:9431"], "--scrape needs an http(s) URL"),
                          (["--scrape", "a=http://127.0.0.1:1/m", "--scrape", "a=http://127.0.0.1:2/m"],
                           "--scrape names must be unique")):
        out = subprocess.run([sys.executable, "-m", "jaxobs.exporter", "--port", "0", "--collectors", "host",
                              *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
