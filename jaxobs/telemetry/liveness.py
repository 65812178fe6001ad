"""A lock a writing process holds while it lives, so a sidecar can tell it exited.

Why a lock and not a pid check: in a Kubernetes pod the sidecar only sees the
app's pids when the pod shares its process namespace, and pids are reused
across container restarts (the app is often pid 1 every time).  An ``flock``
on a file in the shared ``PROMETHEUS_MULTIPROC_DIR`` works across containers
(same kernel, same inode), and the kernel releases it however the process
ends, ``kill -9`` included.  So "the lock is free" means "the writer is gone".

The app takes ``jaxobs-<pid>.lock`` before writing any multiprocess file and
keeps the descriptor open until it exits; a forked worker drops its inherited
copy and takes a lock under its own pid at its first flush.  The sidecar's compaction
(``jaxobs/exporter/compaction.py``) takes the same lock while it archives the
dead writer's files, then deletes the lock file while still holding it.
"""

from __future__ import annotations

import fcntl
import os
import re
import time

LOCK_NAME = "jaxobs-{pid}.lock"
LOCK_FILE = re.compile(r"^jaxobs-(\d+)\.lock$")

_held: dict[str, tuple[int, int]] = {}  # directory → (pid, fd)


def _after_fork_in_child() -> None:
    """A forked child shares its parent's lock (same open file): close its copy so the
    parent's lock dies with the parent, and let the child take its own on its first flush."""
    for directory, (_, fd) in list(_held.items()):
        try:
            os.close(fd)
        except OSError:
            pass
        del _held[directory]


os.register_at_fork(after_in_child=_after_fork_in_child)


def lock_path(directory: str, pid: int) -> str:
    return os.path.join(directory, LOCK_NAME.format(pid=pid))


def hold(directory: str, *, wait: float = 2.0) -> bool:
    """Take this process's liveness lock in ``directory`` (idempotent; False on failure).

    Waits up to ``wait`` seconds: the only other holder is a sidecar archiving a
    previous process that had the same pid, which takes milliseconds.
    """
    pid = os.getpid()
    held = _held.get(directory)
    if held is not None and held[0] == pid:
        return True
    path = lock_path(directory, pid)
    deadline = time.monotonic() + wait
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
            continue
        try:  # the sidecar may have deleted the file between our open and flock: retry
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _held[directory] = (pid, fd)
            return True
        os.close(fd)


def try_lock_dead(directory: str, pid: int) -> int | None:
    """An fd holding ``pid``'s lock if that process has exited, else None.

    None also when the lock file does not exist (a writer that does not take
    the lock, e.g. a plain prometheus-client process: its liveness is unknown).
    """
    path = lock_path(directory, pid)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def has_lock_file(directory: str, pid: int) -> bool:
    return os.path.exists(lock_path(directory, pid))
