"""The example inference server and its load generator, with real JAX on CPU.

In-process tests drive ``InferenceApp`` and its HTTP server with an isolated
registry; one test runs ``server.py`` as a process, the way users start it.
Compile counts are exact: bucketing is the claim under test.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from realtools import REPO, running_inference_server

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog

sys.path.insert(0, str(REPO / "examples" / "inference_server"))

import loadgen  # noqa: E402
import pager  # noqa: E402
import server  # noqa: E402
from batching import DEFAULT_BUCKETS, bucket_for, pad_rows  # noqa: E402

FEATURES = server.ModelConfig().features
#: JAX caches compiled executables per function *and shapes* across jit objects, so a model
#: another test already compiled would not compile again: each app gets its own hidden size.
_HIDDEN = itertools.count(200)


@pytest.fixture(autouse=True)
def not_ready() -> Iterator[None]:
    """Readiness is process-wide: every test starts (and leaves) the process not ready."""
    jaxobs.set_ready(False)
    yield
    jaxobs.set_ready(False)


def make_app(registry: CollectorRegistry, **faults: Any) -> server.InferenceApp:
    return server.InferenceApp(server.ModelConfig(hidden=next(_HIDDEN)), faults=server.Faults(**faults),
                               registry=registry)


@pytest.fixture
def app(registry: CollectorRegistry) -> Iterator[server.InferenceApp]:
    application = make_app(registry, allow=True, slow_seconds=0.05)
    yield application
    application.close()


@pytest.fixture
def http(app: server.InferenceApp) -> Iterator[str]:
    httpd, _ = server.serve(app, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def rows(n: int, value: float = 0.5) -> list[list[float]]:
    return [[value] * FEATURES for _ in range(n)]


def call(url: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


def compiles(registry: CollectorRegistry) -> dict[str, float]:
    rec = jaxobs.telemetry.recorder_for(registry)
    return {v[1]: s.value() for v, s in rec.family(catalog.COMPILATIONS).items() if v[0] == "predict"}


def requests_by(registry: CollectorRegistry, outcome: str) -> float:
    return jaxobs.telemetry.recorder_for(registry).value(catalog.REQUESTS, server.SERVICE, outcome)


def cold_requests(registry: CollectorRegistry) -> float:
    return jaxobs.telemetry.recorder_for(registry).observation_count(catalog.REQUEST_DURATION, server.SERVICE, "cold")


def steady_requests(registry: CollectorRegistry) -> float:
    return jaxobs.telemetry.recorder_for(registry).observation_count(catalog.REQUEST_DURATION, server.SERVICE, "steady")


# --- batching helpers -------------------------------------------------------------------


@pytest.mark.parametrize(("n", "bucket"), [(1, 1), (2, 2), (3, 4), (5, 8), (17, 32), (32, 32)])
def test_bucket_for_picks_the_smallest_bucket_that_fits(n: int, bucket: int) -> None:
    assert bucket_for(n, DEFAULT_BUCKETS) == bucket


def test_bucket_for_refuses_more_rows_than_the_largest_bucket() -> None:
    with pytest.raises(ValueError, match="largest bucket"):
        bucket_for(33, DEFAULT_BUCKETS)


def test_pad_rows_appends_zero_rows() -> None:
    import numpy as np

    padded = pad_rows(np.ones((3, 2), np.float32), 4)
    assert padded.shape == (4, 2) and padded[3].tolist() == [0.0, 0.0] and padded.dtype == np.float32


# --- warmup and readiness ----------------------------------------------------------------


def test_not_ready_until_every_bucket_is_warm(app: server.InferenceApp, http: str,
                                             registry: CollectorRegistry) -> None:
    assert call(http, "/readyz") == (503, "warming up\n")
    assert call(http, "/predict", {"inputs": rows(1)})[0] == 503
    assert compiles(registry) == {}

    assert app.warm() == len(DEFAULT_BUCKETS)

    assert call(http, "/readyz") == (200, "ready\n")
    # One compile per bucket, nothing else: the first, then a new shape per bucket.
    assert compiles(registry) == {"first": 1.0, "shape": len(DEFAULT_BUCKETS) - 1.0}
    assert jaxobs.telemetry.recorder_for(registry).value(catalog.READY) == 1.0


def test_predict_answers_with_one_probability_row_per_input_row(app: server.InferenceApp,
                                                                http: str) -> None:
    app.warm()
    status, body = call(http, "/predict", {"inputs": rows(3)})
    assert status == 200
    assert len(body["outputs"]) == 3 and all(len(r) == server.ModelConfig().classes for r in body["outputs"])
    assert all(abs(sum(r) - 1.0) < 1e-5 for r in body["outputs"])
    assert body["batch_size"] == 4  # padded to the bucket
    info = call(http, "/info")[1]
    assert info["buckets"] == list(DEFAULT_BUCKETS) and info["features"] == FEATURES


# --- bucketing keeps compiles bounded --------------------------------------------------------


def test_bucketed_traffic_of_any_size_never_compiles_after_warmup(
        app: server.InferenceApp, registry: CollectorRegistry) -> None:
    app.warm()
    before = compiles(registry)
    errors: list[BaseException] = []

    def client(offset: int) -> None:
        try:
            for n in range(1, 33):
                app.handle({"inputs": rows((n + offset) % 32 + 1)})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert requests_by(registry, "ok") == 4 * 32
    assert compiles(registry) == before  # 128 requests of every size 1..32: zero compiles
    assert cold_requests(registry) == 0
    assert jaxobs.telemetry.recorder_for(registry).value(catalog.CALLS, "predict", "miss") == 0


def test_each_new_unbucketed_size_compiles_exactly_once_and_is_a_cold_request(
        app: server.InferenceApp, registry: CollectorRegistry) -> None:
    app.warm()
    for n in (3, 5, 3, 5, 3, 7):
        app.handle({"inputs": rows(n), "bucket": False})
    assert compiles(registry) == {"first": 1.0, "shape": len(DEFAULT_BUCKETS) - 1.0 + 3}
    assert cold_requests(registry) == 3
    assert requests_by(registry, "ok") == 6


def test_a_batch_that_compiles_makes_its_waiting_requests_cold(registry: CollectorRegistry) -> None:
    app = make_app(registry)
    try:
        jaxobs.set_ready()  # no warmup: the first batch of each bucket compiles
        app.handle({"inputs": rows(1)})   # bucket 1 compiles (on the batcher's thread)
        app.handle({"inputs": rows(1)})   # warm
        app.handle({"inputs": rows(3)})   # bucket 4 compiles
        assert cold_requests(registry) == 2
        assert compiles(registry) == {"first": 1.0, "shape": 1.0}
    finally:
        app.close()


# --- errors and fault injection ------------------------------------------------------------


def test_bad_input_is_a_400_and_not_an_slo_error(app: server.InferenceApp, http: str,
                                                 registry: CollectorRegistry) -> None:
    app.warm()
    assert call(http, "/predict", {"inputs": [[1.0, 2.0]]})[0] == 400
    assert call(http, "/predict", {"inputs": rows(33)})[0] == 400
    assert call(http, "/predict", {"nothing": 1})[0] == 400
    # the client's fault: in neither SLI (no outcome, no latency sample)
    assert requests_by(registry, "error") == 0 and requests_by(registry, "ok") == 0
    assert cold_requests(registry) == 0 and steady_requests(registry) == 0


def test_injected_errors_and_slow_requests_reach_the_slis(app: server.InferenceApp, http: str,
                                                          registry: CollectorRegistry) -> None:
    app.warm()
    status, body = call(http, "/predict", {"inputs": rows(1), "inject": "error"})
    assert status == 500 and "injected failure" in body["error"]
    assert requests_by(registry, "error") == 1
    assert steady_requests(registry) == 0  # a fast failure is no latency sample

    slow = jaxobs.telemetry.recorder_for(registry).histogram(catalog.REQUEST_DURATION, server.SERVICE, "steady")
    before = slow.snapshot()[1]
    assert call(http, "/predict", {"inputs": rows(1), "inject": "slow"})[0] == 200
    assert slow.snapshot()[1] - before >= 0.05


def test_injection_is_refused_unless_enabled(registry: CollectorRegistry) -> None:
    app = make_app(registry)  # allow=False
    try:
        jaxobs.set_ready()
        with pytest.raises(server.BadRequest, match="--allow-injection"):
            app.handle({"inputs": rows(1), "inject": "error"})
        assert requests_by(registry, "error") == 0
    finally:
        app.close()


# --- the load generator ----------------------------------------------------------------------


def test_loadgen_stops_at_its_request_count(app: server.InferenceApp, http: str) -> None:
    app.warm()
    stats = loadgen.run(loadgen.LoadConfig(url=http, requests=50, duration=60, concurrency=3))
    assert stats.sent == 50 and stats.ok == 50


def test_loadgen_stops_at_its_duration(app: server.InferenceApp, http: str) -> None:
    app.warm()
    stats = loadgen.run(loadgen.LoadConfig(url=http, requests=10**9, duration=1.0, concurrency=2))
    assert 0 < stats.sent < 10**9
    assert stats.seconds < 1.0 + 5.0  # the deadline, plus at most one request in flight


def test_loadgen_injects_errors_and_unbucketed_sizes(app: server.InferenceApp, http: str,
                                                     registry: CollectorRegistry) -> None:
    app.warm()
    errors = loadgen.run(loadgen.LoadConfig(url=http, requests=20, concurrency=2, error_rate=1.0))
    assert errors.statuses == {500: 20}
    assert requests_by(registry, "error") == 20

    before = compiles(registry)["shape"]
    odd = loadgen.run(loadgen.LoadConfig(url=http, requests=20, concurrency=1, unbucketed_rate=1.0))
    assert odd.ok == 20 and odd.unbucketed_sizes
    assert not odd.unbucketed_sizes & set(DEFAULT_BUCKETS)
    assert compiles(registry)["shape"] - before == len(odd.unbucketed_sizes)


@pytest.mark.parametrize("url", ["http://example.com:8000", "https://127.0.0.1:8000",
                                 "http://10.0.0.1:8000"])
def test_loadgen_only_talks_to_localhost(url: str) -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        loadgen.run(loadgen.LoadConfig(url=url, requests=1))


# --- as users start it -----------------------------------------------------------------------


def test_server_process_warms_up_serves_metrics_and_exits_on_sigterm(tmp_path: Path) -> None:
    with running_inference_server(["--duration", "120"]) as srv:
        assert any("warmed up 6 buckets" in line for line in srv.lines)
        status, body = call(srv.url, "/predict", {"inputs": rows(2)})
        assert status == 200 and body["batch_size"] == 2
        metrics = call(srv.url, "/metrics")[1]
        assert 'jaxobs_compilations_total{cause="shape",function="predict"} 5.0' in metrics
        assert "jaxobs_ready 1.0" in metrics
        assert "jaxobs_deploy_in_progress 0.0" in metrics  # the window closed after warmup
        srv.proc.terminate()
        assert srv.proc.wait(15) == 0


# --- the laptop demo's pieces ------------------------------------------------------------------


def test_laptop_tiers_are_the_default_tiers_divided_by_60() -> None:
    """docs/examples.md inserts laptop-tiers.yaml under `alerting:`; the full-stack test scales
    the defaults in code.  Both must describe the same tiers."""
    from realtools import shortened_spec

    from jaxobs.slo.spec import parse_spec

    spec_text = (REPO / "examples" / "slo.yaml").read_text()
    tiers = (REPO / "examples" / "inference_server" / "laptop-tiers.yaml").read_text()
    laptop = parse_spec(spec_text.replace("alerting:\n", "alerting:\n" + tiers, 1), "laptop")
    scaled = parse_spec(shortened_spec(spec_text, 60), "scaled")
    inference = lambda spec: next(s for s in spec.services if s.name == "inference")  # noqa: E731
    assert [slo.tiers for slo in inference(laptop).slos] == [slo.tiers for slo in inference(scaled).slos]


def test_pager_prints_one_line_per_alert_with_its_runbook() -> None:
    payload = {"status": "firing", "alerts": [{
        "status": "firing",
        "labels": {"alertname": "JaxobsErrorBudgetBurn", "severity": "page", "service": "inference",
                   "slo": "availability"},
        "annotations": {"summary": "inference/availability: burning", "runbook_url": "https://x/R.md"}}]}
    (line,) = pager.describe("/page", payload)
    assert "/page FIRING   JaxobsErrorBudgetBurn severity=page service=inference slo=availability" in line
    assert "inference/availability: burning" in line and "runbook: https://x/R.md" in line


# --- honest SLIs: queued behind a compile, overload, queue and batch metrics, load ---------------


def test_requests_queued_behind_a_compiling_batch_are_cold(registry: CollectorRegistry) -> None:
    import numpy as np

    app = make_app(registry)
    try:
        jaxobs.set_ready()
        for size in (1, 2, 8, 16, 32):  # every bucket but 4 is compiled: only the first batch compiles
            app.predict(app.params, np.zeros((size, FEATURES), np.float32))
        run, first = app.batcher._run, threading.Event()

        def slow_first_batch(x: Any) -> Any:
            out = run(x)
            if not first.is_set():
                first.set()
                time.sleep(0.3)  # a long compile: the followers queue up behind it
            return out

        app.batcher._run = slow_first_batch
        leader = threading.Thread(target=app.handle, args=({"inputs": rows(3)},))
        leader.start()
        assert first.wait(30)
        followers = [threading.Thread(target=app.handle, args=({"inputs": rows(1)},)) for _ in range(6)]
        for t in followers:
            t.start()
        for t in [leader, *followers]:
            t.join(30)
        assert requests_by(registry, "ok") == 7
        assert compiles(registry).get("shape", 0) + compiles(registry).get("first", 0) == 6  # no more
        assert cold_requests(registry) == 7  # the compiling batch and the six that waited for it
        assert steady_requests(registry) == 0
    finally:
        app.close()


def test_a_full_queue_answers_503_with_retry_after_and_counts_overload(registry: CollectorRegistry) -> None:
    app = server.InferenceApp(server.ModelConfig(hidden=next(_HIDDEN)), buckets=(1,), registry=registry,
                              max_queue=1)
    httpd, _ = server.serve(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{httpd.server_port}"
    try:
        jaxobs.set_ready()
        gate = threading.Event()
        run = app.batcher._run
        app.batcher._run = lambda x: (gate.wait(30), run(x))[1]  # the batcher is stuck
        busy = threading.Thread(target=app.handle, args=({"inputs": rows(1)},))
        busy.start()  # taken by the batcher, which now waits
        time.sleep(0.2)
        queued = threading.Thread(target=app.handle, args=({"inputs": rows(1)},))
        queued.start()  # fills the one queue slot
        time.sleep(0.2)
        req = urllib.request.Request(url + "/predict", data=json.dumps({"inputs": rows(1)}).encode())
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=30)
        assert info.value.code == 503 and info.value.headers["Retry-After"] == "1"
        gate.set()
        busy.join(30)
        queued.join(30)
        rec = jaxobs.telemetry.recorder_for(registry)
        assert rec.value(catalog.REQUESTS_REJECTED, server.SERVICE, "overload") == 1
        assert requests_by(registry, "error") == 0 and requests_by(registry, "ok") == 2
    finally:
        httpd.shutdown()
        httpd.server_close()
        app.close()


def test_queue_and_batch_metrics_account_for_every_row(app: server.InferenceApp,
                                                       registry: CollectorRegistry) -> None:
    app.warm()
    for n in (1, 3, 5, 32):
        app.handle({"inputs": rows(n)})
    rec = jaxobs.telemetry.recorder_for(registry)
    real = rec.value(catalog.BATCH_ROWS, server.SERVICE, "request")
    padding = rec.value(catalog.BATCH_ROWS, server.SERVICE, "padding")
    assert real == 1 + 3 + 5 + 32
    assert padding == (1 - 1) + (4 - 3) + (8 - 5) + (32 - 32)  # one request per batch here
    assert rec.observation_count(catalog.BATCH_FILL, server.SERVICE) == app.batcher.batches == 4
    assert rec.observation_count(catalog.QUEUE_WAIT, server.SERVICE) == 4
    assert rec.value(catalog.QUEUE_DEPTH, server.SERVICE) == 0


def test_load_client_and_server_percentiles(app: server.InferenceApp, http: str,
                                            registry: CollectorRegistry) -> None:
    """Reported, not asserted as times: how far the server's view is from the client's."""
    from jaxobs.telemetry.recorder import quantiles

    app.warm()
    stats = loadgen.run(loadgen.LoadConfig(url=http, requests=400, duration=60, concurrency=4))
    rec = jaxobs.telemetry.recorder_for(registry)
    steady = rec.histogram(catalog.REQUEST_DURATION, server.SERVICE, "steady")
    q = quantiles(steady)
    assert stats.ok == 400 and q.count == 400 and cold_requests(registry) == 0
    real = rec.value(catalog.BATCH_ROWS, server.SERVICE, "request")
    padding = rec.value(catalog.BATCH_ROWS, server.SERVICE, "padding")
    print(f"\nclient p50 {stats.quantile(0.5) * 1e3:.2f} ms  p95 {stats.quantile(0.95) * 1e3:.2f} ms  "
          f"p99 {stats.quantile(0.99) * 1e3:.2f} ms"
          f"\nserver p50 {q.p50 * 1e3:.2f} ms  p95 {q.p95 * 1e3:.2f} ms  p99 {q.p99 * 1e3:.2f} ms "
          f"(bucket-interpolated)"
          f"\nbatches {app.batcher.batches}, padding {padding / (real + padding):.1%} of computed rows")


def test_latency_is_timed_from_arrival_not_from_the_parsed_body(app: server.InferenceApp, http: str,
                                                                registry: CollectorRegistry) -> None:
    """A body that trickles in after the headers is part of what the client waits for."""
    import socket
    from urllib.parse import urlsplit

    app.warm()
    parts = urlsplit(http)
    body = json.dumps({"inputs": rows(1)}).encode()
    head = (f"POST /predict HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head)
        time.sleep(0.3)  # the body arrives 0.3 s after the request line
        sock.sendall(body)
        assert sock.recv(64).startswith(b"HTTP/1.1 200")
    steady = jaxobs.telemetry.recorder_for(registry).histogram(catalog.REQUEST_DURATION, server.SERVICE,
                                                               "steady")
    assert steady.snapshot()[1] >= 0.3
