"""jaxobs.request / jaxobs.step SLI events, warmup and readiness."""

from __future__ import annotations

import asyncio

import jax
import jax.numpy as jnp
import pytest

import jaxobs
from jaxobs import catalog as C


def test_request_outcomes_and_cold_split(registry, rec):
    f = jaxobs.jit(lambda x: x * 3, name="req_fn", registry=registry)
    with jaxobs.request("svc", registry=registry):
        f(jnp.ones(2))  # compiles: the request is cold
    for _ in range(3):
        with jaxobs.request("svc", registry=registry):
            f(jnp.ones(2))
    with pytest.raises(ZeroDivisionError):
        with jaxobs.request("svc", registry=registry):
            _ = 1 / 0
    assert rec.value(C.REQUESTS, "svc", "ok") == 4
    assert rec.value(C.REQUESTS, "svc", "error") == 1
    assert rec.observation_count(C.REQUEST_DURATION, "svc", "cold") == 1
    assert rec.observation_count(C.REQUEST_DURATION, "svc", "steady") == 4
    assert rec.value(C.REQUESTS_IN_FLIGHT, "svc") == 0


def test_in_flight_gauge_and_ok_exceptions(registry, rec):
    class BadInput(Exception):
        pass

    with jaxobs.request("inflight", registry=registry):
        assert rec.value(C.REQUESTS_IN_FLIGHT, "inflight") == 1
        with pytest.raises(BadInput):
            with jaxobs.request("inflight", registry=registry, ok_exceptions=(BadInput,)):
                assert rec.value(C.REQUESTS_IN_FLIGHT, "inflight") == 2
                raise BadInput("client sent garbage")
    assert rec.value(C.REQUESTS_IN_FLIGHT, "inflight") == 0
    assert rec.value(C.REQUESTS, "inflight", "ok") == 2


def test_decorator_sync_and_async(registry, rec):
    @jaxobs.request("deco", registry=registry)
    def handle(x: float) -> float:
        """Handle one request."""
        if x < 0:
            raise ValueError("negative")
        return x * 2

    @jaxobs.request("deco_async", registry=registry)
    async def handle_async(x: float) -> float:
        await asyncio.sleep(0)
        return x + 1

    assert handle(2.0) == 4.0
    with pytest.raises(ValueError, match="negative"):
        handle(-1.0)
    assert handle.__doc__ == "Handle one request."
    assert asyncio.run(handle_async(1.0)) == 2.0
    assert rec.value(C.REQUESTS, "deco", "ok") == 1
    assert rec.value(C.REQUESTS, "deco", "error") == 1
    assert rec.value(C.REQUESTS, "deco_async", "ok") == 1


def test_step_marks_training_steps(registry, rec):
    step_fn = jaxobs.jit(lambda w, x: w - 0.1 * jax.grad(lambda w: ((x @ w) ** 2).mean())(w),
                         name="train_step", registry=registry)
    w, x = jnp.ones(4), jnp.ones((8, 4))
    for _ in range(5):
        with jaxobs.step(registry=registry):
            w = step_fn(w, x)
    assert rec.value(C.REQUESTS, "training", "ok") == 5
    assert rec.observation_count(C.REQUEST_DURATION, "training", "cold") == 1


def test_warmup_makes_first_call_warm_and_sets_ready(registry, rec):
    f = jaxobs.jit(lambda x: jnp.sin(x) * 2, name="warm", registry=registry)
    jaxobs.register_warmup(f, jax.ShapeDtypeStruct((4,), jnp.float32))
    jaxobs.register_warmup(f, jax.ShapeDtypeStruct((8,), jnp.float32))
    assert not jaxobs.is_ready()
    assert rec.value(C.READY) == 0
    assert jaxobs.run_warmups() == 2
    assert jaxobs.is_ready() and rec.value(C.READY) == 1
    causes = {v[1]: s.value() for v, s in rec.family(C.COMPILATIONS).items() if v[0] == "warm"}
    assert causes == {"first": 1.0, "shape": 1.0}
    with jaxobs.request("warm_svc", registry=registry):
        f(jnp.ones(4))
        f(jnp.ones(8))
    assert rec.value(C.CALLS, "warm", "miss") == 0  # both shapes were precompiled
    assert rec.value(C.CALLS, "warm", "hit") == 2
    assert rec.observation_count(C.REQUEST_DURATION, "warm_svc", "cold") == 0


def test_warmup_accepts_plain_jitted_functions(registry):
    assert not jaxobs.is_ready()  # the autouse fixture starts every test not ready
    compiled = jaxobs.warmup(jax.jit(lambda x: x + 1), jnp.ones(3))
    assert float(compiled(jnp.ones(3))[0]) == 2.0
    assert jaxobs.is_ready()


def test_deploy_window_sets_and_clears_the_signal(registry, rec):
    with jaxobs.deploy_window():
        assert rec.value(C.DEPLOY_IN_PROGRESS) == 1
    assert rec.value(C.DEPLOY_IN_PROGRESS) == 0


def test_one_request_object_shared_by_threads_and_tasks(registry, rec):
    import threading

    shared = jaxobs.request("shared", registry=registry)
    internal_before = jaxobs.internal_error_counts().get("request", 0)

    def worker() -> None:
        for _ in range(200):
            with shared:
                pass

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def task(i: int) -> None:
        with shared:
            await asyncio.sleep(0.001 * (i % 3))

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(20)))

    asyncio.run(main())
    assert rec.value(C.REQUESTS, "shared", "ok") == 820
    assert rec.value(C.REQUESTS_IN_FLIGHT, "shared") == 0
    assert jaxobs.internal_error_counts().get("request", 0) == internal_before
