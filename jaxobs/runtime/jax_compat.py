"""The JAX internals jaxobs reads, each with a public fallback.

``jaxobs.jit`` asks "is this call being traced (by an outer ``jit``, ``grad``,
``vmap`` …) or run?" on every call.  The cheapest answer is one attribute read
of JAX's private trace state (``jax._src.core.trace_state_strong_ref`` compared
with ``eval_trace``), which JAX can move in any release.  Importing jaxobs must
never fail because of that: when the internals are gone, jaxobs falls back to a
public check — is any argument leaf a ``jax.core.Tracer``? — which costs a
pytree flatten per call, logs one warning and counts
``jaxobs_internal_errors_total{component="jax_internals"}``.

The fallback cannot see a trace whose arguments are all concrete (a jaxobs
function called inside an outer ``jit`` with only closed-over constants): such
calls are then counted as calls.  Results are never affected.
"""

from __future__ import annotations

from typing import Any

import jax

from jaxobs.telemetry.internal_errors import report_internal_error

COMPONENT = "jax_internals"


class _Unavailable:
    """Stands in for the trace state when JAX moved it: ``.value`` is always the eval marker."""

    __slots__ = ()
    value: Any = None


def trace_state() -> tuple[Any, Any, bool]:
    """``(state, eval_trace, exact)``: ``state.value is not eval_trace`` means "tracing".

    ``exact`` is False when the internals moved; callers must then also ask
    :func:`has_tracer`.  Reports the move once (at import of ``jaxobs.jit``).
    """
    try:
        from jax._src import core

        state, eval_trace = core.trace_state_strong_ref, core.eval_trace
        state.value  # noqa: B018 - the attribute the hot path reads must exist
        eval_type = getattr(core, "EvalTrace", None)
        if eval_type is not None and not isinstance(eval_trace, eval_type):
            raise TypeError(f"jax._src.core.eval_trace is a {type(eval_trace).__name__}")
        return state, eval_trace, True
    except Exception as exc:
        report_internal_error(COMPONENT, RuntimeError(
            f"JAX moved the trace state jaxobs reads ({exc}); falling back to checking "
            "arguments for jax.core.Tracer, which costs a little per call"))
        return _Unavailable(), None, False


def has_tracer(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """The public "being traced?" test: any argument leaf is a ``jax.core.Tracer``."""
    tracer = jax.core.Tracer
    return any(isinstance(leaf, tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs)))


_reported: set[str] = set()


def cache_size_of(jitted: Any) -> Any:
    """``jitted._cache_size`` (the dispatch cache's size), or a constant when JAX lacks it.

    Used by the self-check that notices compiles JAX did not report (renamed
    compile events); without it that check is off, which is reported once.
    """
    size = getattr(jitted, "_cache_size", None)
    if callable(size):
        return size
    if "_cache_size" not in _reported:
        _reported.add("_cache_size")
        report_internal_error(COMPONENT, RuntimeError(
            f"{type(jitted).__name__} has no _cache_size(); compiles JAX does not report "
            "through jax.monitoring will go unnoticed"))
    return _zero


def _zero() -> int:
    return 0
