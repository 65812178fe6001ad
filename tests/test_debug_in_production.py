"""Numeric health on sampled calls, the determinism canary, and on-demand profile captures (real JAX, CPU)."""

from __future__ import annotations

import gzip
import json
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
from jaxobs import catalog as C
from jaxobs.runtime import finite
from jaxobs.runtime.canary import Canary, max_abs_diff
from jaxobs.runtime.profiling import ProfileBusy, ProfileLimits, Profiler, ProfileRejected, parse_request
from jaxobs.telemetry import recorder_for

# --- numeric health -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["host", "device"])
def test_sampled_calls_count_nonfinite_outputs_and_results_are_unchanged(registry, rec, monkeypatch, where):
    if where == "device":  # the accelerator path (a jitted reduction) on this CPU-only machine
        monkeypatch.setattr(finite, "_on_host", lambda leaf: False)
    f = jaxobs.jit(lambda x: (jnp.log(x), x.astype(jnp.int32)), name="log", registry=registry, sample_rate=1.0)
    for x in (jnp.ones(3), jnp.zeros(3), -jnp.ones(3), jnp.ones(3) * 2):
        out = f(x)
        np.testing.assert_array_equal(out[0], jnp.log(x))  # the check never changes results
    assert rec.value(C.NONFINITE_OUTPUTS, "log") == 2  # -inf and nan
    assert rec.value(C.COMPILATIONS, "log", "first") == 1  # the check's own compile is not the user's
    assert sum(s.value() for _, s in rec.family(C.COMPILATIONS).items()) == 1


def test_unsampled_calls_are_not_checked_and_the_check_can_be_turned_off(registry, rec):
    never = jaxobs.jit(lambda x: jnp.log(x), name="unsampled", registry=registry, sample_rate=0.0)
    off = jaxobs.jit(lambda x: jnp.log(x), name="off", registry=registry, sample_rate=1.0, check_finite=False)
    jaxobs.configure(first_samples=0)
    late = jaxobs.jit(lambda x: jnp.log(x), name="late", registry=registry, sample_rate=0.0)
    for _ in range(5):
        never(jnp.zeros(2)), off(jnp.zeros(2)), late(jnp.zeros(2))
    assert rec.value(C.NONFINITE_OUTPUTS, "off") == 0
    assert rec.value(C.NONFINITE_OUTPUTS, "late") == 0  # no sampled call at all
    assert rec.value(C.NONFINITE_OUTPUTS, "unsampled") == 3  # only its first 3 (always sampled) calls


# --- canary -----------------------------------------------------------------------------------


def test_a_deterministic_canary_stays_at_zero_over_many_runs(registry, rec):
    f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0))
    c = Canary(f, (jnp.arange(64.0).reshape(8, 8) / 64,), {}, every=0.01, name="det", registry=registry)
    outcomes = [c.run_once() for _ in range(20)]
    assert outcomes == ["match"] * 20
    assert rec.value(C.CANARY_RUNS, "det", "match") == 20
    assert rec.value(C.CANARY_MAX_ABS_DIFF, "det") == 0.0
    assert rec.value(C.CANARY_LAST_RUN, "det") > 0


def test_a_nondeterministic_function_is_caught(registry, rec):
    drift = iter(range(1000))

    def noisy(x):  # a host callback that reads changing state, like a nondeterministic reduction
        bump = jax.pure_callback(lambda: np.float32(next(drift) * 1e-3), jax.ShapeDtypeStruct((), jnp.float32))
        return x * 2 + bump

    c = Canary(jax.jit(noisy), (jnp.ones(4),), {}, every=0.01, atol=1e-4, name="noisy", registry=registry)
    assert c.run_once() == "match"  # the first run is the reference
    assert c.run_once() == "mismatch"
    assert rec.value(C.CANARY_MAX_ABS_DIFF, "noisy") == pytest.approx(1e-3, rel=1e-3)
    assert rec.value(C.CANARY_RUNS, "noisy", "mismatch") == 1


