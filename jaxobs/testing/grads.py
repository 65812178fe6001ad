"""Gradient check (guide metric M9) with a failure message that says *where* gradients are wrong.

``jax.test_util.check_grads`` is the reference check (JVPs and VJPs against
central differences, up to any order), and it stays the verdict here.  Its
failure text is a single projected number ("VJP cotangent projection …
ACTUAL: -1.14 DESIRED: -1.17"), which tells you *that* a gradient is wrong
but not which parameter.  When it fails, :func:`check_grads` re-derives the
first-order derivatives element by element — autodiff against central
differences of the same scalar projection of the output — and reports the
input leaves (by pytree path) and elements that disagree, worst first.
That diagnosis costs two evaluations per input element, paid only on failure
and capped by ``max_elements``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: JAX's default tolerances for gradient checks (jax._src.public_test_util).
_DEFAULT_TOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-5}
_EPS = 1e-4


class GradientCheckError(AssertionError):
    """Autodiff and numerical derivatives disagree; ``.mismatches`` has the worst elements."""

    def __init__(self, message: str, mismatches: list[Mismatch]) -> None:
        super().__init__(message)
        self.mismatches = mismatches


@dataclass(frozen=True)
class Mismatch:
    """One input element whose derivative disagrees."""

    mode: str  # "rev" (VJP) or "fwd" (JVP)
    path: str  # pytree path of the input leaf, e.g. "args[0]['w']"
    index: tuple[int, ...]
    autodiff: float
    numerical: float

    @property
    def abs_diff(self) -> float:
        return abs(self.autodiff - self.numerical)

    def describe(self) -> str:
        where = self.path + (str(list(self.index)) if self.index else "")
        return (f"{self.mode}: d/d {where}: autodiff {self.autodiff:.6g}, numerical {self.numerical:.6g} "
                f"(abs diff {self.abs_diff:.3g})")


def check_grads(f: Callable[..., Any], args: Sequence[Any], order: int = 1,
                modes: Sequence[str] = ("fwd", "rev"), atol: float | None = None,
                rtol: float | None = None, eps: float | None = None, *,
                max_elements: int = 2000, show: int = 5) -> None:
    """``jax.test_util.check_grads`` with a readable failure (raises :class:`GradientCheckError`).

    Same arguments as JAX's (``args`` is the tuple of positional arguments).
    ``max_elements`` caps the per-element diagnosis, ``show`` the number of
    mismatching elements printed.
    """
    __tracebackhide__ = True
    from jax.test_util import check_grads as jax_check_grads

    args = tuple(args)
    try:
        jax_check_grads(f, args, order, modes=tuple(modes), atol=atol, rtol=rtol, eps=eps)
    except AssertionError as exc:
        jax_says = _first_lines(str(exc))
    else:
        return
    mismatches, checked, total = diagnose(f, args, modes, atol=atol, rtol=rtol, eps=eps,
                                          max_elements=max_elements)
    name = getattr(f, "__name__", repr(f))
    lines = [f"gradient check failed for {name} (order {order}, modes {'/'.join(modes)})"]
    if mismatches:
        leaves = sorted({m.path for m in mismatches})
        lines.append(f"  {len(mismatches)} of {checked} input elements have wrong first-order derivatives, "
                     f"in {', '.join(leaves)}; worst first:")
        lines += [f"    {m.describe()}" for m in mismatches[:show]]
        if len(mismatches) > show:
            lines.append(f"    … and {len(mismatches) - show} more")
    elif order > 1:
        lines.append(f"  first-order derivatives agree element by element: the mismatch is in "
                     f"derivatives of order 2..{order} (is a custom_jvp/custom_vjp rule itself "
                     f"differentiable?)")
    else:
        lines.append("  the element-by-element check found no single bad element: the error is spread "
                     "across elements (or within tolerance per element); see JAX's projection below")
    if checked < total:
        lines.append(f"  (checked {checked} of {total} input elements, evenly spaced; raise max_elements "
                     f"to check all)")
    if _has_float32(args):
        lines.append("  float32 inputs: finite differences are noisy; consider "
                     "jax.config.update('jax_enable_x64', True) in gradient tests")
    lines.append("  jax.test_util.check_grads said: " + jax_says)
    raise GradientCheckError("\n".join(lines), mismatches) from None


def diagnose(f: Callable[..., Any], args: Sequence[Any], modes: Sequence[str] = ("fwd", "rev"), *,
             atol: float | None = None, rtol: float | None = None, eps: float | None = None,
             max_elements: int = 2000) -> tuple[list[Mismatch], int, int]:
    """Element-wise first-order check: (mismatches worst first, elements checked, elements total).

    Both modes are compared through the same scalar ``phi(x) = <c, f(x)>``
    (``c = 1`` for a scalar output, a fixed random cotangent otherwise): reverse mode is ``grad(phi)``,
    forward mode is ``<c, jvp(f)(x; e_i)>``, and the reference is
    ``(phi(x + eps e_i) - phi(x - eps e_i)) / 2 eps``.
    """
    import jax
    import jax.numpy as jnp

    eps = eps or _EPS
    args = tuple(args)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(args)
    leaves = [jnp.asarray(leaf) for _, leaf in leaves_with_path]
    diff_idx = [i for i, leaf in enumerate(leaves) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    rng = np.random.RandomState(0)
    out = f(*args)
    # A scalar output is checked as is (the numbers reported are the gradient); a larger one is
    # projected on a fixed random cotangent, so no output element can cancel another.
    scalar = sum(int(np.size(o)) for o in jax.tree_util.tree_leaves(out)) == 1
    cot = jax.tree_util.tree_map(
        lambda o: jnp.ones_like(o) if scalar else jnp.asarray(rng.standard_normal(np.shape(o)),
                                                              jnp.result_type(o)), out)

    def phi(*diff_leaves: Any) -> Any:
        """The scalar projection, as a function of the floating-point leaves only."""
        flat = list(leaves)
        for i, leaf in zip(diff_idx, diff_leaves):
            flat[i] = leaf
        result = f(*jax.tree_util.tree_unflatten(treedef, flat))
        terms = jax.tree_util.tree_map(lambda c, o: jnp.sum(c * o), cot, result)
        return sum(jax.tree_util.tree_leaves(terms))

    primals = [leaves[i] for i in diff_idx]
    total = sum(int(p.size) for p in primals)
    rev_grads = jax.grad(phi, argnums=tuple(range(len(primals))))(*primals) if "rev" in modes and primals else None
    mismatches: list[Mismatch] = []
    checked = 0
    for pos, i in enumerate(diff_idx):
        leaf = primals[pos]
        tol = _DEFAULT_TOL.get(np.dtype(leaf.dtype), 1e-5)
        a_tol = tol if atol is None else atol
        r_tol = tol if rtol is None else rtol
        path = "args" + jax.tree_util.keystr(leaves_with_path[i][0])
        for flat in _positions(int(leaf.size), max(1, max_elements * int(leaf.size) // max(total, 1))):
            index = tuple(int(j) for j in np.unravel_index(flat, leaf.shape)) if leaf.ndim else ()
            basis = jnp.zeros_like(leaf).reshape(-1).at[flat].set(1).reshape(leaf.shape)
            plus = [p + eps * basis if k == pos else p for k, p in enumerate(primals)]
            minus = [p - eps * basis if k == pos else p for k, p in enumerate(primals)]
            numerical = float((phi(*plus) - phi(*minus)) / (2 * eps))
            checked += 1
            candidates = []
            if rev_grads is not None:
                candidates.append(("rev", float(np.asarray(rev_grads[pos]).reshape(-1)[flat])))
            if "fwd" in modes:
                tangents = [basis if k == pos else jnp.zeros_like(p) for k, p in enumerate(primals)]
                candidates.append(("fwd", float(jax.jvp(phi, primals, tangents)[1])))
            for mode, value in candidates:
                if not np.isclose(value, numerical, atol=a_tol, rtol=r_tol, equal_nan=True):
                    mismatches.append(Mismatch(mode, path, index, value, numerical))
    mismatches.sort(key=lambda m: -m.abs_diff if np.isfinite(m.abs_diff) else -np.inf)
    return mismatches, checked, total


def _positions(size: int, budget: int) -> list[int]:
    """All flat positions, or ``budget`` evenly spaced ones."""
    if budget >= size:
        return list(range(size))
    return sorted({round(x) for x in np.linspace(0, size - 1, max(1, budget))})


def _has_float32(args: Any) -> bool:
    import jax

    return any(getattr(leaf, "dtype", None) == np.float32 for leaf in jax.tree_util.tree_leaves(args))


def _first_lines(text: str, n: int = 6) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[:n])
