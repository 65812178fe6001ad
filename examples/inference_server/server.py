"""A JAX inference server instrumented with jaxobs (stdlib HTTP, no framework).

What it shows, in the order a request meets it:

* ``POST /predict`` with ``{"inputs": [[...64 floats...], ...]}`` (1–32 rows)
  is one SLI event (``slis.py``): timed from its arrival, counted ok or error,
  its latency recorded only when it succeeded, cold when it waited for a
  compile.  Client errors (400) are in no SLI; a full queue answers 503 with
  ``Retry-After`` and counts as overload.
* Concurrent requests are batched and padded to a few bucket sizes
  (``batching.py``), so the model compiles ``len(buckets)`` times, ever.
* At start-up every bucket is precompiled (``jaxobs.register_warmup`` +
  ``jaxobs.run_warmups``) inside ``jaxobs.deploy_window()``; ``/readyz`` (and
  the sidecar's) turn ready only then, and compile alerts stay inhibited
  while the window is open.
* Metrics: ``GET /metrics`` on the same port, or — with
  ``PROMETHEUS_MULTIPROC_DIR`` set — files in that directory for the
  ``jaxobs exporter`` sidecar (see README.md).

Faults, for demos and tests (per request only with ``--allow-injection``):
``{"inject": "error"}`` fails the request, ``{"inject": "slow"}`` sleeps
``--slow-ms`` inside it, ``{"bucket": false}`` skips padding so a new batch
size compiles (``cause="shape"``).  ``--fail-rate``/``--slow-rate`` do the
same at random for every request.

    python examples/inference_server/server.py --port 8000
    curl -s -XPOST localhost:8000/predict -d '{"inputs": [[0.1, ...]]}'
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import perf_counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from opentelemetry import trace

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batching import DEFAULT_BUCKETS, Batcher, Overloaded  # noqa: E402
from slis import RequestSLIs  # noqa: E402

import jaxobs  # noqa: E402
from jaxobs import compile_probe  # noqa: E402

SERVICE = "inference"
#: Largest unpadded request (``"bucket": false``); bounds what a client can make us compile.
MAX_UNBUCKETED_ROWS = 256
REQUEST_TIMEOUT = 30.0
#: Seconds a refused client is told to wait (``Retry-After``): a few batches drain by then.
RETRY_AFTER_SECONDS = 1


class BadRequest(Exception):
    """The client's fault (HTTP 400): not an SLO error."""


class InjectedFault(RuntimeError):
    """A failure asked for by fault injection (HTTP 500)."""


@dataclass(frozen=True)
class ModelConfig:
    features: int = 64
    hidden: int = 256
    classes: int = 10
    seed: int = 0


@dataclass(frozen=True)
class Faults:
    """Fault injection: per-request (``allow``) and random for every request."""

    allow: bool = False
    fail_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.5


