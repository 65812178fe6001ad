"""jaxobs: observability and SLO toolkit for JAX workloads.

The public API — everything else is an implementation detail::

    @jaxobs.jit                       # drop-in for jax.jit
    jaxobs.instrument(jitted_fn)      # wrap an existing jitted function
    with jaxobs.request("predict"):   # SLI events (also a decorator); jaxobs.step for training
    jaxobs.warmup(fn, *example_args)  # precompile before taking traffic
    jaxobs.save_manifest("shapes.json")  # the shapes this process compiled, for
    jaxobs.run_warmups(manifest="shapes.json")  # a warm restart
    jaxobs.start_http_server(9464)    # serve /metrics

Names are loaded lazily (PEP 562) so that the sidecar exporter and the
generators, which live in this package, never import jax (docs/architecture.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"  # the one source: pyproject.toml reads it from here

__all__ = [
    "GoodputSummary",
    "GoodputTracker",
    "InstrumentedJit",
    "MetricsServerError",
    "PortInUseError",
    "__version__",
    "canary",
    "compile_probe",
    "configure",
    "deploy_window",
    "flush_multiprocess",
    "instrument",
    "internal_error_counts",
    "is_ready",
    "jit",
    "mark_cold",
    "register_warmup",
    "request",
    "run_warmups",
    "save_manifest",
    "set_deploy_in_progress",
    "set_ready",
    "start_http_server",
    "step",
    "warmup",
]

#: where each lazily loaded public name lives
_HOMES: dict[str, str] = {
    "GoodputSummary": "jaxobs.runtime.goodput",
    "GoodputTracker": "jaxobs.runtime.goodput",
    "InstrumentedJit": "jaxobs.runtime.jit",
    "MetricsServerError": "jaxobs.telemetry.prometheus",
    "PortInUseError": "jaxobs.telemetry.prometheus",
    "canary": "jaxobs.runtime.canary",
    "compile_probe": "jaxobs.runtime.sli",
    "configure": "jaxobs.runtime.jit",
    "deploy_window": "jaxobs.runtime.readiness",
    "flush_multiprocess": "jaxobs.telemetry.prometheus",
    "instrument": "jaxobs.runtime.jit",
    "internal_error_counts": "jaxobs.telemetry.internal_errors",
    "is_ready": "jaxobs.runtime.readiness",
    "jit": "jaxobs.runtime.jit",
    "mark_cold": "jaxobs.runtime.sli",
    "register_warmup": "jaxobs.runtime.readiness",
    "request": "jaxobs.runtime.sli",
    "run_warmups": "jaxobs.runtime.readiness",
    "save_manifest": "jaxobs.runtime.manifest",
    "set_deploy_in_progress": "jaxobs.runtime.readiness",
    "set_ready": "jaxobs.runtime.readiness",
    "start_http_server": "jaxobs.telemetry.prometheus",
    "step": "jaxobs.runtime.sli",
    "warmup": "jaxobs.runtime.readiness",
}


def __getattr__(name: str) -> Any:
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from jaxobs.runtime.canary import canary
    from jaxobs.runtime.goodput import GoodputSummary, GoodputTracker
    from jaxobs.runtime.jit import InstrumentedJit, configure, instrument, jit
    from jaxobs.runtime.manifest import save_manifest
    from jaxobs.runtime.readiness import (
        deploy_window,
        is_ready,
        register_warmup,
        run_warmups,
        set_deploy_in_progress,
        set_ready,
        warmup,
    )
    from jaxobs.runtime.sli import compile_probe, mark_cold, request, step
    from jaxobs.telemetry.internal_errors import internal_error_counts
    from jaxobs.telemetry.prometheus import (
        MetricsServerError,
        PortInUseError,
        flush_multiprocess,
        start_http_server,
    )
