"""JAX device memory and live arrays, collected inside the JAX process.

Why in-process: ``Device.memory_stats()`` is the truthful in-use figure on GPU
(NVML's "used" includes JAX's 75 % preallocated pool) and live
arrays only exist in the process that owns them.  ``jax`` is imported lazily on
the first scrape so that merely importing this module (e.g. from the sidecar's
test of "no jax in the exporter") stays cheap.

On CPU ``memory_stats()`` returns ``None``: the memory series are then absent
(not 0) and the device still counts as up, because nothing failed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry.collector import WHOLE_COLLECTOR, Collector, Samples

#: ``kind`` label -> key in XLA's allocator ``memory_stats()`` dict.
MEMORY_KINDS: tuple[tuple[str, str], ...] = (
    ("in_use", "bytes_in_use"),
    ("peak", "peak_bytes_in_use"),
    ("limit", "bytes_limit"),
    ("reserved", "bytes_reserved"),
)


def _live_arrays_by_device(jax: Any) -> dict[int, tuple[int, int]]:
    """``{device id: (arrays, bytes)}`` over ``jax.live_arrays()``.

    Bytes per device come from the sharding's shard shape, not from
    ``addressable_shards[i].data`` (which would materialise new array objects
    while we count them).  An array that cannot be sized (deleted meanwhile,
    extended dtypes) still counts as an array, with 0 bytes.
    """
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for arr in jax.live_arrays():
        try:
            sharding = arr.sharding
            devices = sharding.addressable_devices
        except Exception:  # deleted between listing and inspection
            continue
        try:
            nbytes = math.prod(sharding.shard_shape(arr.shape)) * arr.dtype.itemsize
        except Exception:
            nbytes = 0
        for dev in devices:
            entry = counts[dev.id]
            entry[0] += 1
            entry[1] += nbytes
    return {k: (v[0], v[1]) for k, v in counts.items()}


class JaxMemoryCollector(Collector):
    """``jaxobs_device_memory_bytes``, ``…_utilization_ratio``, ``jaxobs_live_arrays``, ``…_bytes``.

    ``jax_module`` is the seam for tests and is normally left ``None``
    (``import jax`` on first scrape).
    """

    name = "jax_memory"

    def __init__(self, jax_module: Any | None = None) -> None:
        super().__init__()
        self._jax = jax_module

    def _module(self) -> Any:
        if self._jax is None:
            import jax  # lazy: see module docstring

            self._jax = jax
        return self._jax

    def _collect(self, out: Samples) -> None:
        jax = self._module()
        devices = list(jax.local_devices())
        try:
            live = _live_arrays_by_device(jax)
        except Exception as exc:
            self.latch.fail("live_arrays", exc)
            live = None
        else:
            self.latch.ok("live_arrays")
        out.up(WHOLE_COLLECTOR, True)
        for dev in devices:
            device = str(dev.id)
            try:
                stats = dev.memory_stats()
            except Exception as exc:
                self.latch.fail(f"device {device}", exc)
                out.up(device, False)
                continue
            self.latch.ok(f"device {device}")
            if stats:
                self._add_memory(out, device, dev.platform, stats)
            if live is not None:
                arrays, nbytes = live.get(dev.id, (0, 0))
                out.add(catalog.LIVE_ARRAYS, (device,), arrays)
                out.add(catalog.LIVE_ARRAY_BYTES, (device,), nbytes)
            out.up(device, True)

    @staticmethod
    def _add_memory(out: Samples, device: str, platform: str, stats: dict[str, Any]) -> None:
        for kind, key in MEMORY_KINDS:
            if key in stats:
                out.add(catalog.DEVICE_MEMORY, (device, platform, kind), stats[key])
        limit = stats.get("bytes_limit") or 0
        if limit > 0 and "bytes_in_use" in stats:
            out.add(catalog.DEVICE_MEMORY_UTILIZATION, (device, platform), stats["bytes_in_use"] / limit)
