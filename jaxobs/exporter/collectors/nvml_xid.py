"""XID errors from NVML's event API, counted on a background thread.

XID events are pushed by the driver, not polled: ``nvmlEventSetWait_v2``
blocks (in C, without the GIL) until an event or the timeout.  A scrape only
reads the counts, so it never waits on the driver.  Counters only grow for the
life of the process (they are ``_total`` counters; a restart is a reset).

Events are attributed to a GPU by its handle first (works even when the GPU
has just fallen off the bus) and by UUID as a fallback.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import Counter
from typing import Any

from jaxobs.telemetry.collector import FailureLatch

logger = logging.getLogger("jaxobs.exporter.collectors.nvml")


def handle_key(handle: Any) -> int:
    """A hashable identity for an NVML device handle.

    Real handles are ctypes pointers, and NVML returns a *new* pointer object
    in each event, so compare the address they point to; other handle objects
    (test doubles, future bindings) compare by identity.
    """
    try:
        return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


class XidWatcher:
    """Counts ``(uuid, xid)`` pairs reported by NVML until :meth:`stop`."""

    def __init__(self, nvml: Any, gpus: dict[int, str], poll_ms: int = 500) -> None:
        """``gpus`` maps :func:`handle_key` of each handle to the GPU's UUID."""
        self._nvml = nvml
        self._gpus = gpus
        self._poll_ms = poll_ms
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, int]] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._event_set: Any = None
        self._latch = FailureLatch("collector.nvml.xid")

    def start(self, handles: list[Any]) -> None:
        """Register XID events on every handle that supports them and start waiting."""
        nvml = self._nvml
        self._event_set = nvml.nvmlEventSetCreate()
        registered = 0
        for handle in handles:
            try:
                nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, self._event_set)
                registered += 1
            except nvml.NVMLError as exc:
                # Not supported on this GPU (or it is lost): no XID series for it, no error spam.
                logger.debug("XID events unavailable on a GPU: %s", exc)
        if registered:
            self._thread = threading.Thread(target=self._run, name="jaxobs-nvml-xid", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        nvml = self._nvml
        while not self._stop.is_set():
            try:
                data = nvml.nvmlEventSetWait_v2(self._event_set, self._poll_ms)
            except nvml.NVMLError_Timeout:
                self._latch.ok("wait")
                continue
            except Exception as exc:  # driver trouble: count once, back off, keep watching
                self._latch.fail("wait", exc)
                self._stop.wait(1.0)
                continue
            self._latch.ok("wait")
            if data.eventType & nvml.nvmlEventTypeXidCriticalError:
                self._record(data)

    def _record(self, data: Any) -> None:
        uuid = self._gpus.get(handle_key(data.device))
        if uuid is None:
            try:
                uuid = self._nvml.nvmlDeviceGetUUID(data.device)
            except Exception:
                uuid = "unknown"
        with self._lock:
            self._counts[(uuid, int(data.eventData))] += 1

    def counts(self) -> dict[tuple[str, int], int]:
        with self._lock:
            return dict(self._counts)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll_ms / 1000 + 2)
        if self._event_set is not None:
            try:
                self._nvml.nvmlEventSetFree(self._event_set)
            except Exception:
                pass
            self._event_set = None