def init_params(cfg: ModelConfig) -> dict[str, jax.Array]:
    """A two-layer MLP with random weights (nothing to download)."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(cfg.seed))
    return {
        "w1": jax.random.normal(k1, (cfg.features, cfg.hidden)) / np.sqrt(cfg.features),
        "b1": jnp.zeros(cfg.hidden),
        "w2": jax.random.normal(k2, (cfg.hidden, cfg.classes)) / np.sqrt(cfg.hidden),
        "b2": jnp.zeros(cfg.classes),
    }


def mlp(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jax.nn.softmax(h @ params["w2"] + params["b2"])


class InferenceApp:
    """The model, its batcher and the request logic, independent of HTTP (tests use it directly)."""

    def __init__(self, model: ModelConfig = ModelConfig(), buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                 max_wait: float = 0.002, faults: Faults = Faults(), *, registry: Any = None,
                 service: str = SERVICE, max_queue: int = 1024) -> None:
        self.model = model
        self.buckets = tuple(sorted(buckets))
        self.faults = faults
        self.service = service
        self.registry = registry
        self.params = init_params(model)
        self.predict = jaxobs.jit(mlp, name="predict", registry=registry)
        self.slis = RequestSLIs(service, registry)
        self.batcher = Batcher(self._run_batch, self.buckets, max_wait, max_queue, service=service,
                               registry=registry).start()
        self._rng = random.Random(model.seed)
        self._rng_lock = threading.Lock()

    def _run_batch(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.predict(self.params, x))  # np.asarray blocks until computed

    def warm(self) -> int:
        """Precompile every bucket, then report ready (``jaxobs_ready`` 1).  Returns how many."""
        for size in self.buckets:
            jaxobs.register_warmup(self.predict, self.params,
                                   jax.ShapeDtypeStruct((size, self.model.features), jnp.float32))
        return jaxobs.run_warmups()

    def info(self) -> dict[str, Any]:
        return {"service": self.service, "features": self.model.features,
                "classes": self.model.classes, "buckets": list(self.buckets),
                "max_unbucketed_rows": MAX_UNBUCKETED_ROWS, "fault_injection": self.faults.allow}

    def handle(self, body: Any, arrival: float | None = None) -> dict[str, Any]:
        """One ``/predict`` request, timed from ``arrival`` (a ``perf_counter()`` value).

        Raises :class:`BadRequest` (in no SLI), :class:`Overloaded` (counted as
        overload) or the failure (an availability error).
        """
        arrival = perf_counter() if arrival is None else arrival
        x, bucketed, inject = self._parse(body)  # the client's fault: no SLI event
        self.slis.started()
        try:
            self._inject(inject)
            if bucketed:
                pending = self.batcher.submit(x)
                out = pending.wait(REQUEST_TIMEOUT)
                cold, batch = pending.cold, pending.batch_size  # cold: it waited for a compile
                if pending.batch_span is not None:  # the request's span points at its batch
                    trace.get_current_span().add_link(pending.batch_span)
            else:
                with compile_probe() as probe:
                    out = np.asarray(self.predict(self.params, x))  # compiles once per new size
                cold, batch = probe.cold, len(x)
        except Overloaded:
            self.slis.refused()
            raise
        except BaseException:
            self.slis.failed()
            raise
        self.slis.succeeded(arrival, cold)
        return {"outputs": out.tolist(), "batch_size": batch}

    def _parse(self, body: Any) -> tuple[np.ndarray, bool, str | None]:
        if not isinstance(body, dict) or "inputs" not in body:
            raise BadRequest('expected a JSON object with "inputs": [[floats], ...]')
        try:
            x = np.asarray(body["inputs"], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"inputs are not a numeric matrix: {exc}") from None
        if x.ndim != 2 or x.shape[1] != self.model.features:
            raise BadRequest(f"inputs must have shape (rows, {self.model.features}), got {x.shape}")
        bucketed = body.get("bucket", True) is not False
        limit = self.buckets[-1] if bucketed else MAX_UNBUCKETED_ROWS
        if not 1 <= len(x) <= limit:
            raise BadRequest(f"a request holds 1..{limit} rows, got {len(x)}")
        inject = body.get("inject")
        if inject is not None:
            if not self.faults.allow:
                raise BadRequest("fault injection is off (start the server with --allow-injection)")
            if inject not in ("error", "slow"):
                raise BadRequest(f'"inject" must be "error" or "slow", got {inject!r}')
        return x, bucketed, inject

    def _inject(self, inject: str | None) -> None:
        with self._rng_lock:
            fail = inject == "error" or self._rng.random() < self.faults.fail_rate
            slow = inject == "slow" or self._rng.random() < self.faults.slow_rate
        if slow:
            time.sleep(self.faults.slow_seconds)
        if fail:
            raise InjectedFault("injected failure")

    def close(self) -> None:
        self.batcher.close()


# --- HTTP ------------------------------------------------------------------------------


def metrics_text() -> tuple[bytes, str]:
    """This process's metrics; in multiprocess mode, what the shared directory holds."""
    import prometheus_client
    from prometheus_client import CollectorRegistry, multiprocess

    registry: Any = prometheus_client.REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        jaxobs.flush_multiprocess()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the load generator reuses connections
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: AppServer
    arrival = 0.0

    def parse_request(self) -> bool:
        # Called as soon as the request line was read: the request has arrived.  Timing from
        # here (not from do_POST) includes header and body parsing, as the client sees it.
        self.arrival = perf_counter()
        return super().parse_request()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/healthz":
            self._send(HTTPStatus.OK, b"ok\n", "text/plain")
        elif self.path == "/readyz":
            ready = jaxobs.is_ready()
            self._send(HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE,
                       b"ready\n" if ready else b"warming up\n", "text/plain")
        elif self.path == "/metrics":
            body, ctype = metrics_text()
            self._send(HTTPStatus.OK, body, ctype)
        elif self.path in ("/", "/info"):
            self._json(HTTPStatus.OK, self.server.app.info())
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path != "/predict":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
            return
        if not jaxobs.is_ready():  # the readiness probe keeps traffic away; this is for the rest
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "warming up"})
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        try:
            with trace.get_tracer("examples.inference_server").start_as_current_span(
                    "POST /predict", kind=trace.SpanKind.SERVER,
                    attributes={"http.request.method": "POST", "url.path": "/predict"}):
                answer = self.server.app.handle(body, self.arrival)
            self._json(HTTPStatus.OK, answer)
        except BadRequest as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Overloaded as exc:  # counted as overload, not as an error of the model
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"overloaded: {exc}"},
                       {"Retry-After": str(RETRY_AFTER_SECONDS)})
        except Exception as exc:  # counted as outcome="error"
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

    def _json(self, status: HTTPStatus, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: InferenceApp, verbose: bool = False) -> None:
        super().__init__(address, Handler)
        self.app = app
        self.verbose = verbose


