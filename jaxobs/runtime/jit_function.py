"""The object ``jaxobs.jit`` returns: a function-like wrapper carrying ``jax.jit``'s surface.

Kept apart from :mod:`jaxobs.runtime.jit` (which holds the state and the hot
path) because what it must get right is the *shape* of a drop-in: how it is
called, bound as a method, copied, introspected and wrapped by others.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MethodType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxobs.runtime.jit import InstrumentedJit


class InstrumentedFunction(functools.partial):  # type: ignore[type-arg]
    """What :func:`jit` returns: call it like the ``jax.jit`` function it wraps.

    A ``functools.partial`` over the hot-path closure, because partial's C call
    costs about what a plain Python function does, while jit's surface
    (``lower``, ``trace``, ``_cache_size`` …) lives on the class, not in the
    instance ``__dict__``: ``functools.wraps`` — and ``jax.jit`` itself — copy a
    function's ``__dict__`` into whatever wraps it, which would hand the outer
    wrapper this function's ``trace`` (``jax.make_jaxpr`` would then lose the
    ``jit`` equation).  Binds as a method like a function does.
    """

    __slots__ = ("_ijit",)
    _ijit: InstrumentedJit

    def __new__(cls, impl: Callable[..., Any], ijit: InstrumentedJit) -> InstrumentedFunction:
        self = super().__new__(cls, impl)
        self._ijit = ijit
        functools.update_wrapper(self, ijit._fun)
        return self

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        return self if obj is None else MethodType(self, obj)

    @property
    def jaxobs(self) -> InstrumentedJit:
        """The InstrumentedJit (metrics, name, settings) behind this function."""
        return self._ijit

    @property
    def jitted(self) -> Any:
        """The ``jax.jit`` function this one calls."""
        return self._ijit._jitted

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._ijit.lower(*args, **kwargs)

    def trace(self, *args: Any, **kwargs: Any) -> Any:
        return self._ijit.trace(*args, **kwargs)

    def eval_shape(self, *args: Any, **kwargs: Any) -> Any:
        return self._ijit.eval_shape(*args, **kwargs)

    def warmup(self, *args: Any, **kwargs: Any) -> Any:
        return self._ijit.warmup(*args, **kwargs)

    def clear_cache(self) -> None:
        self._ijit.clear_cache()

    def retire(self) -> None:
        self._ijit.retire()

    def _cache_size(self) -> int:
        return self._ijit._cache_size()

    def __getstate__(self) -> dict[str, Any]:
        return self._ijit.__getstate__()

    def __copy__(self) -> InstrumentedFunction:
        return self  # like a function: copying shares it (and its metrics)

    def __deepcopy__(self, memo: dict[int, Any]) -> InstrumentedFunction:
        return self

    def __repr__(self) -> str:
        return f"<jaxobs.jit function {self._ijit.name}>"