def test_a_golden_file_carries_the_reference_across_processes(tmp_path, registry, rec):
    golden = tmp_path / "canary" / "golden.npz"
    Canary(lambda x: x + 1, (jnp.ones(3),), {}, golden=golden, name="g1", registry=registry).run_once()
    assert golden.exists()
    # "after a deploy": a different result against the saved golden output is a mismatch
    c = Canary(lambda x: x + 1.5, (jnp.ones(3),), {}, golden=golden, name="g2", registry=registry)
    assert c.run_once() == "mismatch"
    assert rec.value(C.CANARY_MAX_ABS_DIFF, "g2") == pytest.approx(0.5)


def test_the_schedule_runs_in_the_background_never_overlaps_and_stops(registry, rec):
    running = threading.Semaphore(1)
    overlaps = []

    def slow(x):
        if not running.acquire(blocking=False):
            overlaps.append(1)
        time.sleep(0.02)
        running.release()
        return x

    with jaxobs.canary(slow, np.ones(2), every=0.001, name="bg", registry=registry) as c:
        deadline = time.monotonic() + 10
        while rec.value(C.CANARY_RUNS, "bg", "match") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
    runs = rec.value(C.CANARY_RUNS, "bg", "match")
    assert runs >= 5 and not overlaps
    assert not c._thread.is_alive()
    time.sleep(0.1)
    assert rec.value(C.CANARY_RUNS, "bg", "match") == runs  # stopped means stopped


def test_a_failing_canary_is_counted_not_raised(registry, rec):
    def broken(x):
        raise RuntimeError("model bug")

    assert Canary(broken, (1,), {}, name="broken", registry=registry).run_once() == "error"
    assert rec.value(C.CANARY_RUNS, "broken", "error") == 1


def test_max_abs_diff_treats_changed_structure_as_infinite_and_equal_nans_as_equal():
    a = [np.array([1.0, np.nan])]
    assert max_abs_diff(a, [np.array([1.0, np.nan])]) == 0.0
    assert max_abs_diff(a, [np.array([1.0, 2.0])]) == float("inf")
    assert max_abs_diff(a, [np.array([1.0, np.nan, 3.0])]) == float("inf")
    assert max_abs_diff(a, a + a) == float("inf")


# --- profiling ----------------------------------------------------------------------------------


def test_a_capture_during_traffic_writes_traces_that_parse(tmp_path):
    registry = CollectorRegistry()
    profiler = Profiler(tmp_path, registry=registry)
    f = jaxobs.jit(lambda x: jnp.sin(x) @ x, name="traffic", registry=registry)
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            f(jnp.ones((32, 32))).block_until_ready()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        capture = profiler.capture(0.5, perfetto=True)
    finally:
        stop.set()
        worker.join()
    xplanes = [f for f in capture.files if f.endswith(".xplane.pb")]
    perfetto = [f for f in capture.files if f.endswith("perfetto_trace.json.gz")]
    assert xplanes and perfetto, capture.files
    data = jax.profiler.ProfileData.from_file(str(capture.directory / xplanes[0]))  # JAX's own XSpace parser
    assert any(True for _ in data.planes)
    events = json.loads(gzip.decompress((capture.directory / perfetto[0]).read_bytes()))
    assert events  # Perfetto's JSON trace loads
    assert recorder_for(registry).value(C.PROFILES, "ok") == 1
    assert capture.tar_gz()[:2] == b"\x1f\x8b"


def test_a_second_concurrent_capture_is_refused_at_once(tmp_path):
    registry = CollectorRegistry()
    profiler = Profiler(tmp_path, registry=registry)
    first = threading.Thread(target=profiler.capture, args=(1.0,))
    first.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with pytest.raises(ProfileBusy):
        profiler.capture(0.2)
    assert time.monotonic() - t0 < 0.5  # refused, not queued behind the first
    first.join()
    assert recorder_for(registry).value(C.PROFILES, "busy") == 1


