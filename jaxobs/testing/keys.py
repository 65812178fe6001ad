"""Flag a PRNG key used twice where a split was meant.

The approach is JAX's own key-reuse checker (``jax_debug_key_reuse``), not a
heuristic: while it is on, every typed key passed to a ``jax.random``
sampling function is marked *consumed*, and passing a consumed key again
raises — in eager code at the second use, inside ``jit`` by static analysis
of the traced program.  That is sound for what it tracks; these helpers
switch it on for a block and turn JAX's terse ``KeyReuseError`` into a
message that says where the reuse happened and how to fix it.

What JAX tracks: typed keys (``jax.random.key(seed)``).  Legacy raw keys
(``jax.random.PRNGKey(seed)``, ``uint32[2]`` arrays), which most code still
uses, are invisible to it: every ``jax.random`` function wraps a raw key into
a *new* typed key on each call.  While a guard is active, jaxobs hands back
the *same* typed key for the same raw key object (eager array or traced
value), so JAX's checker follows legacy keys too: ``normal(k); normal(k)``
and ``split(k); normal(k)`` are caught, eagerly and inside ``jit``.

Limits (documented in docs/testing.md): a legacy key carried through
``lax.scan`` is a new value in every iteration, so reuse across iterations is
seen only for typed keys; ``fold_in`` does not consume its key, so
``fold_in(k, 1)`` twice derives two equal keys that the checker treats as
unrelated; two separately created keys with the same seed are two keys.

Side effect to know about: the checker is part of JAX's tracing context, so
a function compiled outside the block compiles once more inside it (the
recompile guards recognise and ignore exactly that recompile).
"""

from __future__ import annotations

import linecache
import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any


class KeyReuseDetected(AssertionError):
    """A consumed PRNG key was used again (``.guard``: the ``no_key_reuse`` that caught it)."""

    def __init__(self, message: str, guard: no_key_reuse | None = None) -> None:
        super().__init__(message)
        self.guard = guard


class no_key_reuse:  # noqa: N801 - used as `with no_key_reuse():`, like contextlib helpers
    """``with no_key_reuse(): ...`` fails with :class:`KeyReuseDetected` if a key is reused inside.

    Also a decorator.  Restores the previous ``jax_debug_key_reuse`` setting on exit.
    """

    def __enter__(self) -> no_key_reuse:
        import jax

        self._saved = bool(jax.config.jax_debug_key_reuse)  # type: ignore[attr-defined]
        jax.config.update("jax_debug_key_reuse", True)
        _legacy.enter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        __tracebackhide__ = True
        import jax

        _legacy.exit()
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

    Legacy ``PRNGKey`` arrays are followed like typed keys (see the module
    docstring).  ``key_argnums`` may still name positional arguments to wrap
    into typed keys up front (``jax.random.wrap_key_data``); ``fn`` must then
    use them only through ``jax.random``.
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
    lines = ["PRNG key reused: a key already consumed by a jax.random function was used again"]
    if where:
        lines.append(f"  at {where}")
    lines.append(f"  JAX: {jax_says}")
    lines.append("  Split instead of reusing: key, subkey = jax.random.split(key), and draw with subkey "
                 "(one fresh subkey per draw, per step).")
    return "\n".join(lines)


class _LegacyKeys:
    """While any guard is active: one typed key per legacy key object, so reuse is visible.

    ``jax.random`` functions normalise their key argument through
    ``jax._src.random.core._check_prng_key``, which wraps a raw ``uint32`` key
    into a fresh typed key every time.  Patching it (only while a guard is
    active, restored after) to return the typed key it made the first time for
    that same object lets JAX's own checker mark it consumed.  The raw key is
    held with its typed key, so its ``id`` cannot be reused during the guard.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._original: Callable[..., Any] | None = None
        self._typed: dict[int, tuple[Any, Any]] = {}

    def enter(self) -> None:
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            try:
                from jax._src.random import core
            except ImportError:  # JAX moved it: typed keys are still checked
                return
            original = getattr(core, "_check_prng_key", None)
            if original is None:
                return
            self._original = original

            def check_prng_key(name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
                typed, wrapped = original(name, key, *args, **kwargs)
                if wrapped:
                    with self._lock:
                        held = self._typed.get(id(key))
                        if held is not None and held[0] is key:
                            return held[1], wrapped
                        self._typed[id(key)] = (key, typed)
                return typed, wrapped

            core._check_prng_key = check_prng_key

    def exit(self) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth > 0 or self._original is None:
                return
            from jax._src.random import core

            core._check_prng_key = self._original
            self._original = None
            self._typed = {}


_legacy = _LegacyKeys()


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
