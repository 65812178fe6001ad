"""Write generated files atomically, and tell whether a directory is stale.

A reader (Prometheus reloading its rules, Grafana provisioning dashboards)
must never see half a file, so every file is written to a temporary file in
the same directory and moved into place with :func:`os.replace`.  Files whose
content did not change are not touched (their mtime stays, so reloads are not
triggered for nothing).

Generated files that the model no longer produces (a runbook of a removed
alert, the tests of a removed service) are *stale*: :func:`sync` deletes them
and :func:`diff` reports them — but only files under the managed directories
that carry the generated-file mark, never anything a person wrote.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

from jaxobs.generate.render import GENERATED_MARK

#: Directories whose generated (marked) files ``jaxobs generate`` owns.
MANAGED_DIRS: tuple[str, ...] = ("alerts", "runbooks")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temp file + ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None


def stale(root: Path, files: dict[str, str]) -> list[str]:
    """Marked generated files under :data:`MANAGED_DIRS` that ``files`` no longer contains."""
    out = []
    for managed in MANAGED_DIRS:
        base = root / managed
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            text = _read(path)
            if rel not in files and text is not None and GENERATED_MARK in text[:300] \
                    and "jaxobs generate" in text[:300]:
                out.append(rel)
    return out


def sync(root: Path, files: dict[str, str]) -> tuple[list[str], list[str]]:
    """Write changed ``files`` under ``root`` and delete stale ones: (written, deleted)."""
    written = []
    for rel, text in sorted(files.items()):
        path = root / rel
        if _read(path) != text:
            write_atomic(path, text)
            written.append(rel)
    deleted = stale(root, files)
    for rel in deleted:
        (root / rel).unlink()
    return written, deleted


def diff(root: Path, files: dict[str, str]) -> str:
    """A unified diff from what is under ``root`` to what would be generated ("" if current)."""
    chunks: list[str] = []
    for rel, text in sorted(files.items()):
        current = _read(root / rel)
        if current != text:
            chunks += difflib.unified_diff((current or "").splitlines(keepends=True),
                                           text.splitlines(keepends=True),
                                           fromfile=f"a/{rel}" if current is not None else "/dev/null",
                                           tofile=f"b/{rel}")
    for rel in stale(root, files):
        chunks += difflib.unified_diff((_read(root / rel) or "").splitlines(keepends=True), [],
                                       fromfile=f"a/{rel}", tofile="/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in chunks)
