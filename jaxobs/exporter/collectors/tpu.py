"""TPU chips through the TPU runtime's metrics service (gRPC, ``localhost:8431``).

libtpu serves ``tpu.monitoring.runtime.RuntimeMetricService`` in the process
that owns the TPU; ``tpu-info`` reads the same service, and we use the
generated stubs it ships (``tpu_info.proto.tpu_metric_service_pb2(_grpc)``)
with the same local channel credentials, so we speak exactly its protocol.
``grpc`` is imported on first scrape: GPU pods never pay for it.

Failure modes, and what the exposition shows:

* endpoint down (TPU program not started, restarting): ``up{device=""} 0``
  and ``up{device=<chip>} 0`` for chips seen before — they do not vanish;
  the channel reconnects with a short backoff, so recovery shows on the next
  scrape after the runtime is back.
* a metric this runtime does not serve (``NOT_FOUND``/``UNIMPLEMENTED``/
  ``INVALID_ARGUMENT``): that series is absent, no error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxobs import catalog
from jaxobs.telemetry.collector import WHOLE_COLLECTOR, Collector, Samples

DEFAULT_ADDRESS = "localhost:8431"


@dataclass(frozen=True)
class RuntimeMetric:
    """One runtime metric name and how it maps onto a catalog metric."""

    runtime_name: str
    spec: catalog.MetricSpec
    extra_labels: tuple[str, ...] = ()
    scale: float = 1.0


#: Read on every scrape, in this order (names as in ``tpu_info.metrics.MetricName``).
RUNTIME_METRICS: tuple[RuntimeMetric, ...] = (
    RuntimeMetric("tpu.runtime.hbm.memory.usage.bytes", catalog.TPU_HBM, ("used",)),
    RuntimeMetric("tpu.runtime.hbm.memory.total.bytes", catalog.TPU_HBM, ("total",)),
    RuntimeMetric("tpu.runtime.tensorcore.dutycycle.percent", catalog.TPU_DUTY_CYCLE, scale=0.01),
)

#: gRPC status names meaning "this metric is not served here" rather than "the runtime is down".
UNSUPPORTED_CODES: tuple[str, ...] = ("NOT_FOUND", "UNIMPLEMENTED", "INVALID_ARGUMENT")

#: Reconnect quickly after the runtime restarts (gRPC's default backoff grows to 2 minutes).
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def gauge_value(gauge: Any) -> float | None:
    """The numeric value of a runtime ``Gauge`` (a oneof of double/int/string/bool)."""
    which = gauge.WhichOneof("value")
    if which in ("as_double", "as_int", "as_bool"):
        return float(getattr(gauge, which))
    return None


class TpuCollector(Collector):
    """``jaxobs_tpu_hbm_bytes{chip,kind}`` and ``jaxobs_tpu_duty_cycle_ratio{chip}`` (0–1)."""

    name = "tpu"

    def __init__(self, address: str = DEFAULT_ADDRESS, *, timeout: float = 2.0) -> None:
        super().__init__()
        self.address = address
        self.timeout = timeout
        self._stub: Any = None
        self._channel: Any = None
        self._grpc: Any = None
        self._pb: Any = None
        self._chips: set[str] = set()

    def _connect(self) -> Any:
        if self._stub is None:
            import grpc
            from tpu_info.proto import tpu_metric_service_pb2 as pb
            from tpu_info.proto import tpu_metric_service_pb2_grpc as pb_grpc

            self._grpc, self._pb = grpc, pb
            self._channel = grpc.secure_channel(self.address, grpc.local_channel_credentials(),
                                                options=list(CHANNEL_OPTIONS))
            self._stub = pb_grpc.RuntimeMetricServiceStub(self._channel)
        return self._stub

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = self._stub = None

    def _collect(self, out: Samples) -> None:
        try:
            stub = self._connect()
        except Exception as exc:  # tpu-info / grpcio not installed
            self.latch.fail("import", exc)
            out.up(WHOLE_COLLECTOR, False)
            return
        grpc, pb = self._grpc, self._pb
        samples: list[tuple[catalog.MetricSpec, tuple[str, ...], float]] = []
        seen: set[str] = set()
        try:
            for metric in RUNTIME_METRICS:
                try:
                    resp = stub.GetRuntimeMetric(pb.MetricRequest(metric_name=metric.runtime_name),
                                                 timeout=self.timeout)
                except grpc.RpcError as exc:
                    if exc.code().name in UNSUPPORTED_CODES:
                        continue
                    raise
                for m in resp.metric.metrics:
                    value = gauge_value(m.gauge)
                    if value is None:
                        continue
                    chip = str(m.attribute.value.int_attr)
                    seen.add(chip)
                    samples.append((metric.spec, (chip,) + metric.extra_labels, value * metric.scale))
        except grpc.RpcError as exc:
            self.latch.fail("endpoint", exc)
            out.up(WHOLE_COLLECTOR, False)
            for chip in sorted(self._chips, key=_chip_order):
                out.up(chip, False)
            return
        self.latch.ok("endpoint")
        self._chips |= seen
        out.up(WHOLE_COLLECTOR, True)
        for spec, labels, value in samples:
            out.add(spec, labels, value)
        for chip in sorted(self._chips, key=_chip_order):
            out.up(chip, chip in seen)


def _chip_order(chip: str) -> tuple[int, str]:
    return (int(chip), "") if chip.isdigit() else (1 << 30, chip)
