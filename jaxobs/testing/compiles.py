"""Which jitted functions compiled inside a block, and why: the recompile guard.

A guard judges each function only by the compiles it sees inside its block.
The first compile of a function in the block is never a recompile, whatever
JAX's process-wide cache held before, so a verdict does not depend on which
tests ran earlier in the process (or on which xdist worker).  The opposite
dependence — an earlier test already compiled the shapes this one recompiles
for, so nothing compiles here — is removed by ``fresh=True``, which clears
JAX's caches when the block starts.

Two sources, so that both jaxobs-instrumented and plain ``jax.jit`` functions are seen:

* **instrumented functions** report every compile with a bounded cause
  (first/shape/dtype/static_arg/sharding/other, from the argument signatures)
  through :data:`jaxobs.runtime.compile_events.compile_observers`;
* **any other jitted function** is seen through JAX itself: the
  ``backend_compile_duration`` event (delivered by
  :func:`jaxobs.runtime.compile_events.subscribe`) fires on the stack of JAX's
  compile call, which names the traced function and where it is defined.
  Functions defined inside jax (eager ``x + 1`` compiles ``jit(add)``,
  ``jax.random`` internals) are not the user's and are not counted.  With
  ``jax_explain_cache_misses`` switched on for the block, JAX also logs *why*
  it traced again ("at x, now f32[5] and before f32[3]"); an explanation is
  matched to its compile by function name *and* definition site and dropped
  when the next compile on its thread is not its own.

Everything here is test tooling: the listener is subscribed on first use,
does nothing while no block is active, and never raises into the user's compile.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.testing import _jax_explain as jx

_BACKEND_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclass(frozen=True)
class Compile:
    """One compile seen inside a block."""

    function: str
    #: first, shape, dtype, static_arg, sharding or other (the ``cause`` label values).
    cause: str
    #: What changed (which argument, from what to what), if known.
    detail: str = ""
    #: Where the compiling call was made, as ``file:line``.
    called_at: str = ""
    #: Where the function is defined (``file:line``), for plain jitted functions.
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
    call the model from worker threads.  ``fresh=True`` clears JAX's caches on
    entry, so that compiles an earlier warm-up made happen again here.
    """

    def __init__(self, only: Iterable[Any] | None = None, *, fresh: bool = False) -> None:
        self.compiles: list[Compile] = []
        if isinstance(only, str) or callable(only):
            only = [only]
        self._only = None if only is None else [_identify(f) for f in only]
        self.fresh = bool(fresh)
        self._lock = threading.Lock()

    def __enter__(self) -> CompileLog:
        if self.fresh:
            import jax

            jax.clear_caches()
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

    ``limit`` is per function, counted inside the block only.  ``no_recompile``
    is the limit 1 (each function may compile once here, for whatever reason:
    its first compile in the block is not a recompile).
    """

    def __init__(self, limit: int, *, first_only: bool = False, only: Iterable[Any] | None = None,
                 label: str = "", fresh: bool = False) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"the compile limit must be an int >= 0, got {limit!r}")
        super().__init__(only, fresh=fresh)
        self.limit = 1 if first_only else limit
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
        return {name: list(range(self.limit, len(compiles)))
                for name, compiles in self.by_function().items() if len(compiles) > self.limit}

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
        allowed = ("each function may compile once" if self.first_only
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
                lines.append("     a 'first' compile of a function already compiled means a new function "
                             "object: is jit called inside a loop or per request?")
        return "\n".join(lines)


def max_compiles(n: int, *, only: Iterable[Any] | None = None, fresh: bool = False) -> CompileGuard:
    """``with max_compiles(1): ...`` fails if any jitted function compiles more than ``n`` times."""
    return CompileGuard(n, only=only, fresh=fresh)


def no_recompile(*, only: Iterable[Any] | None = None, fresh: bool = False) -> CompileGuard:
    """``with no_recompile(): ...`` fails when a function compiles a second time in the block."""
    return CompileGuard(1, first_only=True, only=only, fresh=fresh)


# --- matching functions ----------------------------------------------------------------------

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
        raise TypeError(f"only= takes function names or jitted functions, got {f!r}")
    code = getattr(inspect.unwrap(f), "__code__", None)
    site = jx.relative(f"{code.co_filename}:{code.co_firstlineno}") if code is not None else ""
    return name, site


def _matches(compiled: Compile, who: tuple[str, str]) -> bool:
    name, site = who
    return compiled.function == name and (not site or not compiled.defined_at or compiled.defined_at == site)


# --- the process-wide listener ---------------------------------------------------------------

def _capture(hub: _Hub, record: logging.LogRecord) -> bool:
    """Store a cache-miss explanation for this thread; True if the record was one."""
    try:
        msg = record.getMessage()
        if not msg.startswith(jx.MISS_PREFIX):
            return False
        explanation = jx.parse_explanation(msg)
        if explanation is not None and hub.active():
            hub.pending()[(explanation.function, explanation.defined_at)] = explanation
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


class _ExplanationHandler(logging.Handler):
    """Fallback on the ``jax`` logger, should JAX move the explanations to another module."""

    def __init__(self, hub: _Hub) -> None:
        super().__init__(level=logging.DEBUG)
        self.hub = hub

    def emit(self, record: logging.LogRecord) -> None:
        _capture(self.hub, record)


class _Hub:
    """Fans compiles out to the active logs; switches explanations on while any is active."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: list[CompileLog] = []
        #: thread id -> {(function, defined_at): explanation not yet matched with its compile}
        self._pending: dict[int, dict[tuple[str, str], jx.Explanation]] = {}
        #: thread id -> {instrumented name: explanation of the compile under way}
        self._instrumented: dict[int, dict[str, jx.Explanation]] = {}
        #: (function, defined_at) -> the program of its last counted compile, for unexplained ones
        self._last: dict[tuple[str, str], jx.Program] = {}
        self._source: Any = None  # the compile_events module subscribed to
        self._unsubscribe: Any = None
        self._saved_explain: bool | None = None
        self._handler = _ExplanationHandler(self)
        self._filter = _ExplanationFilter(self)
        self._demoter = jx.CacheLogDemoter()

    def active(self) -> bool:
        return bool(self._logs)

    def pending(self) -> dict[tuple[str, str], jx.Explanation]:
        """This thread's explanations not yet matched with a compile."""
        return self._pending.setdefault(threading.get_ident(), {})

    def _forget(self) -> None:
        """Explanations and history never outlive a guard's start or end (no stale blame)."""
        self._pending = {}
        self._instrumented = {}
        self._last = {}

    def attach(self, log: CompileLog) -> None:
        with self._lock:
            self._install_once()
            if not self._logs:
                self._activate()
            self._forget()
            self._logs.append(log)

    def detach(self, log: CompileLog) -> None:
        with self._lock:
            if log in self._logs:
                self._logs.remove(log)
                self._forget()
                if not self._logs:
                    self._deactivate()

    def _install_once(self) -> None:
        """Subscribe to jaxobs's one compile-event hub (again if that module was re-imported,
        as pytester's in-process runs do, so instrumented functions keep reporting here)."""
        from jaxobs.runtime import compile_events

        if self._source is compile_events:
            return
        if self._source is not None:
            # Duration events: one subscription (the new module's listener sees every compile).
            # Instrumented compiles: keep listening to the old module too — functions made by a
            # cached `jaxobs.jit` from before the re-import still report there.
            self._unsubscribe()
        self._unsubscribe = compile_events.subscribe(self.on_compile_event)
        if self._on_instrumented not in compile_events.compile_observers:
            compile_events.compile_observers.append(self._on_instrumented)
        self._source = compile_events

    def _activate(self) -> None:
        import jax

        self._saved_explain = bool(jax.config.jax_explain_cache_misses)  # type: ignore[attr-defined]
        jax.config.update("jax_explain_cache_misses", True)
        self._filter.silence = not self._saved_explain  # keep the messages we switched on quiet
        logging.getLogger(jx.EXPLAIN_LOGGER).addFilter(self._filter)
        logging.getLogger("jax").addHandler(self._handler)
        if self._filter.silence:
            for name in jx.CACHE_LOGGERS:
                logging.getLogger(name).addFilter(self._demoter)

    def _deactivate(self) -> None:
        import jax

        logging.getLogger("jax").removeHandler(self._handler)
        logging.getLogger(jx.EXPLAIN_LOGGER).removeFilter(self._filter)
        for name in jx.CACHE_LOGGERS:
            logging.getLogger(name).removeFilter(self._demoter)
        if not self._saved_explain:
            jax.config.update("jax_explain_cache_misses", False)

    def _emit(self, compiled: Compile) -> None:
        for log in list(self._logs):
            log._add(compiled)

    # Listeners: called inside the user's compile, so they must never raise.
    def on_compile_event(self, event: str, duration: float, fun_name: str | None) -> None:
        if event != _BACKEND_EVENT or not self._logs:
            return
        try:
            self._on_backend_compile(fun_name or "", sys._getframe(1))
        except Exception as exc:
            report_internal_error("testing_compile_listener", exc)

    def _on_backend_compile(self, fun_name: str, frame: FrameType) -> None:
        from jaxobs.runtime import compile_events as compilation

        program = jx.program_on_stack(frame, depth=24)
        pending = self.pending()
        if program is not None:
            explanation = pending.pop((program.function, program.defined_at), None)
        else:  # JAX changed its compile call: fall back to the explanation's name
            name = fun_name.removeprefix("jit(").removesuffix(")") if fun_name.startswith("jit(") else fun_name
            explanation = next((pending.pop(k) for k in list(pending) if k[0] == name), None)
        if program is None or program.user_code:
            pending.clear()  # explanations not followed by their own compile (inner traces) are dropped
        owner, owner_frame = compilation.find_owner(frame)
        if owner is not None:  # the compile observer reports it, with the cause jaxobs derived
            caller = compilation.caller_of(owner_frame) if owner_frame is not None else None
            site = jx.relative(f"{caller.f_code.co_filename}:{caller.f_lineno}") if caller is not None else ""
            self._instrumented.setdefault(threading.get_ident(), {})[owner.name] = jx.Explanation(
                owner.name, explanation.cause if explanation else "", explanation.detail if explanation else "",
                site, "", explanation.own_switch_only if explanation else False)
            return
        if explanation is not None and explanation.own_switch_only:
            return  # only a setting the guards switched on changed: not the user's recompile
        if program is None:
            if explanation is not None:
                self._emit(Compile(explanation.function, explanation.cause, explanation.detail,
                                   explanation.called_at, explanation.defined_at))
            return
        if not program.user_code:
            return  # eager primitives and jax's own jits
        if program.arg_names is None and (explanation is None or explanation.cause == "first"):
            # a derived program (JVP, transpose) of a function whose trace JAX reused; JAX 0.12
            # explains it as a "first" compile of another function defined on the same line
            return
        identity = (program.function, program.defined_at)
        if explanation is not None:
            cause, detail = explanation.cause, explanation.detail
            if identity in self._last and cause in ("shape", "dtype"):
                # JAX compares with the closest key it ever cached; the reader wants the change
                # since the previous compile in this block.
                since = jx.aval_change(self._last[identity], program)
                if since[0] in ("shape", "dtype"):
                    cause, detail = since
        elif identity in self._last:
            cause, detail = jx.aval_change(self._last[identity], program)
        else:
            cause, detail = "other", "compiled without a new trace (a new batch size under vmap, or a sharding change)"
        self._last[identity] = program
        self._emit(Compile(program.function, cause, detail, jx.user_call_site(frame), program.defined_at))

    def _on_instrumented(self, function: str, cause: str) -> None:
        if not self._logs:
            return
        try:
            explanation = self._instrumented.get(threading.get_ident(), {}).pop(function, None)
            if explanation is not None and explanation.own_switch_only:
                return
            detail = explanation.detail if explanation is not None else ""
            called_at = explanation.called_at if explanation is not None else ""
            if cause == "other" and explanation is not None and explanation.cause not in ("", "first", "other"):
                # jaxobs saw this signature before the caches were cleared (fresh=True): JAX's
                # explanation of the retrace is the more useful one.
                cause = explanation.cause
            self._emit(Compile(function, cause, detail, called_at, "", instrumented=True))
        except Exception as exc:
            report_internal_error("testing_compile_listener", exc)


#: Kept importable for callers of the old module layout.
parse_explanation = jx.parse_explanation

_hub = _Hub()
