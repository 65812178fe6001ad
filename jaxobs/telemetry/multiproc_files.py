"""Multiprocess files that cannot kill the process writing them.

prometheus-client's multiprocess values live in ``mmap``-ed files that it
grows with ``truncate`` (a sparse file).  When the filesystem cannot back a
page the process writes to — a full ``emptyDir`` or tmpfs — the kernel sends
``SIGBUS``: no Python exception, the user's program just dies.  So before a
new series lands in a file, :class:`SpaceReserver` *allocates* the bytes the
file will need (``posix_fallocate``).  A full disk then surfaces as a normal
``OSError`` at a point where jaxobs can catch it.

What happens next is the writer's decision (see ``MultiprocessFlusher``): it
stops writing files, keeps serving in-process and leaves a *marker* — an
empty file whose name carries the pid and the reason, so creating it needs
an inode but no data block — which the sidecar reports as
``jaxobs_exporter_app_writers_disabled{reason}``.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import re

#: prometheus-client's initial mmap file size (``mmap_dict._INITIAL_MMAP_SIZE``).
INITIAL_FILE_BYTES = 1 << 16
#: Why a writer stopped; a closed set, so the sidecar's ``reason`` label stays bounded.
REASONS: tuple[str, ...] = ("no_space", "unwritable", "missing", "error")
MARKER_GLOB = "jaxobs_disabled_*.status"
_MARKER = re.compile(r"^jaxobs_disabled_(\d+)_([a-z_]+)\.status$")


class WriterDisabled(OSError):
    """Multiprocess writing stopped; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """Classify a filesystem error into one of :data:`REASONS`."""
    if isinstance(exc, WriterDisabled):
        return exc.reason
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "no_space"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "unwritable"
    if code in (errno.ENOENT, errno.ENOTDIR):
        return "missing"
    return "error"


def check_directory(path: str) -> None:
    """Raise :class:`WriterDisabled` unless ``path`` is a directory this process can write."""
    if not os.path.isdir(path):
        raise WriterDisabled("missing", f"PROMETHEUS_MULTIPROC_DIR {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise WriterDisabled("unwritable", f"PROMETHEUS_MULTIPROC_DIR {path} is not writable")


def entry_bytes(key: str) -> int:
    """Bytes one series key takes in a file (prometheus-client's layout: len, key, pad, 2 doubles)."""
    n = len(key.encode("utf-8"))
    return 4 + n + (8 - (n + 4) % 8) + 16


class SpaceReserver:
    """Allocates file space before prometheus-client's mmap touches it.

    The file is the one prometheus-client's value class opens for this
    process (``<prefix>_<pid>.db``).  Its growth rule is mirrored exactly —
    start at 64 KiB, double until the next entry fits — so the size reserved
    here is the size prometheus-client later ``truncate``s to (a no-op).
    """

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def reserve(self, path: str, nbytes: int) -> None:
        """Make sure ``path`` has allocated room for ``nbytes`` more; raise ``OSError`` if not."""
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            existing = os.fstat(fd).st_size
            try:
                _allocate(fd, 0, max(existing, INITIAL_FILE_BYTES))  # also backs holes left by others
            except BaseException:
                os.close(fd)
                if existing == 0:  # never leave an empty .db behind for readers to trip on
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
                raise
            self._fds[path] = fd
        size = max(os.fstat(fd).st_size, INITIAL_FILE_BYTES)
        header = os.pread(fd, 4, 0)
        used = int.from_bytes(header, "little", signed=True) if len(header) == 4 else 0
        needed = max(used, 8) + nbytes
        capacity = size
        while needed > capacity:
            capacity *= 2
        if capacity > size:
            _allocate(fd, size, capacity - size)

    def close(self) -> None:
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()


def _allocate(fd: int, offset: int, length: int) -> None:
    """``posix_fallocate``, or on filesystems without it a free-space check plus zero-fill."""
    try:
        os.posix_fallocate(fd, offset, length)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    st = os.fstatvfs(fd)
    if st.f_bavail * st.f_frsize < length + INITIAL_FILE_BYTES:
        raise OSError(errno.ENOSPC, "not enough free space for the metrics file")
    end = os.fstat(fd).st_size
    start = max(offset, end)  # never overwrite bytes that may already hold values
    if start < offset + length:
        os.pwrite(fd, bytes(offset + length - start), start)


def write_marker(directory: str, pid: int, reason: str, detail: str) -> None:
    """Best effort: leave ``jaxobs_disabled_<pid>_<reason>.status`` for the sidecar."""
    path = os.path.join(directory, f"jaxobs_disabled_{pid}_{reason}.status")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError:
        return
    try:
        os.write(fd, (json.dumps({"pid": pid, "reason": reason, "detail": detail[:500]}) + "\n").encode())
    except OSError:
        pass  # the name already says what matters; a full disk may refuse the content
    finally:
        os.close(fd)


def read_markers(directory: str) -> dict[int, str]:
    """pid → reason of every writer that left a marker in ``directory``."""
    out: dict[int, str] = {}
    for path in glob.glob(os.path.join(directory, MARKER_GLOB))[:10_000]:
        m = _MARKER.match(os.path.basename(path))
        if m and m.group(2) in REASONS:
            out[int(m.group(1))] = m.group(2)
    return out
