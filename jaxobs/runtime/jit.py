"""``jaxobs.jit`` / ``jaxobs.instrument``: a drop-in, instrumented ``jax.jit``.

The wrapper keeps jit's semantics (results, exceptions, async dispatch, AOT
methods) and adds, per steady unsampled call, a trace-state read, a sampling
countdown, one dict test and one atomic counter tick — no clock, lock or
thread-local.  Sampled calls (1 % by default) are timed on host and device.
Everything expensive — compile attribution, signatures, cause analysis, XLA
cost analysis — runs only when a call compiled anyway.

How a compile is attributed without per-call bookkeeping: JAX compiles
synchronously inside the caller's Python stack, so the jax.monitoring listener
walks up the stack to the nearest wrapper frame (see ``compile_events.py``) and
files the compile under that frame in ``_compiling``.  After the call the
wrapper only tests whether ``_compiling`` is non-empty; if it is, it pops its
own frame's entry.  Threads compiling concurrently each find their own frame.

Under an outer transformation (``jax.jit``, ``grad``, ``vmap`` …) the wrapper
records nothing and forwards: the inner call is being traced, not run.  How it
knows, and what happens when JAX moves that internal: ``jax_compat.py``.

Self-check: sampled calls (always the first calls of each function) compare
the jit dispatch cache's size before and after.  A call that grew it without
any compile event is still counted as a miss, and the missing event as an
internal error (``compile_events``): a renamed JAX event shows up in a
dashboard instead of turning every cold call into a silent hit.  The function
then checks every call this way (the degraded path costs two cache reads).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from types import FrameType
from typing import Any

import jax

from jaxobs import catalog
from jaxobs.runtime import causes, compile_events, jax_compat, manifest, sli, tracing
from jaxobs.runtime.finite import has_nonfinite
from jaxobs.runtime.jit_function import InstrumentedFunction
from jaxobs.telemetry import recorder_for
from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.recorder import Recorder

# the cheapest "are we inside a trace?" test: one C-level attribute read (jax_compat.py)
_trace_state, _eval_trace, _trace_state_exact = jax_compat.trace_state()

_HISTORY = 64  # signatures remembered per function for cause analysis


@dataclass
class Settings:
    """Process-wide defaults; per-function arguments override them."""

    #: fraction of steady calls timed (host time, and device time via block_until_ready).
    sample_rate: float = 0.01
    #: the first N steady calls of each function are always sampled.
    first_samples: int = 3
    #: run XLA cost/memory analysis after each compile (cold path only).
    analyze: bool = True
    #: sampled calls check floating-point outputs for NaN/Inf (one fused reduction)
    check_finite: bool = True
    #: dtype whose peak FLOP/s is the MFU denominator (see jaxobs.runtime.efficiency)
    peak_dtype: str = "bfloat16"
    #: override the peak-FLOP/s table (another part, a power cap); None: use the table
    peak_flops_per_second: float | None = None


_settings = Settings()


def configure(*, sample_rate: float | None = None, first_samples: int | None = None,
              analyze: bool | None = None, check_finite: bool | None = None, peak_dtype: str | None = None,
              peak_flops_per_second: float | None = None, max_functions: int | None = None,
              slo_spec: str | None = None,
              buckets: dict[str, tuple[float, ...] | None] | None = None) -> Settings:
    """Change process-wide defaults for functions instrumented afterwards.

    Returns a copy of the settings now in force, so ``jaxobs.configure()`` with
    no arguments reads them.

    ``max_functions`` caps distinct ``function`` label values per process
    (later ones share ``function="__overflow__"``).  ``slo_spec`` (a path; ``""``
    restores the default) derives the request-latency buckets from the spec, so
    every latency threshold is a bucket bound.  ``buckets`` replaces named
    layouts (``"call"``, ``"compile"``, ``"latency"``; see ``jaxobs/catalog.py``).
    Bucket changes apply to series created afterwards: configure before traffic.
    """
    settings = _settings
    if max_functions is not None:
        from jaxobs.telemetry.recorder import limits

        if int(max_functions) < 1:
            raise ValueError(f"max_functions must be at least 1, got {max_functions!r}")
        limits.max_functions = int(max_functions)
    if buckets:
        for layout_name, bounds in buckets.items():
            catalog.set_layout(layout_name, bounds)
    if slo_spec is not None:
        catalog.set_layout("latency", _latency_layout_from(slo_spec) if slo_spec else None)
    if sample_rate is not None:
        _check_rate(sample_rate)
        settings.sample_rate = sample_rate
    if first_samples is not None:
        settings.first_samples = max(0, int(first_samples))
    if analyze is not None:
        settings.analyze = bool(analyze)
    if check_finite is not None:
        settings.check_finite = bool(check_finite)
    if peak_dtype is not None:
        settings.peak_dtype = str(peak_dtype)
    if peak_flops_per_second is not None:
        if not peak_flops_per_second > 0:
            raise ValueError(f"peak_flops_per_second must be > 0, got {peak_flops_per_second!r}")
        settings.peak_flops_per_second = float(peak_flops_per_second)
    return dataclasses.replace(settings)


def _latency_layout_from(path: str) -> tuple[float, ...]:
    """The spec's latency thresholds on top of a coarse base: exact SLIs, few series."""
    from jaxobs.slo.spec import load_spec

    spec = load_spec(path)  # a clear one-line SpecError on a bad file
    thresholds = {slo.sli.threshold_seconds for service in spec.services for slo in service.slos
                  if slo.sli.threshold_seconds is not None}
    return tuple(sorted(set(catalog.SLO_BASE_BUCKETS) | thresholds))


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sample_rate must be within [0, 1], got {rate!r}")


