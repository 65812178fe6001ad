"""A warm restart of the example inference server, as a process, the way a pod restarts.

The server is unchanged; only jaxobs's and JAX's environment variables differ
between runs:

1. the first start, without a manifest and with an empty persistent cache
   volume: serves padded batches and two unpadded sizes (``"bucket": false``),
   which compile after readiness (cold starts), and merges what it compiled
   into a manifest at exit (``JAXOBS_MANIFEST_OUT``).
2. a restart with the manifest (``JAXOBS_MANIFEST``) and the cache volume:
   ``run_warmups`` precompiles every shape production saw, loading the
   executables from the cache, so ``jaxobs_calls_total{cache="miss"}`` stays
   where it was at readiness.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from realtools import running_inference_server

FEATURES = 64
#: two buckets keep start-up short; the unpadded sizes are shapes no warmup declares
ARGS = ["--buckets", "4,16", "--max-wait-ms", "1"]
UNPADDED = (3, 5)


def _post(url: str, rows: int, bucket: bool = True) -> None:
    body = json.dumps({"inputs": [[0.25] * FEATURES] * rows, "bucket": bucket}).encode()
    req = urllib.request.Request(url + "/predict", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _misses(m: dict[Any, float]) -> float:
    return m.get(("jaxobs_calls_total", (("cache", "miss"), ("function", "predict"))), 0.0)


def _cache_hits(m: dict[Any, float]) -> float:
    return m.get(("jaxobs_persistent_cache_hits_total", ()), 0.0)


def _serve_traffic(url: str) -> None:
    for rows in (1, 3, 9):
        _post(url, rows)
    for rows in UNPADDED:
        _post(url, rows, bucket=False)


def _run(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, float]:
    for name in ("JAXOBS_MANIFEST", "JAXOBS_MANIFEST_OUT", "JAX_COMPILATION_CACHE_DIR",
                 "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_inference_server(ARGS) as server:
        at_ready = _metrics(server.url)
        _serve_traffic(server.url)
        after = _metrics(server.url)
    return {"cold_starts_after_ready": _misses(after) - _misses(at_ready),
            "persistent_cache_hits": _cache_hits(after)}


def test_restart_with_manifest_and_cache_has_no_cold_starts(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    manifest, cache = tmp_path / "shapes.json", tmp_path / "jax-cache"
    cache_env = {"JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                 "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

    # the first start: no manifest yet, an empty cache volume
    cold = _run(monkeypatch, {**cache_env, "JAXOBS_MANIFEST_OUT": str(manifest)})
    doc = json.loads(manifest.read_text())
    rows = sorted(sig["args"][1]["shape"][0] for sig in doc["functions"]["predict"]["signatures"])
    assert rows == [3, 4, 5, 16]  # both buckets and both unpadded sizes this run compiled

    warm = _run(monkeypatch, {**cache_env, "JAXOBS_MANIFEST": str(manifest)})
    print(f"\nstart without manifest (empty cache): {cold}\nrestart with manifest+cache: {warm}")
    assert cold["cold_starts_after_ready"] == len(UNPADDED)  # the shapes no warmup declared
    assert cold["persistent_cache_hits"] == 0
    assert warm["cold_starts_after_ready"] == 0
    assert warm["persistent_cache_hits"] >= len(rows)  # every precompile was a load from the volume
