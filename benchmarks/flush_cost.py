"""CPU per multiprocess flush with many idle instrumented functions.

With ``PROMETHEUS_MULTIPROC_DIR`` set, jaxobs copies its in-process totals
into prometheus-client's mmap files every ``JAXOBS_FLUSH_INTERVAL`` seconds.
This measures the CPU one flush takes (``time.thread_time``: the flushing
thread's own CPU, so other processes on the machine do not count) when
``--functions`` functions each ran a few calls and then went idle, and when
``--active`` of them ran between two flushes.  The background flusher is
parked (a one-hour interval) so every flush measured is one we triggered.

    python benchmarks/flush_cost.py [--functions 1000] [--active 10] [--flushes 20]

Run it against two checkouts (``PYTHONPATH=<checkout>``) to compare versions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=1000)
    parser.add_argument("--active", type=int, default=10)
    parser.add_argument("--flushes", type=int, default=20)
    args = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="jaxobs-flush-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.environ["JAXOBS_FLUSH_INTERVAL"] = "3600"
    import jax.numpy as jnp

    import jaxobs

    def add_one(x):
        return x + 1

    try:  # every function gets its own label, as before the cardinality cap existed
        jaxobs.configure(max_functions=max(args.functions, 1))
    except TypeError:  # a version without the cap
        pass
    x = jnp.ones(2)
    fns = [jaxobs.jit(add_one, name=f"fn{i}", sample_rate=1.0) for i in range(args.functions)]
    for fn in fns:  # every function compiles (once, shared) and records a few sampled calls
        for _ in range(3):
            fn(x)
    jaxobs.flush_multiprocess()  # the first flush writes everything once

    def cpu_of_flush() -> float:
        t0 = time.thread_time()
        jaxobs.flush_multiprocess()
        return time.thread_time() - t0

    idle = [cpu_of_flush() for _ in range(args.flushes)]
    active = []
    for _ in range(args.flushes):
        for fn in fns[: args.active]:
            fn(x)
        active.append(cpu_of_flush())
    size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
    print(json.dumps({
        "functions": args.functions,
        "idle_flush_cpu_ms_p50": round(statistics.median(idle) * 1e3, 3),
        f"flush_cpu_ms_p50_with_{args.active}_active": round(statistics.median(active) * 1e3, 3),
        "core_share_at_1s_interval_idle": f"{statistics.median(idle) * 100:.2f}%",
        "multiproc_dir_bytes": size,
    }))


if __name__ == "__main__":
    main()
