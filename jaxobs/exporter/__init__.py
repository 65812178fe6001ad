"""The sidecar exporter: runs next to the JAX application and never imports ``jax``.

It merges the application's metrics (a multiprocess directory or the app's own
``/metrics``) with device and host collectors into one ``/metrics`` and answers
``/healthz`` and ``/readyz``.  Run it as ``jaxobs exporter`` or ``python -m jaxobs.exporter``.
A test (tests/test_exporter.py) proves that importing this package never imports jax.
"""

from jaxobs.exporter.app import DEFAULT_PORT, Exporter, ExporterConfig

__all__ = ["DEFAULT_PORT", "Exporter", "ExporterConfig"]
