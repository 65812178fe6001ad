"""jaxobs: observability and SLO toolkit for JAX workloads.

The public API — everything else is an implementation detail::

    @jaxobs.jit                       # drop-in for jax.jit
    jaxobs.instrument(jitted_fn)      # wrap an existing jitted function
    with jaxobs.request("predict"):   # SLI events (also a decorator); jaxobs.step for training
    jaxobs.warmup(fn, *example_args)  # precompile before taking traffic
    jaxobs.start_http_server(9464)    # serve /metrics

Names are loaded lazily (PEP 562) so that the sidecar exporter and the
generators, which live in this package, never import jax (DESIGN.md §3).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "InstrumentedJit": "jaxobs.runtime.jit",
    "Settings": "jaxobs.runtime.jit",
    "configure": "jaxobs.runtime.jit",
    "instrument": "jaxobs.runtime.jit",
    "jit": "jaxobs.runtime.jit",
    "settings": "jaxobs.runtime.jit",
    "GoodputTracker": "jaxobs.runtime.goodput",
    "deploy_window": "jaxobs.runtime.readiness",
    "is_ready": "jaxobs.runtime.readiness",
    "set_deploy_in_progress": "jaxobs.runtime.readiness",
    "register_warmup": "jaxobs.runtime.readiness",
    "run_warmups": "jaxobs.runtime.readiness",
    "set_ready": "jaxobs.runtime.readiness",
    "warmup": "jaxobs.runtime.readiness",
    "request": "jaxobs.runtime.sli",
    "step": "jaxobs.runtime.sli",
    "internal_error_counts": "jaxobs.telemetry.internal_errors",
    "recorder_for": "jaxobs.telemetry",
    "MetricsServerError": "jaxobs.telemetry.prometheus",
    "PortInUseError": "jaxobs.telemetry.prometheus",
    "flush_multiprocess": "jaxobs.telemetry.prometheus",
    "start_http_server": "jaxobs.telemetry.prometheus",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover
    from jaxobs.runtime.goodput import GoodputTracker
    from jaxobs.runtime.jit import InstrumentedJit, Settings, configure, instrument, jit, settings
    from jaxobs.runtime.readiness import (deploy_window, is_ready, register_warmup, run_warmups,
                                  set_deploy_in_progress, set_ready, warmup)
    from jaxobs.runtime.sli import request, step
    from jaxobs.telemetry.internal_errors import internal_error_counts
    from jaxobs.telemetry import recorder_for
    from jaxobs.telemetry.prometheus import (MetricsServerError, PortInUseError, flush_multiprocess,
                                             start_http_server)