def _period(rate: float) -> int:
    """Sample every N-th steady call; 0 disables sampling."""
    return 0 if rate <= 0 else max(1, round(1.0 / rate))


class CompileInProgress:
    """What the listener learned about one call's compile, until the call returns."""

    __slots__ = ("backend_done", "in_progress", "phases", "started")

    def __init__(self, started: float) -> None:
        self.backend_done = False
        self.in_progress = False
        #: (phase, seconds) in the order JAX ran them, for the compile's trace span
        self.phases: list[tuple[str, float]] = []
        #: when compiling began (end of the first phase minus its duration): the
        #: unsampled fast path takes no clock reading of its own
        self.started = started


_FUSION = re.compile(r"=\s*\S+\s+fusion\(")


class InstrumentedJit:
    """The state behind a function returned by :func:`jit`/:func:`instrument`.

    It owns the function's series, compile history and sampling.

    Users hold the function (``.call``, an :class:`InstrumentedFunction`); it
    carries jit's surface and a ``jaxobs`` attribute pointing here.  References
    run one way only — function → InstrumentedJit → hot-path closure, which sees
    the InstrumentedJit through a weak proxy — so dropping the last reference to the
    function frees everything it closed over at once, without the cyclic
    garbage collector, as with ``jax.jit``.
    """

    def __init__(self, fun: Callable[..., Any], *, name: str | None = None,
                 registry: Any = None, sample_rate: float | None = None,
                 check_finite: bool | None = None, jitted: Any = None, **jit_kwargs: Any) -> None:
        self._jitted: Any = jitted if jitted is not None else jax.jit(fun, **jit_kwargs)
        self.name = name or default_name(fun)
        manifest.track(self)  # warm starts and baseline recording find functions by name
        self._recorder: Recorder = recorder_for(registry)
        rate = _settings.sample_rate if sample_rate is None else sample_rate
        _check_rate(rate)
        self._period = _period(rate)
        self._first = _settings.first_samples
        self._analyze = _settings.analyze
        self._check_finite = _settings.check_finite if check_finite is None else bool(check_finite)
        info = getattr(self._jitted, "_jit_info", None)
        self._static_argnums = tuple(getattr(info, "static_argnums", ()) or ())
        self._static_argnames = tuple(getattr(info, "static_argnames", ()) or ())
        rec = self._recorder
        #: the ``function`` label: the name, or the overflow value past the cardinality cap
        self.label = fname = rec.admit_function(self.name)
        self._release = weakref.finalize(self, rec.release_function, fname)
        self._hits = rec.counter(catalog.CALLS, fname, "hit")
        self._misses = rec.counter(catalog.CALLS, fname, "miss")
        self._steady = rec.histogram(catalog.CALL_DURATION, fname, "steady")
        self._cold = rec.histogram(catalog.CALL_DURATION, fname, "cold")
        self._kernel = rec.histogram(catalog.KERNEL_DURATION, fname)
        self._nonfinite = rec.counter(catalog.NONFINITE_OUTPUTS, fname)
        self._in_progress = rec.gauge(catalog.COMPILATIONS_IN_PROGRESS, fname)
        #: frame of a running call/warmup → its compile, filled by the listener.
        self._compiling: dict[FrameType, CompileInProgress] = {}
        self._history: list[causes.Signature] = []
        self._history_lock = threading.Lock()
        #: compile events received, and AOT lowerings whose executable a later call
        #: may put into the dispatch cache without an event (both read by the self-check)
        self._events_seen = 0
        self._aot_pending = 0
        compile_events.install_listeners()
        _record_build_info(rec)
        self._fun = fun
        self._impl = self._make_call()
        self._exposed: Callable[[], InstrumentedFunction | None] = lambda: None

    @property
    def call(self) -> InstrumentedFunction:
        """The user-facing function (made on first use; it keeps this InstrumentedJit alive)."""
        fn = self._exposed()
        if fn is None:
            fn = InstrumentedFunction(self._impl, self)
            self._exposed = weakref.ref(fn)
        return fn

    # --- the hot path --------------------------------------------------------------
    # Long on purpose: the two closures are the per-call code, and splitting them
    # into helpers would add a Python frame (~50 ns) to every call.
    def _make_call(self) -> Callable[..., Any]:
        """Build the per-call closures; every name they touch is a local or closure cell.

        The steady, unsampled path reads the trace state, decrements a
        countdown, calls jit, tests one dict and ticks one counter — no clock,
        no lock, no thread-local.  Every ``period``-th call (and the first few)
        goes through ``sampled`` instead, which times it.  The countdown is
        shared by threads without a lock on purpose: a lost decrement only
        shifts when the next sample is taken.
        """
        ijit = weakref.proxy(self)  # the closure must not keep its InstrumentedJit alive
        jitted = self._jitted
        compiling = self._compiling
        hits = self._hits.ticker()
        weakref.finalize(self, self._hits.retire, hits)
        first, period = self._first, self._period
        countdown = [0 if first > 0 or period else sys.maxsize]
        taken = [0]
        checking = [False]  # True once a compile went unreported: every call is checked
        trace_state, eval_trace = _trace_state, _eval_trace
        inexact, has_tracer = not _trace_state_exact, jax_compat.has_tracer
        cache_size = jax_compat.cache_size_of(jitted)
        clock = perf_counter
        getframe = sys._getframe

        def sampled(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            owner = ijit  # noqa: F841 - marks this frame for compile_events.find_owner (the owning InstrumentedJit)
            seen, size = ijit._events_seen, cache_size()
            t0 = clock()
            try:
                out = jitted(*args, **kwargs)
            except BaseException as exc:
                ijit._on_error(compiling.pop(getframe(), None), exc, clock() - t0)
                raise
            if compiling:
                info = compiling.pop(getframe(), None)
                if info is not None:  # cold: the sample moves on to the next call
                    ijit._on_cold(info, clock() - t0, args, kwargs)
                    return out
            if cache_size() > size and ijit._events_seen == seen:
                if ijit._on_unreported_compile(clock() - t0, args, kwargs):
                    checking[0] = True
                    countdown[0] = 0
                    return out
            host_time = clock() - t0
            next(hits)
            taken[0] = n = taken[0] + 1
            if checking[0]:  # every call comes here; time only those the schedule picks
                if n > first and (not period or (n - first) % period):
                    return out
            else:
                countdown[0] = 0 if n < first else (period - 1 if period else sys.maxsize)
            ijit._sample(out, t0, host_time)
            return out

        def call(*args: Any, **kwargs: Any) -> Any:
            # inside an outer jit/grad/vmap: just trace (``inexact``: JAX moved the trace state)
            if trace_state.value is not eval_trace or (inexact and has_tracer(args, kwargs)):
                return jitted(*args, **kwargs)
            left = countdown[0]
            if left <= 0:
                return sampled(args, kwargs)
            countdown[0] = left - 1
            owner = ijit  # noqa: F841 - marks this frame for compile_events.find_owner (the owning InstrumentedJit)
            try:
                # without keywords, a plain *args call skips building a dict for jit (~0.1 µs)
                out = jitted(*args, **kwargs) if kwargs else jitted(*args)
            except BaseException as exc:
                ijit._on_error(compiling.pop(getframe(), None), exc, None)
                raise
            if compiling:  # some call of this function is compiling: is it this one?
                info = compiling.pop(getframe(), None)
                if info is not None:
                    ijit._on_cold(info, None, args, kwargs)
                    return out
            next(hits)
            return out

        compile_events.register_owner_code(call.__code__)
        compile_events.register_owner_code(sampled.__code__)
        return call

    # --- slow paths ----------------------------------------------------------------
    def on_compile_phase(self, frame: FrameType, phase: str, duration: float) -> None:
        """Called by the jax.monitoring listener with the frame of the compiling call."""
        self._events_seen += 1
        info = self._compiling.get(frame)
        if info is None:
            info = self._compiling[frame] = CompileInProgress(perf_counter() - duration)
        self._recorder.histogram(catalog.COMPILE_DURATION, self.label, phase).observe(duration)
        info.phases.append((phase, duration))
        if phase == "backend":
            info.backend_done = True
            if info.in_progress:
                info.in_progress = False
                self._in_progress.dec()
        elif not info.in_progress and not info.backend_done:
            info.in_progress = True
            self._in_progress.inc()

    def _finish(self, info: CompileInProgress | None) -> None:
        if info is not None and info.in_progress:
            info.in_progress = False
            self._in_progress.dec()

    def _sample(self, out: Any, t0: float, host_time: float) -> None:
        """A sampled steady call: host time, device time via block_until_ready, then finiteness."""
        try:
            self._steady.observe(host_time)
            jax.block_until_ready(out)
            kernel_time = perf_counter() - t0
            self._kernel.observe_traced(kernel_time, tracing.current_trace_id())
            tracing.record_kernel_time(self.name, kernel_time)
        except Exception as exc:
            report_internal_error("kernel_sampling", exc)
            return
        if self._check_finite:
            try:
                if has_nonfinite(out):
                    self._nonfinite.inc()
            except Exception as exc:
                report_internal_error("finite_check", exc)

    def _on_cold(self, info: CompileInProgress, dt: float | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any]) -> None:
        try:
            if dt is None:
                dt = perf_counter() - info.started
            self._finish(info)
            self._misses.inc()
            self._cold.observe_traced(dt, tracing.current_trace_id())
            if self._check_finite:
                # exposed at 0 from the first compile, before any checked call: the alert's
                # increase() then sees the first NaN (a counter born at 1 would hide it)
                self._nonfinite.inc(0)
            sli.mark_cold()
            cause, detail = self._record_compilation(args, kwargs)
            tracing.record_compile(self.name, info.started, info.phases, cause, detail)
        except Exception as exc:
            report_internal_error("instrument", exc)

    def _on_unreported_compile(self, dt: float, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """The dispatch cache grew during a call that received no compile event.

        Either an earlier AOT ``lower(...).compile()`` is being put into the
        cache (no compile: returns False), or JAX compiled without an event we
        recognise: count the miss and the missing event, and return True.
        """
        if self._aot_pending > 0:
            self._aot_pending -= 1
            return False
        report_internal_error("compile_events", RuntimeError(
            f"{self.name}: a call compiled without a jax.monitoring compile event jaxobs knows "
            f"({', '.join(compile_events.PHASE_EVENTS)}); compile time is not recorded"))
        try:
            self._misses.inc()
            self._cold.observe(dt)
            sli.mark_cold()
            self._record_compilation(args, kwargs)
        except Exception as exc:
            report_internal_error("instrument", exc)
        return True

    def _on_error(self, info: CompileInProgress | None, exc: BaseException, dt: float | None) -> None:
        """Count a failed call.  Its duration is known for cold and sampled calls; the
        unsampled fast path has none (steady host time is a sample anyway)."""
        try:
            compiling = info is not None
            kind = causes.classify_error(exc, compiling, bool(info and info.backend_done))
            self._finish(info)
            self._recorder.counter(catalog.ERRORS, self.label, kind).inc()
            tracing.record_error(self.name, kind, exc)
            (self._misses if compiling else self._hits).inc()
            if info is not None and dt is None:
                dt = perf_counter() - info.started
            if dt is not None:
                (self._cold if compiling else self._steady).observe(dt)
            if compiling:
                sli.mark_cold()
        except Exception as inner:
            report_internal_error("instrument", inner)

    def _record_compilation(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                            compiled: Any = None) -> tuple[str, str]:
        """Count the compile under its bounded cause; returns (cause, a readable detail)."""
        sig = causes.signature_of(args, kwargs, self._static_argnums, self._static_argnames)
        with self._history_lock:
            cause = causes.explain(sig, self._history)
            detail = causes.describe(cause, sig, self._history)
            self._history.append(sig)
            del self._history[:-_HISTORY]
        self._recorder.counter(catalog.COMPILATIONS, self.label, cause).inc()
        compile_events.notify_compiled(self.name, cause)
        manifest.record(self, args, kwargs)  # the abstract signature, for warm-start manifests
        if self._analyze:
            self._record_analysis(args, kwargs, compiled)
        return cause, detail

    def _record_analysis(self, args: tuple[Any, ...], kwargs: dict[str, Any], compiled: Any) -> None:
        """FLOPs, bytes, peak memory and fusions from XLA.

        After a call compiled, ``lower(...).compile()`` hits JAX's in-memory
        caches (~0.2 ms).  Should it ever compile again, analysis switches
        itself off for this function rather than double compile time.
        """
        try:
            if compiled is None:
                compiled = self._compile_for_analysis(args, kwargs)
                if compiled is None:
                    return
            rec, fname = self._recorder, self.label
            cost = compiled.cost_analysis()
            if isinstance(cost, list):
                cost = cost[0] if cost else {}
            if cost:
                if "flops" in cost:
                    rec.gauge(catalog.FUNCTION_FLOPS, fname).set(float(cost["flops"]))
                if "bytes accessed" in cost:
                    rec.gauge(catalog.FUNCTION_BYTES_ACCESSED, fname).set(float(cost["bytes accessed"]))
            mem = compiled.memory_analysis()
            if mem is not None:
                peak = getattr(mem, "peak_memory_in_bytes", None)
                if not peak:
                    peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes
                            + mem.temp_size_in_bytes - mem.alias_size_in_bytes)
                rec.gauge(catalog.FUNCTION_PEAK_MEMORY, fname).set(float(peak))
            text = compiled.as_text()
            if text:
                rec.gauge(catalog.FUNCTION_FUSIONS, fname).set(float(len(_FUSION.findall(text))))
        except Exception as exc:
            report_internal_error("cost_analysis", exc)

    def _compile_for_analysis(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        abstract_args, abstract_kwargs = self._abstract(args, kwargs)
        with compile_events.ignoring_compiles() as probe:
            compiled = self._jitted.lower(*abstract_args, **abstract_kwargs).compile()
        if probe.compiled:
            self._analyze = False
        return compiled

    def _abstract(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Shape-only stand-ins, so donated (deleted) inputs can still be lowered."""

        def to_abstract(x: Any) -> Any:
            if isinstance(x, jax.Array):
                # an uncommitted array carries no sharding into jit's cache key: mirror that
                committed = getattr(x, "committed", getattr(x, "_committed", True))
                return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding if committed else None,
                                            weak_type=getattr(x, "weak_type", False))
            return x

        out_args = tuple(a if i in self._static_argnums else jax.tree_util.tree_map(to_abstract, a)
                         for i, a in enumerate(args))
        out_kwargs = {k: v if k in self._static_argnames else jax.tree_util.tree_map(to_abstract, v)
                      for k, v in kwargs.items()}
        return out_args, out_kwargs

    # --- AOT and the rest of jit's surface ---------------------------------------
    def warmup(self, *args: Any, **kwargs: Any) -> Any:
        """Compile for these arguments (arrays or ShapeDtypeStructs) without running."""
        owner = self  # noqa: F841 - read by compile_events.find_owner
        self._aot_pending += 1
        try:
            compiled = self._jitted.lower(*args, **kwargs).compile()
        finally:
            info = self._compiling.pop(sys._getframe(), None)
            self._finish(info)
        if info is not None:
            try:
                self._record_compilation(args, kwargs, compiled)
            except Exception as exc:
                report_internal_error("instrument", exc)
        return compiled

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).lower``, with trace/lower time attributed to this function."""
        owner = self  # noqa: F841 - read by compile_events.find_owner
        self._aot_pending += 1  # its .compile() may fill the dispatch cache without an event
        try:
            return self._jitted.lower(*args, **kwargs)
        finally:
            self._finish(self._compiling.pop(sys._getframe(), None))

    def trace(self, *args: Any, **kwargs: Any) -> Any:
        """``jax.jit(...).trace``, with trace time attributed to this function."""
        owner = self  # noqa: F841 - read by compile_events.find_owner
        try:
            return self._jitted.trace(*args, **kwargs)
        finally:
            self._finish(self._compiling.pop(sys._getframe(), None))

    def retire(self) -> None:
        """Stop exposing this function: drop its series and free its cardinality slot.

        Later calls still run (and still go through jit) but are not recorded.
        Wrappers are also retired lazily once garbage-collected, when a new
        function needs the slot.
        """
        try:
            if self.label != catalog.OVERFLOW_FUNCTION:  # other functions share that one
                self._release.detach()
                self._recorder.retire_function(self.label)
        except Exception as exc:
            report_internal_error("instrument", exc)

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        return self._jitted.eval_shape(*args, **kwargs)

    def clear_cache(self) -> None:
        self._jitted.clear_cache()

    def _cache_size(self) -> int:
        """The jit dispatch cache's size (libraries' recompile checks read it)."""
        return int(self._jitted._cache_size())

    def __getstate__(self) -> dict[str, Any]:
        """``jax.jit``'s state (``function_name`` …): some tools read it to name a function."""
        getstate = getattr(self._jitted, "__getstate__", None)
        state = dict(getstate() or {}) if getstate is not None else {}
        state.setdefault("function_name", getattr(self._fun, "__name__", self.name))
        return state

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the InstrumentedJit is calling the instrumented function (``self.call``)."""
        return self._impl(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<jaxobs.InstrumentedJit {self.name}>"


for _method in (InstrumentedJit.warmup, InstrumentedJit.lower, InstrumentedJit.trace):
    compile_events.register_owner_code(_method.__code__)


def default_name(fun: Callable[..., Any]) -> str:
    """``Class.method`` or ``function``: the qualified name without ``<locals>`` noise."""
    qualname = getattr(fun, "__qualname__", None) or getattr(fun, "__name__", None) or "anonymous"
    return qualname.rsplit("<locals>.", 1)[-1]


def instrumented_jit_of(fn: Any) -> InstrumentedJit | None:
    """The InstrumentedJit behind a function returned by :func:`jit`/:func:`instrument`."""
    ijit = getattr(fn, "jaxobs", None)
    return ijit if isinstance(ijit, InstrumentedJit) else None


def jit(fun: Callable[..., Any] | None = None, /, *, name: str | None = None, registry: Any = None,
        sample_rate: float | None = None, check_finite: bool | None = None, **jit_kwargs: Any) -> Any:
    """Drop-in for ``jax.jit``: ``@jaxobs.jit``, ``@jaxobs.jit(static_argnums=1)`` or ``jaxobs.jit(f)``.

    Extra keywords: ``name`` (the ``function`` label; default the qualified
    name), ``registry`` (a prometheus-client registry; default the global one)
    ``sample_rate`` (fraction of steady calls timed, on host and device) and
    ``check_finite`` (sampled calls count NaN/Inf outputs; default on).
    """
    if fun is None:
        return functools.partial(jit, name=name, registry=registry, sample_rate=sample_rate,
                                 check_finite=check_finite, **jit_kwargs)
    return InstrumentedJit(fun, name=name, registry=registry, sample_rate=sample_rate,
                           check_finite=check_finite, **jit_kwargs).call


def instrument(jitted: Any, *, name: str | None = None, registry: Any = None,
               sample_rate: float | None = None, check_finite: bool | None = None) -> Any:
    """Wrap an existing ``jax.jit`` object (its static/donate settings are kept)."""
    if instrumented_jit_of(jitted) is not None:
        return jitted
    if not hasattr(jitted, "lower"):  # a plain function: jit it with defaults
        return InstrumentedJit(jitted, name=name, registry=registry, sample_rate=sample_rate,
                               check_finite=check_finite).call
    fun = getattr(jitted, "__wrapped__", None) or getattr(jitted, "_fun", None) or jitted
    return InstrumentedJit(fun, name=name, registry=registry, sample_rate=sample_rate,
                           check_finite=check_finite, jitted=jitted).call


_build_info_done: set[int] = set()


def _record_build_info(rec: Recorder) -> None:
    if id(rec) in _build_info_done:
        return
    _build_info_done.add(id(rec))
    try:
        from jaxobs.runtime.buildinfo import build_info_labels

        labels = build_info_labels()
        rec.gauge(catalog.BUILD_INFO, *(labels[k] for k in catalog.BUILD_INFO.labels)).set(1)
    except Exception as exc:
        report_internal_error("build_info", exc)
    try:
        from jaxobs.runtime.efficiency import local_device_kind, peak_flops

        kind = local_device_kind()
        peak = _settings.peak_flops_per_second or peak_flops(kind, _settings.peak_dtype)
        if peak:
            rec.gauge(catalog.DEVICE_PEAK_FLOPS, kind, _settings.peak_dtype).set(peak)
    except Exception as exc:
        report_internal_error("device_peak", exc)
