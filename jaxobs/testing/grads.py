"""Gradient check with a failure message that says *where* gradients are wrong — and whether they are.

``jax.test_util.check_grads`` is the reference check (JVPs and VJPs against
central differences, up to any order), and it stays the verdict here.  Its
failure text is a single projected number ("VJP cotangent projection …
ACTUAL: -1.14 DESIRED: -1.17"), which tells you *that* a check failed but not
which parameter, nor whether the gradient is wrong at all: in float32, central
differences are noisy enough that a correct function (a layernorm at order 2)
fails on many random inputs.

So when it fails, :func:`check_grads` diagnoses in float64 (inputs cast,
``jax.enable_x64`` on): JAX's check again, then the first-order derivatives
element by element — autodiff against central differences of the same scalar
projection of the output.  A float64 pass means the float32 failure was noise,
and the message says so; elements that disagree in float64 are really wrong.
A function that cannot run in float64 is diagnosed in its own precision, with
a step size chosen per dtype, and disagreements within a few times the
rounding floor of the finite difference are marked as noise, not as wrong.
JAX's own message (with its ACTUAL and DESIRED lines) is kept in full.  The
diagnosis costs two evaluations per input element, paid only on failure and
capped by ``max_elements``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: JAX's default tolerances for gradient checks (jax._src.public_test_util).
_DEFAULT_TOL = {np.dtype(np.float16): 1e-2, np.dtype(np.float32): 2e-3, np.dtype(np.float64): 1e-5}
_EPS64 = 1e-4
#: A disagreement within this many times the finite difference's rounding floor is noise.
_NOISE_FACTOR = 10.0


class GradientCheckError(AssertionError):
    """Autodiff and numerical derivatives disagree; ``.mismatches`` has the worst elements.

    ``.noise`` is True when the diagnosis found the gradients right (the failure
    is finite-difference noise of a low-precision check).
    """

    def __init__(self, message: str, mismatches: list[Mismatch], noise: bool = False) -> None:
        super().__init__(message)
        self.mismatches = mismatches
        self.noise = noise


@dataclass(frozen=True)
class Mismatch:
    """One input element whose derivative disagrees."""

    mode: str  # "rev" (VJP) or "fwd" (JVP)
    path: str  # pytree path of the input leaf, e.g. "args[0]['w']"
    index: tuple[int, ...]
    autodiff: float
    numerical: float
    #: Within the rounding floor of the finite difference: cannot be told from a right derivative.
    noise: bool = False

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
        jax_says = _jax_lines(str(exc))
    else:
        return
    name = getattr(f, "__name__", repr(f))
    low = _low_precision(args)
    in64 = _diagnose_float64(f, args, order, modes, atol, rtol, eps, max_elements) if low else None
    lines = [f"gradient check failed for {name} (order {order}, modes {'/'.join(modes)})"
             + (f" on {low} inputs" if low else "")]
    if in64 is not None:
        passed64, mismatches, checked, total = in64
        wrong = mismatches
        noisy: list[Mismatch] = []
        how = " (re-checked element by element in float64)"
    else:
        passed64 = False
        mismatches, checked, total = diagnose(f, args, modes, atol=atol, rtol=rtol, eps=eps,
                                              max_elements=max_elements)
        wrong = [m for m in mismatches if not m.noise]
        noisy = [m for m in mismatches if m.noise]
        how = ""
    if in64 is not None and passed64 and not wrong:
        lines.append(f"  but the gradients look right: in float64, jax.test_util.check_grads passes and the "
                     f"first-order derivatives of all {checked} checked input elements agree, so the {low} "
                     f"failure is finite-difference noise, not a wrong derivative")
        lines.append("  run gradient checks in float64 (inputs cast to float64 under "
                     "`with jax.enable_x64(True):`) or loosen atol/rtol")
    elif wrong:
        leaves = sorted({m.path for m in wrong})
        lines.append(f"  {len(wrong)} of {checked} input elements have wrong first-order derivatives{how}, "
                     f"in {', '.join(leaves)}; worst first:")
        lines += [f"    {m.describe()}" for m in wrong[:show]]
        if len(wrong) > show:
            lines.append(f"    … and {len(wrong) - show} more")
    elif noisy:
        lines.append(f"  no input element is clearly wrong: {len(noisy)} of {checked} differ only within the "
                     f"rounding noise of {low or 'this precision'} finite differences (marked noise, not "
                     f"wrong); run the check in float64 to be sure")
    elif order > 1:
        lines.append(f"  first-order derivatives agree element by element{how}: the mismatch is in "
                     f"derivatives of order 2..{order} (is a custom_jvp/custom_vjp rule itself "
                     f"differentiable?)")
    else:
        lines.append("  the element-by-element check found no single bad element: the error is spread "
                     "across elements (or within tolerance per element); see JAX's projection below")
    if noisy and wrong:
        lines.append(f"  ({len(noisy)} more differ only within finite-difference noise, not counted as wrong)")
    if checked < total:
        lines.append(f"  (checked {checked} of {total} input elements, evenly spaced; raise max_elements "
                     f"to check all)")
    lines.append("  jax.test_util.check_grads said:")
    lines += [f"    {line}" for line in jax_says]
    noise = in64 is not None and passed64 and not wrong
    raise GradientCheckError("\n".join(lines), wrong, noise) from None


def _diagnose_float64(f: Callable[..., Any], args: tuple[Any, ...], order: int, modes: Sequence[str],
                      atol: float | None, rtol: float | None, eps: float | None,
                      max_elements: int) -> tuple[bool, list[Mismatch], int, int] | None:
    """(JAX's check passes in float64, element mismatches, checked, total); None if ``f`` cannot run in float64.

    Elements are compared with the tolerance of the *original* dtype, so that
    only derivatives wrong by more than the check was asked to tolerate count.
    """
    from jax.test_util import check_grads as jax_check_grads

    tol = max(_DEFAULT_TOL.get(np.dtype(d), 1e-5) for d in _float_dtypes(args))
    try:
        with _x64():
            args64 = _to_float64(args)
            try:
                jax_check_grads(f, args64, order, modes=tuple(modes), atol=atol, rtol=rtol, eps=eps)
                passed = True
            except AssertionError:
                passed = False
            mismatches, checked, total = diagnose(f, args64, modes, atol=tol if atol is None else atol,
                                                  rtol=tol if rtol is None else rtol, eps=eps or _EPS64,
                                                  max_elements=max_elements)
    except Exception:
        return None
    return passed, mismatches, checked, total


@contextlib.contextmanager
def _x64() -> Iterator[None]:
    import jax

    with jax.enable_x64(True):
        yield


def _to_float64(args: Any) -> Any:
    import jax
    import jax.numpy as jnp

    def cast(x: Any) -> Any:
        dtype = getattr(x, "dtype", None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
            return jnp.asarray(np.asarray(x, np.float64))
        return x

    return jax.tree_util.tree_map(cast, args)


def _float_dtypes(args: Any) -> list[Any]:
    import jax
    import jax.numpy as jnp

    return [leaf.dtype for leaf in jax.tree_util.tree_leaves(args)
            if getattr(leaf, "dtype", None) is not None and jnp.issubdtype(leaf.dtype, jnp.floating)] or [
        np.dtype(np.float64)]


def _low_precision(args: Any) -> str:
    """The lowest floating dtype of the inputs if below float64 (``"float32"``), else ""."""
    dtypes = [np.dtype(d) for d in _float_dtypes(args)]
    low = min(dtypes, key=lambda d: d.itemsize)
    return str(low) if low.itemsize < 8 else ""


def diagnose(f: Callable[..., Any], args: Sequence[Any], modes: Sequence[str] = ("fwd", "rev"), *,
             atol: float | None = None, rtol: float | None = None, eps: float | None = None,
             max_elements: int = 2000) -> tuple[list[Mismatch], int, int]:
    """Element-wise first-order check: (mismatches worst first, elements checked, elements total).

    Both modes are compared through the same scalar ``phi(x) = <c, f(x)>``
    (``c = 1`` for a scalar output, a fixed random cotangent otherwise): reverse mode is ``grad(phi)``,
    forward mode is ``<c, jvp(f)(x; e_i)>``, and the reference is
    ``(phi(x + h e_i) - phi(x - h e_i)) / 2 h``.  The step ``h`` is ``eps`` if
    given, else chosen per dtype (``1e-4`` in float64, the cube root of the
    machine epsilon below), scaled by ``max(1, |x_i|)``.  A disagreement within
    a few times the rounding floor of that difference is marked ``noise``.
    """
    import jax
    import jax.numpy as jnp
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
        for i, leaf in zip(diff_idx, diff_leaves, strict=True):
            flat[i] = leaf
        result = f(*jax.tree_util.tree_unflatten(treedef, flat))
        terms = jax.tree_util.tree_map(lambda c, o: jnp.sum(c * o), cot, result)
        return sum(jax.tree_util.tree_leaves(terms))

    primals = [leaves[i] for i in diff_idx]
    total = sum(int(p.size) for p in primals)
    # Two evaluations (and a JVP) per element: compiled once, not dispatched op by op.
    phi_at = _compiled(phi)
    jvp_at = _compiled(lambda ps, ts: jax.jvp(phi, ps, ts)[1])
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
            x_i = float(np.asarray(leaf).reshape(-1)[flat])
            step = _step(leaf.dtype, eps, x_i)
            plus = [p + step * basis if k == pos else p for k, p in enumerate(primals)]
            minus = [p - step * basis if k == pos else p for k, p in enumerate(primals)]
            up, down = float(phi_at(*plus)), float(phi_at(*minus))
            numerical = (up - down) / (2 * step)
            # Rounding of phi alone moves the difference by about this much.
            floor = float(jnp.finfo(leaf.dtype).eps) * (abs(up) + abs(down)) / (2 * step)
            checked += 1
            candidates = []
            if rev_grads is not None:
                candidates.append(("rev", float(np.asarray(rev_grads[pos]).reshape(-1)[flat])))
            if "fwd" in modes:
                tangents = [basis if k == pos else jnp.zeros_like(p) for k, p in enumerate(primals)]
                candidates.append(("fwd", float(jvp_at(primals, tangents))))
            for mode, value in candidates:
                if not np.isclose(value, numerical, atol=a_tol, rtol=r_tol, equal_nan=True):
                    noise = bool(abs(value - numerical) <= _NOISE_FACTOR * floor)
                    mismatches.append(Mismatch(mode, path, index, value, numerical, noise))
    mismatches.sort(key=lambda m: -m.abs_diff if np.isfinite(m.abs_diff) else -np.inf)
    return mismatches, checked, total


def _positions(size: int, budget: int) -> list[int]:
    """All flat positions, or ``budget`` evenly spaced ones."""
    if budget >= size:
        return list(range(size))
    return sorted({round(x) for x in np.linspace(0, size - 1, max(1, budget))})


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)``, falling back to ``fn`` for functions jit cannot trace (host callbacks)."""
    import jax

    jitted = jax.jit(fn)
    use_jit = [True]

    def call(*args: Any) -> Any:
        if use_jit[0]:
            try:
                return jitted(*args)
            except Exception:
                use_jit[0] = False
        return fn(*args)

    return call


def _step(dtype: Any, eps: float | None, x: float) -> float:
    """The finite-difference step for one element: ``eps`` if given, else per dtype."""
    if eps:
        return eps
    finfo = np.finfo(np.dtype(dtype))
    base = _EPS64 if finfo.bits >= 64 else float(np.cbrt(finfo.eps))
    return base * max(1.0, abs(x))


def _jax_lines(text: str) -> list[str]:
    """JAX's failure message, every non-empty line (its ACTUAL and DESIRED lines included)."""
    return [ln.rstrip() for ln in text.strip().splitlines() if ln.strip()]
