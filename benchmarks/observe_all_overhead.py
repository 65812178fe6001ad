"""Per-call cost of ``jaxobs.observe_all()`` for a ``jax.jit`` nobody wrapped, as a ratio.

The same raw ``jax.jit`` function is timed in one process in interleaved rounds,
with the process-wide mode switched off and on (off, on, off, …), so drift in
CPU frequency or background load hits both alike.  The statistic is the median
over rounds of the per-call time, and the fastest round (robust on a busy
machine, where a median mostly measures the neighbours); the ratio is on / off.
The mode only listens to compile events, which steady calls never emit: the
expected ratio is 1.00×.

    python benchmarks/observe_all_overhead.py [--rounds 100] [--calls 500]
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
from overhead import time_calls  # the jit benchmark's timing loop
from prometheus_client import CollectorRegistry

import jaxobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()

    fn = jax.jit(lambda x: x + 1.0)
    x = jnp.ones(8)
    registry = CollectorRegistry()
    for _ in range(50):
        jax.block_until_ready(fn(x))
    off, on = [], []
    for _ in range(args.rounds):
        off.append(time_calls(fn, x, args.calls))
        stop = jaxobs.observe_all(registry=registry)
        on.append(time_calls(fn, x, args.calls))
        stop()
    print(f"jax {jax.__version__} on {jax.default_backend()}: unwrapped jax.jit, tiny kernel")
    for stat in (statistics.median, min):
        o, n = stat(off), stat(on)
        print(f"{stat.__name__:>6}: observe_all off {o * 1e6:.2f} µs/call   on {n * 1e6:.2f} µs/call   "
              f"ratio {n / o:.3f}")


if __name__ == "__main__":
    main()
