"""Reading what JAX says about a compile: its cache-miss explanations and the program compiled.

Two sources, both read-only:

* the ``TRACING CACHE MISS`` log messages JAX writes while
  ``jax_explain_cache_misses`` is on: *why* a function was traced again
  (which argument changed and how, or which config setting differs);
* the compile call itself, found on the stack of the
  ``backend_compile_duration`` monitoring event: *which* program compiles
  (the traced function's name and definition site, its argument names and
  abstract values).  That names the user's function exactly, also for compiles
  JAX does not explain (a new batch size under ``vmap``, a sharding change, a
  second ``jax.jit`` around the same function).

Everything here parses text or inspects frames that JAX does not promise to
keep stable, so every reader returns ``None`` rather than raising when the
shape of things changes.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from types import FrameType
from typing import Any

MISS_PREFIX = "TRACING CACHE MISS"
#: The logger JAX writes tracing-cache explanations to (silenced while we capture them).
EXPLAIN_LOGGER = "jax._src.interpreters.partial_eval"
#: Config settings the guards themselves switch: a compile caused only by them is not the user's.
OWN_SWITCHES = ("jax_debug_key_reuse", "jax_explain_cache_misses")


@dataclass(frozen=True)
class Explanation:
    """One parsed cache-miss explanation."""

    function: str
    cause: str
    detail: str
    called_at: str
    defined_at: str
    #: True when the only difference JAX names is a setting the guards switched on.
    own_switch_only: bool = False


@dataclass(frozen=True)
class Program:
    """The program a backend compile is for, read from JAX's compile call."""

    function: str
    defined_at: str
    #: The traced function's argument names; None for derived programs (JVP, transpose).
    arg_names: tuple[str, ...] | None
    avals: tuple[str, ...]
    user_code: bool


def relative(location: str) -> str:
    """``/repo/tests/test_x.py:12`` → ``tests/test_x.py:12`` under the working directory."""
    return location.removeprefix(os.getcwd() + os.sep)


def file_line(location: str) -> str:
    """One "file:line" format for call sites: drops a column and a ``(function)`` suffix."""
    location = re.sub(r"\s*\(.*\)\s*$", "", location.strip())
    m = re.match(r"^(?P<file>.+?):(?P<line>\d+)(?::\d+)?$", location)
    return relative(f"{m.group('file')}:{m.group('line')}") if m else relative(location)


_NEVER_SEEN = re.compile(r"never seen function:\s*\n\s*(?P<name>.+?) id=\d+(?: defined at (?P<loc>\S+))?\s*$",
                         re.MULTILINE)
_SEEN = re.compile(r"^\s+for (?P<name>.+?)(?: defined at (?P<loc>\S+))?\s*$", re.MULTILINE)
_CALLSITE = re.compile(r"^TRACING CACHE MISS at (?P<site>.+?):\s*$", re.MULTILINE)
_TYPE_DIFF = re.compile(r"now (?P<new>\S+?)(?:https?://\S*)? and before (?P<old>\S+?)(?:https?://\S*)?$",
                        re.MULTILINE)
_AVAL = re.compile(r"^(?P<dtype>[^\[]*)\[(?P<shape>[^\]]*)\](?P<rest>.*)$")
_CONFIG_DIFF = re.compile(r"^\s*\*\s*(?P<name>\w+) differs", re.MULTILINE)


def parse_explanation(message: str) -> Explanation | None:
    """JAX's "TRACING CACHE MISS" log message → function, bounded cause and a one-line detail."""
    if not message.startswith(MISS_PREFIX):
        return None
    site = _CALLSITE.search(message)
    called_at = file_line(site.group("site")) if site else ""
    m = _NEVER_SEEN.search(message)
    if m is not None:
        detail = ""
        if "re-defined repeatedly" in message:
            detail = "JAX saw another function defined on the same line: is it re-defined repeatedly?"
        return Explanation(m.group("name"), "first", detail, called_at, relative(m.group("loc") or ""))
    m = _SEEN.search(message)
    if m is None:
        return None
    body = message[m.end():]
    switches = _CONFIG_DIFF.findall(body)
    own_only = bool(switches) and all(s in OWN_SWITCHES for s in switches) and "different input" not in body
    return Explanation(m.group("name"), _cause_of(body), _summarize(body), called_at,
                       relative(m.group("loc") or ""), own_only)


_ITEM = re.compile(r"^\*\s*at (?P<what>.+?), now (?P<new>.+?) and before (?P<old>.+?)(?:, so .*)?$")
_STATIC = re.compile(r"Static\(val=(?P<val>.*)\)$")
_URL = re.compile(r"https?://\S*")


def _summarize(diff: str) -> str:
    """JAX's key diff as one line: ``x: f32[3] -> f32[5]``, ``static [0][1]: 2 -> 3``."""
    items = []
    for raw in diff.splitlines():
        line = _URL.sub("", raw).strip()
        if (not line or line.startswith("all previously seen cache keys differ") or line.endswith(":")
                or line.startswith("Tracing context doesn't match")):
            continue
        m = _ITEM.match(line)
        if m is None:
            items.append(line.lstrip("* "))
            continue
        what, new, old = m.group("what"), m.group("new"), m.group("old")
        new_static, old_static = _STATIC.search(new), _STATIC.search(old)
        if new_static and old_static:
            what = "static " + what.replace("input path ", "argument ")
            new, old = new_static.group("val"), old_static.group("val")
        items.append(f"{what}: {_short_aval(old)} -> {_short_aval(new)}")
    return "; ".join(items)


