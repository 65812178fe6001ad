"""pytest plugin (entry point ``pytest11: jaxobs``): JAX correctness guards as markers and a fixture.

Installed with jaxobs, active in every pytest run of that environment (or load
it explicitly with ``-p jaxobs``)::

    @pytest.mark.no_recompile            # a function compiling twice in the test body fails it
    @pytest.mark.max_compiles(2)         # at most 2 compiles per jitted function
    @pytest.mark.no_key_reuse            # a PRNG key used twice (not split) fails it
    def test_serving_loop(model): ...

    def test_cache(jax_compiles):        # the compiles of this test's body, to assert on
        f(x); f(x)
        assert jax_compiles.count(f) == 1

Markers and the fixture see the test *call* only: warm up in a fixture and
the guard sees just the test body.  The closest compile marker wins (a
test's own marker overrides its class's or module's).  Failures raise the
typed exceptions of :mod:`jaxobs.testing` (``RecompileError``,
``KeyReuseDetected``), so ``pytest.raises`` and ``xfail(raises=...)`` work.

This module imports neither jax nor the rest of jaxobs until a marker or the
fixture is used, so merely having jaxobs installed costs other test suites
nothing (and keeps "the sidecar never imports jax" tests honest).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Generator
from typing import Any

import pytest

# --- baseline options: --jaxobs-record / --jaxobs-compare (their hooks live in that module) ---
pytest_plugins = ["jaxobs.baseline.pytest_hooks"]
# --- end of baseline options ---

_COMPILE_MARKS = ("max_compiles", "no_recompile")
_MARKERS = (
    ("max_compiles(n, only=None, fresh=False): fail the test if a jitted function compiles more than n "
     "times in the test body (per function; only= restricts to some functions; fresh=True clears "
     "JAX's caches first). See docs/testing.md."),
    ("no_recompile(only=None, fresh=False): fail the test if a jitted function compiles a second time "
     "in the test body (shape, dtype, static value change, or a jit re-created per call)."),
    ("no_key_reuse: fail the test if a PRNG key is consumed twice instead of split "
     "(JAX's jax_debug_key_reuse checker; legacy PRNGKey arrays are tracked too)."),
)


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)


@pytest.fixture
def jax_compiles() -> Any:
    """A :class:`jaxobs.testing.CompileLog` recording the compiles of the test body (not of fixtures)."""
    from jaxobs.testing import CompileLog

    return CompileLog()


# --- marker arguments, checked at collection ---------------------------------------------------

def _compile_mark(item: pytest.Item) -> pytest.Mark | None:
    """The closest of the compile markers: a test's own marker beats its class's and module's."""
    for mark in item.iter_markers():
        if mark.name in _COMPILE_MARKS:
            return mark
    return None


def _mark_problem(item: pytest.Item, mark: pytest.Mark) -> str | None:
    """What is wrong with a compile marker's arguments, as a one-line fix; None if fine."""
    allowed = {"only", "fresh"} | ({"n"} if mark.name == "max_compiles" else set())
    unknown = sorted(set(mark.kwargs) - allowed)
    if unknown:
        return f"@pytest.mark.{mark.name} takes {', '.join(sorted(allowed))}; got unknown {', '.join(unknown)}"
    if mark.name == "max_compiles":
        n = mark.args[0] if mark.args else mark.kwargs.get("n")
        if len(mark.args) > 1 or not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return f"use @pytest.mark.max_compiles(n) with an int n >= 0, got {_args(mark)}"
    elif mark.args:
        return f"@pytest.mark.no_recompile takes keyword arguments only (only=, fresh=), got {_args(mark)}"
    if not isinstance(mark.kwargs.get("fresh", False), bool):
        return f"fresh= takes True or False, got {mark.kwargs['fresh']!r}"
    only = mark.kwargs.get("only")
    if only is None:
        return None
    names = [only] if isinstance(only, str) or callable(only) else only
    if not isinstance(names, list | tuple | set | frozenset):
        return f"only= takes a function, a name or a list of them, got {only!r}"
    for who in names:
        if callable(who):
            continue
        if not isinstance(who, str):
            return f"only= takes functions or function names, got {who!r}"
        if not _name_in_module(item, who):
            return (f"only={who!r} names no function used in {item.path.name} or its conftest.py: pass "
                    f"the jitted function itself (only=[f]) or its exact name")
    return None


