"""Fold the multiprocess files of exited processes into one archive that keeps totals.

Why: prometheus-client leaves ``counter_<pid>.db`` (and histogram, gauge)
files behind when a process exits, and the sidecar reads every file on every
scrape (about 130 µs each).  Restarts and worker recycling therefore slow
every scrape down forever.  Compaction merges a dead writer's files into
``<type>_archive.db`` files, which ``MultiProcessCollector`` reads like any
other (an archive is just a writer with pid ``archive``), then deletes them.

What survives, per file type — the same rules as prometheus-client's
``mark_process_dead`` plus its merge:

* counters and histograms (buckets, sums): added into the archive, so
  totals never go down;
* gauges by multiprocess mode: ``live*`` dropped; ``sum`` added; ``max``/``min``
  kept as the max/min; ``mostrecent`` keeps the newest timestamp; ``all`` keeps
  the last archived value per label set (the pid label becomes ``archive``);
* the process-state gauges in :data:`DROPPED_GAUGES` (ready, deploy in
  progress, build info) are dropped: they describe a live process, and a
  crashed app's ``jaxobs_ready 1`` must not outlive it.

Liveness comes from the lock each writer holds (``jaxobs/telemetry/liveness.py``),
so it works without a shared pid namespace.  Writers without a lock file are
left alone unless the sidecar can see pids (``check_pids``).

Files that cannot be read (torn, corrupt: see ``dbfile.py``) stay where they
are, with their writer's lock file, and are retried at the next compaction.
Archives are written with plain ``write`` calls, not ``mmap``: on a full
``emptyDir`` that is an ``OSError`` (counted, the scrape goes on), not a
``SIGBUS`` that kills the sidecar.

Crash safety: the new archive is written to ``*.db.tmp`` files, then a journal
naming the renames and deletions is written atomically, then applied, then
removed.  A sidecar restarted mid-way replays the journal before reading, so a
scrape never counts a dead writer twice or not at all.  Callers serialise
compaction with reading (``MultiprocessSource.collect`` holds one lock for both).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from jaxobs import catalog
from jaxobs.exporter.dbfile import SkippedFile, read_entries
from jaxobs.telemetry import liveness

ARCHIVE_PID = "archive"
JOURNAL = "jaxobs-compaction.journal"
_FILE = re.compile(r"^(counter|histogram|gauge_[a-z]+|summary)_(\d+|archive)\.db$")
DROPPED_GAUGES = frozenset({catalog.READY.name, catalog.DEPLOY_IN_PROGRESS.name,
                            catalog.BUILD_INFO.name})

Value = tuple[float, float]  # (value, timestamp)


@dataclass(frozen=True)
class CompactionResult:
    pids: tuple[int, ...]  # writers archived this time
    files: int  # files merged and deleted


def _merge_gauge(mode: str, old: Value | None, new: Value) -> Value:
    if old is None:
        return new
    if mode == "sum":
        return old[0] + new[0], max(old[1], new[1])
    if mode == "max":
        return (new if new[0] > old[0] else old)
    if mode == "min":
        return (new if new[0] < old[0] else old)
    if mode == "mostrecent":
        return new if new[1] >= old[1] else old
    return new  # all: the last archived writer wins


def _metric_name(key: str) -> str:
    return json.loads(key)[0]


class Compactor:
    """Archives exited writers in one ``PROMETHEUS_MULTIPROC_DIR``."""

    def __init__(self, directory: str, *, check_pids: bool = False,
                 pid_alive: Callable[[int], bool] | None = None, min_interval: float = 5.0) -> None:
        self.directory = directory
        self.check_pids = check_pids
        self.pid_alive = pid_alive
        self.min_interval = min_interval
        self.lock = threading.Lock()  # held by whoever compacts or reads the directory
        self._last = float("-inf")

    # --- the journal ------------------------------------------------------------
    def recover(self) -> None:
        """Finish a compaction a previous sidecar was killed in the middle of."""
        path = os.path.join(self.directory, JOURNAL)
        try:
            with open(path, encoding="utf-8") as f:
                plan = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError):  # torn before its atomic rename: nothing was applied
            os.unlink(path)
            return
        self._apply(plan)

    def _apply(self, plan: dict[str, list[list[str]] | list[str]]) -> None:
        for tmp, final in plan["rename"]:  # type: ignore[misc,str-unpack]
            if os.path.exists(tmp):
                os.replace(tmp, final)
        for doomed in plan["delete"]:
            try:
                os.unlink(doomed)  # type: ignore[arg-type]
            except FileNotFoundError:
                pass
        os.unlink(os.path.join(self.directory, JOURNAL))

    # --- compaction -------------------------------------------------------------
    def maybe_compact(self) -> CompactionResult | None:
        """Compact at most every ``min_interval`` seconds (scrapes call this)."""
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return None
        self._last = now
        return self.compact()

    def compact(self) -> CompactionResult:
        self.recover()
        by_pid: dict[int, list[str]] = {}
        for path in glob.glob(os.path.join(self.directory, "*.db")):
            m = _FILE.match(os.path.basename(path))
            if m and m.group(2) != ARCHIVE_PID:
                by_pid.setdefault(int(m.group(2)), []).append(path)
        locks: dict[int, int | None] = {}
        try:
            for pid in by_pid:
                fd = liveness.try_lock_dead(self.directory, pid)
                if fd is not None:
                    locks[pid] = fd
                elif (self.check_pids and self.pid_alive is not None
                      and not liveness.has_lock_file(self.directory, pid) and not self.pid_alive(pid)):
                    locks[pid] = None  # no lock file, but the sidecar can see the pid is gone
            if not locks:
                return CompactionResult((), 0)
            dead = [path for pid in locks for path in by_pid[pid]]
            merged, kept = self._archive(dead)
            finished = [liveness.lock_path(self.directory, pid) for pid, fd in locks.items()
                        if fd is not None and not any(p in kept for p in by_pid[pid])]
            self._commit(merged, [p for p in dead if p not in kept] + finished)
            return CompactionResult(tuple(sorted(locks)), len(dead) - len(kept))
        finally:
            for fd in locks.values():
                if fd is not None:
                    os.close(fd)

    def _archive(self, dead: list[str]) -> tuple[dict[str, dict[str, Value]], set[str]]:
        """The new archive contents (archive file name → key → value) and the dead files
        that could not be read (they stay for the next compaction)."""
        merged: dict[str, dict[str, Value]] = {}
        kept: set[str] = set()
        for path in sorted(dead, key=_mtime):
            kind = _FILE.match(os.path.basename(path)).group(1)  # type: ignore[union-attr]
            mode = kind.split("_", 1)[1] if kind.startswith("gauge_") else ""
            if mode.startswith("live"):
                continue
            try:
                entries = read_entries(path)
            except FileNotFoundError:
                continue
            except SkippedFile:
                kept.add(path)
                continue
            name = f"{kind}_{ARCHIVE_PID}.db"
            target = merged.get(name)
            if target is None:
                target = merged[name] = self._read_archive(name)
            for key, value, timestamp in entries:
                if mode:
                    if _metric_name(key) in DROPPED_GAUGES:
                        continue
                    target[key] = _merge_gauge(mode, target.get(key), (value, timestamp))
                else:
                    old = target.get(key, (0.0, 0.0))
                    target[key] = (old[0] + value, max(old[1], timestamp))
        return merged, kept

    def _commit(self, merged: dict[str, dict[str, Value]], doomed: list[str]) -> None:
        """Write the archives aside, journal the swap, apply it."""
        renames = []
        try:
            for name, values in merged.items():
                final = os.path.join(self.directory, name)
                _write_file(final + ".tmp", encode(values))
                renames.append([final + ".tmp", final])
            plan = {"rename": renames, "delete": doomed}
            journal = os.path.join(self.directory, JOURNAL)
            _write_file(journal + ".tmp", json.dumps(plan).encode())
            os.replace(journal + ".tmp", journal)
        except OSError:
            for tmp, _ in renames:  # nothing was applied: leave the directory as it was
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        self._apply(plan)  # type: ignore[arg-type]

    def _read_archive(self, name: str) -> dict[str, Value]:
        path = os.path.join(self.directory, name)
        try:
            return {k: (v, ts) for k, v, ts in read_entries(path)}
        except FileNotFoundError:
            return {}


def _mtime(path: str) -> float:
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def encode(values: dict[str, Value]) -> bytes:
    """prometheus-client's multiprocess file layout (``mmap_dict.MmapedDict``): a used-bytes
    header, then per entry a length, the UTF-8 key padded to 8 bytes, value and timestamp."""
    body = []
    for key, (value, timestamp) in values.items():
        encoded = key.encode("utf-8")
        padded = encoded + b" " * (8 - (len(encoded) + 4) % 8)
        body.append(struct.pack(f"i{len(padded)}sdd", len(encoded), padded, value, timestamp))
    data = b"".join(body)
    return struct.pack("i", 8 + len(data)) + b"\0" * 4 + data


def _write_file(path: str, data: bytes) -> None:
    """Write and fsync with plain I/O: a full disk raises ``OSError`` here."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def compact_exited(compactor: Compactor) -> None:
    """The scrape path's entry point: compaction failures are counted, never raised
    (the scrape goes on with the files as they are)."""
    try:
        compactor.maybe_compact()
    except Exception as exc:
        from jaxobs.telemetry.internal_errors import report_internal_error

        report_internal_error("compaction", exc)
