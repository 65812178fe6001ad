"""The server's SLI events, recorded so that they mean what the SLOs say.

Why not simply ``with jaxobs.request(...)`` around the handler?  Three
details decide whether an SLI can be trusted, and a batching HTTP server has
to control all three itself:

* **Timing starts at arrival**: when the request line was read, before the
  headers and body are parsed and before the request waits for a batcher
  slot — the time the client feels.
* **Client errors (4xx) are in no SLI**: a malformed request is neither an
  error of the service nor a latency sample.
* **The latency histogram holds successes only**: a failure that returns in
  1 ms would otherwise make the latency SLI look better the more requests fail.

So the handler records the catalog's request series directly: the same names
and labels ``jaxobs.request`` writes (``jaxobs_requests_total{outcome}``,
``jaxobs_request_duration_seconds{start}``, ``jaxobs_requests_in_flight``), so
the generated rules and dashboards work unchanged.  Refused requests (full
queue) go to ``jaxobs_requests_rejected_total{reason="overload"}``, not to the
errors of the model.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry import recorder_for


class RequestSLIs:
    """Outcome, latency and in-flight count of one service's requests."""

    def __init__(self, service: str, registry: Any = None) -> None:
        rec = recorder_for(registry)
        self._ok = rec.counter(catalog.REQUESTS, service, "ok")
        self._error = rec.counter(catalog.REQUESTS, service, "error")
        self._steady = rec.histogram(catalog.REQUEST_DURATION, service, "steady")
        self._cold = rec.histogram(catalog.REQUEST_DURATION, service, "cold")
        self._in_flight = rec.gauge(catalog.REQUESTS_IN_FLIGHT, service)
        self._overload = rec.counter(catalog.REQUESTS_REJECTED, service, "overload")

    def started(self) -> None:
        self._in_flight.inc()

    def succeeded(self, arrival: float, cold: bool) -> None:
        """A prediction was returned: count it and record its latency since ``arrival``."""
        (self._cold if cold else self._steady).observe(perf_counter() - arrival)
        self._ok.inc()
        self._in_flight.dec()

    def failed(self) -> None:
        """The service failed the request (HTTP 500): an availability error, no latency sample."""
        self._error.inc()
        self._in_flight.dec()

    def refused(self) -> None:
        """The queue was full (HTTP 503 + Retry-After): overload, not a model error."""
        self._overload.inc()
        self._in_flight.dec()
