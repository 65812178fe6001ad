"""Sidecar /metrics latency with many files left by exited processes, and totals kept.

    python benchmarks/compaction_bench.py [--dead-files 2000] [--scrapes 200] [--checkout PATH]

Setup, all real processes on 127.0.0.1:

* one real jaxobs writer (instrumented calls inside requests) runs and exits,
  leaving its multiprocess files and its released liveness lock;
* its files are cloned under fresh pids until ``--dead-files`` files of
  exited writers exist (each clone with its released lock, as an exited
  writer leaves it);
* one live writer holds its lock and stays up;
* ``python -m jaxobs.exporter --multiproc-dir`` (from ``--checkout``, default
  this one) serves the directory with the host collector.

The first scrape is reported apart (it is the one that compacts); the p50/p99
are over the following ``--scrapes``.  Totals: ``jaxobs_requests_total`` on
/metrics must equal what all writers wrote.  Run with ``--checkout`` at an
older commit to compare against a sidecar that does not compact.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRITER = """
import sys, jax.numpy as jnp, jaxobs
f = jaxobs.jit(lambda x: x * 2, name="bench_fn")
for i in range(int(sys.argv[1])):
    with jaxobs.request("bench-svc"):
        f(jnp.ones(4))
jaxobs.set_ready(True)
jaxobs.flush_multiprocess()
print("written", flush=True)
if sys.argv[2] == "stay":
    sys.stdin.readline()
"""
_LISTENING = re.compile(r"listening on https?://[^ ]+:(\d+) ")
_FILE = re.compile(r"^(.*)_(\d+)\.db$")


def writer(checkout: Path, mp: Path, n: int, stay: bool) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp), "PYTHONPATH": str(checkout),
           "JAXOBS_FLUSH_INTERVAL": "3600", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(n), "stay" if stay else "exit"],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "written"
    return proc


def clone_dead(mp: Path, files: int) -> int:
    """Copy the one exited writer's files under new pids; returns how many writers exist."""
    originals = [p for p in mp.glob("*.db")]
    pid = int(_FILE.match(originals[0].name).group(2))  # type: ignore[union-attr]
    lock = mp / f"jaxobs-{pid}.lock"
    writers, made, fake = 1, len(originals), 10_000_000
    while made < files:
        fake += 1
        for path in originals:
            prefix = _FILE.match(path.name).group(1)  # type: ignore[union-attr]
            shutil.copyfile(path, mp / f"{prefix}_{fake}.db")
            made += 1
        if lock.exists():
            shutil.copyfile(lock, mp / f"jaxobs-{fake}.lock")
        writers += 1
    return writers


def get(port: int) -> tuple[float, str]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 200, resp.status
    return time.perf_counter() - started, body


def requests_total(body: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("jaxobs_requests_total{") and 'service="bench-svc"' in line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dead-files", type=int, default=2000)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--per-writer", type=int, default=20, help="requests each writer made")
    parser.add_argument("--checkout", type=Path, default=ROOT)
    args = parser.parse_args()
    checkout = args.checkout.resolve()

    with tempfile.TemporaryDirectory() as tmp:
        mp = Path(tmp) / "mp"
        mp.mkdir()
        writer(checkout, mp, args.per_writer, stay=False).wait(timeout=120)
        writers = clone_dead(mp, args.dead_files)
        dead_files = len(list(mp.glob("*.db")))
        live = writer(checkout, mp, args.per_writer, stay=True)
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        ex = subprocess.Popen([sys.executable, "-m", "jaxobs.exporter", "--address", "127.0.0.1", "--port", "0",
                               "--multiproc-dir", str(mp), "--collectors", "host"],
                              env=env, cwd=checkout, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        try:
            assert ex.stderr is not None
            port = None
            while port is None:
                line = ex.stderr.readline()
                if not line:
                    raise RuntimeError("exporter did not start")
                m = _LISTENING.search(line)
                port = int(m.group(1)) if m else None
            first, body = get(port)
            times = [get(port)[0] for _ in range(args.scrapes)]
            _, body = get(port)
            left = len(list(mp.glob("*.db")))
        finally:
            ex.kill()
            ex.wait()
            live.kill()
            live.wait()
    expected = (writers + 1) * args.per_writer
    ordered = sorted(times)
    p50, p99 = statistics.median(times), ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    print(f"compaction_bench ({checkout}): {dead_files} files of {writers} exited writers + 1 live writer")
    print(f"  first scrape {first * 1e3:.1f} ms; then p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms "
          f"over {args.scrapes} scrapes (target p50 <= 60 ms)")
    print(f"  files left after compaction: {left}; jaxobs_requests_total {requests_total(body):g} "
          f"(written: {expected}) -> totals {'preserved' if requests_total(body) == expected else 'WRONG'}")


if __name__ == "__main__":
    main()
