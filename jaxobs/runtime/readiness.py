"""Warmup and readiness: precompile known shapes, then report ready.

``/readyz`` (the sidecar) and ``jaxobs_ready`` flip only once every warmup that
was registered has compiled, so a pod takes no traffic while it would still
pay cold starts.  Users without warmups call :func:`set_ready` themselves.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry import recorder_for
from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.recorder import all_recorders

_lock = threading.Lock()
_registered: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
_ready = False


def _instrumented(fn: Any) -> Any:
    from jaxobs.runtime.jit import instrument, instrumented_jit_of

    ijit = instrumented_jit_of(fn)
    return ijit if ijit is not None else instrumented_jit_of(instrument(fn))


def _set_everywhere(spec: catalog.MetricSpec, value: float) -> None:
    """Process-wide flags go to every registry jaxobs writes to (the default one included)."""
    recorder_for(None)
    for rec in all_recorders():
        try:
            rec.gauge(spec).set(value)
        except Exception as exc:
            report_internal_error("readiness", exc)
    from jaxobs.telemetry.prometheus import flush_multiprocess

    flush_multiprocess()  # a sidecar's /readyz should not wait for the next periodic flush


def set_ready(ready: bool = True) -> None:
    """Set ``jaxobs_ready`` (1/0)."""
    global _ready
    _ready = bool(ready)
    _set_everywhere(catalog.READY, 1.0 if ready else 0.0)


def is_ready() -> bool:
    return _ready


def register_warmup(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Declare a shape to precompile; :func:`run_warmups` compiles all declared ones."""
    with _lock:
        _registered.append((_instrumented(fn), args, kwargs))
    set_ready(False)


def run_warmups(manifest: str | os.PathLike[str] | None = None) -> int:
    """Compile every registered warmup, then mark the process ready. Returns how many ran.

    ``manifest`` (default: the ``JAXOBS_MANIFEST`` environment variable) is a
    file written by ``jaxobs.save_manifest``: every signature it recorded for a
    live instrumented function of the same name is compiled too, before
    readiness (:mod:`jaxobs.runtime.manifest`).  Stale signatures are skipped,
    counted and logged.  A bad file passed here raises ``ManifestError``; one
    named by the environment variable is logged and skipped, so a missing
    first manifest never keeps a pod from starting.
    """
    with _lock:
        pending = list(_registered)
        _registered.clear()
    for fn, args, kwargs in pending:
        fn.warmup(*args, **kwargs)
    warmed = _warm_from_manifest(manifest)
    set_ready(True)
    return len(pending) + warmed


def _warm_from_manifest(manifest: str | os.PathLike[str] | None) -> int:
    from jaxobs.runtime import manifest as manifests

    source = manifest if manifest is not None else os.environ.get(manifests.ENV_IN)
    if not source:
        return 0
    try:
        return manifests.warm_from_manifest(source).warmed
    except manifests.ManifestError as exc:
        if manifest is not None:
            raise
        logging.getLogger("jaxobs.manifest").warning("jaxobs: %s (%s); starting without it",
                                                     exc, manifests.ENV_IN)
        return 0


def warmup(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Precompile ``fn`` for these arguments (arrays or ``jax.ShapeDtypeStruct``) via AOT.

    The first real call with matching arguments is then warm.  Returns the
    compiled executable.  Marks the process ready unless registered warmups
    are still pending.
    """
    compiled = _instrumented(fn).warmup(*args, **kwargs)
    with _lock:
        pending = bool(_registered)
    if not pending:
        set_ready(True)
    return compiled


class deploy_window:  # noqa: N801 - used as `with jaxobs.deploy_window():`
    """Mark a deploy: ``jaxobs_deploy_in_progress`` is 1 inside, 0 after.

    The generated Alertmanager config inhibits compile-related alerts while it
    is 1 (new code compiles by design during a rollout).  Use it
    around warmup in a new pod, or call :func:`set_deploy_in_progress` from a
    deploy hook.
    """

    def __enter__(self) -> deploy_window:
        set_deploy_in_progress(True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        set_deploy_in_progress(False)


def set_deploy_in_progress(active: bool) -> None:
    """Set ``jaxobs_deploy_in_progress`` (1/0)."""
    _set_everywhere(catalog.DEPLOY_IN_PROGRESS, 1.0 if active else 0.0)