def _short_aval(text: str) -> str:
    """``f32[3]({})`` → ``f32[3]``; a weak type stays visible as ``f32[]{weak}``."""
    m = _AVAL.match(text)
    if m is None:
        return text
    weak = "{weak}" if "weak_type=True" in m.group("rest") else ""
    return f"{m.group('dtype')}[{m.group('shape')}]{weak}"


def _cause_of(diff: str) -> str:
    """Map JAX's key diff onto the ``cause`` label values (first/shape/dtype/static_arg/sharding/other)."""
    if "different input types" in diff:
        shape = dtype = False
        for m in _TYPE_DIFF.finditer(diff):
            new, old = _AVAL.match(m.group("new")), _AVAL.match(m.group("old"))
            if new is None or old is None:
                continue
            shape |= new.group("shape") != old.group("shape")
            dtype |= new.group("dtype") != old.group("dtype") or (
                "weak_type=True" in new.group("rest")) != ("weak_type=True" in old.group("rest"))
        return "shape" if shape else "dtype" if dtype else "sharding"
    if "different input pytree" in diff:
        return "static_arg" if "Static(" in diff else "other"
    return "other"


# --- the compile call on the stack ---------------------------------------------------------

def _internal_dirs() -> tuple[str, ...]:
    import jax

    import jaxobs

    dirs = [os.path.dirname(m.__file__) + os.sep for m in (jax, jaxobs) if m.__file__]
    try:
        import jaxlib

        if jaxlib.__file__:
            dirs.append(os.path.dirname(jaxlib.__file__) + os.sep)
    except ImportError:  # pragma: no cover - jaxlib always ships with jax
        pass
    return tuple(dirs)


_INTERNAL: tuple[str, ...] | None = None


def is_user_file(filename: str) -> bool:
    """Code outside jax, jaxlib and jaxobs (tests, models, other libraries)."""
    global _INTERNAL
    if _INTERNAL is None:
        _INTERNAL = _internal_dirs()
    return not filename.startswith(_INTERNAL) and not filename.startswith("<frozen")


def program_on_stack(frame: FrameType | None, depth: int = 12) -> Program | None:
    """The program being compiled, from the ``MeshComputation.compile`` frame JAX compiles in."""
    for _ in range(depth):
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        args = getattr(owner, "compile_args", None)
        if isinstance(args, dict) and "all_args_info" in args:
            return _program(args["all_args_info"])
        frame = frame.f_back
    return None


def _program(info: Any) -> Program | None:
    debug = getattr(info, "debug_info", None)
    src = getattr(debug, "func_src_info", None)
    if not isinstance(src, str) or " at " not in src:
        return None
    name, _, location = src.rpartition(" at ")
    filename = location.rsplit(":", 1)[0]
    names = getattr(debug, "arg_names", None)
    avals = tuple(_short(a) for a in getattr(info, "in_avals", ()))
    return Program(name, relative(location), tuple(names) if names is not None else None, avals,
                   is_user_file(filename))


def _short(aval: Any) -> str:
    try:
        return str(aval.str_short(short_dtypes=True))
    except Exception:
        return str(aval)


def user_call_site(frame: FrameType | None) -> str:
    """The innermost frame in user code, as "file:line"."""
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            return relative(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        frame = frame.f_back
    return ""


def aval_change(before: Program, now: Program) -> tuple[str, str]:
    """(cause, detail) between two compiles of one program that JAX did not explain."""
    if len(before.avals) != len(now.avals):
        return "other", ""
    names = now.arg_names or tuple(f"args[{i}]" for i in range(len(now.avals)))
    changes, cause = [], "sharding"
    for name, old, new in zip(names, before.avals, now.avals, strict=False):
        if old != new:
            o, n = _AVAL.match(old), _AVAL.match(new)
            if o and n and o.group("shape") != n.group("shape"):
                cause = "shape"
            elif cause != "shape":
                cause = "dtype"
            changes.append(f"{name}: {old} -> {new}")
    if not changes:
        return "other", "compiled again with the same argument types (a sharding change or a cleared cache)"
    return cause, "; ".join(changes)


# --- logging plumbing ----------------------------------------------------------------------

#: Loggers whose persistent-cache messages JAX raises to WARNING while explanations are on.
CACHE_LOGGERS = ("jax._src.compiler", "jax._src.compilation_cache")


def is_cache_chatter(message: str) -> bool:
    """Persistent-cache bookkeeping (miss, writing, not writing), not an error report."""
    lowered = message.lower()
    return "persistent" in lowered and "cache" in lowered and not any(
        word in lowered for word in ("error", "fail", "exception"))


class CacheLogDemoter(logging.Filter):
    """Gives JAX's persistent-cache messages back the DEBUG level they have without
    ``jax_explain_cache_misses`` (which the guard switched on, not the user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if record.levelno == logging.WARNING and is_cache_chatter(record.getMessage()):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        except Exception:
            pass
        return True
