"""jaxobs: observability and SLO toolkit for JAX workloads."""

__version__ = "0.1.0"
