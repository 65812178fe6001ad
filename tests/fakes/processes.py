"""Real processes for tests and benchmarks: a running ``jaxobs exporter`` and a fake app.

Both bind ``127.0.0.1`` only, pick their own free ports (``--port 0``), and are
always stopped by the context managers, so a failing test leaves nothing
behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

FAKES = Path(__file__).resolve().parent
REPO = FAKES.parent.parent
_LISTENING = re.compile(r"listening on https?://[^ ]+:(\d+) ")


def env_with_fakes(**extra: str) -> dict[str, str]:
    """The environment for a child that may import ``fake_pynvml`` and ``jaxobs``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKES), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


@dataclass
class RunningExporter:
    proc: subprocess.Popen[str]
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 10.0, headers: dict[str, str] | None = None,
            context: object = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # type: ignore[arg-type]
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@contextlib.contextmanager
def exporter(args: Sequence[str], *, env: dict[str, str] | None = None, module: bool = False,
             start_timeout: float = 20.0) -> Iterator[RunningExporter]:
    """Start ``jaxobs exporter --address 127.0.0.1 --port 0 ARGS`` and wait until it listens."""
    cmd = ([sys.executable, "-m", "jaxobs.exporter"] if module
           else [sys.executable, "-c", "from jaxobs.cli import main; main()", "exporter"])
    cmd += ["--address", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, env=env or env_with_fakes(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, cwd=REPO)
    try:
        port = None
        deadline = time.monotonic() + start_timeout
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            m = _LISTENING.search(line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            proc.kill()
            raise RuntimeError(f"exporter did not start: {proc.stderr.read()}")
        # Keep draining stderr so a chatty exporter never blocks on a full pipe.
        import threading

        threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()  # type: ignore[union-attr]
        scheme = "https" if "--tls-cert" in args else "http"
        yield RunningExporter(proc, port, scheme)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class FakeApp:
    proc: subprocess.Popen[str]
    pid: int
    port: int | None = None

    def set_ready(self, value: float) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"ready {value}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write("exit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def fake_app(*, multiproc_dir: Path | None = None, serve: bool = False, series: int = 10,
             ready: float = 1.0) -> Iterator[FakeApp]:
    """A process that writes jaxobs app metrics (multiprocess files, or its own /metrics)."""
    env = env_with_fakes()
    args = [sys.executable, str(FAKES / "fake_app.py"), "--series", str(series), "--ready", str(ready)]
    if serve:
        args += ["--serve-port", "0"]
    else:
        assert multiproc_dir is not None
        env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc_dir)
    proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    app: FakeApp | None = None
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        if not first:
            raise RuntimeError("fake app did not start")
        app = FakeApp(proc, proc.pid, int(first[1]) if first[0] == "port" else None)
        yield app
    finally:
        if app is not None:
            app.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()
