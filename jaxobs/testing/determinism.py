"""Determinism checks: non-deterministic outputs from incorrect PRNG use.

Both checks run the function more than once and compare the output pytrees
leaf by leaf, so a failure names the first differing leaf by its path with the
size of the difference, instead of "arrays not equal":

* :func:`assert_deterministic` — same arguments (same key) twice must give the
  same result.  If not, the function draws randomness from somewhere other
  than its key: numpy or Python ``random``, a global or stateful object, the
  clock, or non-deterministic device reductions.
* :func:`assert_uses_key` — *different* keys must change the result.  If none
  of several keys split from the given one does, the key is ignored: typically
  a key built inside the function (``jax.random.PRNGKey(0)`` on every call), so
  every call draws the same "random" numbers.  Several keys, because one other
  key can give the same output by chance (a scalar ``bernoulli`` does half the
  time).
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
    if tree_a != tree_b:  # type: ignore[operator]  # PyTreeDef defines equality; its stub does not
        return LeafDifference("out", "structure", f"different pytree structure: {tree_a} vs {tree_b}")
    for (path, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
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
                f"non-deterministic output from {name}: run {run} differs from run 1 with the same "
                f"arguments (the same PRNG key)\n"
                f"  first differing leaf: {diff.path}: {diff.description}\n"
                f"  Same key, different result: {name} draws randomness from somewhere other than its "
                f"key (numpy or Python random, a global or stateful object, the clock) or runs "
                f"non-deterministic device ops.", diff)
    return first


def assert_uses_key(fn: Callable[..., Any], *args: Any, key_argnum: int | None = None,
                    key_argname: str | None = None, tries: int = 16, **kwargs: Any) -> None:
    """Call ``fn`` with its key and with up to ``tries`` other keys split from it; raise
    :class:`KeyIgnoredError` only if every output is identical to the first.

    The key is found in ``args[key_argnum]`` (default 0), or in the keyword
    argument ``key_argname``; with neither given, the first argument or keyword
    argument holding a PRNG key is used.  The argument may be a pytree: every
    key inside it (typed keys, or legacy ``uint32[..., 2]`` keys) is replaced.
    Catches functions that ignore the key they are given and draw from a
    constant key of their own, so "random" results repeat on every call.
    """
    __tracebackhide__ = True
    import jax

    if tries < 1:
        raise ValueError("tries must be >= 1")
    where, container = _locate_key(fn, args, kwargs, key_argnum, key_argname)
    out = fn(*args, **kwargs)
    keys = _key_leaves(container)
    # One split per try: a different key for every key leaf of the argument in each try.
    streams = [jax.random.split(_typed(leaf), tries) for leaf in keys]
    for t in range(tries):
        other = _replace_keys(container, [_like(leaf, stream[t]) for leaf, stream in zip(keys, streams, strict=True)])
        call_args, call_kwargs = list(args), dict(kwargs)
        if isinstance(where, int):
            call_args[where] = other
        else:
            call_kwargs[where] = other
        if first_difference(out, fn(*call_args, **call_kwargs)) is not None:
            return
    name = getattr(fn, "__name__", repr(fn))
    what = f"argument {where}" if isinstance(where, int) else f"keyword argument {where!r}"
    raise KeyIgnoredError(
        f"{name} ignores its PRNG key: {tries + 1} different keys ({what}) all gave identical outputs.\n"
        f"  Is a key created inside the function (jax.random.PRNGKey(0) / jax.random.key(0) on every "
        f"call)?  Derive every draw from the key argument, splitting it per use.")


def _is_key(x: Any) -> bool:
    """A typed PRNG key, or a legacy raw key (``uint32`` with a trailing dimension of 2)."""
    import jax

    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    shape: tuple[int, ...] = tuple(getattr(x, "shape", ()))
    return np.dtype(dtype) == np.uint32 and len(shape) >= 1 and shape[-1] == 2


def _replace_keys(tree: Any, new_keys: list[Any]) -> Any:
    """``tree`` with its key leaves replaced, in order, by ``new_keys``."""
    import jax

    replacements = iter(new_keys)
    return jax.tree_util.tree_map(lambda leaf: next(replacements) if _is_key(leaf) else leaf, tree,
                                  is_leaf=_is_key)


def _key_leaves(tree: Any) -> list[Any]:
    import jax

    return [leaf for leaf in jax.tree_util.tree_leaves(tree, is_leaf=_is_key) if _is_key(leaf)]


def _typed(key: Any) -> Any:
    """A typed key for splitting (a batch of keys is reduced to its first)."""
    import jax

    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return key.reshape(-1)[0] if key.ndim else key


def _like(original: Any, new: Any) -> Any:
    """``new`` (a typed key) in the form of ``original``: typed or raw, same batch shape."""
    import jax
    import jax.numpy as jnp

    typed = jax.dtypes.issubdtype(original.dtype, jax.dtypes.prng_key)
    batch = tuple(original.shape if typed else original.shape[:-1])
    if batch:
        new = jax.random.split(new, int(np.prod(batch))).reshape(batch)
    return new if typed else jnp.asarray(jax.random.key_data(new), original.dtype)


def _locate_key(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                key_argnum: int | None, key_argname: str | None) -> tuple[int | str, Any]:
    """(position or keyword, the argument) holding the key; a clear error if there is none."""
    name = getattr(fn, "__name__", repr(fn))
    if key_argname is not None:
        if key_argname not in kwargs:
            raise TypeError(f"assert_uses_key: key_argname={key_argname!r}, but {name} was given no keyword "
                            f"argument of that name (keywords: {sorted(kwargs) or 'none'})")
        candidates: list[tuple[int | str, Any]] = [(key_argname, kwargs[key_argname])]
    elif key_argnum is not None:
        if not -len(args) <= key_argnum < len(args):
            raise TypeError(f"assert_uses_key: key_argnum={key_argnum}, but only {len(args)} positional "
                            f"arguments were given for {name}")
        candidates = [(key_argnum % len(args), args[key_argnum])]
    else:
        candidates = [*enumerate(args), *kwargs.items()]
    for where, value in candidates:
        if _key_leaves(value):
            return where, value
    what = ("argument " + (repr(key_argname) if key_argname is not None else str(key_argnum))
            if key_argname is not None or key_argnum is not None else "any argument")
    raise TypeError(f"assert_uses_key: no PRNG key in {what} of {name}: pass the key (jax.random.key(...) or "
                    f"jax.random.PRNGKey(...)) and say where with key_argnum= or key_argname=")


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
