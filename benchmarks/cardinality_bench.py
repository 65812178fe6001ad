"""What many distinct instrumented functions cost one process: samples, bytes, memory.

    python benchmarks/cardinality_bench.py [--functions 3000]

A loop instruments ``--functions`` wrappers, each with its own ``name=`` (the
pattern that explodes cardinality), and calls each a few times.  They wrap one
Python function, so JAX compiles once and the memory measured is jaxobs' own,
not JAX's executables.  Prints the
samples and distinct ``function`` values on /metrics, the exposition size, and
the RSS growth (psutil) — counts, not times.  Run with ``PYTHONPATH=<checkout>``
to compare versions.
"""

from __future__ import annotations

import argparse
import gc
import json
import re

import psutil


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=3000)
    args = parser.parse_args()
    import jax.numpy as jnp
    from prometheus_client import CollectorRegistry, generate_latest

    import jaxobs

    def double(v):  # noqa: ANN001, ANN202
        return v * 2

    registry = CollectorRegistry()
    x = jnp.ones(4)
    jaxobs.jit(lambda v: v * 2, name="warm", registry=registry)(x)
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    fns = []
    for i in range(args.functions):
        fn = jaxobs.jit(double, name=f"fn{i}", registry=registry, sample_rate=1.0)
        for _ in range(3):
            fn(x)
        fns.append(fn)
    gc.collect()
    rss1 = psutil.Process().memory_info().rss
    text = generate_latest(registry).decode()
    samples = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    print(json.dumps({
        "functions": args.functions,
        "samples": samples,
        "function_values": len(set(re.findall(r'function="([^"]*)"', text))),
        "exposition_bytes": len(text),
        "rss_growth_mb": round((rss1 - rss0) / 1e6, 1),
    }))


if __name__ == "__main__":
    main()
