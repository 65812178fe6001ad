"""Does a sampled call's output hold NaN or ±Inf?

Runs only on sampled calls, after ``block_until_ready``, so the output is
already computed.  Where it lives decides how to look:

* on the host (an array on one CPU device), numpy views the buffer without a
  copy: a few microseconds, no dispatch and no wait for another thread;
* on an accelerator, one jitted, fused reduction runs where the data is and
  only its one-byte answer crosses to the host (copying the output back would
  cost far more).  It compiles once per output structure; that compile is
  jaxobs' own, so it is kept out of the user's compile metrics.

A dtype numpy cannot test on the host falls back to the reduction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxobs.runtime import compile_events

#: dtype -> floating point (real or complex)?  ``jnp.issubdtype`` also knows JAX's own
#: dtypes (bfloat16, float8…) but costs ~1.5 µs a call; a sampled call pays a dict look-up.
_inexact: dict[Any, bool] = {}


def _is_inexact(dtype: Any) -> bool:
    known = _inexact.get(dtype)
    if known is None:
        known = _inexact[dtype] = bool(jax.numpy.issubdtype(dtype, jax.numpy.inexact))
    return known


def _on_host(leaf: Any) -> bool:
    """One CPU buffer, which numpy views without a copy.  An array sharded over
    several CPU devices would be gathered into a new host copy: the reduction is cheaper."""
    try:
        devices = leaf.devices()
        return len(devices) == 1 and next(iter(devices)).platform == "cpu"
    except Exception:  # not a jax.Array
        return False


@functools.lru_cache(maxsize=1)
def _nonfinite_reduction() -> Callable[[list[Any]], Any]:
    """One jitted, fused reduction: does any leaf hold a NaN or an infinity?"""
    import jax.numpy as jnp

    def _jaxobs_nonfinite_check(leaves: list[Any]) -> Any:  # named so test guards can skip it
        flags = [jnp.logical_not(jnp.all(jnp.isfinite(leaf))) for leaf in leaves]
        return jnp.any(jnp.stack(flags))

    return jax.jit(_jaxobs_nonfinite_check)


def has_nonfinite(out: Any) -> bool:
    """Whether any floating-point leaf of ``out`` holds NaN or ±Inf."""
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(out)
              if hasattr(leaf, "dtype") and _is_inexact(leaf.dtype)]
    if not leaves:
        return False
    if all(_on_host(leaf) for leaf in leaves):
        try:
            return not all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in leaves)
        except TypeError:  # a dtype without numpy's isfinite: ask JAX
            pass
    with compile_events.ignoring_compiles():
        return bool(_nonfinite_reduction()(leaves))
