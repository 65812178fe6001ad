"""OpenTelemetry spans for requests and steps, with the compiles that happened inside them.

When the application configured a tracer provider (``trace.set_tracer_provider``),
``jaxobs.request``/``jaxobs.step`` start a span (a child of the current one, for
example the HTTP server's), and a call that compiled inside it adds a child span
``jaxobs.compile`` with the function, the cause (``shape: leaf 0 float32[3] -> float32[4]``)
and one child span per phase (trace, lower, backend) with JAX's own durations.
Sampled calls add a ``jaxobs.kernel`` event with their device time; errors record
the exception and jaxobs' classification (oom, trace, compile, runtime).

With no tracer provider configured, each hook is one global read and an
``isinstance`` check: ``benchmarks/tracing_overhead.py`` measures it.  The
steady unsampled call path has no hook at all.
"""

from __future__ import annotations

import time
from time import perf_counter
from typing import Any

from opentelemetry import context, trace

from jaxobs.telemetry.internal_errors import report_internal_error

_cached: tuple[Any, Any] | None = None  # (provider, tracer)


def active_tracer() -> trace.Tracer | None:
    """The application's tracer for jaxobs spans, or None when tracing is not configured."""
    global _cached
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    cached = _cached
    if cached is not None and cached[0] is provider:
        return cached[1]
    from jaxobs import __version__

    tracer = provider.get_tracer("jaxobs", __version__)
    _cached = (provider, tracer)
    return tracer


def _epoch_ns(perf_seconds: float) -> int:
    """A ``perf_counter`` reading as Unix-epoch nanoseconds (what span timestamps take)."""
    return time.time_ns() - int((perf_counter() - perf_seconds) * 1e9)


def start_request_span(kind: str, service: str) -> tuple[Any, Any] | None:
    """Start ``jaxobs.request``/``jaxobs.step`` and make it current; None when not tracing."""
    try:
        tracer = active_tracer()
        if tracer is None:
            return None
        span = tracer.start_span(f"jaxobs.{kind}", attributes={"jaxobs.service": service})
        token = context.attach(trace.set_span_in_context(span))
        return span, token
    except Exception as exc:
        report_internal_error("tracing", exc)
        return None


def end_request_span(handle: tuple[Any, Any], *, cold: bool, failed: bool, exc: BaseException | None) -> None:
    span, token = handle
    try:
        span.set_attribute("jaxobs.start", "cold" if cold else "steady")
        span.set_attribute("jaxobs.outcome", "error" if failed else "ok")
        if failed and exc is not None:
            span.record_exception(exc)
            span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
    except Exception as err:
        report_internal_error("tracing", err)
    finally:
        try:
            context.detach(token)
        except Exception as err:  # detached in another context (a generator left early)
            report_internal_error("tracing", err)
        span.end()


def record_compile(function: str, started: float, phases: list[tuple[str, float]], cause: str,
                   detail: str) -> None:
    """A finished compile as a ``jaxobs.compile`` span with one child span per phase."""
    try:
        tracer = active_tracer()
        if tracer is None:
            return
        start_ns = _epoch_ns(started)
        end_ns = time.time_ns()
        attributes = {"code.function.name": function, "jaxobs.function": function,
                      "jaxobs.compile.cause": cause, "jaxobs.compile.cause_detail": detail}
        span = tracer.start_span("jaxobs.compile", start_time=start_ns, attributes=attributes)
        parent = trace.set_span_in_context(span)
        at = start_ns
        for phase, seconds in phases:  # JAX runs trace, lower and backend one after another
            phase_end = at + int(seconds * 1e9)
            child = tracer.start_span(f"jaxobs.compile.{phase}", context=parent, start_time=at,
                                      attributes={"jaxobs.compile.phase": phase,
                                                  "jaxobs.compile.phase_seconds": seconds})
            child.end(end_time=phase_end)
            at = phase_end
        span.end(end_time=max(end_ns, at))
    except Exception as exc:
        report_internal_error("tracing", exc)


def record_kernel_time(function: str, seconds: float) -> None:
    """A sampled call's device time, as an event on the current span."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("jaxobs.kernel", {"jaxobs.function": function, "jaxobs.kernel_seconds": seconds})
    except Exception as exc:
        report_internal_error("tracing", exc)


def record_error(function: str, kind: str, exc: BaseException) -> None:
    """An instrumented call raised: the exception and jaxobs' class of it, on the current span."""
    try:
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc, attributes={"jaxobs.function": function, "jaxobs.error": kind})
    except Exception as err:
        report_internal_error("tracing", err)


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits (for exemplars), or None."""
    try:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return format(span_context.trace_id, "032x")
    except Exception as exc:
        report_internal_error("tracing", exc)
        return None
