"""``jaxobs.request`` / ``jaxobs.step``: mark what users feel, for the SLIs.

A request (or training step) is counted with its outcome and latency; it is
*cold* when an instrumented call inside it compiled, so the steady-state
latency SLO can exclude cold requests and cold starts get their own SLO
(docs/architecture.md).  The "current request" is a ContextVar, so it follows asyncio
tasks as well as threads.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from time import perf_counter
from types import TracebackType
from typing import Any, TypeVar

from jaxobs import catalog
from jaxobs.runtime import tracing
from jaxobs.telemetry import recorder_for
from jaxobs.telemetry.internal_errors import report_internal_error

F = TypeVar("F", bound=Callable[..., Any])


class _Active:
    """One request in progress; it lives in the ContextVar, so concurrent threads and
    asyncio tasks sharing one ``request`` object never mix up their bookkeeping."""

    __slots__ = ("cold", "span", "t0", "token")

    def __init__(self) -> None:
        self.cold = False
        self.t0 = perf_counter()
        self.token: contextvars.Token[_Active | None] | None = None
        self.span: tuple[Any, Any] | None = None  # (span, context token) when tracing


_current: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("jaxobs_request", default=None)


def mark_cold() -> None:
    """Called from the cold path of an instrumented call: the enclosing request was cold."""
    active = _current.get()
    if active is not None:
        active.cold = True


class compile_probe:  # noqa: N801 - used as `with compile_probe() as probe:`
    """Notes whether an instrumented call inside compiled, without recording an SLI event.

    For work done on behalf of requests that wait in *other* threads (a
    batching server runs one padded batch for many requests): run the batch
    inside the probe, then each waiting request calls :func:`mark_cold` in its
    own thread when ``probe.cold``.  Nested in a request of the same thread,
    a cold probe also makes that request cold.
    """

    def __init__(self) -> None:
        self.cold = False
        self._active: _Active | None = None
        self._token: contextvars.Token[_Active | None] | None = None

    def __enter__(self) -> compile_probe:
        self._active = _Active()
        self._token = _current.set(self._active)
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._token is not None and self._active is not None
        _current.reset(self._token)
        self.cold = self._active.cold
        parent = _current.get()
        if self.cold and parent is not None:
            parent.cold = True


@functools.lru_cache(maxsize=1024)
def _series(rec: Any, service: str) -> tuple[Any, Any, Any, Any, Any]:
    """The five series of one service, looked up once (``with request(...)`` runs per request)."""
    return (rec.counter(catalog.REQUESTS, service, "ok"),
            rec.counter(catalog.REQUESTS, service, "error"),
            rec.histogram(catalog.REQUEST_DURATION, service, "steady"),
            rec.histogram(catalog.REQUEST_DURATION, service, "cold"),
            rec.gauge(catalog.REQUESTS_IN_FLIGHT, service))


class request:  # noqa: N801 - lower-case like contextlib helpers: it is used as `with jaxobs.request(...)`
    """Context manager and decorator marking one request of ``service``.

    ``with jaxobs.request("predict"): ...`` or ``@jaxobs.request("predict")``.
    Exceptions propagate unchanged and count as ``outcome="error"``; pass
    ``ok_exceptions`` for exception types that are not failures (e.g. a
    client's bad input you already answer with HTTP 400).
    """

    _kind = "request"

    def __init__(self, service: str, *, registry: Any = None,
                 ok_exceptions: tuple[type[BaseException], ...] = ()) -> None:
        self.service = service
        self._ok_exceptions = ok_exceptions
        self._ok, self._error, self._steady, self._cold, self._in_flight = _series(recorder_for(registry), service)

    def __enter__(self) -> request:
        active = _Active()
        active.span = tracing.start_request_span(self._kind, self.service)
        active.token = _current.set(active)
        self._in_flight.inc()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            active = _current.get()
            if active is None or active.token is None:
                raise RuntimeError("jaxobs.request exited without a matching enter")
            _current.reset(active.token)
            self._finish(active, exc)
        except Exception as inner:
            report_internal_error("request", inner)

    def _finish(self, active: _Active, exc: BaseException | None) -> None:
        elapsed = perf_counter() - active.t0
        self._in_flight.dec()
        failed = exc is not None and not isinstance(exc, self._ok_exceptions)
        (self._error if failed else self._ok).inc()
        latency = self._cold if active.cold else self._steady
        if active.span is not None:
            latency.observe_traced(elapsed, format(active.span[0].get_span_context().trace_id, "032x"))
        else:
            latency.observe(elapsed)
        if active.span is not None:
            tracing.end_request_span(active.span, cold=active.cold, failed=failed, exc=exc)
        parent = _current.get()
        if active.cold and parent is not None:
            parent.cold = True  # a cold step inside a request makes the request cold

    def __call__(self, fn: F) -> F:
        if asyncio.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class _Step(request):
    _kind = "step"


def step(service: str = "training", **kwargs: Any) -> request:
    """A training step: the same SLI events as :class:`request` (``service`` defaults to "training")."""
    return _Step(service, **kwargs)
