"""The cardinality cap: distinct ``function`` label values per process are bounded.

Before the cap, 3,000 closures instrumented in a loop (``name=f"fn{i}"``)
exposed 3,000 function values and 438,021 samples.  Counted, never timed.
"""

from __future__ import annotations

import gc
import logging
import re

import jax.numpy as jnp
import pytest
from prometheus_client import generate_latest

import jaxobs
from jaxobs import catalog


def _functions_on_metrics(registry) -> set[str]:
    return set(re.findall(r'function="([^"]*)"', generate_latest(registry).decode()))


def _add_one(x):
    return x + 1


@pytest.fixture
def cap():
    """Restore the process-wide cap after a test changes it."""
    from jaxobs.telemetry.recorder import limits

    saved = limits.max_functions
    yield limits
    limits.max_functions = saved


def test_three_thousand_functions_give_at_most_cap_plus_one_values(registry, rec, caplog) -> None:
    x = jnp.ones(2)
    before = jaxobs.internal_error_counts().get("cardinality", 0)
    with caplog.at_level(logging.WARNING, logger="jaxobs"):
        fns = [jaxobs.jit(_add_one, name=f"fn{i}", registry=registry) for i in range(3000)]
        for fn in fns:
            fn(x)
    names = _functions_on_metrics(registry)
    assert len(names) <= catalog.MAX_FUNCTIONS + 1
    assert catalog.OVERFLOW_FUNCTION in names and "fn0" in names and "fn2999" not in names
    # every overflowed function is counted, and warned about once
    assert jaxobs.internal_error_counts()["cardinality"] - before == 3000 - catalog.MAX_FUNCTIONS
    warnings = [r for r in caplog.records if "cardinality" in r.getMessage()]
    assert len(warnings) == (1 if before == 0 else 0)
    # nothing is lost: the overflow value carries the calls of the functions past the cap
    assert rec.value(catalog.CALLS, catalog.OVERFLOW_FUNCTION, "hit") == 3000 - catalog.MAX_FUNCTIONS
    # memory stays bounded: series held do not grow with more functions
    held = rec.series_count()
    assert held <= (catalog.MAX_FUNCTIONS + 1) * 10
    more = [jaxobs.jit(_add_one, name=f"more{i}", registry=registry) for i in range(1000)]
    for fn in more:
        fn(x)
    assert rec.series_count() == held
    assert len(_functions_on_metrics(registry)) <= catalog.MAX_FUNCTIONS + 1


def test_the_cap_is_configurable(registry, cap) -> None:
    jaxobs.configure(max_functions=3)
    fns = [jaxobs.jit(_add_one, name=f"c{i}", registry=registry) for i in range(5)]
    for fn in fns:
        fn(jnp.ones(2))
    assert _functions_on_metrics(registry) == {"c0", "c1", "c2", catalog.OVERFLOW_FUNCTION}
    with pytest.raises(ValueError, match="max_functions"):
        jaxobs.configure(max_functions=0)


def test_collected_wrappers_free_their_slots(registry, rec, cap) -> None:
    jaxobs.configure(max_functions=10)
    x = jnp.ones(2)
    for i in range(200):  # wrappers created and dropped in a loop
        jaxobs.jit(_add_one, name=f"tmp{i}", registry=registry)(x)
        if i % 20 == 19:
            gc.collect()
    gc.collect()
    keep = jaxobs.jit(_add_one, name="keep", registry=registry)
    keep(x)
    names = _functions_on_metrics(registry)
    assert "keep" in names  # a collected function's slot went to the new one
    assert len(names) <= 11
    assert rec.series_count() <= 11 * 10


def test_a_wrapper_recreated_under_one_name_keeps_counting(registry, rec) -> None:
    x = jnp.ones(2)
    for _ in range(5):
        jaxobs.jit(_add_one, name="again", registry=registry)(x)
        gc.collect()
    assert rec.value(catalog.CALLS, "again", "hit") + rec.value(catalog.CALLS, "again", "miss") == 5


def test_explicit_retire_drops_the_series_and_the_function_still_works(registry) -> None:
    fn = jaxobs.jit(_add_one, name="retired", registry=registry)
    other = jaxobs.jit(_add_one, name="stays", registry=registry)
    fn(jnp.ones(2)), other(jnp.ones(2))
    assert {"retired", "stays"} <= _functions_on_metrics(registry)
    fn.retire()
    assert "retired" not in _functions_on_metrics(registry)
    assert "stays" in _functions_on_metrics(registry)
    assert float(fn(jnp.ones(2))[0]) == 2.0
