"""A determinism canary: re-run a fixed input on a schedule and compare with a reference.

Silent numerical drift (a new driver, XLA version or flag, nondeterministic GPU
reductions) changes outputs without raising anything.  ``jaxobs.canary(fn, *args)``
runs ``fn`` on a background thread every ``every`` (off the request path; a run
never overlaps the next), compares each output with the first one, or with a
golden file saved by an earlier deploy, and exports
``jaxobs_canary_max_abs_diff{function}``, ``jaxobs_canary_runs_total{function,outcome}``
and ``jaxobs_canary_last_run_timestamp_seconds{function}``.  Failures inside the
canary are counted as ``outcome="error"`` and never reach the application.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxobs import catalog
from jaxobs.telemetry.internal_errors import report_internal_error

logger = logging.getLogger("jaxobs.canary")


def _interval_seconds(every: float | str) -> float:
    if isinstance(every, str):
        from jaxobs.slo import duration

        return float(duration.seconds(every))
    return float(every)


class Canary:
    """A running canary; :meth:`stop` cancels it, :meth:`run_once` runs it in the caller."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 every: float | str = "5m", rtol: float = 0.0, atol: float = 0.0,
                 golden: str | os.PathLike[str] | None = None, name: str | None = None,
                 registry: Any = None) -> None:
        from jaxobs.telemetry import recorder_for

        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.interval = _interval_seconds(every)
        if not self.interval > 0:
            raise ValueError(f"every must be a positive duration, got {every!r}")
        self.rtol, self.atol = float(rtol), float(atol)
        self.golden = Path(golden) if golden is not None else None
        self.name: str = name or str(getattr(fn, "__name__", "canary"))
        rec = recorder_for(registry)
        self._diff = rec.gauge(catalog.CANARY_MAX_ABS_DIFF, self.name)
        self._last = rec.gauge(catalog.CANARY_LAST_RUN, self.name)
        self._runs = {o: rec.counter(catalog.CANARY_RUNS, self.name, o) for o in ("match", "mismatch", "error")}
        for counter in self._runs.values():
            counter.inc(0)  # exposed at 0, so the alert's increase() sees the first mismatch
        self._reference: list[np.ndarray] | None = self._load_golden()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reference -------------------------------------------------------------------------
    def _load_golden(self) -> list[np.ndarray] | None:
        if self.golden is None or not self.golden.exists():
            return None
        with np.load(self.golden, allow_pickle=False) as data:
            return [data[f"leaf_{i}"] for i in range(len(data.files))]

    def _save_golden(self, leaves: list[np.ndarray]) -> None:
        assert self.golden is not None
        self.golden.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.golden.parent, suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                arrays: dict[str, Any] = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
                np.savez(out, **arrays)
            os.replace(tmp, self.golden)  # atomic: a crash never leaves half a golden file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # -- one run ---------------------------------------------------------------------------
    def run_once(self) -> str:
        """Run, compare, record; returns the outcome (match, mismatch or error)."""
        try:
            import jax

            out = jax.block_until_ready(self.fn(*self.args, **self.kwargs))
            leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(out)]
            if self._reference is None:
                self._reference = leaves
                if self.golden is not None:
                    self._save_golden(leaves)
            diff = max_abs_diff(self._reference, leaves)
            self._diff.set(diff)
            same = diff == 0.0 or (np.isfinite(diff) and all(
                np.allclose(a, b, rtol=self.rtol, atol=self.atol, equal_nan=True)
                for a, b in zip(self._reference, leaves, strict=True)))
            outcome = "match" if same else "mismatch"
            if not same:
                logger.warning("jaxobs canary %s: output differs from its reference (max abs diff %g)",
                               self.name, diff)
        except Exception as exc:
            report_internal_error("canary", exc)
            outcome = "error"
        self._runs[outcome].inc()
        self._last.set(time.time())
        return outcome

    # -- schedule --------------------------------------------------------------------------
    def start(self) -> Canary:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"jaxobs-canary-{self.name}", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the schedule; waits for a run in progress (at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> Canary:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def max_abs_diff(reference: list[np.ndarray], leaves: list[np.ndarray]) -> float:
    """Largest absolute difference; infinity when structure, shape or dtype changed."""
    if len(reference) != len(leaves):
        return float("inf")
    worst = 0.0
    for a, b in zip(reference, leaves, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            return float("inf")
        if a.size == 0:
            continue
        if np.issubdtype(a.dtype, np.inexact):
            both_nan = np.isnan(a) & np.isnan(b)
            delta = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
            value = float(np.nanmax(np.where(np.isnan(delta), np.inf, delta)))
        else:
            value = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        worst = max(worst, value)
    return worst


def canary(fn: Callable[..., Any], *example_args: Any, every: float | str = "5m", rtol: float = 0.0,
           atol: float = 0.0, golden: str | os.PathLike[str] | None = None, name: str | None = None,
           registry: Any = None, **example_kwargs: Any) -> Canary:
    """Start a determinism canary for ``fn(*example_args, **example_kwargs)``; returns it running.

    ``golden="canary.npz"``: the first run writes the reference there (atomically) and later
    processes compare with it, so a deploy that changes numerics is caught too.  Exact
    comparison by default; pass ``rtol``/``atol`` for functions that are allowed to wobble.
    """
    return Canary(fn, example_args, example_kwargs, every=every, rtol=rtol, atol=atol, golden=golden,
                  name=name, registry=registry).start()
