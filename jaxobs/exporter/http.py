"""The sidecar's HTTP server: threaded, deadline-bound, optionally TLS and basic auth.

Why not prometheus-client's ``start_http_server``: the sidecar faces whatever
can reach the pod port, and bad HTTP input must never crash it or block a
scrape (issue 5).  The standard library server plus four rules does that:

1. **A thread per connection** (capped): a slow client only ever holds its own
   thread.  Beyond ``max_connections`` a connection gets an immediate 503
   from the accept loop, which never blocks.
2. **A deadline per connection**, enforced by one reaper thread that shuts
   the socket down.  Socket timeouts alone do not stop slowloris: each byte
   restarts them.  The deadline covers the TLS handshake and the request
   headers (``request_timeout``); once a request is read it is extended by
   the scrape timeout plus a grace period to write the answer.
3. **Bounded input**: the stdlib caps a request line at 64 KiB and headers
   at 100 lines of 64 KiB (answering 414/431); requests with a body are
   refused (GET/HEAD only).
4. **TLS handshakes happen on the connection's thread**, never in the
   accept loop.

``/healthz`` and ``/readyz`` are not behind basic auth: kubelet probes cannot
carry secrets without putting them in the manifest, and they reveal nothing.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from jaxobs.exporter.sources import Readiness

logger = logging.getLogger("jaxobs.exporter")

#: Time added to the scrape timeout to write a response to a slow reader.
WRITE_GRACE_SECONDS = 5.0
#: Prometheus tells targets its scrape timeout; we answer a little before it.
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"


@dataclass(frozen=True)
class HttpConfig:
    address: str = "0.0.0.0"
    port: int = 9402
    request_timeout: float = 5.0
    scrape_timeout: float = 5.0
    max_connections: int = 64
    tls_cert: str | None = None
    tls_key: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password: str | None = None


@dataclass(frozen=True)
class Endpoints:
    """What the handler serves; kept as callables so the server knows nothing of collectors."""

    metrics: Callable[[float], Any]  # timeout seconds -> object with collect()
    readiness: Callable[[], Readiness]


class Reaper:
    """Shuts down sockets whose deadline has passed (one thread for all connections)."""

    def __init__(self, tick: float = 0.1) -> None:
        self._tick = tick
        self._lock = threading.Lock()
        self._deadlines: dict[socket.socket, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxobs-http-reaper", daemon=True)
        self._thread.start()

    def set(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            self._deadlines[sock] = deadline

    def clear(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                expired = [s for s, d in self._deadlines.items() if d <= now]
                for s in expired:
                    del self._deadlines[s]
            for s in expired:
                try:
                    # The base-class method: on an SSLSocket the override would also drop
                    # the TLS object under the feet of the thread using it.
                    socket.socket.shutdown(s, socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: HttpConfig, endpoints: Endpoints) -> None:
        self.config = config
        self.endpoints = endpoints
        self.reaper = Reaper()
        self._active = 0
        self._active_lock = threading.Lock()
        self.ssl_context: ssl.SSLContext | None = None
        if config.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(config.tls_cert, config.tls_key)
            self.ssl_context = ctx
        if ":" in config.address:
            self.address_family = socket.AF_INET6
        super().__init__((config.address, config.port), _Handler)

    # -- connection admission and TLS, on the connection's own thread ----------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        with self._active_lock:
            admitted = self._active < self.config.max_connections
            if admitted:
                self._active += 1
        if not admitted:
            _refuse(request)
            return
        self.reaper.set(request, time.monotonic() + self.config.request_timeout)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: Any) -> None:
        self.reaper.clear(request)
        with self._active_lock:
            self._active -= 1

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(self.config.request_timeout)
        tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        self.reaper.clear(request)
        self.reaper.set(tls, time.monotonic() + self.config.request_timeout)
        try:
            tls.do_handshake()
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            self.reaper.clear(tls)
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Client misbehaviour (resets, TLS garbage, reaped sockets) is not our error: no traceback.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def server_close(self) -> None:
        self.reaper.stop()
        super().server_close()


def _refuse(request: socket.socket) -> None:
    try:
        request.setblocking(False)
        request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass
    finally:
        try:
            request.close()
        except OSError:
            pass


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    server_version = "jaxobs-exporter"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: nothing idles on a thread
    # Answer unparseable requests with a status line (the stdlib default is HTTP/0.9: body only).
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def setup(self) -> None:
        self.timeout = self.server.config.request_timeout  # per-recv cap; the reaper caps the total
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # -- routing --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        cfg = self.server.config
        self.server.reaper.set(self.connection, time.monotonic() + cfg.scrape_timeout + WRITE_GRACE_SECONDS)
        if self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"):
            self._reply(400, b"request bodies are not accepted\n", head=head)
            return
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, b"ok\n", head=head)
        elif path == "/readyz":
            state = self.server.endpoints.readiness()
            self._reply(200 if state.ready else 503, (state.reason + "\n").encode(), head=head)
        elif path == "/metrics":
            if not self._authorized():
                self._reply(401, b"unauthorized\n", head=head,
                            extra={"WWW-Authenticate": 'Basic realm="jaxobs"'})
                return
            self._metrics(head)
        elif path == "/":
            self._reply(200, b"jaxobs exporter: /metrics /healthz /readyz\n", head=head)
        else:
            self._reply(404, b"not found\n", head=head)

    def _authorized(self) -> bool:
        cfg = self.server.config
        if not cfg.basic_auth_user:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), cfg.basic_auth_user.encode())
        ok_pass = hmac.compare_digest(password.encode(), (cfg.basic_auth_password or "").encode())
        return ok_user and ok_pass

    def _metrics(self, head: bool) -> None:
        timeout = self.server.config.scrape_timeout
        hinted = self.headers.get(SCRAPE_TIMEOUT_HEADER)
        if hinted:
            try:
                timeout = min(timeout, max(0.1, float(hinted) * 0.9))
            except ValueError:
                pass
        registry = self.server.endpoints.metrics(timeout)
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        body = encoder(registry)
        extra = {}
        if "gzip" in self.headers.get("Accept-Encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            extra["Content-Encoding"] = "gzip"
        self._reply(200, body, head=head, content_type=content_type, extra=extra)

    def _reply(self, status: int, body: bytes, *, head: bool = False,
               content_type: str = "text/plain; charset=utf-8", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)
