"""Version labels for ``jaxobs_build_info`` (a driver or runtime mismatch across replicas)."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def build_info_labels() -> dict[str, str]:
    """jax/jaxlib/backend/driver/cuda/jaxobs versions of this process (imports jax)."""
    import jax
    import jaxlib

    from jaxobs import __version__

    backend = jax.default_backend()
    driver = cuda = ""
    if backend == "gpu":
        try:
            platform_version = jax.devices()[0].client.platform_version  # e.g. "cuda 12030"
            cuda = str(platform_version).split()[-1]
        except Exception:
            pass
        try:
            import pynvml

            pynvml.nvmlInit()
            driver = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            pass
    return {
        "jax": jax.__version__,
        "jaxlib": getattr(jaxlib, "__version__", "unknown"),
        "backend": backend,
        "driver": driver,
        "cuda": cuda,
        "jaxobs": __version__,
    }
