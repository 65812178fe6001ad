"""Device and host collectors, each isolated and each with a ``jaxobs_collector_up`` series.

* :mod:`jaxobs.collectors.jax_memory` — in the JAX process: ``memory_stats()`` and live arrays.
* :mod:`jaxobs.collectors.nvml` — in the sidecar: NVIDIA GPUs via NVML (+ XID events).
* :mod:`jaxobs.collectors.tpu` — in the sidecar: the TPU runtime metrics service (gRPC).
* :mod:`jaxobs.collectors.host` — anywhere: process RSS/CPU and host memory (psutil).

Submodules are not imported here: the sidecar must never import ``jax``, and a
GPU pod should not pay for ``grpc``.
"""
