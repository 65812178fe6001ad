"""What jaxobs.jit records, checked value by value (and in the exposition text)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from prometheus_client import generate_latest

import jaxobs
import jaxobs.runtime.causes as causes_module
import jaxobs.telemetry
from jaxobs import catalog as C


def _exposition(registry) -> str:
    return generate_latest(registry).decode()


def test_two_shapes_scenario_exact_values(registry, rec):
    f = jaxobs.jit(lambda x: x * 2 + 1, name="scaled", registry=registry)
    f(jnp.ones(3))
    f(jnp.ones(3))
    f(jnp.ones(4))
    text = _exposition(registry)
    assert 'jaxobs_calls_total{cache="miss",function="scaled"} 2.0' in text
    assert 'jaxobs_calls_total{cache="hit",function="scaled"} 1.0' in text
    assert 'jaxobs_compilations_total{cause="first",function="scaled"} 1.0' in text
    assert 'jaxobs_compilations_total{cause="shape",function="scaled"} 1.0' in text
    assert 'jaxobs_call_duration_seconds_count{function="scaled",start="cold"} 2.0' in text
    for phase in ("trace", "lower", "backend"):
        assert f'jaxobs_compile_duration_seconds_count{{function="scaled",phase="{phase}"}} 2.0' in text
    assert 'jaxobs_compilations_in_progress{function="scaled"} 0.0' in text
    assert "shape=" not in text and "(3,)" not in text  # shapes never become labels


@pytest.mark.parametrize(
    ("second_call", "cause"),
    [
        (lambda f: f(jnp.ones(3, jnp.int32), 2), "dtype"),
        (lambda f: f(jnp.ones(5), 2), "shape"),
        (lambda f: f(jnp.ones(3), 7), "static_arg"),
        (lambda f: f(jnp.ones(3), 2, extra=jnp.ones(1)), "other"),  # new pytree structure
    ],
)
def test_recompile_causes(registry, rec, second_call, cause):
    def g(x, n, extra=None):
        return x * n if extra is None else x * n + extra.sum()

    f = jaxobs.jit(g, name="caused", static_argnums=1, registry=registry)
    f(jnp.ones(3), 2)
    second_call(f)
    causes = {values[1]: s.value() for values, s in rec.family(C.COMPILATIONS).items()}
    assert causes == {"first": 1.0, cause: 1.0}
    assert set(causes) <= set(causes_module.CAUSES)  # the label stays within its documented set


def test_sharding_cause_with_two_cpu_devices(tmp_path):
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import jax, jax.numpy as jnp, numpy as np, jaxobs
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from jaxobs import catalog as C
        mesh = Mesh(np.array(jax.devices()[:2]), ("d",))
        f = jaxobs.jit(lambda x: x * 2, name="sharded")
        x = jnp.arange(8.0)
        f(jax.device_put(x, NamedSharding(mesh, P())))
        f(jax.device_put(x, NamedSharding(mesh, P("d"))))
        rec = jaxobs.telemetry.recorder_for(None)
        print(sorted((v[1], s.value()) for v, s in rec.family(C.COMPILATIONS).items()))
    """)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2", "PATH": "/usr/bin:/bin",
           "JAX_PLATFORMS": "cpu"}
    import os

    env = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "[('first', 1.0), ('sharding', 1.0)]" in out.stdout


def test_sampling_is_deterministic_and_bounded(registry, rec):
    jaxobs_fn = jaxobs.jit(lambda x: x + 1, name="sampled", registry=registry)  # default 1 %, first 3
    x = jnp.ones(2)
    jaxobs_fn(x)  # cold: not sampled
    for _ in range(250):
        jaxobs_fn(x)
    # steady call numbers 0..249: sampled are 0, 1, 2 (first three) and 100, 200
    assert rec.observation_count(C.KERNEL_DURATION, "sampled") == 5
    assert rec.observation_count(C.CALL_DURATION, "sampled", "steady") == 5
    assert rec.value(C.CALLS, "sampled", "hit") == 250


def test_unsampled_calls_stay_asynchronous(registry):
    a = jnp.eye(600) * 1.0001
    jaxobs.configure(first_samples=0)
    try:
        unsampled = jaxobs.jit(lambda a: jnp.linalg.matrix_power(a, 64).sum(), name="heavy2",
                               registry=registry, sample_rate=0.0)
        unsampled(a).block_until_ready()  # compile
        out = unsampled(a)
        assert not out.is_ready()  # returned before the device finished: dispatch stayed async
        out.block_until_ready()
        always = jaxobs.jit(lambda a: jnp.linalg.matrix_power(a, 64).sum(), name="heavy3",
                            registry=registry, sample_rate=1.0)
        always(a).block_until_ready()
        assert always(a).is_ready()  # sampled: synchronised before returning
    finally:
        jaxobs.configure(first_samples=3)


