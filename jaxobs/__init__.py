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
    "InstrumentedJit": "jaxobs.instrumented",
    "Settings": "jaxobs.instrumented",
    "configure": "jaxobs.instrumented",
    "instrument": "jaxobs.instrumented",
    "jit": "jaxobs.instrumented",
    "settings": "jaxobs.instrumented",
    "GoodputTracker": "jaxobs.goodput",
    "deploy_window": "jaxobs.readiness",
    "is_ready": "jaxobs.readiness",
    "set_deploy_in_progress": "jaxobs.readiness",
    "register_warmup": "jaxobs.readiness",
    "run_warmups": "jaxobs.readiness",
    "set_ready": "jaxobs.readiness",
    "warmup": "jaxobs.readiness",
    "request": "jaxobs.requests",
    "step": "jaxobs.requests",
    "internal_error_counts": "jaxobs.safety",
    "recorder_for": "jaxobs.telemetry",
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
    from jaxobs.goodput import GoodputTracker
    from jaxobs.instrumented import InstrumentedJit, Settings, configure, instrument, jit, settings
    from jaxobs.readiness import (deploy_window, is_ready, register_warmup, run_warmups,
                                  set_deploy_in_progress, set_ready, warmup)
    from jaxobs.requests import request, step
    from jaxobs.safety import internal_error_counts
    from jaxobs.telemetry import recorder_for
    from jaxobs.telemetry.prometheus import PortInUseError, flush_multiprocess, start_http_server
