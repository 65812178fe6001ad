"""Recording a baseline inside the measured process: what each instrumented function cost.

A :class:`Session` watches every instrumented function created while it is
open (through the manifest module's observer hook, so the jit wrapper needs
no code of its own for this), times every steady call instead of 1 % of them,
and at the end reads, per function: compile count, compile seconds per phase,
FLOPs, bytes accessed, peak memory and fusions (XLA's analysis of the latest
compile, the same values as the ``jaxobs_function_*`` gauges) and the raw
kernel-latency samples (the statistical test needs samples, not buckets).

Importing this module does not import jax; starting a session does not
either: jax comes in with the program's first instrumented function.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from jaxobs import catalog
from jaxobs.runtime import manifest
from jaxobs.telemetry.internal_errors import report_internal_error

FORMAT = "jaxobs-baseline"
VERSION = 1
#: kernel samples kept per function (uniform reservoir): enough for the rank test, a small file
MAX_SAMPLES = 2000
PHASES = ("trace", "lower", "backend")


class _Tee:
    """Stands in for a function's kernel histogram: observes into it and keeps the raw value."""

    def __init__(self, inner: Any, sink: _Samples) -> None:
        self._inner = inner
        self._sink = sink

    def observe(self, value: float) -> None:
        self._inner.observe(value)
        self._sink.add(value)

    def observe_traced(self, value: float, trace_id: str | None) -> None:
        self._inner.observe_traced(value, trace_id)
        self._sink.add(value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _Samples:
    def __init__(self, seed: int) -> None:
        self.values: list[float] = []
        self.seen = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self.seen += 1
            if len(self.values) < MAX_SAMPLES:
                self.values.append(value)
            else:
                k = self._rng.randrange(self.seen)
                if k < MAX_SAMPLES:
                    self.values[k] = value


class Session:
    """Open with :meth:`start`, close with :meth:`finish`, which returns the baseline document."""

    def __init__(self, *, sample_rate: float = 1.0, first_samples: int = 0) -> None:
        self.sample_rate = sample_rate
        self.first_samples = first_samples
        self._functions: dict[str, list[Any]] = {}
        self._samples: dict[str, _Samples] = {}
        self._saved_settings: Any = None
        self._lock = threading.Lock()

    def start(self) -> Session:
        manifest.add_observer(self)
        return self

    # --- observer hooks (called by the jit wrapper, via jaxobs.runtime.manifest) ---------------
    def on_track(self, ijit: Any) -> None:
        """A function is being created: time every steady call of it from now on."""
        from jaxobs.runtime import jit

        if self._saved_settings is None:
            self._saved_settings = jit.configure()
        jit.configure(sample_rate=self.sample_rate, first_samples=self.first_samples)
        with self._lock:
            self._functions.setdefault(ijit.name, []).append(ijit)

    def on_compile(self, ijit: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """First compile of a function: keep its kernel-latency samples (before any steady call)."""
        if isinstance(getattr(ijit, "_kernel", None), _Tee):
            return
        with self._lock:
            sink = self._samples.setdefault(ijit.name, _Samples(len(self._samples)))
        ijit._kernel = _Tee(ijit._kernel, sink)

    # --- the result -------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Stop watching, restore the sampling settings, and return the baseline document."""
        manifest.remove_observer(self)
        if self._saved_settings is not None:
            from jaxobs.runtime import jit

            s = self._saved_settings
            jit.configure(sample_rate=s.sample_rate, first_samples=s.first_samples, analyze=s.analyze)
        functions = {}
        with self._lock:
            items = sorted(self._functions.items())
        for name, ijits in items:
            try:
                functions[name] = self._function_record(name, ijits)
            except Exception as exc:
                report_internal_error("baseline", exc)
        return {"format": FORMAT, "version": VERSION, "versions": _versions(), "functions": functions}

    def _function_record(self, name: str, ijits: list[Any]) -> dict[str, Any]:
        recorders = {id(f._recorder): f._recorder for f in ijits}.values()
        compiles = 0.0
        phases = dict.fromkeys(PHASES, 0.0)
        gauges: dict[str, float | None] = {"flops": None, "bytes_accessed": None,
                                           "peak_memory_bytes": None, "fusions": None}
        specs = {"flops": catalog.FUNCTION_FLOPS, "bytes_accessed": catalog.FUNCTION_BYTES_ACCESSED,
                 "peak_memory_bytes": catalog.FUNCTION_PEAK_MEMORY, "fusions": catalog.FUNCTION_FUSIONS}
        for rec in recorders:
            for labels, series in rec.family(catalog.COMPILATIONS).items():
                if labels[0] == name:
                    compiles += series.value()  # type: ignore[attr-defined]
            for labels, series in rec.family(catalog.COMPILE_DURATION).items():
                if labels[0] == name and labels[1] in phases:
                    phases[labels[1]] += series.snapshot()[1]  # type: ignore[attr-defined]
            for key, spec in specs.items():
                series = rec.family(spec)._series.get((name,))
                if series is not None:
                    value = series.value()  # type: ignore[attr-defined]
                    gauges[key] = value if gauges[key] is None else max(gauges[key] or 0.0, value)
        samples = self._samples.get(name)
        return {
            "compiles": int(compiles),
            "compile_seconds": {k: round(v, 6) for k, v in phases.items()},
            **gauges,
            "kernel_seconds": [round(v, 9) for v in (samples.values if samples else [])],
        }


def _versions() -> dict[str, str]:
    try:
        from jaxobs.runtime.buildinfo import build_info_labels

        return dict(build_info_labels())
    except Exception:  # no jax in this process: nothing was instrumented either
        return {}


def merge(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One baseline from several processes of one run (a bench that forks, pytest-xdist)."""
    out: dict[str, Any] = {"format": FORMAT, "version": VERSION, "versions": {}, "functions": {}}
    for doc in docs:
        out["versions"] = doc.get("versions") or out["versions"]
        for name, rec in doc.get("functions", {}).items():
            have = out["functions"].get(name)
            if have is None:
                out["functions"][name] = {**rec, "kernel_seconds": list(rec.get("kernel_seconds", []))}
                continue
            have["compiles"] += rec.get("compiles", 0)
            for phase, seconds in rec.get("compile_seconds", {}).items():
                have["compile_seconds"][phase] = have["compile_seconds"].get(phase, 0.0) + seconds
            for key in ("flops", "bytes_accessed", "peak_memory_bytes", "fusions"):
                values = [v for v in (have.get(key), rec.get(key)) if v is not None]
                have[key] = max(values) if values else None
            have["kernel_seconds"] = (have["kernel_seconds"] + rec.get("kernel_seconds", []))[:MAX_SAMPLES]
    out["functions"] = dict(sorted(out["functions"].items()))
    return out
