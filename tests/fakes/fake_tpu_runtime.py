"""A fake TPU runtime metrics service speaking the real proto from ``tpu-info``.

It subclasses the generated ``RuntimeMetricServiceServicer`` and is served by
a real ``grpc.server`` on 127.0.0.1 with local credentials (what libtpu's
service accepts and what ``tpu-info`` connects with).  Each chip answers with
the metric names and value types libtpu uses (``tpu_info.metrics.MetricName``):
HBM bytes as ``as_int``, duty cycle in percent as ``as_double``, the chip as
the ``device-id`` int attribute.

Scenario controls: ``service.unsupported`` (metric names answered with
NOT_FOUND), ``runtime.stop()`` / ``runtime.start()`` on the same port.
"""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field

import grpc
from tpu_info.proto import tpu_metric_service_pb2 as pb
from tpu_info.proto import tpu_metric_service_pb2_grpc as pb_grpc

HBM_USAGE = "tpu.runtime.hbm.memory.usage.bytes"
HBM_TOTAL = "tpu.runtime.hbm.memory.total.bytes"
DUTY_CYCLE = "tpu.runtime.tensorcore.dutycycle.percent"


@dataclass
class FakeChip:
    device_id: int
    hbm_total: int = 16 * 1024**3
    hbm_used: int = 9 * 1024**3
    duty_cycle_pct: float = 87.5


@dataclass
class FakeRuntimeMetricService(pb_grpc.RuntimeMetricServiceServicer):
    chips: list[FakeChip] = field(default_factory=lambda: [FakeChip(i) for i in range(4)])
    unsupported: set[str] = field(default_factory=set)
    requests: int = 0

    def _metric(self, chip: FakeChip, gauge: pb.Gauge) -> pb.Metric:
        attr = pb.Attribute(key="device-id", value=pb.AttrValue(int_attr=chip.device_id))
        return pb.Metric(attribute=attr, gauge=gauge)

    def GetRuntimeMetric(self, request: pb.MetricRequest, context: grpc.ServicerContext) -> pb.MetricResponse:  # noqa: N802
        self.requests += 1
        name = request.metric_name
        if name in self.unsupported or name not in (HBM_USAGE, HBM_TOTAL, DUTY_CYCLE):
            context.abort(grpc.StatusCode.NOT_FOUND, f"metric {name} not found")
        metrics = []
        for chip in self.chips:
            if name == HBM_USAGE:
                gauge = pb.Gauge(as_int=chip.hbm_used)
            elif name == HBM_TOTAL:
                gauge = pb.Gauge(as_int=chip.hbm_total)
            else:
                gauge = pb.Gauge(as_double=chip.duty_cycle_pct)
            metrics.append(self._metric(chip, gauge))
        return pb.MetricResponse(metric=pb.TPUMetric(name=name, description="fake", metrics=metrics))

    def ListSupportedMetrics(self, request: pb.ListSupportedMetricsRequest,  # noqa: N802
                             context: grpc.ServicerContext) -> pb.ListSupportedMetricsResponse:
        names = [n for n in (HBM_USAGE, HBM_TOTAL, DUTY_CYCLE) if n not in self.unsupported]
        return pb.ListSupportedMetricsResponse(
            supported_metric=[pb.SupportedMetric(metric_name=n) for n in names])


class FakeTpuRuntime:
    """Serves a :class:`FakeRuntimeMetricService` on ``127.0.0.1:<port>``; restartable on the same port."""

    def __init__(self, service: FakeRuntimeMetricService | None = None, port: int = 0) -> None:
        self.service = service or FakeRuntimeMetricService()
        self.port = port
        self._server: grpc.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeTpuRuntime:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_RuntimeMetricServiceServicer_to_server(self.service, server)
        creds = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        self.port = server.add_secure_port(f"127.0.0.1:{self.port}", creds)
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def __enter__(self) -> FakeTpuRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
