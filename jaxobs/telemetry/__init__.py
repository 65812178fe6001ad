"""Telemetry backends: where recorded series go.

Every backend reads the same in-process :class:`~jaxobs.recorder.Recorder`.
:func:`recorder_for` binds one recorder to one prometheus-client registry
(``registry=None`` means the global ``REGISTRY``), mirroring prometheus-client's
"every constructor takes ``registry=``" idiom so users and tests can isolate.
"""

from __future__ import annotations

import threading
from typing import Any

from jaxobs.recorder import Recorder

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
        return recorder


def default_recorder() -> Recorder:
    return recorder_for(None)
