"""Determinism checks (failure mode F4: non-deterministic outputs from incorrect PRNG use).

Both checks run the function more than once and compare the output pytrees
leaf by leaf, so a failure names the first differing leaf by its path with the
size of the difference, instead of "arrays not equal":

* :func:`assert_deterministic` — same arguments (same key) twice must give the
  same result.  If not, the function draws randomness from somewhere other
  than its key: numpy or Python ``random``, a global or stateful object, the
  clock, or non-deterministic device reductions.
* :func:`assert_uses_key` — a *different* key must change the result.  If it
  does not, the key is ignored: typically a key built inside the function
  (``jax.random.PRNGKey(0)`` on every call), so every call draws the same
  "random" numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


class NondeterminismError(AssertionError):
    """Outputs that should match differ; ``.difference`` locates the first differing leaf."""

    def __init__(self, message: str, difference: LeafDifference | None) -> None:
        super().__init__(message)
        self.difference = difference


class KeyIgnoredError(AssertionError):
    """Different PRNG keys gave identical outputs."""


@dataclass(frozen=True)
class LeafDifference:
    """The first leaf (in pytree flattening order) where two outputs differ."""

    path: str
    what: str  # "structure", "shape", "dtype" or "values"
    description: str
    max_abs_diff: float = float("nan")
    differing: int = 0
    size: int = 0


def first_difference(a: Any, b: Any, *, atol: float = 0.0, rtol: float = 0.0) -> LeafDifference | None:
    """Compare two pytrees; ``None`` when equal (NaNs in the same places count as equal)."""
    import jax

    leaves_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    if tree_a != tree_b:
        return LeafDifference("out", "structure", f"different pytree structure: {tree_a} vs {tree_b}")
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        where = "out" + jax.tree_util.keystr(path)
        if not (hasattr(x, "shape") and hasattr(y, "shape")):
            if x != y:
                return LeafDifference(where, "values", f"{x!r} vs {y!r}")
            continue
        xa, ya = _numpy(x), _numpy(y)
        if xa.shape != ya.shape:
            return LeafDifference(where, "shape", f"shape {xa.shape} vs {ya.shape}")
        if xa.dtype != ya.dtype:
            return LeafDifference(where, "dtype", f"dtype {xa.dtype} vs {ya.dtype}")
        if xa.dtype.kind in "fc":
            equal = np.isclose(xa, ya, atol=atol, rtol=rtol, equal_nan=True)
        else:
            equal = xa == ya
        if np.all(equal):
            continue
        bad = ~np.asarray(equal)
        diff = np.abs(xa.astype(np.float64) - ya.astype(np.float64)) if xa.dtype.kind in "biufc" else None
        max_diff = float(np.nanmax(np.where(bad, diff, 0))) if diff is not None else float("nan")
        first = tuple(int(i) for i in np.argwhere(bad)[0]) if xa.ndim else ()
        where_elem = f" at {list(first)}" if first else ""
        pair = f"{_fmt(xa[first])} vs {_fmt(ya[first])}"
        return LeafDifference(
            where, "values",
            f"{_short_type(xa)}: {int(bad.sum())} of {xa.size} elements differ, "
            f"max abs diff {max_diff:.6g}; first{where_elem}: {pair}",
            max_diff, int(bad.sum()), int(xa.size))
    return None


def assert_deterministic(fn: Callable[..., Any], *args: Any, runs: int = 2, atol: float = 0.0,
                         rtol: float = 0.0, **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` ``runs`` times (same arguments, so the same PRNG key);
    raise :class:`NondeterminismError` naming the first differing output leaf.

    Returns the first run's output.  Exact equality by default; pass
    ``atol``/``rtol`` for functions whose device reductions are allowed to
    vary in the last bits.
    """
    __tracebackhide__ = True
    if runs < 2:
        raise ValueError("runs must be >= 2")
    first = fn(*args, **kwargs)
    for run in range(2, runs + 1):
        again = fn(*args, **kwargs)
        diff = first_difference(first, again, atol=atol, rtol=rtol)
        if diff is not None:
            name = getattr(fn, "__name__", repr(fn))
            raise NondeterminismError(
                f"non-deterministic output from {name} (F4): run {run} differs from run 1 with the same "
                f"arguments (the same PRNG key)\n"
                f"  first differing leaf: {diff.path}: {diff.description}\n"
                f"  Same key, different result: {name} draws randomness from somewhere other than its "
                f"key (numpy or Python random, a global or stateful object, the clock) or runs "
                f"non-deterministic device ops.", diff)
    return first


def assert_uses_key(fn: Callable[..., Any], *args: Any, key_argnum: int = 0, **kwargs: Any) -> None:
    """Call ``fn`` with the key at ``args[key_argnum]`` and with a different key split from it;
    raise :class:`KeyIgnoredError` if every output leaf is identical.

    Catches functions that ignore the key they are given and draw from a
    constant key of their own, so "random" results repeat on every call.
    """
    __tracebackhide__ = True
    import jax

    key = args[key_argnum]
    other = jax.random.split(key)[1]
    args_other = args[:key_argnum] + (other,) + args[key_argnum + 1:]
    out = fn(*args, **kwargs)
    out_other = fn(*args_other, **kwargs)
    if first_difference(out, out_other) is None:
        name = getattr(fn, "__name__", repr(fn))
        raise KeyIgnoredError(
            f"{name} ignores its PRNG key (F4): two different keys (argument {key_argnum}) gave identical "
            f"outputs.\n  Is a key created inside the function (jax.random.PRNGKey(0) / jax.random.key(0) "
            f"on every call)?  Derive every draw from the key argument, splitting it per use.")


def _fmt(v: Any) -> str:
    item = v.item() if hasattr(v, "item") else v
    return f"{item:.6g}" if isinstance(item, float) else repr(item)


def _numpy(x: Any) -> np.ndarray:
    """A host copy; typed PRNG keys compare by their key data."""
    import jax

    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def _short_type(x: np.ndarray) -> str:
    return f"{x.dtype}[{','.join(map(str, x.shape))}]"
