"""A profile on demand: capture a ``jax.profiler`` trace of the running process, like Go's pprof.

``POST /debug/jaxobs/profile?seconds=N`` on the app's metrics server (opt-in:
``jaxobs.start_http_server(port, profiling=True)``) or through the sidecar runs
:meth:`Profiler.capture`.  It is built for production:

* one capture at a time (a second request is refused at once, never queued),
* a capped duration, and a disk budget: old captures are pruned, newest kept,
* every outcome counted in ``jaxobs_profiles_total{outcome}``,
* the trace is XProf's ``.xplane.pb`` (TensorBoard/XProf) and, when asked,
  Perfetto's ``perfetto_trace.json.gz`` (ui.perfetto.dev), returned as a path
  or streamed as a ``.tar.gz``.

``jaxobs profile URL --seconds 5 -o DIR`` drives it from a laptop.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import report_internal_error


class ProfileBusy(RuntimeError):
    """Another capture is running in this process."""


class ProfileRejected(ValueError):
    """The request asked for something the limits do not allow (the message says what)."""


@dataclass(frozen=True)
class ProfileLimits:
    """What one process allows: duration per capture, captures kept, bytes kept on disk."""

    max_seconds: float = 60.0
    keep: int = 5
    max_total_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class Capture:
    """One finished capture: its directory, its files (relative), and their total size."""

    directory: Path
    files: tuple[str, ...]
    size: int  # bytes on disk

    def tar_gz(self) -> bytes:
        """The capture as one ``.tar.gz`` (what the HTTP endpoint streams)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(self.directory, arcname=self.directory.name)
        return buffer.getvalue()


class Profiler:
    """Single-flight, bounded ``jax.profiler`` captures under one directory."""

    def __init__(self, root: str | os.PathLike[str] | None = None, limits: ProfileLimits = ProfileLimits(),
                 registry: object = None) -> None:
        default_root = Path(os.environ.get("JAXOBS_PROFILE_DIR", "/tmp/jaxobs-profiles"))
        self.root = Path(root) if root is not None else default_root
        self.limits = limits
        self._registry = registry
        self._lock = threading.Lock()

    def _count(self, outcome: str) -> None:
        try:
            from jaxobs.telemetry import recorder_for

            recorder_for(self._registry).counter(catalog.PROFILES, outcome).inc()
        except Exception as exc:
            report_internal_error("profiling", exc)

    def capture(self, seconds: float, *, perfetto: bool = False) -> Capture:
        """Trace the whole process for ``seconds``; raises ProfileBusy or ProfileRejected."""
        if not (0 < seconds <= self.limits.max_seconds):
            self._count("rejected")
            raise ProfileRejected(f"seconds must be within (0, {self.limits.max_seconds:g}], got {seconds:g}")
        if not self._lock.acquire(blocking=False):
            self._count("busy")
            raise ProfileBusy("a profile capture is already running in this process; retry when it ends")
        try:
            return self._capture_locked(seconds, perfetto)
        finally:
            self._lock.release()

    def _capture_locked(self, seconds: float, perfetto: bool) -> Capture:
        import jax.profiler

        self.root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        directory = self.root / f"profile-{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}"
        try:
            jax.profiler.start_trace(str(directory), create_perfetto_trace=perfetto)
        except Exception:  # e.g. the user's own trace is running: not ours to stop
            self._count("error")
            raise
        try:
            time.sleep(seconds)
        finally:
            jax.profiler.stop_trace()
        files = tuple(sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()))
        size = sum((directory / f).stat().st_size for f in files)
        if size > self.limits.max_total_bytes:
            shutil.rmtree(directory, ignore_errors=True)
            self._count("rejected")
            raise ProfileRejected(f"the capture was {size} bytes, over the {self.limits.max_total_bytes}-byte "
                                  "budget: capture fewer seconds")
        self._prune(keep=directory)
        self._count("ok")
        return Capture(directory, files, size)

    def _prune(self, keep: Path) -> None:
        """Delete the oldest captures beyond ``limits.keep`` or the byte budget (never ``keep``)."""
        captures = sorted((p for p in self.root.glob("profile-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        sizes = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in captures}
        total = sum(sizes.values())
        for old in captures:
            if old == keep:
                continue
            if len(captures) <= self.limits.keep and total <= self.limits.max_total_bytes:
                break
            shutil.rmtree(old, ignore_errors=True)
            captures.remove(old)
            total -= sizes[old]


def parse_request(query: dict[str, list[str]]) -> tuple[float, bool, bool]:
    """``seconds``, ``perfetto`` and ``format=tar`` from a query string; ProfileRejected when bad."""
    def one(name: str, default: str) -> str:
        values = query.get(name) or [default]
        return values[-1]

    try:
        seconds = float(one("seconds", "5"))
    except ValueError:
        raise ProfileRejected(f"seconds must be a number, got {one('seconds', '5')!r}") from None
    if seconds != seconds:  # NaN
        raise ProfileRejected("seconds must be a number, got nan")
    perfetto = one("perfetto", "0").lower() in ("1", "true", "yes")
    as_tar = one("format", "json").lower() in ("tar", "tar.gz", "tgz")
    return seconds, perfetto, as_tar


def handle_profile_request(profiler: Profiler, method: str, query: dict[str, list[str]]
                           ) -> tuple[int, str, bytes]:
    """The endpoint's logic, independent of the HTTP server: (status, content type, body)."""
    import json

    if method != "POST":
        return 405, "text/plain; charset=utf-8", b"use POST: a capture changes the process\n"
    try:
        seconds, perfetto, as_tar = parse_request(query)
        capture = profiler.capture(seconds, perfetto=perfetto)
    except ProfileBusy as exc:
        return 409, "text/plain; charset=utf-8", f"{exc}\n".encode()
    except ProfileRejected as exc:
        return 400, "text/plain; charset=utf-8", f"{exc}\n".encode()
    except Exception as exc:
        report_internal_error("profiling", exc)
        return 500, "text/plain; charset=utf-8", f"capture failed: {exc}\n".encode()
    if as_tar:
        return 200, "application/gzip", capture.tar_gz()
    body = {"directory": str(capture.directory), "files": list(capture.files), "bytes": capture.size}
    return 200, "application/json", (json.dumps(body) + "\n").encode()
