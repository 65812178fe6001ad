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

Crash safety: the new archive is written to ``*.db.tmp`` files, then a journal
naming the renames and deletions is written atomically, then applied, then
removed.  A sidecar restarted mid-way replays the journal before reading, so a
scrape never counts a dead writer twice or not at all.  Callers serialise
compaction with reading (``MultiprocessSource.collect`` holds one lock for both).
"""

from __future__ import annotations

import glob
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.mmap_dict import MmapedDict

from jaxobs import catalog
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
        for tmp, final in plan["rename"]:  # type: ignore[misc]
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
            self._archive(dead, [liveness.lock_path(self.directory, pid) for pid, fd in locks.items()
                                 if fd is not None])
            return CompactionResult(tuple(sorted(locks)), len(dead))
        finally:
            for fd in locks.values():
                if fd is not None:
                    os.close(fd)

    def _archive(self, dead: list[str], lock_files: list[str]) -> None:
        # archive file name → {key: (value, timestamp)}, starting from the current archive
        merged: dict[str, dict[str, Value]] = {}
        for path in sorted(dead, key=os.path.getmtime):
            kind = _FILE.match(os.path.basename(path)).group(1)  # type: ignore[union-attr]
            mode = kind.split("_", 1)[1] if kind.startswith("gauge_") else ""
            if mode.startswith("live"):
                continue
            name = f"{kind}_{ARCHIVE_PID}.db"
            target = merged.get(name)
            if target is None:
                target = merged[name] = self._read_archive(name)
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(path):
                if mode:
                    if _metric_name(key) in DROPPED_GAUGES:
                        continue
                    target[key] = _merge_gauge(mode, target.get(key), (value, timestamp))
                else:
                    old = target.get(key, (0.0, 0.0))
                    target[key] = (old[0] + value, max(old[1], timestamp))
        renames = []
        for name, values in merged.items():
            final = os.path.join(self.directory, name)
            tmp = final + ".tmp"
            if os.path.exists(tmp):
                os.unlink(tmp)
            archive = MmapedDict(tmp)
            try:
                for key, (value, timestamp) in values.items():
                    archive.write_value(key, value, timestamp)
            finally:
                archive.close()
            renames.append([tmp, final])
        plan = {"rename": renames, "delete": dead + lock_files}
        journal = os.path.join(self.directory, JOURNAL)
        with open(journal + ".tmp", "w", encoding="utf-8") as f:
            json.dump(plan, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(journal + ".tmp", journal)
        self._apply(plan)  # type: ignore[arg-type]

    def _read_archive(self, name: str) -> dict[str, Value]:
        path = os.path.join(self.directory, name)
        try:
            return {k: (v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(path)}
        except FileNotFoundError:
            return {}


def compact_exited(compactor: Compactor) -> None:
    """The scrape path's entry point: compaction failures are counted, never raised
    (the scrape goes on with the files as they are)."""
    try:
        compactor.maybe_compact()
    except Exception as exc:
        from jaxobs.telemetry.internal_errors import report_internal_error

        report_internal_error("compaction", exc)
