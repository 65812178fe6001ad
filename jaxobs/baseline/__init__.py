"""The regression gate: record what instrumented functions cost, compare two builds.

``jaxobs baseline record -o FILE -- python bench.py`` (or ``pytest
--jaxobs-record=FILE``) writes, per function, the deterministic quantities XLA
reports (compile count, FLOPs, bytes accessed, peak memory, fusions), compile
time per phase and kernel-latency samples, with the versions of jax, jaxlib,
backend and driver.  ``jaxobs baseline compare OLD NEW`` gates on them
(:mod:`jaxobs.baseline.compare`).  docs/upgrades.md walks through a JAX upgrade.

Nothing in this package imports jax at module import: the CLI and the
comparison run anywhere, and recording starts before the program imports jax.
"""
