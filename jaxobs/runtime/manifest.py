"""The warm-start manifest: the abstract signatures production compiled, saved and replayed.

Why: a restarted replica compiles every shape it meets again, and the first
request of each pays for it (a cold start); when every replica restarts at
once they all compile the same functions together.  Each instrumented
function already computes its call signature when it compiles (for the
``cause`` label); this module keeps a JSON form of it per function name, so

* :func:`save_manifest` writes what this process compiled (versioned JSON,
  merged into an existing file, written atomically under a lock, so replicas
  can share one file), and
* :func:`warm_from_manifest` (``jaxobs.run_warmups(manifest=...)``) compiles
  every recorded signature of the live functions with the same name before
  the process reports ready.  With JAX's persistent compilation cache on a
  shared volume (:func:`use_compilation_cache`), those compiles are loads.

Signatures that no longer apply (the function changed, a device is missing)
are skipped, counted in ``jaxobs_manifest_signatures_total{outcome="stale"}``
and logged; the rest still warm.  What a signature holds, in JSON: the
argument tree (tuples, lists, dicts, namedtuples, None), each array leaf's
shape, dtype, weak type and sharding (single-device or named; other
shardings are recorded as "none"), and static arguments when they are plain
JSON values.  Signatures that cannot be written that way are counted as
``unrepresentable`` and not recorded.

Environment (no code changes needed in the app): ``JAXOBS_MANIFEST=FILE``
is what ``run_warmups()`` reads when called without ``manifest=``, and
``JAXOBS_MANIFEST_OUT=FILE`` merges this process's signatures into FILE at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxobs import catalog
from jaxobs.runtime.signature_json import Unrepresentable, canonical, decode_call, encode_call
from jaxobs.telemetry.internal_errors import report_internal_error

log = logging.getLogger("jaxobs.manifest")

FORMAT = "jaxobs-manifest"
VERSION = 1
#: signatures kept per function: a function compiled for ever more shapes is a bug of
#: its own (the recompile alert), and its manifest must not grow without bound
MAX_SIGNATURES = 256
ENV_IN = "JAXOBS_MANIFEST"
ENV_OUT = "JAXOBS_MANIFEST_OUT"


class ManifestError(ValueError):
    """A manifest file that cannot be used; the message names the file, field and fix."""


# --- live functions and their recorded signatures ---------------------------------------

_lock = threading.Lock()
_live: dict[str, list[weakref.ref[Any]]] = {}
_recorded: dict[str, dict[str, dict[str, Any]]] = {}  # name -> canonical key -> signature
_unrepresentable: dict[str, int] = {}
#: objects with ``on_track(ijit)`` / ``on_compile(ijit, args, kwargs)`` (baseline recording)
_observers: list[Any] = []
_exit_hook = False


def track(ijit: Any) -> None:
    """Called when an InstrumentedJit is created: find it by name at warm-up time."""
    global _exit_hook
    try:
        with _lock:
            refs = [r for r in _live.get(ijit.name, []) if r() is not None]
            refs.append(weakref.ref(ijit))
            _live[ijit.name] = refs
            if not _exit_hook and os.environ.get(ENV_OUT):
                _exit_hook = True
                atexit.register(_save_at_exit)
        for observer in list(_observers):
            observer.on_track(ijit)
    except Exception as exc:
        report_internal_error("manifest", exc)


def record(ijit: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Called after a compile (cold path): keep the call's abstract signature."""
    try:
        for observer in list(_observers):
            observer.on_compile(ijit, args, kwargs)
        try:
            sig = encode_call(args, kwargs, ijit._static_argnums, ijit._static_argnames)
        except Unrepresentable as exc:
            with _lock:
                _unrepresentable[ijit.name] = _unrepresentable.get(ijit.name, 0) + 1
            log.debug("jaxobs: %s compiled for a signature with no JSON form (%s)", ijit.name, exc)
            return
        key = canonical(sig)
        with _lock:
            sigs = _recorded.setdefault(ijit.name, {})
            if key not in sigs and len(sigs) < MAX_SIGNATURES:
                sigs[key] = sig
    except Exception as exc:
        report_internal_error("manifest", exc)


def live_functions(name: str) -> list[Any]:
    """The live InstrumentedJit objects with this ``function`` label."""
    with _lock:
        return [f for f in (r() for r in _live.get(name, [])) if f is not None]


def add_observer(observer: Any) -> None:
    with _lock:
        if observer not in _observers:
            _observers.append(observer)


def remove_observer(observer: Any) -> None:
    with _lock:
        if observer in _observers:
            _observers.remove(observer)


# --- the document ----------------------------------------------------------------------------

def snapshot() -> dict[str, Any]:
    """This process's manifest document (signatures in the order they first compiled)."""
    with _lock:
        functions = {name: {"signatures": list(sigs.values())} for name, sigs in sorted(_recorded.items())}
    return {"format": FORMAT, "version": VERSION, "written_by": _versions(), "functions": functions}


def _versions() -> dict[str, str]:
    try:
        from jaxobs.runtime.buildinfo import build_info_labels

        labels = build_info_labels()
        return {k: labels[k] for k in ("jax", "jaxlib", "backend", "jaxobs")}
    except Exception:
        return {}


def merge(*docs: dict[str, Any]) -> dict[str, Any]:
    """The union of several manifests (replicas); the last one's versions win."""
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "written_by": {}, "functions": {}}
    for doc in docs:
        out["written_by"] = doc.get("written_by", {}) or out["written_by"]
        for name, entry in doc.get("functions", {}).items():
            target = out["functions"].setdefault(name, {"signatures": []})
            seen = {canonical(s) for s in target["signatures"]}
            for sig in entry.get("signatures", []):
                if canonical(sig) not in seen and len(target["signatures"]) < MAX_SIGNATURES:
                    seen.add(canonical(sig))
                    target["signatures"].append(sig)
    out["functions"] = dict(sorted(out["functions"].items()))
    return out


