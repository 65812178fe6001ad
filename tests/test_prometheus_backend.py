"""The Prometheus backend: serving, port errors, coexistence, multiprocess, persistent cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import jax.numpy as jnp
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client import start_http_server as prom_start_http_server

import jaxobs
import jaxobs.telemetry


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def _run(script: str, env: dict[str, str], timeout: float = 180) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                         text=True, env={**os.environ, **env}, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_start_http_server_serves_metrics(registry):
    f = jaxobs.jit(lambda x: x + 1, name="served", registry=registry)
    f(jnp.ones(2))
    server, thread = jaxobs.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        text = _get(f"http://127.0.0.1:{server.server_port}/metrics")
        assert 'jaxobs_calls_total{cache="miss",function="served"} 1.0' in text
    finally:
        server.shutdown()


def test_port_in_use_is_a_clear_error(registry):
    server, _ = jaxobs.start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    try:
        with pytest.raises(jaxobs.PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            jaxobs.start_http_server(port, addr="127.0.0.1", registry=registry)
    finally:
        server.shutdown()


def test_coexists_with_other_metrics_and_servers(registry):
    """Orbax/Grain-style: someone else's metrics and server already live in the process."""
    theirs = Counter("orbax_checkpoints", "Checkpoints written.", registry=registry)
    theirs.inc()
    other_server, _ = prom_start_http_server(0, addr="127.0.0.1", registry=registry)
    f = jaxobs.jit(lambda x: x * 2, name="coexist", registry=registry)
    f(jnp.ones(2))
    ours, _ = jaxobs.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        for port in (other_server.server_port, ours.server_port):
            text = _get(f"http://127.0.0.1:{port}/metrics")
            assert "orbax_checkpoints_total 1.0" in text
            assert 'jaxobs_calls_total{cache="miss",function="coexist"} 1.0' in text
        assert jaxobs.telemetry.recorder_for(registry) is jaxobs.telemetry.recorder_for(registry)  # registered once
    finally:
        other_server.shutdown()
        ours.shutdown()


def test_multiprocess_directory(tmp_path: Path):
    """Two worker processes write to PROMETHEUS_MULTIPROC_DIR; the aggregate is exact."""
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    worker = """
        import jax.numpy as jnp, jaxobs
        f = jaxobs.jit(lambda x: x + 1, name="mp_fn")
        for n in (3, 3, 3, 4):
            f(jnp.ones(n))
        with jaxobs.request("mp_svc"):
            f(jnp.ones(3))
        jaxobs.set_ready()
    """  # totals are flushed by the background thread and at exit
    env = {"PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    _run(worker, env)
    _run(worker, env)
    from prometheus_client import multiprocess

    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, path=str(mp_dir))
    text = generate_latest(reg).decode()
    assert 'jaxobs_calls_total{cache="miss",function="mp_fn"} 4.0' in text
    assert 'jaxobs_calls_total{cache="hit",function="mp_fn"} 6.0' in text
    assert 'jaxobs_compilations_total{cause="shape",function="mp_fn"} 2.0' in text
    assert 'jaxobs_requests_total{outcome="ok",service="mp_svc"} 2.0' in text
    assert 'jaxobs_call_duration_seconds_count{function="mp_fn",start="cold"} 4.0' in text
    assert "jaxobs_ready 1.0" in text
    assert 'jaxobs_live_arrays{device="0"}' in text  # in-process collectors reach the directory too
    assert 'jaxobs_collector_up{collector="jax_memory",device="0"} 1.0' in text


def test_persistent_cache_hits_on_second_process(tmp_path: Path):
    script = """
        import jax, jax.numpy as jnp, jaxobs
        from jaxobs import catalog as C
        jax.config.update("jax_compilation_cache_dir", r"{cache}")
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
        f = jaxobs.jit(lambda x: jnp.tanh(x @ x.T).sum(), name="persisted")
        f(jnp.ones((64, 64)))
        rec = jaxobs.telemetry.recorder_for(None)
        print("requests", rec.value(C.PERSISTENT_CACHE_REQUESTS))
        print("hits", rec.value(C.PERSISTENT_CACHE_HITS))
        print("misses", rec.value(C.PERSISTENT_CACHE_MISSES))
        print("saved", rec.value(C.PERSISTENT_CACHE_SAVED) >= 0)
    """.replace("{cache}", str(tmp_path / "cache"))
    first = _run(script, {})
    second = _run(script, {})
    def values(out: str) -> dict[str, str]:
        return dict(line.split(" ", 1) for line in out.strip().splitlines())

    first_v, second_v = values(first), values(second)
    # every executable (ours and jnp.ones' helpers) misses in the first process …
    assert first_v["hits"] == "0.0" and float(first_v["misses"]) >= 1
    assert first_v["requests"] == first_v["misses"]
    # … and is loaded from disk in the second
    assert second_v["hits"] == first_v["misses"] and second_v["misses"] == "0.0"
    assert second_v["saved"] == "True"
