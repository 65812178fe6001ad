"""Sidecar exporter cost: memory, and /metrics latency against a bare prometheus-client server.

    python benchmarks/exporter_bench.py [--scrapes 1000] [--series 1000] [--gpus 8]

Prints figures, it is not a timed test.  Setup, all real processes on 127.0.0.1:

* a fake app (tests/fakes/fake_app.py) writes ``--series`` application series
  into a multiprocess directory and stays alive;
* ``python -m jaxobs.exporter`` (the container entrypoint) serves that directory
  plus the host collector and the NVML collector over ``--gpus`` fake GPUs
  (tests/fakes/fake_pynvml.py, the same code path as real NVML minus the driver);
* the baseline is a bare ``prometheus_client.start_http_server`` exposing the same
  series: a ``MultiProcessCollector`` over the same directory plus the
  exporter's device/host families replayed as constants.

Scrapes alternate between the two servers in one loop, so both see the same
machine state.  Memory is the exporter's RSS (psutil) after start-up and after
all scrapes; target ≤ 60 MB.  Latency target: p99 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

from jaxobs import catalog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fakes"))

from processes import env_with_fakes, exporter, fake_app  # noqa: E402

BARE_SERVER = textwrap.dedent("""
    import sys, time
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.parser import text_string_to_metric_families

    class Replay:
        def __init__(self, text):
            self.families = list(text_string_to_metric_families(text))
        def collect(self):
            return self.families

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=sys.argv[1])
    registry.register(Replay(open(sys.argv[2]).read()))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    print(server.server_address[1], flush=True)
    sys.stdin.read()
""")


def get(port: int, path: str = "/metrics") -> tuple[float, bytes]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    elapsed = time.perf_counter() - started
    assert resp.status == 200, resp.status
    return elapsed, body


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def series_count(body: bytes) -> int:
    return sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))


def device_and_host_families(body: bytes) -> str:
    """The exporter's own families (everything the app did not write), for the baseline to replay."""
    keep, current = [], None
    for line in body.decode().splitlines():
        if line.startswith("# HELP "):
            current = line.split()[2]
        if current and not current.startswith((catalog.REQUESTS.base_name, catalog.READY.name)):
            keep.append(line)
    return "\n".join(keep) + "\n"


def measure_startup_rss(extra: list[str], env_extra: dict[str, str], mp: Path) -> float:
    with exporter(["--multiproc-dir", str(mp), *extra], env=env_with_fakes(**env_extra), module=True) as ex:
        time.sleep(0.5)
        get(ex.port)
        return rss_mb(ex.proc.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=1000)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        mp = Path(tmp) / "multiproc"
        mp.mkdir()
        env = env_with_fakes(FAKE_PYNVML_GPUS=str(args.gpus))
        with fake_app(multiproc_dir=mp, series=args.series), \
                exporter(["--multiproc-dir", str(mp), "--collectors", "host,nvml", "--nvml-module", "fake_pynvml"],
                         env=env, module=True) as ex:
            time.sleep(0.5)
            rss_start = rss_mb(ex.proc.pid)
            _, body = get(ex.port)
            replay = Path(tmp) / "replay.txt"
            replay.write_text(device_and_host_families(body))
            bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(mp), str(replay)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env_with_fakes())
            try:
                assert bare.stdout is not None
                bare_port = int(bare.stdout.readline())
                _, bare_body = get(bare_port)
                for _ in range(20):  # warm both
                    get(ex.port)
                    get(bare_port)
                ours, theirs = [], []
                for i in range(args.scrapes):
                    if i % 2:
                        ours.append(get(ex.port)[0])
                        theirs.append(get(bare_port)[0])
                    else:
                        theirs.append(get(bare_port)[0])
                        ours.append(get(ex.port)[0])
                rss_after = rss_mb(ex.proc.pid)
            finally:
                bare.kill()
                bare.wait()

        rss_tpu = measure_startup_rss(["--collectors", "host,tpu", "--tpu-address", "127.0.0.1:1"], {}, mp)

    ms = 1000.0
    print(f"exporter_bench: {args.gpus} fake GPUs, {args.series} app series, {args.scrapes} scrapes each")
    print(f"  exposition: exporter {series_count(body)} samples / {len(body)} B; "
          f"bare {series_count(bare_body)} samples / {len(bare_body)} B")
    print(f"  exporter RSS: {rss_start:.1f} MB after start, {rss_after:.1f} MB after {args.scrapes} scrapes "
          f"(target <= 60 MB); with the TPU collector (grpc) instead of NVML: {rss_tpu:.1f} MB")
    for name, xs in (("exporter", ours), ("bare prometheus-client", theirs)):
        print(f"  {name:>24}: p50 {pct(xs, 0.5) * ms:6.2f} ms  p99 {pct(xs, 0.99) * ms:6.2f} ms  "
              f"mean {statistics.fmean(xs) * ms:6.2f} ms")
    print(f"  ratio exporter/bare: p50 {pct(ours, 0.5) / pct(theirs, 0.5):.2f}x  "
          f"p99 {pct(ours, 0.99) / pct(theirs, 0.99):.2f}x  (target p99 <= 20 ms)")


if __name__ == "__main__":
    main()
