"""Which jitted functions compiled inside a block, and why: the recompile guard.

Two sources, so that both jaxobs-instrumented and plain ``jax.jit`` functions are seen:

* **instrumented functions** report every compile with a bounded cause
  (first/shape/dtype/static_arg/sharding/other, from the argument signatures)
  through :data:`jaxobs.runtime.compile_events.compile_observers`;
* **any other jitted function** is seen through JAX itself: the
  ``/jax/core/compile/backend_compile_duration`` monitoring event says *that*
  ``jit(f)`` compiled and, with ``jax_explain_cache_misses`` switched on for the
  duration of the block, JAX logs *why* ("TRACING CACHE MISS at test.py:12 …
  for f defined at model.py:3 … at x, now f32[5] and before f32[3]").

JAX writes those explanations only for functions defined in user code, which
is exactly the filter a guard needs: eager primitive dispatch (``x + 1``
compiles ``jit(add)`` once per new shape) and jax's own internal jits
(``jax.random``) are not the user's recompiles, so a plain-jit compile counts
only when JAX explained it on the same thread just before it happened.

Known blind spot, plain ``jax.jit`` only: a compile that reuses a cached trace
(a sharding-only change, a second ``jax.jit`` wrapper around the same Python
function) has no explanation and is not counted.  Instrumented functions have
no such gap.

Everything here is test tooling: the listeners are registered on first use,
do nothing while no block is active, and never raise into the user's compile.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jaxobs.telemetry.internal_errors import report_internal_error

_BACKEND_EVENT = "/jax/core/compile/backend_compile_duration"
_MISS_PREFIX = "TRACING CACHE MISS"
#: The logger JAX writes tracing-cache explanations to (silenced while we capture them).
_EXPLAIN_LOGGER = "jax._src.interpreters.partial_eval"


@dataclass(frozen=True)
class Compile:
    """One compile seen inside a block."""

    function: str
    #: first, shape, dtype, static_arg, sharding or other (the ``cause`` label values).
    cause: str
    #: JAX's own explanation of the cache miss (which argument changed and how), if any.
    detail: str = ""
    #: Where the compiling call was made (``file:line (function)``), when JAX said so.
    called_at: str = ""
    #: Where the function is defined, for plain jitted functions.
    defined_at: str = ""
    instrumented: bool = False

    def describe(self) -> str:
        text = self.cause
        if self.detail:
            text += ": " + self.detail
        if self.called_at:
            text += f" (called at {self.called_at})"
        return text


class CompileLog:
    """Records the compiles that happen while it is active (a context manager).

    ``only`` restricts it to some functions: names (the ``function`` label of
    instrumented functions, ``__name__`` of plain jitted ones) or the functions
    themselves.  Compiles in every thread count, since a server under test may
    call the model from worker threads.
    """

    def __init__(self, only: Iterable[Any] | None = None) -> None:
        self.compiles: list[Compile] = []
        if isinstance(only, str) or callable(only):
            only = [only]
        self._only = None if only is None else [_identify(f) for f in only]
        self._lock = threading.Lock()

    def __enter__(self) -> CompileLog:
        _hub.attach(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        _hub.detach(self)
        return None

    def _add(self, compiled: Compile) -> None:
        if self._only is None or any(_matches(compiled, who) for who in self._only):
            with self._lock:
                self.compiles.append(compiled)

    def count(self, function: Any = None) -> int:
        """Compiles of ``function`` (a name or the function), or of all functions."""
        if function is None:
            return len(self.compiles)
        who = _identify(function)
        return sum(_matches(c, who) for c in self.compiles)

    def by_function(self) -> dict[str, list[Compile]]:
        """Compiles grouped by function (plain jits with the same name are told apart by
        where they are defined: two lambdas are two functions)."""
        grouped: dict[str, list[Compile]] = {}
        for c in list(self.compiles):
            key = f"{c.function} ({c.defined_at})" if c.defined_at else c.function
            grouped.setdefault(key, []).append(c)
        return grouped


class RecompileError(AssertionError):
    """A guarded block compiled more than allowed; ``.excess`` lists the offending compiles."""

    def __init__(self, message: str, excess: list[Compile], guard: CompileGuard | None = None) -> None:
        super().__init__(message)
        self.excess = excess
        self.guard = guard


class CompileGuard(CompileLog):
    """A :class:`CompileLog` that raises :class:`RecompileError` on exit when over its limit.

    ``limit`` is per function.  ``first_only`` (``no_recompile``) allows each
    function one compile, and only its very first one: a compile caused by a
    changed shape, dtype or static value fails even if it is the only one in
    the block.
    """

    def __init__(self, limit: int, *, first_only: bool = False, only: Iterable[Any] | None = None,
                 label: str = "") -> None:
        super().__init__(only)
        if limit < 0:
            raise ValueError(f"the compile limit must be >= 0, got {limit}")
        self.limit = limit
        self.first_only = first_only
        self.label = label or ("no_recompile()" if first_only else f"max_compiles({limit})")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        __tracebackhide__ = True  # pytest: point at the user's `with` block, not here
        _hub.detach(self)
        if exc_type is None:
            self.check()
        return None

    def excess(self) -> dict[str, list[int]]:
        """Per function, the (0-based) indices of compiles over the limit."""
        over: dict[str, list[int]] = {}
        for name, compiles in self.by_function().items():
            if self.first_only:
                bad = [i for i, c in enumerate(compiles) if i > 0 or c.cause != "first"]
            else:
                bad = list(range(self.limit, len(compiles)))
            if bad:
                over[name] = bad
        return over

    def check(self) -> None:
        """Raise :class:`RecompileError` if the block compiled more than allowed."""
        __tracebackhide__ = True
        over = self.excess()
        if over:
            raise RecompileError(self._message(over),
                                 [self.by_function()[n][i] for n, idx in over.items() for i in idx], self)

    def _message(self, over: dict[str, list[int]]) -> str:
        grouped = self.by_function()
        extra = sum(len(i) for i in over.values())
        allowed = ("each function may compile once, and only for the first time" if self.first_only
                   else f"at most {self.limit} per function")
        lines = [f"jaxobs {self.label}: {extra} compile{'s' if extra != 1 else ''} over the limit ({allowed})"]
        for name in sorted(over):
            compiles = grouped[name]
            first = compiles[0]
            kind = "jaxobs-instrumented" if first.instrumented else "jax.jit"
            lines.append(f"  {first.function} ({kind}"
                         f"{', defined at ' + first.defined_at if first.defined_at else ''}) "
                         f"compiled {len(compiles)} time{'s' if len(compiles) != 1 else ''}:")
            bad = set(over[name])
            for i, c in enumerate(compiles):
                mark = "x" if i in bad else " "
                lines.append(f"   {mark} {i + 1}. {c.describe()}")
            if any(c.cause == "first" for i, c in enumerate(compiles) if i in bad):
                lines.append("     a 'first' compile of a name already compiled means a new function "
                             "object: is jit called inside a loop or per request?")
        return "\n".join(lines)


def max_compiles(n: int, *, only: Iterable[Any] | None = None) -> CompileGuard:
    """``with max_compiles(1): ...`` fails if any jitted function compiles more than ``n`` times."""
    return CompileGuard(n, only=only)


def no_recompile(*, only: Iterable[Any] | None = None) -> CompileGuard:
    """``with no_recompile(): ...`` fails on any recompile (a function's first compile is fine)."""
    return CompileGuard(1, first_only=True, only=only)


# --- the process-wide listener ------------------------------------------------------------

def _identify(f: Any) -> tuple[str, str]:
    """(name, definition site or "") for a name, an instrumented or a plain jitted function.

    Plain jitted functions carry their definition site, so two lambdas are two
    functions; a name matches every function of that name.
    """
    if isinstance(f, str):
        return f, ""
    ctl = getattr(f, "jaxobs", None)
    name = getattr(ctl, "name", None)
    if isinstance(name, str):
        return name, ""
    name = getattr(f, "__name__", None)
    if not isinstance(name, str):
        raise TypeError(f"expected a function name or a jitted function, got {f!r}")
    code = getattr(inspect.unwrap(f), "__code__", None)
    site = _relative(f"{code.co_filename}:{code.co_firstlineno}") if code is not None else ""
    return name, site


def _matches(compiled: Compile, who: tuple[str, str]) -> bool:
    name, site = who
    return compiled.function == name and (not site or not compiled.defined_at or compiled.defined_at == site)


@dataclass(frozen=True)
class _Explanation:
    function: str
    cause: str
    detail: str
    called_at: str
    defined_at: str


_NEVER_SEEN = re.compile(r"never seen function:\s*\n\s*(?P<name>.+?) id=\d+(?: defined at (?P<loc>\S+))?\s*$",
                         re.MULTILINE)
_SEEN = re.compile(r"^\s+for (?P<name>.+?)(?: defined at (?P<loc>\S+))?\s*$", re.MULTILINE)
_CALLSITE = re.compile(r"^TRACING CACHE MISS at (?P<site>.+?):\s*$", re.MULTILINE)
_TYPE_DIFF = re.compile(r"now (?P<new>\S+) and before (?P<old>\S+)")
_AVAL = re.compile(r"^(?P<dtype>[^\[]*)\[(?P<shape>[^\]]*)\](?P<rest>.*)$")


def parse_explanation(message: str) -> _Explanation | None:
    """JAX's "TRACING CACHE MISS" log message → function, bounded cause and the detail lines."""
    if not message.startswith(_MISS_PREFIX):
        return None
    site = _CALLSITE.search(message)
    called_at = site.group("site") if site else ""
    m = _NEVER_SEEN.search(message)
    if m is not None:
        detail = ""
        if "re-defined repeatedly" in message:
            detail = "JAX saw another function defined on the same line: is it re-defined repeatedly?"
        return _Explanation(m.group("name"), "first", detail, called_at, m.group("loc") or "")
    m = _SEEN.search(message)
    if m is None:
        return None
    body = message[m.end():]
    return _Explanation(m.group("name"), _cause_of(body), _summarize(body), called_at, m.group("loc") or "")


_ITEM = re.compile(r"^\*\s*at (?P<what>.+?), now (?P<new>.+?) and before (?P<old>.+?)(?:, so .*)?$")
_STATIC = re.compile(r"Static\(val=(?P<val>.*)\)$")


def _summarize(diff: str) -> str:
    """JAX's key diff as one line: ``x: f32[3] -> f32[5]``, ``static [0][1]: 2 -> 3``."""
    items = []
    for raw in diff.splitlines():
        line = raw.strip()
        if not line or line.startswith("all previously seen cache keys differ") or line.endswith(":"):
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
        items.append(f"{what}: {old} -> {new}")
    return "; ".join(items)


def _cause_of(diff: str) -> str:
    """Map JAX's key diff onto the ``cause`` label values of :mod:`jaxobs.runtime.compile_events`."""
    if "different input types" in diff:
        shape = dtype = False
        for m in _TYPE_DIFF.finditer(diff):
            new, old = _AVAL.match(m.group("new")), _AVAL.match(m.group("old"))
            if new is None or old is None:
                continue
            shape |= new.group("shape") != old.group("shape")
            dtype |= new.group("dtype") != old.group("dtype") or ("weak_type" in new.group("rest")) != (
                "weak_type" in old.group("rest"))
        return "shape" if shape else "dtype" if dtype else "sharding"
    if "different input pytree" in diff:
        return "static_arg" if "Static(" in diff else "other"
    return "other"


def _capture(hub: _Hub, record: logging.LogRecord) -> bool:
    """Store a cache-miss explanation for this thread; True if the record was one."""
    try:
        msg = record.getMessage()
        if not msg.startswith(_MISS_PREFIX):
            return False
        explanation = parse_explanation(msg)
        if explanation is not None:
            hub.pending()[explanation.function] = explanation
        return True
    except Exception as exc:
        report_internal_error("testing_compile_listener", exc)
        return False


class _ExplanationFilter(logging.Filter):
    """On the logger JAX explains cache misses with: capture them, and keep the ones we
    switched on out of the user's log output."""

    def __init__(self, hub: _Hub) -> None:
        super().__init__()
        self.hub = hub
        self.silence = True

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_capture(self.hub, record) and self.silence)


