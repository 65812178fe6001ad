"""The demo's workload: a real JAX model on CPU, instrumented end to end.

A two-layer MLP serves "requests" whose batch size varies (bucketed sizes are
warmed up first; a few unbucketed sizes force recompiles), plus a training
step, a bfloat16 request (a dtype recompile), a static-argument change and an
injected bad request (a real shape error inside a traced function).  Metrics
are served on ``/metrics`` while it runs; at the end it prints what an
on-call engineer would want to know.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jaxobs import catalog

BUCKETS = (1, 2, 4, 8, 16, 32)
UNBUCKETED = (3, 12, 24)  # sizes a careless client sends: each compiles once (cause=shape)


@dataclass
class DemoResult:
    requests: int
    errors: int
    seconds: float
    port: int | None = None  # where /metrics was served (None: not by this process)


def _model() -> tuple[Any, Callable[..., Any], Callable[..., Any]]:
    import jax
    import jax.numpy as jnp

    import jaxobs

    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    params = {
        "w1": jax.random.normal(k1, (64, 256)) * 0.1,
        "b1": jnp.zeros(256),
        "w2": jax.random.normal(k2, (256, 10)) * 0.1,
    }

    @jaxobs.jit(static_argnames="activation")
    def predict(params: dict[str, Any], x: Any, activation: str = "relu") -> Any:
        act = jax.nn.relu if activation == "relu" else jnp.tanh
        h = act(x @ params["w1"].astype(x.dtype) + params["b1"].astype(x.dtype))
        return h @ params["w2"].astype(x.dtype)

    def loss(params: dict[str, Any], x: Any, y: Any) -> Any:
        logits = predict(params, x)
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * y, axis=-1))

    @jaxobs.jit
    def train_step(params: dict[str, Any], x: Any, y: Any) -> tuple[dict[str, Any], Any]:
        value, grads = jax.value_and_grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads), value

    return params, predict, train_step


class InjectedFault(RuntimeError):
    """A request failed by ``jaxobs demo --stack``'s error burst."""


def _outage() -> Any:
    raise InjectedFault("injected: the upstream feature store timed out")


@dataclass
class Controls:
    """How a caller steers a running workload from another thread (``jaxobs demo --stack``).

    ``stop`` ends the run early; while ``burst`` is set, ``error_rate`` of the requests fail
    the way a dependency outage fails them: before the model runs (:class:`InjectedFault`),
    so the burst burns the availability SLO only, not the compile-related ones.
    """

    stop: threading.Event = field(default_factory=threading.Event)
    burst: threading.Event = field(default_factory=threading.Event)
    #: set by the workload once it is warm and past its scripted recompiles: steady traffic
    settled: threading.Event = field(default_factory=threading.Event)
    error_rate: float = 0.25


def run(duration: float = 15.0, port: int | None = 9464, addr: str = "127.0.0.1",
        echo: Callable[[str], None] = print, seed: int = 0,
        controls: Controls | None = None, progress_every: float = 2.0,
        on_serving: Callable[[int], None] | None = None) -> DemoResult:
    """Run the workload for ``duration`` seconds (or until ``controls.stop``).

    With a ``port`` it serves ``/metrics`` itself; ``None`` leaves serving to someone
    else (the sidecar of ``--stack`` reads the multiprocess directory instead);
    ``on_serving(port)`` is called once /metrics is up, before the traffic starts.
    """
    import random

    import jax
    import jax.numpy as jnp

    import jaxobs

    controls = controls or Controls()
    bound = None
    if port is not None:
        server = jaxobs.start_http_server(port, addr=addr)
        bound = server[0].server_port
        echo(f"serving metrics on http://{addr}:{bound}/metrics")
        if on_serving is not None:
            on_serving(bound)  # e.g. write a prometheus.yml naming the bound port
    params, predict, train_step = _model()

    echo(f"warming up batch buckets {BUCKETS} …")
    for b in BUCKETS:
        jaxobs.register_warmup(predict, params, jax.ShapeDtypeStruct((b, 64), jnp.float32))
    jaxobs.run_warmups()
    echo("ready (jaxobs_ready=1)")

    rng = random.Random(seed)
    x_all = jax.random.normal(jax.random.PRNGKey(1), (32, 64))
    y_all = jax.nn.one_hot(jnp.arange(32) % 10, 10)

    def bad_request() -> Any:
        return predict(params, x_all[:, :63])  # wrong feature size: fails inside the trace

    scripted: dict[int, Callable[[], Any]] = {
        40: lambda: predict(params, x_all[:UNBUCKETED[0]]),
        80: lambda: predict(params, x_all[:8].astype(jnp.bfloat16)),
        120: lambda: predict(params, x_all[:8], activation="tanh"),
        160: bad_request,  # the injected error
        200: lambda: predict(params, x_all[:UNBUCKETED[1]]),
        260: lambda: predict(params, x_all[:UNBUCKETED[2]]),
    }
    start = time.monotonic()
    last_report = start
    n = errors = 0
    last_scripted = max(scripted)
    # The scripted moments always happen, however slow a loaded machine makes the requests.
    while (time.monotonic() - start < duration or n <= last_scripted) and not controls.stop.is_set():
        if n > last_scripted:
            controls.settled.set()
        action = scripted.get(n)
        if action is None and controls.burst.is_set() and rng.random() < controls.error_rate:
            action = _outage
        try:
            with jaxobs.request("demo-inference"):
                if action is not None:
                    out = action()
                else:
                    b = rng.choice(BUCKETS)
                    out = predict(params, x_all[:b])
                jax.block_until_ready(out)  # the response is sent once computed
        except Exception:  # the injected error: counted as outcome="error" by jaxobs.request
            errors += 1
        if n % 10 == 0:
            with jaxobs.step("demo-training"):
                params, loss_value = train_step(params, x_all, y_all)
        n += 1
        now = time.monotonic()
        if now - last_report >= progress_every:
            last_report = now
            echo(f"  {now - start:5.1f}s  requests={n}  errors={errors}")
        time.sleep(0.002)  # leave the CPU to the scraper now and then
    return DemoResult(requests=n, errors=errors, seconds=time.monotonic() - start, port=bound)


