"""pytest plugin (entry point ``pytest11: jaxobs``): JAX correctness guards as markers and a fixture.

Installed with jaxobs, active in every pytest run of that environment (or load
it explicitly with ``-p jaxobs``)::

    @pytest.mark.no_recompile            # any recompile in the test body fails it
    @pytest.mark.max_compiles(2)         # at most 2 compiles per jitted function
    @pytest.mark.no_key_reuse            # a PRNG key used twice (not split) fails it
    def test_serving_loop(model): ...

    def test_cache(jax_compiles):        # the compiles of this test, to assert on
        f(x); f(x)
        assert jax_compiles.count(f) == 1

Markers guard the test *call* only: warm up in a fixture and the guard sees
just the test body.  The checks themselves live in :mod:`jaxobs.testing`
(usable without pytest, e.g. ``with jaxobs.testing.no_recompile():``).

This module imports neither jax nor the rest of jaxobs until a marker or the
fixture is used, so merely having jaxobs installed costs other test suites
nothing (and keeps "the sidecar never imports jax" tests honest).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import pytest

# --- baseline options: --jaxobs-record / --jaxobs-compare (their hooks live in that module) ---
pytest_plugins = ["jaxobs.baseline.pytest_hooks"]
# --- end of baseline options ---

_MARKERS = (
    ("max_compiles(n, only=None): fail the test if a jitted function compiles more than n times in "
     "the test body (per function; only= restricts to some function names). See docs/testing.md."),
    ("no_recompile(only=None): fail the test on any recompile in the test body (shape, dtype, static "
     "value change, or a jit re-created per call); first compiles are fine."),
    ("no_key_reuse: fail the test if a PRNG key is consumed twice instead of split "
     "(JAX's jax_debug_key_reuse checker; typed keys from jax.random.key)."),
)


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)


@pytest.fixture
def jax_compiles() -> Generator[Any, None, None]:
    """A :class:`jaxobs.testing.CompileLog` recording every compile during the test."""
    from jaxobs.testing import CompileLog

    with CompileLog() as log:
        yield log


def _marker_guards(item: pytest.Item) -> list[Any]:
    """The context managers this test's markers ask for (empty: nothing imported)."""
    compile_marks = [m for m in item.iter_markers() if m.name in ("max_compiles", "no_recompile")]
    key_mark = item.get_closest_marker("no_key_reuse")
    if not compile_marks and key_mark is None:
        return []
    from jaxobs.testing import CompileGuard, no_key_reuse

    guards: list[Any] = []
    if key_mark is not None:  # outermost: its context change recompiles, which the guards then see
        guards.append(no_key_reuse())
    for mark in compile_marks:
        only = mark.kwargs.get("only")
        if isinstance(only, str):
            only = [only]
        if mark.name == "no_recompile":
            guards.append(CompileGuard(1, first_only=True, only=only, label="@pytest.mark.no_recompile"))
            continue
        n = mark.args[0] if mark.args else mark.kwargs.get("n")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise pytest.UsageError(f"{item.nodeid}: use @pytest.mark.max_compiles(n) with an int n >= 0, "
                                    f"got {mark.args or mark.kwargs}")
        guards.append(CompileGuard(n, only=only, label=f"@pytest.mark.max_compiles({n})"))
    return guards


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    guards = _marker_guards(item)
    if not guards:
        return (yield)
    from jaxobs.testing import KeyReuseDetected, RecompileError

    failure = None
    try:
        with contextlib.ExitStack() as stack:
            for guard in guards:
                stack.enter_context(guard)
            return (yield)
    except (RecompileError, KeyReuseDetected) as exc:
        if getattr(exc, "guard", None) not in guards:
            raise  # raised by a `with` block inside the test: keep its traceback
        failure = str(exc)
    pytest.fail(failure, pytrace=False)  # outside the except: no "during handling" chain
