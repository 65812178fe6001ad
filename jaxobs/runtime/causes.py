"""Why a function compiled, and what kind of error a call raised: bounded label values.

The cause comes from the argument signature (shapes, dtypes, shardings, static
values, tree structure) compared with the signatures that compiled before, so
the ``cause`` label stays bounded and never contains a shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CAUSES = ("first", "shape", "dtype", "static_arg", "sharding", "other")

@dataclass(frozen=True)
class Signature:
    """What jit keys its cache on, in a comparable form (never exported as labels)."""

    treedef: Any
    statics: tuple[Any, ...]
    leaves: tuple[tuple[Any, ...], ...]  # (shape, dtype, weak_type, sharding) per leaf


def _leaf_signature(x: Any) -> tuple[Any, ...] | None:
    """(shape, dtype, weak, sharding) for array-like leaves; None for static-like leaves."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None and dtype is not None:
        sharding = getattr(x, "sharding", None)
        try:
            hash(sharding)
        except TypeError:
            sharding = repr(sharding)
        return (tuple(shape), str(dtype), bool(getattr(x, "weak_type", False)), sharding)
    if isinstance(x, bool | int | float | complex):
        return ((), type(x).__name__, True, None)
    return None


def _static_key(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        return ("<unhashable>", type(x).__qualname__, id(x))


def signature_of(args: Sequence[Any], kwargs: dict[str, Any],
                 static_argnums: Sequence[int], static_argnames: Sequence[str]) -> Signature:
    import jax

    statics: list[Any] = []
    dyn_args = []
    for i, a in enumerate(args):
        if i in static_argnums:
            statics.append(("arg", i, _static_key(a)))
        else:
            dyn_args.append(a)
    dyn_kwargs = {}
    for k in sorted(kwargs):
        if k in static_argnames:
            statics.append(("kw", k, _static_key(kwargs[k])))
        else:
            dyn_kwargs[k] = kwargs[k]
    leaves, treedef = jax.tree_util.tree_flatten((tuple(dyn_args), dyn_kwargs))
    leaf_sigs = []
    for i, leaf in enumerate(leaves):
        sig = _leaf_signature(leaf)
        if sig is None:  # not an array: jit would need it static; treat its value as static
            statics.append(("leaf", i, _static_key(leaf)))
        else:
            leaf_sigs.append(sig)
    return Signature(treedef, tuple(statics), tuple(leaf_sigs))


def explain(new: Signature, previous: Sequence[Signature]) -> str:
    """The bounded cause of compiling ``new`` after ``previous`` compiled."""
    if not previous:
        return "first"
    same_tree = [p for p in previous if p.treedef == new.treedef and len(p.leaves) == len(new.leaves)]
    if not same_tree:
        return "other"
    same_static = [p for p in same_tree if p.statics == new.statics]
    if not same_static:
        return "static_arg"

    def diff(p: Signature) -> tuple[int, int, int]:
        shapes = sum(a[0] != b[0] for a, b in zip(p.leaves, new.leaves, strict=True))
        dtypes = sum(a[1:3] != b[1:3] for a, b in zip(p.leaves, new.leaves, strict=True))
        # A ShapeDtypeStruct without sharding (warmup) matches any sharding.
        shardings = sum(a[3] != b[3] and a[3] is not None and b[3] is not None
                        for a, b in zip(p.leaves, new.leaves, strict=True))
        return shapes, dtypes, shardings

    shapes, dtypes, shardings = min((diff(p) for p in same_static), key=sum)
    if shapes:
        return "shape"
    if dtypes:
        return "dtype"
    if shardings:
        return "sharding"
    return "other"  # same signature compiled again: cache cleared or evicted


def _leaf_text(leaf: tuple[Any, ...]) -> str:
    shape, dtype, weak, _ = leaf
    return f"{dtype}{'(weak)' if weak else ''}[{','.join(map(str, shape))}]"


def describe(cause: str, new: Signature, previous: Sequence[Signature]) -> str:
    """A readable detail for traces and logs (never a label): what changed, against the closest
    earlier signature, e.g. ``shape: leaf 0 float32[3] -> float32[4]``."""
    if cause in ("first", "other") or not previous:
        return cause
    candidates = [p for p in previous if p.treedef == new.treedef and len(p.leaves) == len(new.leaves)]
    if cause == "static_arg" or not candidates:
        return cause
    closest = min(candidates, key=lambda p: sum(a != b for a, b in zip(p.leaves, new.leaves, strict=True)))
    for i, (old, now) in enumerate(zip(closest.leaves, new.leaves, strict=True)):
        if old[:3] != now[:3]:
            return f"{cause}: leaf {i} {_leaf_text(old)} -> {_leaf_text(now)}"
        if old[3] != now[3] and old[3] is not None and now[3] is not None:
            return f"{cause}: leaf {i} sharding {old[3]} -> {now[3]}"
    return cause


def classify_error(exc: BaseException, compiling: bool, backend_done: bool) -> str:
    """Bounded ``error`` label: oom, trace, compile, runtime or other."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    lowered = text.lower()
    if "resource_exhausted" in lowered or "out of memory" in lowered or "oom" in type(exc).__name__.lower():
        return "oom"
    try:
        from jax.errors import JaxRuntimeError

        runtime_error: type[BaseException] = JaxRuntimeError
    except Exception:  # pragma: no cover - very old jax
        runtime_error = RuntimeError
    if isinstance(exc, runtime_error):
        return "compile" if compiling and not backend_done else "runtime"
    if compiling and not backend_done:
        return "trace"  # the user's Python raised while jax traced it (shape/type errors)
    return "other"