def _fmt_s(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def summary(result: DemoResult) -> str:
    """What happened, from the recorded metrics (the same numbers Prometheus scrapes)."""
    from jaxobs.telemetry import recorder_for
    from jaxobs.telemetry.internal_errors import internal_error_counts
    from jaxobs.telemetry.recorder import HistogramSeries, quantiles

    rec = recorder_for(None)
    lines = [f"jaxobs demo: {result.requests} requests in {result.seconds:.1f}s, "
             f"{result.errors} failed (injected)", ""]
    functions = sorted({v[0] for v, _ in rec.family(catalog.CALLS).items()})
    width = max([len("function"), *map(len, functions)])
    lines.append(f"{'function':<{width}} {'calls':>7} {'hit ratio':>9} {'compiles':>8}  "
                 f"{'trace':>9} {'lower':>9} {'backend':>9}  causes")
    for fn in functions:
        hits = rec.value(catalog.CALLS, fn, "hit")
        misses = rec.value(catalog.CALLS, fn, "miss")
        calls = hits + misses
        phases = []
        for phase in ("trace", "lower", "backend"):
            series = rec.family(catalog.COMPILE_DURATION)._series.get((fn, phase))
            total = series.snapshot()[1] if isinstance(series, HistogramSeries) else 0.0
            phases.append(_fmt_s(total))
        causes = {v[1]: int(rec.value(catalog.COMPILATIONS, *v)) for v, _ in rec.family(catalog.COMPILATIONS).items()
                  if v[0] == fn}
        compiles = sum(causes.values())
        ratio = f"{hits / calls:.1%}" if calls else "n/a"
        cause_text = ", ".join(f"{k}={v}" for k, v in sorted(causes.items()))
        lines.append(f"{fn:<{width}} {int(calls):>7} {ratio:>9} {compiles:>8}  "
                     f"{phases[0]:>9} {phases[1]:>9} {phases[2]:>9}  {cause_text}")
    lines.append("")
    for service in sorted({v[0] for v, _ in rec.family(catalog.REQUESTS).items()}):
        ok = rec.value(catalog.REQUESTS, service, "ok")
        err = rec.value(catalog.REQUESTS, service, "error")
        cold = rec.observation_count(catalog.REQUEST_DURATION, service, "cold")
        steady_series = rec.histogram(catalog.REQUEST_DURATION, service, "steady")
        q = quantiles(steady_series)
        total = ok + err
        lines.append(f"{service}: {int(total)} requests, errors {err / total if total else 0:.2%}, "
                     f"cold starts {cold / total if total else 0:.2%}, steady latency "
                     f"p50 {_fmt_s(q.p50)}  p95 {_fmt_s(q.p95)}  p99 {_fmt_s(q.p99)}")
    errors = {f"{v[0]}/{v[1]}": int(rec.value(catalog.ERRORS, *v)) for v, _ in rec.family(catalog.ERRORS).items()}
    lines.append(f"errors by function/kind: {errors or 'none'}")
    internal = internal_error_counts()
    lines.append(f"jaxobs internal errors: {internal or 'none'}")
    return "\n".join(lines)
