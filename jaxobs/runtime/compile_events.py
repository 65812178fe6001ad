"""The one ``jax.monitoring`` listener hub: compile phases, persistent-cache events, attribution.

JAX reports each compile phase as a ``jax.monitoring`` duration event, from
inside the call that compiles (synchronously, on the caller's stack).  The
listener walks up that stack to the nearest instrumented wrapper frame, so
every event is charged to the right function and call even when several
functions compile at once in different threads — and the steady-state call
pays nothing for it (no thread-local or ContextVar set per call).

jaxobs registers exactly one duration listener and one event listener per
process (:func:`install_listeners`).  Other parts of jaxobs that need compile
events (goodput accounting, the pytest guards) :func:`subscribe` here instead of
registering their own: JAX offers no fail-safe unregistration, and a listener
that raises would propagate into the user's compile, so every callback is
wrapped and its failures are counted, never raised.  Why a function compiled is
:mod:`jaxobs.runtime.causes`.  docs/architecture.md explains why attribution
walks the stack instead of setting a ContextVar per call.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from types import CodeType, FrameType
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.recorder import all_recorders

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
    """The nearest instrumented call on this thread's stack: (InstrumentedJit, its frame).

    Owner frames (the wrapper closures and the InstrumentedJit's AOT methods) set
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


#: A subscriber gets every compile-phase duration: (event, seconds, fun_name or None).
DurationSubscriber = Callable[[str, float, "str | None"], None]
_duration_subscribers: tuple[DurationSubscriber, ...] = ()
_subscribers_lock = threading.Lock()


def subscribe(callback: DurationSubscriber) -> Callable[[], None]:
    """Receive every compile-phase duration event; returns the function that unsubscribes.

    Callbacks run on the compiling thread, inside the user's call: keep them
    cheap.  An exception in one is counted (component ``compile_subscriber``)
    and never reaches the user.
    """
    global _duration_subscribers
    install_listeners()
    with _subscribers_lock:
        if callback not in _duration_subscribers:  # subscribing twice is one subscription
            _duration_subscribers = (*_duration_subscribers, callback)

    def unsubscribe() -> None:
        global _duration_subscribers
        with _subscribers_lock:
            _duration_subscribers = tuple(s for s in _duration_subscribers if s is not callback)

    return unsubscribe


def _notify_subscribers(event: str, duration: float, fun_name: str | None) -> None:
    for callback in _duration_subscribers:
        try:
            callback(event, duration, fun_name)
        except Exception as exc:
            report_internal_error("compile_subscriber", exc)


def _on_duration_event(event: str, duration: float, **kwargs: Any) -> None:
    if event in PHASE_EVENTS and _duration_subscribers:
        _notify_subscribers(event, duration, kwargs.get("fun_name"))
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
