"""The sidecar's HTTP server: threaded, deadline-bound, optionally TLS and basic auth.

Why not prometheus-client's ``start_http_server``: the sidecar faces whatever
can reach the pod port, and bad HTTP input must never crash it or block a
scrape.  The standard library server plus four rules does that:

1. **A thread per connection** (capped in total and per client IP): a slow
   client only ever holds its own thread.  A connection over either cap is
   handed to :mod:`jaxobs.exporter.overflow`, which reads its request line
   without blocking, answers ``/healthz`` and ``/readyz`` (so kubelet probes
   pass while slow clients hold every slot) and gives everything else ``503``
   with ``Retry-After`` — a status line, not a reset.
2. **A deadline per connection**, enforced by one reaper thread that shuts
   the socket down.  Socket timeouts alone do not stop slowloris: each byte
   restarts them.  The deadline covers the TLS handshake and the request
   headers (``request_timeout``); once a request is read it is extended by
   the scrape timeout plus a grace period to write the answer.
3. **Bounded input, checked while reading**: the request line and each
   header line are capped at :data:`MAX_LINE_BYTES`, all headers together at
   :data:`MAX_HEADER_BYTES` (answering 414/431) before any parsing or auth;
   requests with a body are refused (GET/HEAD only).
4. **TLS handshakes happen on the connection's thread**, never in the
   accept loop.
5. **Readiness runs single-flight under a deadline**: a readiness check that
   blocks (a stalled proxy target) holds one thread, not one per probe.
6. **Failed basic auth backs off** per client IP (doubling, up to
   :data:`AuthGuard.MAX_DELAY` seconds, answered ``429`` meanwhile) and is
   counted in ``jaxobs_exporter_auth_failures_total``.

``/healthz`` and ``/readyz`` are not behind basic auth: kubelet probes cannot
carry secrets without putting them in the manifest, and they reveal nothing.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hmac
import http.client
import ipaddress
import logging
import math
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder

from jaxobs.exporter.overflow import Overflow
from jaxobs.exporter.scrape import SingleFlight
from jaxobs.exporter.sources import Readiness
from jaxobs.exporter.tls import server_context
from jaxobs.profile_cli import PROFILE_PATH

logger = logging.getLogger("jaxobs.exporter")

#: Time added to the scrape timeout to write a response to a slow reader.
WRITE_GRACE_SECONDS = 5.0
#: Prometheus tells targets its scrape timeout; we answer a little before it.
SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
#: Longest request line or header line accepted (a scrape's are under 1 KiB).
MAX_LINE_BYTES = 8 * 1024
#: All header bytes of one request together.
MAX_HEADER_BYTES = 16 * 1024
#: A readiness result this old is not served to probes answered outside the cap.
READINESS_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class HttpConfig:
    address: str = "0.0.0.0"
    port: int = 9402
    request_timeout: float = 5.0
    scrape_timeout: float = 5.0
    max_connections: int = 64
    #: Concurrent connections from one client IP (0: half of max_connections, at least 1).
    max_connections_per_ip: int = 0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_key_password: str | None = None
    basic_auth_user: str | None = None
    basic_auth_password: str | None = None
    #: Seconds a readiness check may take before /readyz answers 503.
    readiness_timeout: float = 2.0

    @property
    def per_ip_limit(self) -> int:
        return self.max_connections_per_ip or max(1, self.max_connections // 2)


@dataclass(frozen=True)
class Endpoints:
    """What the handler serves; kept as callables so the server knows nothing of collectors."""

    metrics: Callable[[float], Any]  # timeout seconds -> object with collect()
    readiness: Callable[[], Readiness]
    #: ``POST /debug/jaxobs/profile``: (method, parsed query) -> (status, content type, body);
    #: None when profiling is off (the default)
    profile: Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]] | None = None


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


class ReadinessProbe:
    """The readiness callable, single-flight and under a deadline, with its last answer cached."""

    def __init__(self, fn: Callable[[], Readiness], timeout: float) -> None:
        self._flight = SingleFlight("readiness", lambda: [fn()])
        self._timeout = timeout
        self._last: tuple[float, Readiness] | None = None

    def check(self) -> Readiness:
        fut = self._flight.submit()
        try:
            result, _ = fut.result(timeout=self._timeout)
        except FutureTimeout:
            return Readiness(False, f"the readiness check did not finish within {self._timeout:g}s")
        except Exception as exc:
            return Readiness(False, f"cannot read readiness: {exc}")
        state: Readiness = result[0]
        self._last = (time.monotonic(), state)
        return state

    def cached(self) -> Readiness:
        """Never blocks: the last answer if recent (and a refresh starts in the background)."""
        fut = self._flight.submit()
        fut.add_done_callback(self._remember)
        last = self._last
        if last is not None and time.monotonic() - last[0] <= READINESS_CACHE_SECONDS:
            return last[1]
        return Readiness(False, "no recent readiness result yet (the exporter is at its connection limit)")

    def _remember(self, fut: Any) -> None:
        try:
            result, _ = fut.result(timeout=0)
            self._last = (time.monotonic(), result[0])
        except Exception:  # a failed check is answered by check(); the cache keeps the last good one
            pass


class AuthGuard:
    """Per-IP backoff after failed basic auth, and the failure count for /metrics."""

    #: Consecutive failures answered at once (a typo, a missing header) before backing off.
    FREE_FAILURES = 3
    BASE_DELAY = 0.05
    MAX_DELAY = 10.0
    MAX_TRACKED = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: dict[str, tuple[int, float]] = {}  # ip -> (consecutive failures, blocked until)
        self.failures = 0

    def retry_after(self, ip: str) -> float:
        """Seconds ``ip`` must still wait before its next attempt is checked (0: go ahead)."""
        with self._lock:
            state = self._state.get(ip)
        return max(0.0, state[1] - time.monotonic()) if state else 0.0

    def failed(self, ip: str) -> None:
        with self._lock:
            count = self._state.get(ip, (0, 0.0))[0] + 1
            if ip not in self._state and len(self._state) >= self.MAX_TRACKED:
                self._state.pop(next(iter(self._state)))  # forget the oldest; bounded memory
            over = count - self.FREE_FAILURES
            delay = 0.0 if over <= 0 else min(self.MAX_DELAY, self.BASE_DELAY * 2 ** min(over - 1, 16))
            self._state[ip] = (count, time.monotonic() + delay)
            self.failures += 1
            total = self.failures
        if count == 1 or total % 100 == 0:
            logger.warning("basic auth failed for %s (%d in a row, %d in total); next attempt "
                           "checked after %.2gs", ip, count, total, delay)

    def succeeded(self, ip: str) -> None:
        with self._lock:
            self._state.pop(ip, None)


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, config: HttpConfig, endpoints: Endpoints) -> None:
        self.config = config
        self.endpoints = endpoints
        self._active = 0
        self._per_ip: dict[str, int] = {}
        self._active_lock = threading.Lock()
        self.ssl_context: ssl.SSLContext | None = None
        if config.tls_cert:
            self.ssl_context = server_context(config.tls_cert, config.tls_key or config.tls_cert,
                                              config.tls_key_password)
        self.readiness = ReadinessProbe(endpoints.readiness, config.readiness_timeout)
        self.auth = AuthGuard()
        if ":" in config.address:
            self.address_family = socket.AF_INET6
        super().__init__((config.address, config.port), _Handler)
        self.reaper = Reaper()
        self.overflow = Overflow(self._overflow_answer, self.ssl_context)
        self.readiness.cached()  # start the first check now: probes over the cap read its result

    def _overflow_answer(self, path: str) -> tuple[int, bytes]:
        if path == "/healthz":
            return 200, b"ok\n"
        if path == "/readyz":
            state = self.readiness.cached()
            return (200 if state.ready else 503), (state.reason + "\n").encode()
        return 503, b"too many connections; retry later\n"

    # -- connection admission and TLS, on the connection's own thread ----------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        ip = str(client_address[0]) if client_address else ""
        with self._active_lock:
            admitted = (self._active < self.config.max_connections
                        and self._per_ip.get(ip, 0) < self.config.per_ip_limit)
            if admitted:
                self._active += 1
                self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        if not admitted:
            self.overflow.add(request)  # answers probes, 503s the rest; never blocks
            return
        self.reaper.set(request, time.monotonic() + self.config.request_timeout)
        try:
            super().process_request(request, client_address)
        except Exception:
            self._release(request, client_address)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request, client_address)

    def _release(self, request: Any, client_address: Any = None) -> None:
        self.reaper.clear(request)
        ip = str(client_address[0]) if client_address else ""
        with self._active_lock:
            self._active -= 1
            left = self._per_ip.get(ip, 1) - 1
            if left > 0:
                self._per_ip[ip] = left
            else:
                self._per_ip.pop(ip, None)

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
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
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
        for part in (getattr(self, "reaper", None), getattr(self, "overflow", None)):
            if part is not None:  # absent when binding failed inside __init__
                part.stop()
        super().server_close()


class _CappedReader:
    """Wraps the request's input: every line and the header block are capped while read.

    ``http.client.parse_headers`` reads up to 100 lines of 64 KiB each; this
    answers a longer line or header block with ``LineTooLong`` (a 431) after
    at most :data:`MAX_HEADER_BYTES` bytes, before anything is parsed.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.header_bytes = 0

    def readline(self, limit: int = -1) -> bytes:
        cap = min(MAX_LINE_BYTES, MAX_HEADER_BYTES - self.header_bytes)
        line = self._raw.readline(cap + 1)
        self.header_bytes += len(line)
        if len(line) > cap:
            raise http.client.LineTooLong("header line" if cap == MAX_LINE_BYTES else "header block")
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


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
        self.timeout = self.server.config.request_timeout  # type: ignore[misc]  # per-recv cap; the reaper caps the total
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        """The stdlib's, with the request line capped at MAX_LINE_BYTES and headers via _CappedReader."""
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE_BYTES + 1)
            if len(self.raw_requestline) > MAX_LINE_BYTES:
                self.requestline = self.request_version = self.command = ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            raw, self.rfile = self.rfile, _CappedReader(self.rfile)  # type: ignore[assignment]
            try:
                parsed = self.parse_request()
            finally:
                self.rfile = raw
            if not parsed:
                return
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(501, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except TimeoutError:
            self.close_connection = True

    # -- routing --------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._serve(head=False)

    def do_POST(self) -> None:
        """Only the on-demand profile takes a POST: it changes the process for a few seconds."""
        cfg = self.server.config
        path, _, query = self.path.partition("?")
        profile = self.server.endpoints.profile
        if path != PROFILE_PATH or profile is None:  # no other endpoint takes a POST
            self._reply(501, b"unsupported method POST (profiling is off or this is not its path)\n")
            return
        if self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"):
            self._reply(400, b"request bodies are not accepted\n")
            return
        ip = str(self.client_address[0]) if self.client_address else ""
        protected = bool(cfg.basic_auth_user or cfg.tls_cert)
        if not protected and not ipaddress.ip_address(ip or "0.0.0.0").is_loopback:
            self._reply(403, b"profiling answers on loopback only unless TLS or basic auth is configured\n")
            return
        if cfg.basic_auth_user and not self._authorized():
            self.server.auth.failed(ip)
            self._reply(401, b"unauthorized\n", extra={"WWW-Authenticate": 'Basic realm="jaxobs"'})
            return
        parsed = urllib.parse.parse_qs(query)
        try:
            seconds = float((parsed.get("seconds") or ["5"])[-1])
        except ValueError:
            seconds = 0.0
        # the capture itself takes `seconds`: the connection deadline must outlast it
        budget = max(seconds, 0.0) if seconds == seconds else 0.0
        self.server.reaper.set(self.connection, time.monotonic() + min(budget, 3600) + cfg.request_timeout
                               + WRITE_GRACE_SECONDS + 30)
        status, content_type, body = profile("POST", parsed)
        self._reply(status, body, content_type=content_type)

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
            state = self.server.readiness.check()
            self._reply(200 if state.ready else 503, (state.reason + "\n").encode(), head=head)
        elif path == "/metrics":
            if cfg.basic_auth_user:
                ip = str(self.client_address[0]) if self.client_address else ""
                wait = self.server.auth.retry_after(ip)
                if wait > 0:
                    self._reply(429, b"too many failed logins; retry later\n", head=head,
                                extra={"Retry-After": str(max(1, math.ceil(wait)))})
                    return
                if not self._authorized():
                    self.server.auth.failed(ip)
                    self._reply(401, b"unauthorized\n", head=head,
                                extra={"WWW-Authenticate": 'Basic realm="jaxobs"'})
                    return
                self.server.auth.succeeded(ip)
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
