"""Failures inside jaxobs are counted and logged once, never raised to the user.

Observability must not break the program it observes.  Every
listener, collector and backend call that could fail goes through
:func:`report_internal_error`, which bumps
``jaxobs_internal_errors_total{component}`` and logs the first failure of each
component with its traceback (later ones at debug level, so a broken collector
cannot flood the log).
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("jaxobs")

_lock = threading.Lock()
_counts: dict[str, int] = {}



def report_internal_error(component: str, exc: BaseException | None = None) -> None:
    """Count one internal failure of ``component``; log the first one loudly."""
    try:
        with _lock:
            first = component not in _counts
            _counts[component] = _counts.get(component, 0) + 1
        if first:
            logger.warning("jaxobs: internal error in %s (counted in jaxobs_internal_errors_total; "
                           "further ones are logged at debug level)", component, exc_info=exc)
        else:
            logger.debug("jaxobs: internal error in %s", component, exc_info=exc)
    except Exception:  # pragma: no cover - logging itself failed; nothing left to do safely
        pass


def internal_error_counts() -> dict[str, int]:
    """A snapshot of internal error counts by component (read by the backends)."""
    with _lock:
        return dict(_counts)
