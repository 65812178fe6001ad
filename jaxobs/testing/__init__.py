"""JAX correctness guards for test suites, usable with or without pytest.

::

    from jaxobs import testing

    with testing.no_recompile():          # fail when a function compiles a second time in the block
        for batch in batches:
            step(params, batch)
    with testing.max_compiles(2): ...     # at most two compiles per function
    testing.check_grads(loss, (params, x), order=2)        # names the wrong parameter
    testing.assert_deterministic(sample, key, x)           # names the first differing leaf
    testing.assert_uses_key(sample, key, x)                # a key that is ignored
    with testing.no_key_reuse(): ...                       # a key used twice, not split

All failures are ``AssertionError`` subclasses whose message says what went
wrong and where.  The pytest plugin (``jaxobs.pytest_plugin``) adds markers
and a fixture on top of these; see docs/testing.md.
"""

from __future__ import annotations

from jaxobs.testing.compiles import (
    Compile,
    CompileGuard,
    CompileLog,
    RecompileError,
    max_compiles,
    no_recompile,
)
from jaxobs.testing.determinism import (
    KeyIgnoredError,
    LeafDifference,
    NondeterminismError,
    assert_deterministic,
    assert_uses_key,
    first_difference,
)
from jaxobs.testing.grads import GradientCheckError, Mismatch, check_grads
from jaxobs.testing.keys import KeyReuseDetected, check_key_reuse, no_key_reuse

__all__ = [
    "Compile",
    "CompileGuard",
    "CompileLog",
    "GradientCheckError",
    "KeyIgnoredError",
    "KeyReuseDetected",
    "LeafDifference",
    "Mismatch",
    "NondeterminismError",
    "RecompileError",
    "assert_deterministic",
    "assert_uses_key",
    "check_grads",
    "check_key_reuse",
    "first_difference",
    "max_compiles",
    "no_key_reuse",
    "no_recompile",
]