#: Loggers whose persistent-cache messages JAX raises to WARNING while explanations are on.
_CACHE_LOGGERS = ("jax._src.compiler", "jax._src.compilation_cache")


def _is_cache_chatter(message: str) -> bool:
    """Persistent-cache bookkeeping (miss, writing, not writing), not an error report."""
    lowered = message.lower()
    return "persistent" in lowered and "cache" in lowered and not any(
        word in lowered for word in ("error", "fail", "exception"))


class _CacheLogDemoter(logging.Filter):
    """Gives JAX's persistent-cache messages back the DEBUG level they have without
    ``jax_explain_cache_misses`` (which the guard switched on, not the user)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if record.levelno == logging.WARNING and _is_cache_chatter(record.getMessage()):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        except Exception:
            pass
        return True


class _ExplanationHandler(logging.Handler):
    """Fallback on the ``jax`` logger, should JAX move the explanations to another module."""

    def __init__(self, hub: _Hub) -> None:
        super().__init__(level=logging.DEBUG)
        self.hub = hub

    def emit(self, record: logging.LogRecord) -> None:
        _capture(self.hub, record)


class _Hub:
    """Fans compile events out to the active logs; switches explanations on while any is active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: list[CompileLog] = []
        self._local = threading.local()
        self._installed = False
        self._saved_explain: bool | None = None
        self._handler = _ExplanationHandler(self)
        self._filter = _ExplanationFilter(self)
        self._demoter = _CacheLogDemoter()

    def pending(self) -> dict[str, _Explanation]:
        """This thread's explanations not yet matched with a compile, by function name."""
        try:
            return self._local.pending  # type: ignore[no-any-return]
        except AttributeError:
            self._local.pending = {}
            self._local.instrumented = {}
            return self._local.pending  # type: ignore[no-any-return]

    def _instrumented_details(self) -> dict[str, _Explanation]:
        self.pending()
        return self._local.instrumented  # type: ignore[no-any-return]

    def attach(self, log: CompileLog) -> None:
        with self._lock:
            self._install_once()
            if not self._logs:
                self._activate()
            self._logs.append(log)

    def detach(self, log: CompileLog) -> None:
        with self._lock:
            if log in self._logs:
                self._logs.remove(log)
                if not self._logs:
                    self._deactivate()

    def _install_once(self) -> None:
        if self._installed:
            return
        import jax.monitoring

        from jaxobs.runtime import compile_events as compilation

        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        compilation.compile_observers.append(self._on_instrumented)
        self._installed = True

    def _activate(self) -> None:
        import jax

        self._saved_explain = bool(jax.config.jax_explain_cache_misses)
        jax.config.update("jax_explain_cache_misses", True)
        self._filter.silence = not self._saved_explain  # keep the messages we switched on quiet
        logging.getLogger(_EXPLAIN_LOGGER).addFilter(self._filter)
        logging.getLogger("jax").addHandler(self._handler)
        if self._filter.silence:
            for name in _CACHE_LOGGERS:
                logging.getLogger(name).addFilter(self._demoter)

    def _deactivate(self) -> None:
        import jax

        logging.getLogger("jax").removeHandler(self._handler)
        logging.getLogger(_EXPLAIN_LOGGER).removeFilter(self._filter)
        for name in _CACHE_LOGGERS:
            logging.getLogger(name).removeFilter(self._demoter)
        if not self._saved_explain:
            jax.config.update("jax_explain_cache_misses", False)

    def _emit(self, compiled: Compile) -> None:
        for log in list(self._logs):
            log._add(compiled)

    # Listeners: called inside the user's compile, so they must never raise.
    def _on_duration(self, event: str, duration: float, **kwargs: Any) -> None:
        if event != _BACKEND_EVENT or not self._logs:
            return
        try:
            from jaxobs.runtime import compile_events as compilation

            fun_name = str(kwargs.get("fun_name", ""))
            name = fun_name.removeprefix("jit(").removesuffix(")") if fun_name.startswith("jit(") else fun_name
            explanation = self.pending().pop(name, None)
            owner, frame = compilation.find_owner(sys._getframe(1))
            if owner is not None:  # the compile observer reports it, with the cause jaxobs derived
                caller = compilation.caller_of(frame) if frame is not None else None
                self._instrumented_details()[owner.name] = _Explanation(
                    owner.name, "", explanation.detail if explanation else "",
                    _site(caller) if caller is not None else "", "")
                return
            if explanation is None:  # not user code (eager primitive, jax internals)
                return
            self._emit(Compile(name, explanation.cause, explanation.detail, _relative(explanation.called_at),
                               _relative(explanation.defined_at)))
        except Exception as exc:
            report_internal_error("testing_compile_listener", exc)

    def _on_instrumented(self, function: str, cause: str) -> None:
        if not self._logs:
            return
        try:
            explanation = self._instrumented_details().pop(function, None)
            detail = explanation.detail if explanation is not None else ""
            called_at = explanation.called_at if explanation is not None else ""
            self._emit(Compile(function, cause, detail, called_at, "", instrumented=True))
        except Exception as exc:
            report_internal_error("testing_compile_listener", exc)


def _relative(location: str) -> str:
    """``/repo/tests/test_x.py:12`` → ``tests/test_x.py:12`` under the working directory."""
    return location.removeprefix(os.getcwd() + os.sep)


def _site(frame: Any) -> str:
    return f"{_relative(frame.f_code.co_filename)}:{frame.f_lineno} ({frame.f_code.co_name})"


_hub = _Hub()
