"""``jaxobs exporter`` as a real process: what it serves, readiness, configuration, TLS and auth."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import REPO, env_with_fakes, exporter, fake_app  # noqa: E402

from jaxobs import catalog  # noqa: E402

FAKE_GPUS = ["--nvml-module", "fake_pynvml"]
IN_CI = os.environ.get("CI") == "true"

#: Third-party top-level modules the sidecar may load: exactly what exporters/Dockerfile installs.
SIDECAR_DEPENDENCIES = {"__main__", "jaxobs", "prometheus_client", "psutil", "click", "pynvml", "fake_pynvml",
                        "grpc", "tpu_info", "google", "_cython_3_2_8", "cython_runtime", "typing_extensions",
                        "immutabledict", "_distutils_hack", "__editable___jaxobs_0_1_0_finder", "certifi"}


def families(text: str) -> dict[str, object]:
    parsed = list(text_string_to_metric_families(text))
    names = [f.name for f in parsed]
    assert len(names) == len(set(names)), f"duplicate families: {sorted(n for n in names if names.count(n) > 1)}"
    return {f.name: f for f in parsed}


def sample(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


# --- the contract: no jax in the sidecar --------------------------------------------------
@pytest.mark.parametrize("entry", ["jaxobs.cli", "jaxobs.exporter"])
def test_serving_exporter_never_imports_jax(tmp_path, entry):
    """Start the real exporter in a child, scrape it, then inspect the child's modules."""
    script = textwrap.dedent(f"""
        import json, sys, threading, urllib.request
        import {entry}
        from jaxobs.exporter import Exporter, ExporterConfig
        from jaxobs.exporter.http import HttpConfig
        ex = Exporter(ExporterConfig(http=HttpConfig(address="127.0.0.1", port=0),
                                     multiproc_dir={str(tmp_path)!r}, nvml_module="fake_pynvml",
                                     collectors=("host", "nvml", "tpu"), tpu_address="127.0.0.1:1"))
        threading.Thread(target=ex.server.serve_forever, daemon=True).start()
        body = urllib.request.urlopen(f"http://127.0.0.1:{{ex.port}}/metrics", timeout=10).read()
        ex.server.shutdown(); ex.close()
        third = sorted({{m.split(".")[0] for m in sys.modules}} - set(sys.stdlib_module_names))
        print(json.dumps({{"jax": "jax" in sys.modules, "jaxlib": "jaxlib" in sys.modules,
                          "third_party": third, "bytes": len(body)}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env_with_fakes(), capture_output=True, text=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bytes"] > 0
    assert not report["jax"], "the sidecar imported jax (DESIGN.md §3); check jaxobs/__init__.py stays lazy"
    assert not report["jaxlib"]
    if entry == "jaxobs.exporter":  # the image's entrypoint: only what exporters/Dockerfile installs
        assert set(report["third_party"]) <= SIDECAR_DEPENDENCIES, set(report["third_party"]) - SIDECAR_DEPENDENCIES


# --- /metrics -----------------------------------------------------------------------------
def test_metrics_merges_app_device_and_host_series(tmp_path):
    with fake_app(multiproc_dir=tmp_path, series=10) as app, \
            exporter(["--multiproc-dir", str(tmp_path), "--collectors", "host,nvml", *FAKE_GPUS]) as ex:
        status, text = ex.get("/metrics")
        assert status == 200
        fams = families(text)
        assert sample(text, catalog.READY.name) == 1
        assert sample(text, catalog.REQUESTS.name, service="svc0004", outcome="error") == 10
        assert sample(text, catalog.GPU_UTILIZATION.name, gpu="7") == pytest.approx(0.37)
        assert sample(text, catalog.PROCESS_RESIDENT_MEMORY.name, process="app") > 0
        assert sample(text, catalog.COLLECTOR_UP.name, collector="app", device="") == 1
        assert sample(text, catalog.EXPORTER_COLLECT_DURATION.name, collector="nvml") >= 0
        assert catalog.INTERNAL_ERRORS.base_name in fams
        assert app.pid > 0


def test_openmetrics_and_gzip_negotiation(tmp_path):
    import gzip
    import urllib.request

    with fake_app(multiproc_dir=tmp_path), exporter(["--multiproc-dir", str(tmp_path), "--collectors", "host"]) as ex:
        req = urllib.request.Request(ex.url + "/metrics", headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert resp.headers["Content-Encoding"] == "gzip"
            text = gzip.decompress(resp.read()).decode()
        names = [f.name for f in parse_openmetrics(text)]  # strict parser: rejects duplicate families
        assert catalog.READY.name in names


def test_library_missing_still_serves_everything_else(tmp_path):
    env = env_with_fakes(FAKE_PYNVML_MISSING="1")
    with fake_app(multiproc_dir=tmp_path), \
            exporter(["--multiproc-dir", str(tmp_path), "--collectors", "host,nvml", *FAKE_GPUS], env=env) as ex:
        status, text = ex.get("/metrics")
        assert status == 200
        assert sample(text, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 0
        assert sample(text, catalog.HOST_MEMORY_AVAILABLE.name) > 0
        assert sample(text, catalog.READY.name) == 1
        assert sample(text, catalog.INTERNAL_ERRORS.name, component="collector.nvml") == 1


def test_without_any_app_source_metrics_still_serve():
    with exporter(["--collectors", "host"]) as ex:
        status, text = ex.get("/metrics")
        assert status == 200 and sample(text, catalog.HOST_MEMORY_AVAILABLE.name) > 0
        status, reason = ex.get("/readyz")
        assert status == 503 and "no app metrics configured" in reason


# --- /healthz and /readyz -------------------------------------------------------------------
def test_readyz_follows_the_app(tmp_path):
    with fake_app(multiproc_dir=tmp_path, ready=0) as app, \
            exporter(["--multiproc-dir", str(tmp_path), "--collectors", "host"]) as ex:
        assert ex.get("/healthz") == (200, "ok\n")
        status, reason = ex.get("/readyz")
        assert status == 503 and "warmup has not finished" in reason
        app.set_ready(1)
        assert ex.get("/readyz")[0] == 200
        app.stop()  # crashed app: its files (with ready=1) stay in the emptyDir
        status, reason = ex.get("/readyz")
        assert status == 503 and "exited" in reason
        assert ex.get("/healthz")[0] == 200  # the sidecar itself is fine


def test_readyz_before_the_app_wrote_anything(tmp_path):
    with exporter(["--multiproc-dir", str(tmp_path), "--collectors", "host"]) as ex:
        status, reason = ex.get("/readyz")
        assert status == 503 and "jaxobs_ready" in reason


def test_proxy_mode(tmp_path):
    with fake_app(serve=True, series=6) as app:
        url = f"http://127.0.0.1:{app.port}/metrics"
        with exporter(["--app-url", url, "--collectors", "host"]) as ex:
            status, text = ex.get("/metrics")
            assert status == 200
            families(text)
            assert sample(text, catalog.REQUESTS.name, service="svc0002", outcome="ok") == 5
            assert ex.get("/readyz")[0] == 200
            app.set_ready(0)
            assert ex.get("/readyz")[0] == 503
            app.stop()
            status, reason = ex.get("/readyz")
            assert status == 503 and "cannot fetch" in reason
            status, text = ex.get("/metrics")
            assert status == 200
            assert sample(text, catalog.COLLECTOR_UP.name, collector="app", device="") == 0
            assert sample(text, catalog.HOST_MEMORY_AVAILABLE.name) > 0


# --- configuration --------------------------------------------------------------------------
def test_port_in_use_is_one_clear_line_and_exit_2():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = subprocess.run([sys.executable, "-c", "from jaxobs.cli import main; main()", "exporter",
                              "--address", "127.0.0.1", "--port", str(port), "--collectors", "host"],
                             env=env_with_fakes(), capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert str(port) in lines[0] and "--port" in lines[0] and "JAXOBS_EXPORTER_PORT" in lines[0]
    assert "Traceback" not in out.stderr


def test_port_from_environment(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = env_with_fakes(JAXOBS_EXPORTER_PORT=str(port), JAXOBS_EXPORTER_ADDRESS="127.0.0.1",
                         JAXOBS_EXPORTER_COLLECTORS="host")
    proc = subprocess.Popen([sys.executable, "-m", "jaxobs.exporter"], env=env, stderr=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert f":{port} " in proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode in (0, -15)


@pytest.mark.parametrize("args, message", [
    (["--tls-cert", __file__], "--tls-cert and --tls-key go together"),
    (["--basic-auth-user", "prom"], "--basic-auth-user needs"),
    (["--collectors", "host,dcgm"], "unknown collector 'dcgm'"),
])
def test_bad_configuration_is_a_usage_error(args, message):
    env = env_with_fakes()
    env.pop("JAXOBS_EXPORTER_BASIC_AUTH_PASSWORD", None)
    out = subprocess.run([sys.executable, "-m", "jaxobs.exporter", "--port", "0", *args], env=env,
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_basic_auth_protects_metrics_only(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    with exporter(["--collectors", "host", "--basic-auth-user", "prom",
                   "--basic-auth-password-file", str(secret)]) as ex:
        assert ex.get("/metrics")[0] == 401
        wrong = base64.b64encode(b"prom:nope").decode()
        assert ex.get("/metrics", headers={"Authorization": f"Basic {wrong}"})[0] == 401
        assert ex.get("/metrics", headers={"Authorization": "Basic !!notbase64"})[0] == 401
        right = base64.b64encode(b"prom:s3cret").decode()
        assert ex.get("/metrics", headers={"Authorization": f"Basic {right}"})[0] == 200
        assert ex.get("/healthz")[0] == 200  # kubelet probes carry no credentials


@pytest.fixture
def self_signed(tmp_path):
    if shutil.which("openssl") is None:
        if IN_CI:
            pytest.fail("openssl is required in CI to test TLS")
        pytest.skip("openssl not installed")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_tls(self_signed):
    cert, key = self_signed
    with exporter(["--collectors", "host", "--tls-cert", str(cert), "--tls-key", str(key)]) as ex:
        ctx = ssl.create_default_context(cafile=str(cert))
        status, text = ex.get("/metrics", context=ctx)
        assert status == 200 and sample(text, catalog.HOST_MEMORY_AVAILABLE.name) > 0
        # A plaintext client on the TLS port gets nothing useful and does not hurt the server.
        with socket.create_connection(("127.0.0.1", ex.port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            try:
                s.recv(100)
            except OSError:
                pass
        assert ex.get("/healthz", context=ctx)[0] == 200
        # A client that opens TLS and stalls in the handshake is cut at the request timeout.
        stalled = socket.create_connection(("127.0.0.1", ex.port), timeout=10)
        started = time.monotonic()
        assert ex.get("/healthz", context=ctx)[0] == 200
        stalled.settimeout(15)
        assert stalled.recv(10) == b""
        assert time.monotonic() - started < 12
        stalled.close()
