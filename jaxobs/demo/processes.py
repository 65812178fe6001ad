"""Child processes of ``jaxobs demo --stack`` and the local "pager" that prints notifications.

Every child gets its own session (Ctrl-C reaches only the demo, which then stops
the children in order) and, on Linux, a parent-death signal: if the demo itself
is killed, the kernel terminates its children, so nothing is left behind even then.
"""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def _dies_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that the kernel SIGTERMs it when the demo dies (Linux, util-linux's setpriv).

    Through an exec'd wrapper, not a pre-exec hook: a hook would make subprocess fork a
    multithreaded process (JAX's threads are running), which is not safe.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Child:
    """One started process: its name, the log it writes, and how to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaped (no zombie)."""
        stop_all([self], timeout)


def stop_all(children: Sequence[Child], timeout: float = 10.0) -> None:
    """SIGTERM to every child at once, SIGKILL to those still running after ``timeout``:
    shutting down takes as long as the slowest child, not the sum of them."""
    running = [c for c in children if c.proc.poll() is None]
    for child in running:
        child.proc.terminate()
    deadline = time.monotonic() + timeout
    for child in running:
        try:
            child.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(timeout)


def start(name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> Child:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(_dies_with_parent(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, cwd=workdir, start_new_session=True)
    return Child(name, proc, log)


def wait_for(check: Callable[[], Any], timeout: float, child: Child | None = None,
             what: str = "") -> Any:
    """Poll ``check`` until truthy; a child that exits or a timeout raises with its log tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception:
            pass
        if child is not None and child.proc.poll() is not None:
            raise StackError(f"{child.name} exited (code {child.proc.returncode}) before {what}; "
                             f"its log ({child.log}):\n{child.tail()}")
        time.sleep(0.25)
    tail = f"; log ({child.log}):\n{child.tail()}" if child else ""
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}{tail}")


class StackError(RuntimeError):
    """A part of the stack did not start or behave; the message says which and shows its log."""


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def listening_port(child: Child) -> int | None:
    """The port a ``jaxobs exporter --port 0`` reported in its log."""
    m = re.search(r"listening on https?://[^ ]+:(\d+)", child.log.read_text(errors="replace"))
    return int(m.group(1)) if m else None


# --- the pager ---------------------------------------------------------------------------


def receiver_kind(path: str) -> str:
    """"page" or "ticket" from the webhook path (``/<receiver name>``, e.g. ``/jaxobs-page``)."""
    name = path.strip("/")
    return next((kind for kind in ("page", "ticket") if kind in name), name or "default")


@dataclass
class Received:
    """One alert of one notification, as the pager saw it."""

    receiver: str  # the path: page or ticket
    status: str  # the alert's own status: firing / resolved
    labels: dict[str, str]
    annotations: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class Pager:
    """A webhook on 127.0.0.1 that prints every notification Alertmanager sends it."""

    def __init__(self, echo: Callable[[str], None], runbooks_dir: str) -> None:
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._echo = echo
        self._runbooks = runbooks_dir
        pager = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    pager._notify(receiver_kind(self.path), json.loads(body))
                except (ValueError, KeyError, TypeError) as exc:
                    pager._echo(f"pager: unreadable notification ({exc})")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="jaxobs-demo-pager",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _notify(self, receiver: str, payload: dict[str, Any]) -> None:
        for alert in payload["alerts"]:
            item = Received(receiver, alert["status"], dict(alert["labels"]), dict(alert["annotations"]))
            with self._lock:
                self.received.append(item)
            self._echo(self.format(item))

    def format(self, item: Received) -> str:
        """A page in full (summary, runbook, labels); a ticket on one line."""
        labels = item.labels
        name = labels.get("alertname", "?")
        if item.receiver != "page":
            return f"  [{item.receiver}] {item.status:8} {name}: {item.annotations.get('summary', '')}"
        shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        return (f"[{item.receiver.upper()}] {item.status.upper():8} {name}\n"
                f"    summary: {item.annotations.get('summary', '')}\n"
                f"    runbook: {self._runbooks}/{name}.md\n    labels:  {shown}")

    def first(self, receiver: str, status: str, match: Callable[[dict[str, str]], bool]) -> Received | None:
        with self._lock:
            return next((r for r in self.received
                         if r.receiver == receiver and r.status == status and match(r.labels)), None)

    def all_resolved(self, receiver: str, match: Callable[[dict[str, str]], bool]) -> Received | None:
        """The last resolution, once every matching alert that fired has resolved since."""
        with self._lock:
            items = [r for r in self.received if r.receiver == receiver and match(r.labels)]
        state: dict[tuple[tuple[str, str], ...], Received] = {}
        for r in items:
            state[tuple(sorted(r.labels.items()))] = r
        if not state or any(r.status != "resolved" for r in state.values()):
            return None
        return max(state.values(), key=lambda r: r.at)

    def __enter__(self) -> Pager:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