def load_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a manifest; a bad one raises :class:`ManifestError` (one line)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such manifest. Fix: write one with jaxobs.save_manifest "
                            f"(or unset {ENV_IN})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: cannot read the manifest ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{p}: not JSON (line {exc.lineno}: {exc.msg}). "
                            "Fix: regenerate it with jaxobs.save_manifest") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{p}: field 'format' must be {FORMAT!r}. Fix: pass a file written by "
                            "jaxobs.save_manifest")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ManifestError(f"{p}: field 'version' is {version!r}, this jaxobs reads up to {VERSION}. "
                            "Fix: upgrade jaxobs or regenerate the manifest")
    functions = doc.get("functions")
    if not isinstance(functions, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("signatures"), list) for e in functions.values()):
        raise ManifestError(f"{p}: field 'functions' must map names to {{\"signatures\": [...]}}. "
                            "Fix: regenerate it with jaxobs.save_manifest")
    return doc


def save_manifest(path: str | os.PathLike[str], *, merge_existing: bool = True) -> int:
    """Write the signatures this process compiled to ``path``; returns how many it holds.

    By default the file is merged with what is already there (several replicas
    may share one file); a lock file serialises writers and the write is
    atomic (a reader never sees half a file).
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(p):
        doc = snapshot()
        if merge_existing and p.exists():
            try:
                doc = merge(load_manifest(p), doc)
            except ManifestError as exc:
                log.warning("jaxobs: replacing unusable manifest: %s", exc)
        _atomic_write(p, dumps(doc))
    return sum(len(e["signatures"]) for e in doc["functions"].values())


def dumps(doc: dict[str, Any]) -> str:
    """Stable JSON with one signature per line: reviewable, and diffs show shapes that came or went."""
    head = {k: v for k, v in sorted(doc.items()) if k != "functions"}
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v, sort_keys=True)}," for k, v in head.items()]
    lines.append(' "functions": {')
    names = sorted(doc.get("functions", {}))
    for i, name in enumerate(names):
        sigs = [json.dumps(s, sort_keys=True) for s in doc["functions"][name]["signatures"]]
        lines.append(f'  {json.dumps(name)}: {{"signatures": [')
        lines.extend(f"   {s}," for s in sigs[:-1])
        if sigs:
            lines.append(f"   {sigs[-1]}")
        lines.append("  ]}" + ("," if i < len(names) - 1 else ""))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _file_lock(p: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic replace only
        yield
        return
    with open(p.with_name(p.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _atomic_write(p: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_at_exit() -> None:
    out = os.environ.get(ENV_OUT)
    if not out:
        return
    try:
        n = save_manifest(out)
        log.info("jaxobs: manifest %s holds %d signatures", out, n)
    except Exception as exc:
        report_internal_error("manifest", exc)


# --- warming -------------------------------------------------------------------------------

@dataclass
class WarmResult:
    """What a warm start from a manifest did, per outcome."""

    warmed: int = 0
    stale: int = 0
    unmatched: int = 0
    reasons: list[str] = field(default_factory=list)


def warm_from_manifest(manifest: str | os.PathLike[str] | dict[str, Any]) -> WarmResult:
    """Compile every recorded signature of the live functions named in ``manifest``.

    A signature that cannot be rebuilt or no longer traces is stale: skipped,
    counted and logged; the others still warm.  A function the manifest names
    but this process never created is counted as ``unmatched``.
    """
    doc = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    result = WarmResult()
    for name, entry in doc.get("functions", {}).items():
        functions = live_functions(name)
        sigs = entry.get("signatures", [])
        if not functions:
            result.unmatched += len(sigs)
            _count(None, name, "unmatched", len(sigs))
            log.info("jaxobs: manifest names %s (%d signatures) but no such instrumented function exists",
                     name, len(sigs))
            continue
        for sig in sigs:
            for fn in functions:
                try:
                    args, kwargs = decode_call(sig)
                    fn.warmup(*args, **kwargs)
                except Exception as exc:  # the user's function may raise anything while tracing
                    reason = f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    result.stale += 1
                    result.reasons.append(reason)
                    _count(fn, name, "stale")
                    log.warning("jaxobs: skipping a stale manifest signature of %s", reason)
                else:
                    result.warmed += 1
                    _count(fn, name, "warmed")
    return result


def _count(fn: Any, name: str, outcome: str, n: int = 1) -> None:
    try:
        if fn is not None:
            rec = fn._recorder
        else:
            from jaxobs.telemetry import recorder_for

            rec = recorder_for(None)
        rec.counter(catalog.MANIFEST_SIGNATURES, name, outcome).inc(n)
    except Exception as exc:
        report_internal_error("manifest", exc)


def use_compilation_cache(path: str | os.PathLike[str], *, min_compile_time_secs: float = 0.0,
                          min_entry_size_bytes: int = 0) -> None:
    """Put compiled executables in JAX's persistent cache at ``path`` (a volume replicas share).

    The thresholds default to 0 so that quick compiles (every compile on CPU)
    are cached too.  Call it before the first compile, or set the
    ``JAX_COMPILATION_CACHE_DIR`` environment variable instead.
    """
    import jax

    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_entry_size_bytes))
    try:  # in case an earlier compile already decided that no cache is used
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except Exception as exc:  # pragma: no cover - jax moved it
        report_internal_error("manifest", exc)


def _reset_for_tests() -> None:
    with _lock:
        _recorded.clear()
        _unrepresentable.clear()
