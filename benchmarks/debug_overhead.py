"""What the production-debugging features cost, as ratios (interleaved rounds, medians).

* the NaN/Inf check on sampled calls: every call sampled (``sample_rate=1``), check on
  vs off — the worst case; and the default 1 % sampling, check on vs off — what a
  service pays;
* tracing: a ``jaxobs.request`` around an instrumented call, with no tracer provider
  (the default) vs an SDK provider exporting to nowhere, against the same call without
  ``jaxobs.request``.

    python benchmarks/debug_overhead.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from prometheus_client import CollectorRegistry

import jaxobs


def per_call(fn: Callable[[], object], calls: int) -> float:
    out = None
    t0 = time.perf_counter()
    for _ in range(calls):
        out = fn()
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / calls


def interleaved(variants: Sequence[Callable[[], object]], rounds: int, calls: int) -> list[float]:
    for fn in variants:  # compile and warm everything first
        for _ in range(50):
            jax.block_until_ready(fn())
    samples: list[list[float]] = [[] for _ in variants]
    for _ in range(rounds):
        for i, fn in enumerate(variants):
            samples[i].append(per_call(fn, calls))
    return [statistics.median(s) for s in samples]


def finite_check(rounds: int) -> None:
    print("NaN/Inf check (sampled calls only)")
    print(f"{'kernel':<10} {'sampling':>9} {'check off µs':>13} {'check on µs':>12} {'ratio':>6}")
    cases = [("tiny", lambda x: x + 1.0, jnp.ones((8,), jnp.float32), 2000),
             ("about_1ms", lambda x: jnp.tanh(x @ x @ x @ x), jnp.ones((256, 256)) * 0.01, 40)]
    for name, kernel, x, calls in cases:
        for rate in (1.0, 0.01):
            off = jaxobs.jit(kernel, name=f"{name}_off", registry=CollectorRegistry(), sample_rate=rate,
                             check_finite=False)
            on = jaxobs.jit(kernel, name=f"{name}_on", registry=CollectorRegistry(), sample_rate=rate)
            t_off, t_on = interleaved([lambda f=off, x=x: f(x), lambda f=on, x=x: f(x)], rounds, calls)
            print(f"{name:<10} {rate:>9.0%} {t_off * 1e6:>13.2f} {t_on * 1e6:>12.2f} {t_on / t_off:>6.3f}")


def tracing(rounds: int) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Nowhere(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    registry = CollectorRegistry()
    f = jaxobs.jit(lambda x: x + 1.0, name="traced", registry=registry)
    x = jnp.ones((8,), jnp.float32)

    def bare() -> object:
        return f(x)

    def in_request() -> object:
        with jaxobs.request("bench", registry=registry):
            return f(x)

    calls = 2000
    t_bare, t_off = interleaved([bare, in_request], rounds, calls)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Nowhere()))
    original = trace.get_tracer_provider
    trace.get_tracer_provider = lambda: provider
    try:
        t_bare2, t_on = interleaved([bare, in_request], rounds, calls)
    finally:
        trace.get_tracer_provider = original
    print("\njaxobs.request around a tiny instrumented call")
    print(f"  no tracer provider:  {t_off * 1e6:7.2f} µs/request  ({(t_off - t_bare) * 1e6:5.2f} µs over the "
          f"bare call, {t_off / t_bare:.2f}x)")
    print(f"  SDK provider, spans: {t_on * 1e6:7.2f} µs/request  ({(t_on - t_bare2) * 1e6:5.2f} µs over the "
          f"bare call, {t_on / t_bare2:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.default_backend()}")
    finite_check(args.rounds)
    tracing(args.rounds)


if __name__ == "__main__":
    main()