def _name_in_module(item: pytest.Item, name: str) -> bool:
    """A function name the guard can match must appear in the test module or a conftest.py
    above it (as a name or a jaxobs ``name=``), else it is a typo that would silently watch
    nothing."""
    module = getattr(item, "module", None)
    if module is not None and name in vars(module):
        return True
    word = re.compile(r"(?<![\w])" + re.escape(name) + r"(?![\w])")
    files = [item.path] + [d / "conftest.py" for d in item.path.parents
                           if d == item.config.rootpath or item.config.rootpath in d.parents]
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except OSError:
            return True  # cannot tell: do not block the run
        if word.search(_ONLY_ARG.sub("", source)):  # the marker's own mention does not count
            return True
    return False


_ONLY_ARG = re.compile(r"""only\s*=\s*(\[[^\]]*\]|\([^)]*\)|"[^"]*"|'[^']*')""")


def _args(mark: pytest.Mark) -> str:
    parts = [repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        mark = _compile_mark(item)
        if mark is not None:
            problem = _mark_problem(item, mark)
            if problem:
                problems.append(f"{item.nodeid}: {problem}")
    if problems:
        raise pytest.UsageError("jaxobs: bad marker arguments:\n  " + "\n  ".join(problems))


# --- guards around the test call ---------------------------------------------------------------

def _marker_guards(item: pytest.Item) -> list[Any]:
    """The context managers this test's markers ask for (empty: nothing imported)."""
    mark = _compile_mark(item)
    key_mark = item.get_closest_marker("no_key_reuse")
    if mark is None and key_mark is None:
        return []
    from jaxobs.testing import CompileGuard, no_key_reuse

    guards: list[Any] = []
    if key_mark is not None:  # outermost: the recompiles its switch causes are recognised and ignored
        guards.append(no_key_reuse())
    if mark is not None:
        only = mark.kwargs.get("only")
        fresh = bool(mark.kwargs.get("fresh", False))
        if mark.name == "no_recompile":
            label = "@pytest.mark.no_recompile" + ("(fresh=True)" if fresh else "")
            guards.append(CompileGuard(1, first_only=True, only=only, label=label, fresh=fresh))
        else:
            n = mark.args[0] if mark.args else mark.kwargs["n"]
            guards.append(CompileGuard(n, only=only, label=f"@pytest.mark.max_compiles({n})", fresh=fresh))
    return guards


def _fixture_log(item: pytest.Item) -> Any:
    if "jax_compiles" not in getattr(item, "fixturenames", ()):
        return None
    return getattr(item, "funcargs", {}).get("jax_compiles")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    __tracebackhide__ = True
    guards = _marker_guards(item)
    log = _fixture_log(item)
    if log is not None:
        guards.append(log)
    if not guards:
        return (yield)
    try:
        with contextlib.ExitStack() as stack:
            for guard in guards:
                stack.enter_context(guard)
            return (yield)
    except AssertionError as exc:
        if getattr(exc, "guard", None) in guards:
            exc.__jaxobs_marker__ = True  # type: ignore[attr-defined]
        raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A marker's failure is reported as its message alone: the plugin's frames are not the user's."""
    report = yield
    excinfo = call.excinfo
    if (excinfo is not None and report.failed and call.when == "call"
            and getattr(excinfo.value, "__jaxobs_marker__", False)):
        report.longrepr = f"{type(excinfo.value).__name__}: {excinfo.value}"
    return report
