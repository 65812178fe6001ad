"""Connections beyond the exporter's caps: answer probes, refuse the rest with a status line.

Why a separate path: when slow or hostile clients hold every connection slot,
the kubelet's ``/healthz`` and ``/readyz`` probes must still be answered, or
the pod leaves its Service (and the sidecar is restarted) because of someone
else's traffic.  And a refused client should get ``503`` with ``Retry-After``,
not a reset.  So a connection that does not get a thread is handed to one
selector thread that reads *only its request line* (non-blocking, at most
:data:`LINE_LIMIT` bytes, within :data:`DEADLINE_SECONDS`), answers probes
from the cached readiness result, and closes.  It never blocks: at most
:data:`MAX_PENDING` connections wait here, beyond that they are closed at once.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("jaxobs.exporter")

LINE_LIMIT = 8192
DEADLINE_SECONDS = 1.0
MAX_PENDING = 512
_STATUS = {200: b"OK", 408: b"Request Timeout", 503: b"Service Unavailable"}


@dataclass
class _Pending:
    sock: socket.socket
    deadline: float
    buf: bytearray
    handshaken: bool


class Overflow:
    """One thread, one selector: read a request line, answer, close.

    ``answer(path)`` returns ``(status, body)`` without blocking (probes read
    cached state); every other path gets the caller's ``503``.
    """

    def __init__(self, answer: Callable[[str], tuple[int, bytes]],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self._answer = answer
        self._ssl = ssl_context
        self._incoming: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._count = 0
        self._count_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxobs-http-overflow", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket) -> None:
        """Take over ``sock`` (from the accept loop; never blocks)."""
        with self._count_lock:
            full = self._count >= MAX_PENDING
            if not full:
                self._count += 1
        if full:
            _close(sock)
            return
        self._incoming.put(sock)

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._admit()
            events = self._selector.select(timeout=0.05) if self._pending else []
            if not self._pending:
                self._stop.wait(0.02)
            for key, _ in events:
                self._step(key.fd)
            now = time.monotonic()
            for fd in [fd for fd, p in self._pending.items() if p.deadline <= now]:
                self._finish(fd, None)

    def _admit(self) -> None:
        for _ in range(MAX_PENDING):
            try:
                sock = self._incoming.get_nowait()
            except queue.Empty:
                return
            try:
                sock.setblocking(False)
                if self._ssl is not None:
                    sock = self._ssl.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                fd = sock.fileno()
                self._pending[fd] = _Pending(sock, time.monotonic() + DEADLINE_SECONDS, bytearray(),
                                             self._ssl is None)
                self._selector.register(fd, selectors.EVENT_READ)
            except (OSError, ValueError):
                _close(sock)
                self._release()

    def _step(self, fd: int) -> None:
        p = self._pending.get(fd)
        if p is None:
            return
        try:
            if not p.handshaken:
                p.sock.do_handshake()  # type: ignore[attr-defined]
                p.handshaken = True
            for _ in range(4):  # bounded: at most LINE_LIMIT bytes are kept anyway
                chunk = p.sock.recv(LINE_LIMIT - len(p.buf))
                if not chunk:
                    self._finish(fd, bytes(p.buf) if p.buf else b"")
                    return
                p.buf += chunk
                if b"\n" in p.buf or len(p.buf) >= LINE_LIMIT:
                    self._finish(fd, bytes(p.buf))
                    return
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return
        except (OSError, ValueError):
            self._finish(fd, b"")

    def _finish(self, fd: int, data: bytes | None) -> None:
        p = self._pending.pop(fd)
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass
        try:
            if data:
                status, body = self._respond(data)
            elif data is None and p.handshaken:
                status, body = 408, b"no request line in time\n"
            else:
                status, body = 0, b""
            if status:
                head = (b"HTTP/1.0 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        b"Content-Length: %d\r\nConnection: close\r\n" % (status, _STATUS[status], len(body)))
                if status == 503:
                    head += b"Retry-After: 1\r\n"
                try:
                    p.sock.send(head + b"\r\n" + body)
                except (OSError, ValueError):
                    pass
        finally:
            _close(p.sock)
            self._release()

    def _respond(self, line: bytes) -> tuple[int, bytes]:
        parts = line.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) >= 2 and parts[0] in (b"GET", b"HEAD"):
            path = parts[1].split(b"?", 1)[0].decode("latin-1")
            try:
                status, body = self._answer(path)
            except Exception:  # a probe answer must never take the loop down
                logger.debug("overflow answer failed", exc_info=True)
                status, body = 503, b"busy\n"
            if parts[0] == b"HEAD":
                body = b""
            return status, body
        return 503, b"too many connections; retry later\n"

    def _release(self) -> None:
        with self._count_lock:
            self._count -= 1


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