def serve(app: InferenceApp, host: str = "127.0.0.1", port: int = 0) -> tuple[AppServer, threading.Thread]:
    """Start answering HTTP in a background thread (before warmup: /readyz says 503 meanwhile)."""
    httpd = AppServer((host, port), app)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    return httpd, thread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A JAX inference server instrumented with jaxobs.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--buckets", default=",".join(map(str, DEFAULT_BUCKETS)),
                   help="padded batch sizes, comma-separated")
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits to fill up")
    p.add_argument("--max-queue", type=int, default=1024,
                   help="requests that may wait for a batch; more are refused with 503 + Retry-After")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip warmup: the first request of each bucket pays the compile")
    p.add_argument("--deploy-window", type=float, default=0.0, metavar="SECONDS",
                   help="keep the deploy window open at least this long (a rollout whose other "
                        "replicas are still starting); compile alerts are inhibited meanwhile")
    p.add_argument("--allow-injection", action="store_true",
                   help='honour "inject" in requests (tests and demos only)')
    p.add_argument("--fail-rate", type=float, default=0.0, help="fail this fraction of requests")
    p.add_argument("--slow-rate", type=float, default=0.0, help="slow down this fraction of requests")
    p.add_argument("--slow-ms", type=float, default=500.0, help="how slow a slow request is")
    p.add_argument("--duration", type=float, default=0.0, help="exit after this many seconds (0: run until stopped)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument("--otlp-endpoint", default=None, metavar="HOST:PORT",
                   help="send a trace per request (with its batch and any compile) over OTLP/gRPC")
    p.add_argument("--profiling-port", type=int, default=None, metavar="PORT",
                   help="also serve jaxobs' metrics server on 127.0.0.1:PORT with POST "
                        "/debug/jaxobs/profile (jaxobs profile http://127.0.0.1:PORT); 0 picks a port")
    args = p.parse_args(argv)

    faults = Faults(allow=args.allow_injection, fail_rate=args.fail_rate, slow_rate=args.slow_rate,
                    slow_seconds=args.slow_ms / 1e3)
    buckets = tuple(int(b) for b in args.buckets.split(","))
    app = InferenceApp(buckets=buckets, max_wait=args.max_wait_ms / 1e3, faults=faults,
                       max_queue=args.max_queue)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    jaxobs.set_ready(False)
    httpd, _ = serve(app, args.host, args.port)
    httpd.verbose = args.verbose
    print(f"listening on http://{args.host}:{httpd.server_port}", flush=True)
    if args.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=args.otlp_endpoint,
                                                                        insecure=True)))
        trace.set_tracer_provider(provider)
    if args.profiling_port is not None:
        # loopback only: a capture pauses nothing, but it is not for the outside world
        debug, _ = jaxobs.start_http_server(args.profiling_port, "127.0.0.1", profiling=True)
        print(f"profiling on http://127.0.0.1:{debug.server_address[1]}", flush=True)

    started = time.monotonic()
    with jaxobs.deploy_window():
        if args.warmup:
            n = app.warm()
            print(f"warmed up {n} buckets {list(buckets)} in {time.monotonic() - started:.2f}s; ready",
                  flush=True)
        else:
            jaxobs.set_ready()
            print("ready (no warmup)", flush=True)
        stop.wait(max(0.0, args.deploy_window - (time.monotonic() - started)))
    print("deploy window closed", flush=True)
    stop.wait(args.duration - (time.monotonic() - started) if args.duration > 0 else None)
    httpd.shutdown()
    app.close()
    jaxobs.flush_multiprocess()
    return 0


if __name__ == "__main__":
    sys.exit(main())
