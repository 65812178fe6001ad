"""Peak FLOP/s of common accelerators, so model FLOPs utilization (MFU) is a query.

MFU of a function = achieved FLOP/s / the device's peak for the dtype it runs in.
Achieved FLOP/s is ``jaxobs_function_flops`` (XLA's cost analysis of the
compiled function) divided by its mean sampled kernel time, a ratio of two
series Prometheus already has; this module only supplies the denominator as
``jaxobs_device_peak_flops_per_second``.  The figures are the vendors' dense
(no sparsity) peaks per chip; override them with
``jaxobs.configure(peak_flops_per_second=...)`` for another part, a power-capped
board, or a different dtype.  On CPU there is no meaningful peak: the gauge is
not set and dashboards show achieved FLOP/s only.
"""

from __future__ import annotations

#: device_kind substring (as ``jax.devices()[0].device_kind`` spells it, lower-cased) →
#: dense peak FLOP/s per dtype.  Sources: NVIDIA A100/H100/H200/L4 datasheets (SXM parts,
#: tensor cores, without sparsity); Google Cloud TPU system architecture pages (per chip).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "h200": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12, "float8": 1979e12},
    "h100": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12, "float8": 1979e12},
    "a100": {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12},
    "l4": {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12, "float8": 242e12},
    "tpu v6": {"bfloat16": 918e12, "int8": 1836e12},
    "tpu v5p": {"bfloat16": 459e12, "int8": 918e12},
    "tpu v5 lite": {"bfloat16": 197e12, "int8": 394e12},
    "tpu v5e": {"bfloat16": 197e12, "int8": 394e12},
    "tpu v4": {"bfloat16": 275e12, "int8": 275e12},
}


def peak_flops(device_kind: str, dtype: str = "bfloat16") -> float | None:
    """The table's peak for this device kind and dtype; None when unknown (CPU included)."""
    kind = device_kind.lower()
    for key, by_dtype in PEAK_FLOPS.items():  # the most specific keys come first
        if key in kind:
            return by_dtype.get(dtype)
    return None


def local_device_kind() -> str:
    """``device_kind`` of this process' first device (imports jax)."""
    import jax

    return str(jax.devices()[0].device_kind)
