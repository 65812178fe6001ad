"""Compile-time telemetry: jax.monitoring listeners, attribution and causes.

JAX reports each compile phase as a ``jax.monitoring`` duration event, from
inside the call that compiles (synchronously, on the caller's stack).  The
listener walks up that stack to the nearest instrumented wrapper frame, so
every event is charged to the right function and call even when several
functions compile at once in different threads — and the steady-state call
pays nothing for it (no thread-local or ContextVar set per call).

Why a compile happened is derived from the argument signature (shapes, dtypes,
shardings, static values, tree structure), compared with the signatures that
compiled before, so the ``cause`` label stays bounded and never contains a
shape.  Listener failures are counted, never raised (DESIGN.md §7).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import CodeType, FrameType
from typing import Any

from jaxobs import catalog
from jaxobs.recorder import all_recorders
from jaxobs.safety import report_internal_error

#: jax.monitoring duration event → our ``phase`` label.
PHASE_EVENTS: dict[str, str] = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "backend",
}
#: Persistent compilation cache events (no kwargs) → counter they feed.
PERSISTENT_CACHE_EVENTS: dict[str, catalog.MetricSpec] = {
    "/jax/compilation_cache/compile_requests_use_cache": catalog.PERSISTENT_CACHE_REQUESTS,
    "/jax/compilation_cache/cache_hits": catalog.PERSISTENT_CACHE_HITS,
    "/jax/compilation_cache/cache_misses": catalog.PERSISTENT_CACHE_MISSES,
}
PERSISTENT_CACHE_DURATION_EVENTS: dict[str, catalog.MetricSpec] = {
    "/jax/compilation_cache/compile_time_saved_sec": catalog.PERSISTENT_CACHE_SAVED,
}

CAUSES = ("first", "shape", "dtype", "static_arg", "sharding", "other")


_owner_codes: set[CodeType] = set()

#: Callbacks ``(function_name, cause)`` run after an instrumented function compiled
#: (the pytest recompile guard listens here).  Failures are counted, not raised.
compile_observers: list[Callable[[str, str], None]] = []


def notify_compiled(function: str, cause: str) -> None:
    for observer in list(compile_observers):
        try:
            observer(function, cause)
        except Exception as exc:
            report_internal_error("compile_observer", exc)


def register_owner_code(code: CodeType) -> None:
    """Code objects whose frames own compiles (the wrapper closure, warmup, lower, trace)."""
    _owner_codes.add(code)


class _Ignoring(threading.local):
    probe: _Probe | None = None


class _Probe:
    compiled = False


_ignoring = _Ignoring()


@contextlib.contextmanager
def ignoring_compiles() -> Iterator[_Probe]:
    """Compile events in this thread are noted on the probe, not recorded (cost analysis)."""
    probe = _Probe()
    previous, _ignoring.probe = _ignoring.probe, probe
    try:
        yield probe
    finally:
        _ignoring.probe = previous


def find_owner(frame: FrameType | None) -> tuple[Any, FrameType] | tuple[None, None]:
    """The nearest instrumented call on this thread's stack: (controller, its frame).

    Owner frames (the wrapper closures and the controller's AOT methods) set
    a local ``owner`` just before calling into JAX.  A wrapper frame that is
    only forwarding (inside an outer trace) has not set it and is skipped, so
    nested tracing is charged to the function actually being compiled.
    """
    while frame is not None:
        if frame.f_code in _owner_codes:
            owner = frame.f_locals.get("owner")
            if owner is not None:
                return owner, frame
        frame = frame.f_back
    return None, None


def caller_of(frame: FrameType) -> FrameType | None:
    """The user's frame that called the instrumented function owning ``frame``."""
    caller = frame.f_back
    while caller is not None and caller.f_code in _owner_codes:
        caller = caller.f_back
    return caller


def _on_duration_event(event: str, duration: float, **kwargs: Any) -> None:
    try:
        phase = PHASE_EVENTS.get(event)
        if phase is not None:
            probe = _ignoring.probe
            if probe is not None:
                probe.compiled = True
                return
            owner, frame = find_owner(sys._getframe(1))
            if owner is not None:
                owner.on_compile_phase(frame, phase, duration)
            return
        spec = PERSISTENT_CACHE_DURATION_EVENTS.get(event)
        if spec is not None and duration > 0:
            # JAX reports saved = original compile time - retrieval time, negative when
            # loading a tiny executable took longer than compiling it; a counter only rises.
            for rec in all_recorders():
                rec.counter(spec).inc(duration)
    except Exception as exc:  # never propagate into the user's compile
        report_internal_error("compile_listener", exc)


def _on_event(event: str, **kwargs: Any) -> None:
    try:
        spec = PERSISTENT_CACHE_EVENTS.get(event)
        if spec is not None:
            for rec in all_recorders():
                rec.counter(spec).inc()
    except Exception as exc:
        report_internal_error("compile_listener", exc)


_installed = False
_install_lock = threading.Lock()


def install_listeners() -> None:
    """Register the listeners once per process (idempotent, fail-safe)."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        try:
            import jax.monitoring as monitoring

            monitoring.register_event_duration_secs_listener(_on_duration_event)
            monitoring.register_event_listener(_on_event)
        except Exception as exc:
            report_internal_error("compile_listener", exc)
        _installed = True


# --- causes ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Signature:
    """What jit keys its cache on, in a comparable form (never exported as labels)."""

    treedef: Any
    statics: tuple[Any, ...]
    leaves: tuple[tuple[Any, ...], ...]  # (shape, dtype, weak_type, sharding) per leaf


def _leaf_signature(x: Any) -> tuple[Any, ...] | None:
    """(shape, dtype, weak, sharding) for array-like leaves; None for static-like leaves."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        sharding = getattr(x, "sharding", None)
        try:
            hash(sharding)
        except TypeError:
            sharding = repr(sharding)
        return (tuple(shape), str(dtype), bool(getattr(x, "weak_type", False)), sharding)
    if isinstance(x, bool | int | float | complex):
        return ((), type(x).__name__, True, None)
    return None


def _static_key(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return ("<unhashable>", type(x).__qualname__, id(x))


def signature_of(args: Sequence[Any], kwargs: dict[str, Any],
                 static_argnums: Sequence[int], static_argnames: Sequence[str]) -> Signature:
    import jax

    statics: list[Any] = []
    dyn_args = []
    for i, a in enumerate(args):
        if i in static_argnums:
            statics.append(("arg", i, _static_key(a)))
        else:
            dyn_args.append(a)
    dyn_kwargs = {}
    for k in sorted(kwargs):
        if k in static_argnames:
            statics.append(("kw", k, _static_key(kwargs[k])))
        else:
            dyn_kwargs[k] = kwargs[k]
    leaves, treedef = jax.tree_util.tree_flatten((tuple(dyn_args), dyn_kwargs))
    leaf_sigs = []
    for i, leaf in enumerate(leaves):
        sig = _leaf_signature(leaf)
        if sig is None:  # not an array: jit would need it static; treat its value as static
            statics.append(("leaf", i, _static_key(leaf)))
        else:
            leaf_sigs.append(sig)
    return Signature(treedef, tuple(statics), tuple(leaf_sigs))


def explain(new: Signature, previous: Sequence[Signature]) -> str:
    """The bounded cause of compiling ``new`` after ``previous`` compiled."""
    if not previous:
        return "first"
    same_tree = [p for p in previous if p.treedef == new.treedef and len(p.leaves) == len(new.leaves)]
    if not same_tree:
        return "other"
    same_static = [p for p in same_tree if p.statics == new.statics]
    if not same_static:
        return "static_arg"

    def diff(p: Signature) -> tuple[int, int, int]:
        shapes = sum(a[0] != b[0] for a, b in zip(p.leaves, new.leaves))
        dtypes = sum(a[1:3] != b[1:3] for a, b in zip(p.leaves, new.leaves))
        # A ShapeDtypeStruct without sharding (warmup) matches any sharding.
        shardings = sum(a[3] != b[3] and a[3] is not None and b[3] is not None
                        for a, b in zip(p.leaves, new.leaves))
        return shapes, dtypes, shardings

    shapes, dtypes, shardings = min((diff(p) for p in same_static), key=sum)
    if shapes:
        return "shape"
    if dtypes:
        return "dtype"
    if shardings:
        return "sharding"
    return "other"  # same signature compiled again: cache cleared or evicted


def classify_error(exc: BaseException, compiling: bool, backend_done: bool) -> str:
    """Bounded ``error`` label: oom, trace, compile, runtime or other."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    lowered = text.lower()
    if "resource_exhausted" in lowered or "out of memory" in lowered or "oom" in type(exc).__name__.lower():
        return "oom"
    try:
        from jax.errors import JaxRuntimeError

        runtime_error: type[BaseException] = JaxRuntimeError
    except Exception:  # pragma: no cover - very old jax
        runtime_error = RuntimeError
    if isinstance(exc, runtime_error):
        return "compile" if compiling and not backend_done else "runtime"
    if compiling and not backend_done:
        return "trace"  # the user's Python raised while jax traced it (shape/type errors)
    return "other"
