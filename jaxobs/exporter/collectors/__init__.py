"""Device and host collectors that run in the sidecar, each isolated, each with ``jaxobs_collector_up``.

* :mod:`~jaxobs.exporter.collectors.nvml` — NVIDIA GPUs through NVML (and XID events).
* :mod:`~jaxobs.exporter.collectors.tpu` — the TPU runtime metrics service (gRPC).
* :mod:`~jaxobs.exporter.collectors.host` — process and host memory/CPU (psutil).

The collector that must run inside the JAX process (``memory_stats()``, live arrays)
is :mod:`jaxobs.runtime.jax_memory`.  Submodules are not imported here: a GPU pod
should not pay for grpc, nor a TPU pod for NVML.
"""
