"""A bounded load generator for the example inference server (127.0.0.1 only).

Sends at most ``--requests`` requests and runs at most ``--duration``
seconds, whichever comes first, from ``--concurrency`` keep-alive
connections.  Fractions of the requests can ask the server (started with
``--allow-injection``) to fail (``--error-rate``), to be slow
(``--slow-rate``), or to skip padding with a batch size that is no bucket
(``--unbucketed-rate``: each new size compiles once, ``cause="shape"``).

    python examples/inference_server/loadgen.py --url http://127.0.0.1:8000 \\
        --requests 2000 --duration 30 --error-rate 0.2
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: Hosts the generator talks to: it is a local test tool, never a load test of someone else.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


@dataclass(frozen=True)
class LoadConfig:
    url: str = "http://127.0.0.1:8000"
    requests: int = 1000
    duration: float = 30.0
    concurrency: int = 4
    error_rate: float = 0.0
    slow_rate: float = 0.0
    unbucketed_rate: float = 0.0
    seed: int = 0
    timeout: float = 30.0


@dataclass
class LoadStats:
    """What happened, by HTTP status (0: connection failure)."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    unbucketed_sizes: set[int] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def ok(self) -> int:
        return self.statuses[200]

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def format(self) -> str:
        codes = ", ".join(f"{s or 'conn-fail'}: {n}" for s, n in sorted(self.statuses.items()))
        return (f"{self.sent} requests in {self.seconds:.1f}s ({self.sent / max(self.seconds, 1e-9):.0f}/s); "
                f"{codes}; latency p50 {self.quantile(0.5) * 1e3:.1f} ms, p99 "
                f"{self.quantile(0.99) * 1e3:.1f} ms; unbucketed sizes sent: "
                f"{sorted(self.unbucketed_sizes) or 'none'}")


def check_local(url: str) -> tuple[str, int]:
    """(host, port) of ``url``; refuses anything but this machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOCAL_HOSTS:
        raise ValueError(f"loadgen only talks to http://127.0.0.1 (got {url!r})")
    return parts.hostname, parts.port or 80


def _get_json(host: str, port: int, path: str, timeout: float) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


class _Plan:
    """Request bodies, drawn from one seeded generator (reproducible mixes)."""

    def __init__(self, cfg: LoadConfig, info: dict) -> None:
        self.cfg = cfg
        self.features = int(info["features"])
        self.buckets = sorted(int(b) for b in info["buckets"])
        largest = self.buckets[-1]
        self.unbucketed = [n for n in range(1, largest + 1) if n not in self.buckets]
        self._rng = random.Random(cfg.seed)
        self._lock = threading.Lock()

    def body(self) -> tuple[dict, int | None]:
        with self._lock:
            r = self._rng.random()
            cfg = self.cfg
            body: dict = {}
            unbucketed = None
            if r < cfg.error_rate:
                body["inject"] = "error"
            elif r < cfg.error_rate + cfg.slow_rate:
                body["inject"] = "slow"
            elif r < cfg.error_rate + cfg.slow_rate + cfg.unbucketed_rate and self.unbucketed:
                unbucketed = self._rng.choice(self.unbucketed)
                body["bucket"] = False
            rows = unbucketed or self._rng.randint(1, max(1, self.buckets[-1] // 4))
            seed = self._rng.random()
        body["inputs"] = [[seed] * self.features for _ in range(rows)]
        return body, unbucketed


def run(cfg: LoadConfig, stop: threading.Event | None = None) -> LoadStats:
    """Drive load until ``cfg.requests`` were sent, ``cfg.duration`` passed or ``stop`` is set."""
    host, port = check_local(cfg.url)
    plan = _Plan(cfg, _get_json(host, port, "/info", cfg.timeout))
    stats = LoadStats()
    lock = threading.Lock()
    tickets = itertools.count()
    start = time.monotonic()
    deadline = start + cfg.duration
    stop = stop or threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=cfg.timeout)
        try:
            while not stop.is_set() and time.monotonic() < deadline and next(tickets) < cfg.requests:
                body, unbucketed = plan.body()
                payload = json.dumps(body).encode()
                t0 = time.monotonic()
                try:
                    conn.request("POST", "/predict", payload, {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    resp.read()
                    status = resp.status
                except (OSError, http.client.HTTPException):
                    status = 0
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=cfg.timeout)
                elapsed = time.monotonic() - t0
                with lock:
                    stats.sent += 1
                    stats.statuses[status] += 1
                    stats.latencies.append(elapsed)
                    if unbucketed and status == 200:
                        stats.unbucketed_sizes.add(unbucketed)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, name=f"loadgen-{i}", daemon=True)
               for i in range(max(1, cfg.concurrency))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(cfg.duration + cfg.timeout + 5)
    stats.seconds = time.monotonic() - start
    return stats


def main(argv: list[str] | None = None) -> int:
    d = LoadConfig()
    p = argparse.ArgumentParser(description="Bounded load for the example inference server.")
    p.add_argument("--url", default=d.url)
    p.add_argument("--requests", type=int, default=d.requests, help="stop after this many requests")
    p.add_argument("--duration", type=float, default=d.duration, help="stop after this many seconds")
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--error-rate", type=float, default=d.error_rate)
    p.add_argument("--slow-rate", type=float, default=d.slow_rate)
    p.add_argument("--unbucketed-rate", type=float, default=d.unbucketed_rate)
    p.add_argument("--seed", type=int, default=d.seed)
    args = p.parse_args(argv)
    cfg = LoadConfig(url=args.url, requests=args.requests, duration=args.duration,
                     concurrency=args.concurrency, error_rate=args.error_rate,
                     slow_rate=args.slow_rate, unbucketed_rate=args.unbucketed_rate, seed=args.seed)
    try:
        stats = run(cfg)
    except ValueError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    print(stats.format())
    return 0


if __name__ == "__main__":
    sys.exit(main())
