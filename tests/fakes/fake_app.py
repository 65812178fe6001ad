"""A stand-in for the JAX application container: it writes jaxobs metrics with plain prometheus-client.

It produces exactly what the sidecar consumes — ``jaxobs_ready`` and N
application series (``jaxobs_requests_total{service,outcome}``) — either as
multiprocess files in ``PROMETHEUS_MULTIPROC_DIR`` or on its own ``/metrics``,
without needing jax or the lead's backend.

    python fake_app.py --series 1000 --ready 1            # multiprocess (env var set)
    python fake_app.py --serve-port 0 --series 10         # own endpoint; prints "port N"

It then reads commands from stdin — ``ready 0|1``, ``exit`` — and exits on
EOF, so a test controls both its readiness and its lifetime (and the pid
that wrote the files stays alive while the test needs it).
"""

from __future__ import annotations

import argparse
import os
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from jaxobs import catalog


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--ready", type=float, default=1.0)
    parser.add_argument("--serve-port", type=int, default=None)
    args = parser.parse_args()

    registry = CollectorRegistry() if args.serve_port is not None else None
    kw = {"registry": registry} if registry is not None else {}
    ready = Gauge(catalog.READY.name, catalog.READY.help, multiprocess_mode=catalog.READY.multiprocess_mode, **kw)
    requests = Counter(catalog.REQUESTS.base_name, catalog.REQUESTS.help, list(catalog.REQUESTS.labels), **kw)
    for i in range(args.series):
        requests.labels(f"svc{i // 2:04d}", ("ok", "error")[i % 2]).inc(i + 1)
    ready.set(args.ready)
    if args.serve_port is not None:
        server, _ = start_http_server(args.serve_port, addr="127.0.0.1", registry=registry)
        print(f"port {server.server_address[1]}", flush=True)
    else:
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR"), "set PROMETHEUS_MULTIPROC_DIR"
        print(f"pid {os.getpid()}", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["ready"]:
            ready.set(float(cmd[1]))
            print("ok", flush=True)
        elif cmd[:1] == ["exit"]:
            break


if __name__ == "__main__":
    main()
