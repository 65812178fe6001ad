"""Read one prometheus-client multiprocess ``.db`` file without trusting it.

Why not ``MmapedDict.read_all_values_from_file``: it opens whatever has the
name (a FIFO blocks the reading thread forever), reads a zero-length file as
an error that aborts the whole merge (one new or broken file blanks every
healthy process), and cannot tell a file being rewritten from a good one.
Here each file is opened non-blocking, must be a regular file, is parsed with
every length checked, and is re-checked after the read: if it changed under
us it is read once more, then skipped.  A skipped file raises
:class:`SkippedFile` with a reason from :data:`SKIP_REASONS`; the caller
serves the other files and counts the skip.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import time
from collections.abc import Container

#: Why a file was skipped; the ``reason`` label of ``jaxobs_exporter_skipped_files``.
SKIP_REASONS: tuple[str, ...] = ("empty", "corrupt", "not_regular", "changing", "unreadable")
#: No writer produces a file this large (it would be millions of series); refuse to read it.
MAX_FILE_BYTES = 256 * 1024 * 1024
_INT = struct.Struct("<i")
_TWO_DOUBLES = struct.Struct("<dd")

Entry = tuple[str, float, float]  # key, value, timestamp


class SkippedFile(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def read_entries(path: str, *, known: Container[str] = (), retry_delay: float = 0.01) -> list[Entry]:
    """The ``(key, value, timestamp)`` entries of ``path``; :class:`SkippedFile` if unusable.

    ``known`` holds keys already validated (the caller's parse cache): not re-checked."""
    first = _read_once(path, known)
    if first is not None:
        return first
    time.sleep(retry_delay)  # the file changed while we read it: one more try
    second = _read_once(path, known)
    if second is not None:
        return second
    raise SkippedFile("changing", f"{path} changed while it was read (twice)")


def _read_once(path: str, known: Container[str]) -> list[Entry] | None:
    """Entries, or None when the file changed during the read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise  # removed between listing and reading: the caller drops it silently
    except OSError as exc:
        raise SkippedFile("not_regular" if exc.errno == errno.ELOOP else "unreadable", f"{path}: {exc}") from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise SkippedFile("not_regular", f"{path} is not a regular file")
        if before.st_size == 0:
            raise SkippedFile("empty", f"{path} is empty (a writer is creating it, or it was truncated)")
        if before.st_size > MAX_FILE_BYTES:
            raise SkippedFile("corrupt", f"{path} is {before.st_size} bytes, over {MAX_FILE_BYTES}")
        data = _pread_all(fd, min(before.st_size, MAX_FILE_BYTES))
        try:
            entries = parse(data, known)
        except ValueError as exc:
            corrupt: SkippedFile | None = SkippedFile("corrupt", f"{path}: {exc}")
        else:
            corrupt = None
        after = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        now = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        raise
    if (now.st_ino, now.st_dev) != (before.st_ino, before.st_dev) or after.st_size != before.st_size:
        return None  # replaced or resized while we read it
    if corrupt is not None:
        # A writer appends entries and then bumps the used-length header; a torn
        # header/body pair looks corrupt for an instant.  Tell apart by reading again.
        if _pread_header_changed(path, data):
            return None
        raise corrupt
    return entries


def _pread_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    for _ in range(1 + size // (1 << 20)):  # bounded: one pread per MiB at most
        if offset >= size:
            break
        chunk = os.pread(fd, min(1 << 20, size - offset), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _pread_header_changed(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return True
    try:
        return os.pread(fd, 8, 0) != data[:8]
    finally:
        os.close(fd)


def parse(data: bytes, known: Container[str] = ()) -> list[Entry]:
    """prometheus-client's layout, every length checked; ``ValueError`` names the problem."""
    if len(data) < 8:
        raise ValueError(f"{len(data)} bytes is shorter than the 8-byte header")
    used = _INT.unpack_from(data, 0)[0]
    if used == 0:
        return []  # allocated, nothing written yet
    if used < 8 or used > len(data):
        raise ValueError(f"header says {used} bytes are used but the file has {len(data)}")
    entries: list[Entry] = []
    pos = 8
    while pos < used:  # each turn advances pos by at least 24 bytes
        if pos + 4 > used:
            raise ValueError(f"truncated entry at byte {pos}")
        length = _INT.unpack_from(data, pos)[0]
        padded = length + (8 - (length + 4) % 8)
        if length <= 0 or pos + 4 + padded + 16 > used:
            raise ValueError(f"entry at byte {pos} has a bad length {length}")
        raw = data[pos + 4:pos + 4 + length]
        pos += 4 + padded
        value, timestamp = _TWO_DOUBLES.unpack_from(data, pos)
        pos += 16
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"entry before byte {pos} has a key that is not UTF-8") from None
        if key not in known and not _valid_key(key):
            raise ValueError(f"entry before byte {pos} has a key that is not a series key")
        entries.append((key, value, timestamp))
    return entries


def _valid_key(key: str) -> bool:
    """A series key is JSON ``[metric, sample, {label: value}, help]`` of strings."""
    try:
        parsed = json.loads(key)
    except (ValueError, RecursionError):
        return False
    return (isinstance(parsed, list) and len(parsed) == 4
            and isinstance(parsed[0], str) and isinstance(parsed[1], str) and isinstance(parsed[3], str)
            and isinstance(parsed[2], dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in parsed[2].items()))