def test_duration_and_disk_limits_hold(tmp_path):
    registry = CollectorRegistry()
    profiler = Profiler(tmp_path, ProfileLimits(max_seconds=2, keep=2), registry=registry)
    with pytest.raises(ProfileRejected, match="seconds"):
        profiler.capture(5)
    for _ in range(3):
        profiler.capture(0.05)
    assert len(list(tmp_path.glob("profile-*"))) == 2  # the oldest was pruned
    tiny = Profiler(tmp_path / "tiny", ProfileLimits(max_total_bytes=10), registry=registry)
    with pytest.raises(ProfileRejected, match="budget"):
        tiny.capture(0.05)
    assert not list((tmp_path / "tiny").glob("profile-*"))  # nothing over budget is kept
    assert recorder_for(registry).value(C.PROFILES, "rejected") == 2


def test_request_parsing_rejects_bad_numbers():
    assert parse_request({"seconds": ["3"], "perfetto": ["1"], "format": ["tar"]}) == (3.0, True, True)
    with pytest.raises(ProfileRejected):
        parse_request({"seconds": ["abc"]})
    with pytest.raises(ProfileRejected):
        parse_request({"seconds": ["nan"]})


def test_the_metrics_server_captures_a_profile_on_demand_and_the_cli_unpacks_it(tmp_path):
    import socket
    import urllib.error
    import urllib.request

    from click.testing import CliRunner

    from jaxobs.cli import cli
    from jaxobs.runtime.profiling import Profiler

    registry = CollectorRegistry()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, _ = jaxobs.start_http_server(port, "127.0.0.1", registry=registry,
                                         profiling=Profiler(tmp_path / "captures", registry=registry))
    try:
        base = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError) as refused:  # a GET changes nothing
            urllib.request.urlopen(f"{base}/debug/jaxobs/profile?seconds=1", timeout=10)
        assert refused.value.code == 404
        out = tmp_path / "local"
        result = CliRunner().invoke(cli, ["profile", base, "--seconds", "0.3", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert "Perfetto" in result.output and "xprof" in result.output
        assert list(out.rglob("*.xplane.pb")) and list(out.rglob("perfetto_trace.json.gz"))
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(urllib.request.Request(f"{base}/debug/jaxobs/profile?seconds=999",
                                                          method="POST", data=b""), timeout=10)
        assert bad.value.code == 400
        assert recorder_for(registry).value(C.PROFILES, "ok") == 1
    finally:
        server.shutdown()
        server.server_close()


def test_without_profiling_the_endpoint_does_not_exist(tmp_path):
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server, _ = jaxobs.start_http_server(port, "127.0.0.1", registry=CollectorRegistry())
    try:
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/debug/jaxobs/profile?seconds=1", method="POST", data=b""), timeout=10)
        assert missing.value.code == 501  # no endpoint takes a POST when profiling is off
    finally:
        server.shutdown()
        server.server_close()


def test_the_sidecar_forwards_a_profile_request_to_the_app(tmp_path):
    import socket
    import urllib.request

    from jaxobs.exporter import Exporter, ExporterConfig
    from jaxobs.exporter.http import HttpConfig
    from jaxobs.runtime.profiling import Profiler

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    app_port = free_port()
    app, _ = jaxobs.start_http_server(app_port, "127.0.0.1", registry=CollectorRegistry(),
                                      profiling=Profiler(tmp_path))
    sidecar = Exporter(ExporterConfig(http=HttpConfig(address="127.0.0.1", port=0), collectors=("host",),
                                      app_profile_url=f"http://127.0.0.1:{app_port}"))
    thread = threading.Thread(target=sidecar.serve_forever, daemon=True)
    thread.start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{sidecar.port}/debug/jaxobs/profile?seconds=0.2&format=json", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert any(f.endswith(".xplane.pb") for f in body["files"])
    finally:
        sidecar.shutdown()
        app.shutdown()
        app.server_close()
