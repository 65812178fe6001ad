"""Telemetry backends: where recorded series go.

Every backend reads the same in-process :class:`~jaxobs.telemetry.recorder.Recorder`.
:func:`recorder_for` binds one recorder to one prometheus-client registry
(``registry=None`` means the global ``REGISTRY``), mirroring prometheus-client's
"every constructor takes ``registry=``" idiom so users and tests can isolate.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from jaxobs.telemetry.recorder import Recorder

_lock = threading.Lock()
_recorders: dict[int, tuple[Any, Recorder]] = {}


def recorder_for(registry: Any = None) -> Recorder:
    """The recorder exposed through ``registry`` (created and registered on first use)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    entry = _recorders.get(id(registry))
    if entry is not None and entry[0] is registry:
        return entry[1]
    with _lock:
        entry = _recorders.get(id(registry))
        if entry is not None and entry[0] is registry:
            return entry[1]
        recorder = Recorder()
        from jaxobs.telemetry.prometheus import attach

        attach(recorder, registry)
        _recorders[id(registry)] = (registry, recorder)
        if os.environ.get("JAXOBS_BACKEND") and _is_global(registry):
            _install_env_backends(recorder)
        return recorder


def _is_global(registry: Any) -> bool:
    from prometheus_client import REGISTRY

    return registry is REGISTRY


def _install_env_backends(recorder: Recorder) -> None:
    """``JAXOBS_BACKEND=otel``: also export the default recorder through OpenTelemetry."""
    try:
        from jaxobs.telemetry.opentelemetry import install_from_env

        install_from_env(recorder)
    except Exception as exc:  # never break the instrumented program
        from jaxobs.telemetry.internal_errors import report_internal_error

        report_internal_error("otel_backend", exc)

