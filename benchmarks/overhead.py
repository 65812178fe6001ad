"""Steady-state overhead of ``jaxobs.jit`` against raw ``jax.jit``, as ratios.

Both versions run in the same process, interleaved in rounds (raw, instrumented,
raw, …) so drift in CPU frequency or background load hits both alike.  The
statistic is the median over rounds of the per-call time; the ratio is
instrumented / raw.  Targets: the unsampled path (``--sample-rate 0``) ≤ 1.15×
on a tiny kernel; ≤ 1.01× on a ~1 ms kernel with the defaults on.

    python benchmarks/overhead.py [--rounds 30] [--calls 2000] [--sample-rate R] [--no-check-finite]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from prometheus_client import CollectorRegistry

import jaxobs


def time_calls(fn, x, calls: int) -> float:
    out = None
    t0 = time.perf_counter()
    for _ in range(calls):
        out = fn(x)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / calls


def measure(name: str, kernel, x, rounds: int, calls: int) -> dict[str, float]:
    raw = jax.jit(kernel)
    inst = jaxobs.jit(kernel, name=name, registry=CollectorRegistry())

    def forward(*args, **kwargs):  # the floor of any Python-level wrapper, for context
        return raw(*args, **kwargs)

    for fn in (raw, inst, forward):  # compile and warm all
        for _ in range(50):
            jax.block_until_ready(fn(x))
    raw_t, inst_t, fwd_t = [], [], []
    for _ in range(rounds):
        raw_t.append(time_calls(raw, x, calls))
        inst_t.append(time_calls(inst, x, calls))
        fwd_t.append(time_calls(forward, x, calls))
    r, i, f = statistics.median(raw_t), statistics.median(inst_t), statistics.median(fwd_t)
    return {"raw_us": r * 1e6, "instrumented_us": i * 1e6, "ratio": i / r, "forward_ratio": f / r}


def tiny(x):
    return x + 1.0


def about_1ms(x):
    # ~1 ms on one CPU core: a few 256x256 matmuls.
    for _ in range(4):
        x = jnp.tanh(x @ x) * 0.5
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=None,
                        help="override jaxobs' default sampling rate (0 = never synchronise)")
    parser.add_argument("--no-check-finite", action="store_true",
                        help="skip the NaN/Inf check on sampled calls (jaxobs.configure(check_finite=False))")
    args = parser.parse_args()
    if args.sample_rate is not None:
        jaxobs.configure(sample_rate=args.sample_rate)
    if args.no_check_finite:
        jaxobs.configure(check_finite=False)
    cases = [
        ("tiny", tiny, jnp.ones((8,), jnp.float32), args.calls),
        ("about_1ms", about_1ms, jnp.ones((256, 256), jnp.float32) * 0.01, max(20, args.calls // 50)),
    ]
    settings = jaxobs.configure()
    print(f"jax {jax.__version__} on {jax.default_backend()}, sample_rate={settings.sample_rate}, "
          f"check_finite={settings.check_finite}")
    print(f"{'kernel':<10} {'raw µs/call':>12} {'jaxobs µs/call':>15} {'ratio':>7}  "
          f"{'bare Python wrapper ratio':>26}")
    for name, kernel, x, calls in cases:
        m = measure(name, kernel, x, args.rounds, calls)
        print(f"{name:<10} {m['raw_us']:>12.2f} {m['instrumented_us']:>15.2f} {m['ratio']:>7.3f}  "
              f"{m['forward_ratio']:>26.3f}")


if __name__ == "__main__":
    main()
