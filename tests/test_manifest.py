"""The warm-start manifest, in process, with real JAX on CPU.

Each test uses its own function name: the recorded signatures are process-wide
(like readiness), and JAX's in-memory cache is keyed by the function object,
so a fresh closure per test really compiles.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import jaxobs
from jaxobs import catalog
from jaxobs.runtime import manifest as manifests
from jaxobs.runtime import signature_json
from jaxobs.telemetry import recorder_for

Params = collections.namedtuple("Params", "w b")
_ids = itertools.count()


def _model(registry: CollectorRegistry, name: str, features: int = 4) -> Any:
    def model(p: Params, x: Any, power: int, *, scale: float = 1.0) -> Any:
        return ((x @ p.w + p.b) * scale) ** power

    return jaxobs.jit(model, name=name, registry=registry, static_argnums=2)


def _params(features: int = 4) -> Params:
    return Params(jnp.ones((features, 3)), jnp.zeros(3))


def _traffic(fn: Any) -> None:
    p = _params()
    for rows in (1, 2, 5):
        fn(p, np.ones((rows, 4), np.float32), 2, scale=0.5)
    fn(p, jnp.ones((2, 4), jnp.bfloat16), 3)
    fn(p, jnp.ones((7, 4)), 1)


def _misses(registry: CollectorRegistry, name: str) -> float:
    return recorder_for(registry).value(catalog.CALLS, name, "miss")


def _outcomes(registry: CollectorRegistry, name: str) -> dict[str, float]:
    rec = recorder_for(registry)
    return {o: rec.value(catalog.MANIFEST_SIGNATURES, name, o) for o in ("warmed", "stale", "unmatched")}


@pytest.fixture
def name() -> str:
    return f"manifest_model_{next(_ids)}"


def test_a_restart_warmed_from_the_manifest_compiles_nothing_on_traffic(tmp_path: Path, name: str) -> None:
    first = CollectorRegistry()
    _traffic(_model(first, name))
    path = tmp_path / "shapes.json"
    assert jaxobs.save_manifest(path) >= 5
    del first

    restarted = CollectorRegistry()  # a new function object: JAX's in-memory cache is cold for it
    fn = _model(restarted, name)
    manifests._live[name] = [r for r in manifests._live[name] if r() is fn.jaxobs]  # only the new one
    assert jaxobs.run_warmups(manifest=path) >= 5  # the file also holds other tests' functions
    assert jaxobs.is_ready()
    warm_misses = _misses(restarted, name)
    _traffic(fn)
    assert _misses(restarted, name) == warm_misses  # every shape of the traffic was precompiled
    assert _outcomes(restarted, name) == {"warmed": 5, "stale": 0, "unmatched": 0}


def test_without_the_manifest_the_same_traffic_compiles(name: str) -> None:
    registry = CollectorRegistry()
    fn = _model(registry, name)
    jaxobs.run_warmups()
    _traffic(fn)
    assert _misses(registry, name) == 5  # the control for the test above: traffic alone compiles


def test_the_file_is_versioned_json_one_signature_per_line(tmp_path: Path, name: str) -> None:
    _traffic(_model(CollectorRegistry(), name))
    path = tmp_path / "shapes.json"
    jaxobs.save_manifest(path)
    doc = json.loads(path.read_text())
    assert doc["format"] == "jaxobs-manifest" and doc["version"] == 1
    assert doc["written_by"]["jax"] == jax.__version__
    sigs = doc["functions"][name]["signatures"]
    first = sigs[0]
    assert first["args"][0]["namedtuple"].endswith(":Params")
    assert first["args"][1] == {"shape": [1, 4], "dtype": "float32"}
    assert first["args"][2] == {"static": 2}
    assert first["kwargs"] == {"scale": {"scalar": "float"}}
    assert {"shape": [2, 4], "dtype": "bfloat16"} in [s["args"][1] for s in sigs]
    assert sum(json.dumps(s, sort_keys=True) in path.read_text() for s in sigs) == len(sigs)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".shapes.json")]  # no temp file left


def test_stale_signatures_are_skipped_counted_and_logged(tmp_path: Path, name: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _traffic(_model(CollectorRegistry(), name))
    path = tmp_path / "shapes.json"
    jaxobs.save_manifest(path)
    doc = json.loads(path.read_text())
    sigs = doc["functions"][name]["signatures"]
    sigs[0]["args"][1]["shape"] = [1, 5]  # the model no longer accepts 5 features
    sigs[1]["args"][0]["namedtuple"] = "no_such_module:Params"  # the parameter class is gone
    path.write_text(json.dumps(doc))

    registry = CollectorRegistry()
    fn = _model(registry, name)
    manifests._live[name] = [r for r in manifests._live[name] if r() is fn.jaxobs]
    with caplog.at_level(logging.WARNING, logger="jaxobs.manifest"):
        result = manifests.warm_from_manifest(path)
    assert result.stale == 2
    assert _outcomes(registry, name) == {"warmed": len(sigs) - 2, "stale": 2, "unmatched": 0}
    assert sum("stale manifest signature" in r.getMessage() for r in caplog.records) == 2
    assert any("no_such_module" in r for r in result.reasons)


def test_functions_the_process_does_not_have_are_counted_unmatched(tmp_path: Path) -> None:
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps({"format": "jaxobs-manifest", "version": 1, "functions": {
        "gone_function": {"signatures": [{"args": [{"shape": [2], "dtype": "float32"}], "kwargs": {}}]}}}))
    assert manifests.warm_from_manifest(path).unmatched == 1
    assert recorder_for(None).value(catalog.MANIFEST_SIGNATURES, "gone_function", "unmatched") >= 1


def test_saving_merges_with_what_other_replicas_wrote(tmp_path: Path, name: str) -> None:
    path = tmp_path / "shapes.json"
    other = {"args": [{"shape": [99, 4], "dtype": "float32"}], "kwargs": {}}
    path.write_text(json.dumps({"format": "jaxobs-manifest", "version": 1, "functions": {
        name: {"signatures": [other]}, "other_replica_fn": {"signatures": [other]}}}))
    _traffic(_model(CollectorRegistry(), name))

    threads = [threading.Thread(target=jaxobs.save_manifest, args=(path,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = manifests.load_manifest(path)
    assert other in doc["functions"][name]["signatures"]
    assert len(doc["functions"][name]["signatures"]) == 6  # the other replica's + ours, no duplicates
    assert "other_replica_fn" in doc["functions"]
    jaxobs.save_manifest(path, merge_existing=False)
    assert "other_replica_fn" not in manifests.load_manifest(path)["functions"]


def test_signatures_without_a_json_form_are_not_recorded_and_never_raise(name: str) -> None:
    class Opaque:  # hashable, so a valid static argument, but not a JSON value
        pass

    f = jaxobs.jit(lambda x, o: x + 1, name=name, registry=CollectorRegistry(), static_argnums=1)
    assert float(f(jnp.float32(1), Opaque())) == 2.0
    assert name not in manifests.snapshot()["functions"]
    assert manifests._unrepresentable[name] == 1
    assert jaxobs.internal_error_counts().get("manifest", 0) == 0


def test_committed_shardings_round_trip(tmp_path: Path, name: str) -> None:
    device = jax.devices()[0]
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    named = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", None))
    registry = CollectorRegistry()
    f = jaxobs.jit(lambda x: x * 2, name=name, registry=registry)
    single_x = jax.device_put(jnp.ones((2, 2)), device)
    named_x = jax.device_put(jnp.ones((4, 2)), named)
    f(single_x)
    f(named_x)
    encoded = [s["args"][0]["sharding"] for s in manifests.snapshot()["functions"][name]["signatures"]]
    assert encoded == [{"device": device.id},
                       {"mesh": {"axes": ["data"], "shape": [1], "devices": [device.id]}, "spec": ["data", None]}]
    for sig in manifests.snapshot()["functions"][name]["signatures"]:
        (arg,), _ = signature_json.decode_call(sig)
        assert arg.sharding is not None
    missing = {"args": [{"shape": [2], "dtype": "float32", "sharding": {"device": 12345}}], "kwargs": {}}
    with pytest.raises(signature_json.Stale, match="device 12345"):
        signature_json.decode_call(missing)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not JSON"),
    ('{"format": "something-else", "version": 1, "functions": {}}', "field 'format'"),
    ('{"format": "jaxobs-manifest", "version": 99, "functions": {}}', "field 'version'"),
    ('{"format": "jaxobs-manifest", "version": 1, "functions": {"f": []}}', "field 'functions'"),
])
def test_bad_manifests_are_one_line_errors_naming_file_and_field(tmp_path: Path, content: str,
                                                                 message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(manifests.ManifestError) as info:
        jaxobs.run_warmups(manifest=path)
    text = str(info.value)
    assert message in text and str(path) in text and "Fix:" in text and "\n" not in text
    assert not jaxobs.is_ready()


def test_a_missing_manifest_named_by_the_environment_does_not_block_readiness(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("JAXOBS_MANIFEST", str(tmp_path / "first-deploy-has-none.json"))
    with caplog.at_level(logging.WARNING, logger="jaxobs.manifest"):
        assert jaxobs.run_warmups() == 0
    assert jaxobs.is_ready()
    assert "no such manifest" in caplog.text


def test_use_compilation_cache_writes_executables_to_the_volume(tmp_path: Path, name: str) -> None:
    from jax._src import compilation_cache

    before = {k: getattr(jax.config, k) for k in ("jax_compilation_cache_dir",
                                               "jax_persistent_cache_min_compile_time_secs",
                                               "jax_persistent_cache_min_entry_size_bytes")}
    cache = tmp_path / "jax-cache"
    try:
        manifests.use_compilation_cache(cache)
        f = jaxobs.jit(lambda x: jnp.sin(x) * 3, name=name, registry=CollectorRegistry())
        f(jnp.ones(11))
        assert any(p.name.endswith("-cache") for p in cache.iterdir())  # written although the compile was quick
    finally:
        for key, value in before.items():
            jax.config.update(key, value)
        compilation_cache.reset_cache()
