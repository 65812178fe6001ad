"""Flag a PRNG key used twice where a split was meant (failure mode F4).

The approach is JAX's own key-reuse checker (``jax_debug_key_reuse``), not a
heuristic: while it is on, every typed key passed to a ``jax.random``
sampling function is marked *consumed*, and passing a consumed key again
raises — in eager code at the second use, inside ``jit`` by static analysis
of the traced program.  That is sound for what it tracks; these helpers
switch it on for a block and turn JAX's terse ``KeyReuseError`` into a
message that says where the reuse happened and how to fix it.

What it tracks: typed keys (``jax.random.key(seed)``).  Legacy raw keys
(``jax.random.PRNGKey(seed)``, ``uint32[2]`` arrays) are invisible to it;
:func:`check_key_reuse` wraps the legacy keys you point it at
(``key_argnums``) into typed keys for the check.

Side effect to know about: the checker is part of JAX's tracing context, so
a function compiled outside the block compiles once more inside it.
"""

from __future__ import annotations

import linecache
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any


class KeyReuseDetected(AssertionError):
    """A consumed PRNG key was used again (``.guard``: the ``no_key_reuse`` that caught it)."""

    def __init__(self, message: str, guard: no_key_reuse | None = None) -> None:
        super().__init__(message)
        self.guard = guard


class no_key_reuse:
    """``with no_key_reuse(): ...`` fails with :class:`KeyReuseDetected` if a key is reused inside.

    Also a decorator.  Restores the previous ``jax_debug_key_reuse`` setting on exit.
    """

    def __enter__(self) -> no_key_reuse:
        import jax

        self._saved = bool(jax.config.jax_debug_key_reuse)
        jax.config.update("jax_debug_key_reuse", True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        __tracebackhide__ = True
        import jax

        jax.config.update("jax_debug_key_reuse", self._saved)
        if exc is not None and isinstance(exc, jax.errors.KeyReuseError):
            raise KeyReuseDetected(explain(exc), self) from exc
        return None

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            __tracebackhide__ = True
            with no_key_reuse():
                return fn(*args, **kwargs)

        return wrapper


def check_key_reuse(fn: Callable[..., Any], *args: Any, key_argnums: Sequence[int] = (),
                    **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` once under the key-reuse checker and return its result.

    ``key_argnums`` names positional arguments holding legacy ``PRNGKey``
    arrays; they are wrapped into typed keys (``jax.random.wrap_key_data``) so
    the checker can follow them.  ``fn`` must then use them only through
    ``jax.random`` (which accepts both kinds).
    """
    __tracebackhide__ = True
    import jax

    call_args = list(args)
    for i in key_argnums:
        key = call_args[i]
        if not jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
            call_args[i] = jax.random.wrap_key_data(key)
    with no_key_reuse():
        return fn(*call_args, **kwargs)


def explain(exc: BaseException) -> str:
    """A readable account of a ``jax.errors.KeyReuseError``: where, what, how to fix."""
    jax_says = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    where = _user_frame(exc.__traceback__)
    lines = ["PRNG key reused (F4): a key already consumed by a jax.random function was used again"]
    if where:
        lines.append(f"  at {where}")
    lines.append(f"  JAX: {jax_says}")
    lines.append("  Split instead of reusing: key, subkey = jax.random.split(key), and draw with subkey "
                 "(one fresh subkey per draw, per step).")
    return "\n".join(lines)


def _user_frame(tb: TracebackType | None) -> str:
    """The innermost traceback frame outside jax, jaxlib and jaxobs, as ``file:line in fn: code``."""
    import jax

    internal = tuple(os.path.dirname(m.__file__) + os.sep for m in (jax, _jaxobs_package()) if m.__file__)
    found = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        if not filename.startswith(internal) and "jaxlib" not in filename and not filename.startswith("<"):
            source = linecache.getline(filename, tb.tb_lineno).strip()
            where = filename.removeprefix(os.getcwd() + os.sep)
            found = f"{where}:{tb.tb_lineno} in {code.co_name}" + (f": {source}" if source else "")
        tb = tb.tb_next
    return found


def _jaxobs_package() -> Any:
    import jaxobs

    return jaxobs
