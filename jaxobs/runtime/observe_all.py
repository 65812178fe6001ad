"""Zero-code mode: compile telemetry for every ``jax.jit`` in the process.

Most jits in a real program are not the user's: Flax, Optax and Orbax call
``jax.jit`` internally.  JAX reports every compile phase through
``jax.monitoring`` with the function's name (``fun_name``), so
:func:`observe_all` can record compile time per phase and compile counts for
all of them without wrapping anything — and without any per-call cost, because
steady calls emit no event.  What this mode cannot see (calls, cache hits, cold
starts, kernel latency, errors, the cause of a recompile) needs ``jaxobs.jit``.

A compile that happens inside a ``jaxobs.jit`` call is left to that function's
own series (its frame owns the event), so a function both wrapped and seen here
is counted once.  Names are capped: past ``max_functions`` distinct names,
compiles are filed under ``function="_other"`` so a program that creates jits
in a loop cannot grow the series without bound.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from jaxobs import catalog
from jaxobs.runtime import compile_events
from jaxobs.telemetry import recorder_for
from jaxobs.telemetry.internal_errors import report_internal_error
from jaxobs.telemetry.recorder import Recorder

OVERFLOW = "_other"
#: the cause of a compile is unknown without the call's arguments
CAUSE = "other"
_WRAPPED_NAME = re.compile(r"^p?jit\((?P<name>.*)\)$")


class _ProcessWide:
    """Files each unowned compile phase under the (normalised, capped) function name."""

    def __init__(self, rec: Recorder, max_functions: int) -> None:
        self._rec = rec
        self._max = max_functions
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def label(self, fun_name: str | None) -> str:
        name = fun_name or "anonymous"
        m = _WRAPPED_NAME.match(name)  # JAX names the lower/backend phases "jit(f)"
        if m is not None:
            name = m.group("name")
        if name in self._names:
            return name
        with self._lock:
            if len(self._names) >= self._max:
                return OVERFLOW
            self._names.add(name)
        return name

    def __call__(self, phase: str, duration: float, fun_name: str | None) -> None:
        try:
            name = self.label(fun_name)
            self._rec.histogram(catalog.COMPILE_DURATION, name, phase).observe(duration)
            if phase == "backend":  # one backend compile per compilation
                self._rec.counter(catalog.COMPILATIONS, name, CAUSE).inc()
        except Exception as exc:
            report_internal_error("observe_all", exc)


def observe_all(*, registry: Any = None, max_functions: int = 200) -> Callable[[], None]:
    """Record compile time and counts for every ``jax.jit`` in the process, wrapped or not.

    ``registry``: where the series go (default: prometheus-client's global one);
    ``max_functions``: distinct ``function`` label values before ``"_other"``.
    Persistent compilation cache metrics are recorded process-wide already.
    Returns a function that switches this mode off again.  Calling
    ``observe_all`` again replaces the earlier set-up.
    """
    if max_functions < 1:
        raise ValueError(f"max_functions must be at least 1, got {max_functions!r}")
    sink = _ProcessWide(recorder_for(registry), max_functions)
    compile_events.set_unowned_sink(sink)

    def stop() -> None:
        if compile_events._unowned_sink is sink:
            compile_events.set_unowned_sink(None)

    return stop