def test_errors_are_classified(registry, rec):
    f = jaxobs.jit(lambda a, b: a @ b, name="mm", registry=registry)
    with pytest.raises(TypeError):
        f(jnp.ones((2, 3)), jnp.ones((4, 5)))  # raised while tracing

    oom = jaxobs.jit(lambda x: jnp.zeros((2**42,), jnp.float32) + x, name="huge", registry=registry)
    with pytest.raises(Exception, match="RESOURCE_EXHAUSTED"):
        oom(1.0)  # 16 TiB: a real allocator failure on CPU

    def failing_callback(x):
        raise ValueError("device-side failure")

    rt = jaxobs.jit(lambda x: jax.pure_callback(failing_callback, jax.ShapeDtypeStruct((), jnp.float32), x),
                    name="callback", registry=registry)
    with pytest.raises(Exception, match="device-side failure"):
        rt(1.0)
    errors = {values: s.value() for values, s in rec.family(C.ERRORS).items()}
    assert errors == {("mm", "trace"): 1.0, ("huge", "oom"): 1.0, ("callback", "runtime"): 1.0}


def test_cost_analysis_gauges(registry, rec):
    f = jaxobs.jit(lambda a, b: jnp.tanh(a @ b), name="matmul", registry=registry)
    f(jnp.ones((32, 64)), jnp.ones((64, 16)))
    assert rec.value(C.FUNCTION_FLOPS, "matmul") >= 2 * 32 * 64 * 16
    assert rec.value(C.FUNCTION_BYTES_ACCESSED, "matmul") >= 4 * (32 * 64 + 64 * 16)
    assert rec.value(C.FUNCTION_PEAK_MEMORY, "matmul") >= 4 * 32 * 16
    assert rec.value(C.FUNCTION_FUSIONS, "matmul") >= 1
    big = rec.value(C.FUNCTION_FLOPS, "matmul")
    committed = jax.device_put(jnp.ones((8, 64)), jax.devices()[0])
    f(committed, jnp.ones((64, 16)))  # a later compile (committed input) is analysed too
    assert 2 * 8 * 64 * 16 <= rec.value(C.FUNCTION_FLOPS, "matmul") < big


def test_cost_analysis_with_donated_inputs(registry, rec):
    f = jaxobs.jit(lambda a: a * 2, name="donating", donate_argnums=0, registry=registry)
    f(jnp.ones(64))
    f(jnp.ones(128))
    assert rec.value(C.FUNCTION_FLOPS, "donating") == 128  # lowered from shapes: inputs were deleted


def test_build_info(registry):
    jaxobs.jit(lambda x: x, registry=registry)
    text = _exposition(registry)
    line = next(ln for ln in text.splitlines() if ln.startswith("jaxobs_build_info{"))
    assert f'jax="{jax.__version__}"' in line and 'backend="cpu"' in line
    assert f'jaxobs="{jaxobs.__version__}"' in line and line.endswith(" 1.0")


def test_concurrent_compiles_are_attributed_to_their_own_function(registry, rec):
    import threading

    fa = jaxobs.jit(lambda x: jnp.sin(x) @ x.T, name="fa", registry=registry)
    fb = jaxobs.jit(lambda x: jnp.cos(x).sum(axis=0), name="fb", registry=registry)
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        fn = fa if i % 2 else fb
        for _ in range(3):
            fn(jnp.ones((i + 1, 8)))  # distinct shape per thread: one compile each

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("fa", "fb"):
        assert rec.value(C.CALLS, name, "miss") == 4
        assert rec.value(C.CALLS, name, "hit") == 8
        assert rec.observation_count(C.COMPILE_DURATION, name, "backend") == 4


def test_wrappers_created_in_a_loop_do_not_leak_counters(registry, rec):
    import gc

    def body(x):
        return x + 1

    x = jnp.ones(2)
    for _ in range(50):  # an anti-pattern (a new wrapper per call), but it must stay bounded
        f = jaxobs.jit(body, name="looped", registry=registry)
        f(x)
        f(x)
        del f
    gc.collect()
    series = rec.family(C.CALLS).labels("looped", "hit")
    assert len(series._ticks) <= 1  # dead wrappers' tickers were folded into the total
    assert rec.value(C.CALLS, "looped", "hit") + rec.value(C.CALLS, "looped", "miss") == 100
