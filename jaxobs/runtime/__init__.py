"""Code that runs inside the JAX process and may import ``jax``.

* :mod:`~jaxobs.runtime.jit` — the drop-in ``jaxobs.jit`` and its per-call fast path.
* :mod:`~jaxobs.runtime.compile_events` — the one ``jax.monitoring`` listener hub,
  compile attribution to the calling wrapper, and the subscribers' API.
* :mod:`~jaxobs.runtime.causes` — why a function recompiled, and how an error is classified.
* :mod:`~jaxobs.runtime.sli` — ``jaxobs.request``/``jaxobs.step``: what users feel.
* :mod:`~jaxobs.runtime.readiness` — warmups, readiness and deploy windows.
* :mod:`~jaxobs.runtime.goodput` (with ``goodput_summary``, ``step_time``) — training goodput and badput.
* :mod:`~jaxobs.runtime.manifest` — warm-start manifests; :mod:`~jaxobs.runtime.tracing` — OpenTelemetry spans.
* :mod:`~jaxobs.runtime.profiling`, :mod:`~jaxobs.runtime.canary` — profiles on demand, the determinism canary.
* :mod:`~jaxobs.runtime.efficiency` — peak FLOP/s for model FLOPs utilization.
* :mod:`~jaxobs.runtime.buildinfo`, :mod:`~jaxobs.runtime.jax_memory` — versions and allocator state.

Nothing here is imported by the sidecar (:mod:`jaxobs.exporter`) or the generators.
"""
