"""Alerts on the health of results and hardware: NaN/Inf outputs, a determinism canary that
disagrees with its reference, and GPUs throttled by power or heat during steady traffic.

Each alert is declared here with its promtool scenarios and its runbook, so one
file holds everything an on-call needs to trust it.  The spec turns each on or
off under ``resources`` (``nonfinite_outputs``, ``canary_mismatch``,
``gpu_throttled``, with ``gpu_throttle_ratio`` the share of time throttled).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import promql as q
from jaxobs.generate.names import CANARY_MISMATCH, GPU_THROTTLED, NONFINITE_OUTPUTS, Alert
from jaxobs.slo.model import ResourceThresholds, Service

NONFINITE_WINDOW = "15m"
CANARY_WINDOW = "30m"
THROTTLE_WINDOW = "30m"
#: throttle reasons that cost speed and that an operator can act on (power and heat);
#: idle, application clocks and sync boost are normal states
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
#: "steady traffic": the GPU was busy at least this share of the window (an idle GPU
#: lowering its clocks is not throttling anyone)
BUSY_RATIO = 0.2


def health_alerts(service: Service, t: ResourceThresholds,
                  alert: Callable[[str, str, str, str, str, str, str], Alert]) -> list[Alert]:
    """The service's health alerts; ``alert`` builds one the way resource alerts are built."""
    s = q.matchers(service.target_selector)
    g = service.group_by
    name = service.name
    out = []
    if t.nonfinite_outputs:
        nonfinite = q.selector(c.NONFINITE_OUTPUTS.name, *s)
        out.append(alert(
            NONFINITE_OUTPUTS, "ticket", "numerics", "0s",
            f"{q.agg('sum', ('function', *g), q.increase(nonfinite, NONFINITE_WINDOW))} > 0",
            f"{name}: NaN or Inf in model outputs",
            f"{{{{ $labels.function }}}} returned NaN or Inf on {{{{ $value | humanize }}}} sampled "
            f"calls in the last {NONFINITE_WINDOW}; users may be getting garbage results."))
    if t.canary_mismatch:
        mismatch = q.selector(c.CANARY_RUNS.name, *s, 'outcome="mismatch"')
        out.append(alert(
            CANARY_MISMATCH, "ticket", "numerics", "0s",
            f"{q.agg('sum', ('function', *g), q.increase(mismatch, CANARY_WINDOW))} > 0",
            f"{name}: determinism canary differs from its reference",
            f"The canary of {{{{ $labels.function }}}} produced an output different from its "
            f"reference {{{{ $value | humanize }}}} times in {CANARY_WINDOW} (see "
            f"{c.CANARY_MAX_ABS_DIFF.name}): the same input no longer gives the same answer."))
    if t.gpu_throttled:
        reasons = "|".join(THROTTLE_REASONS)
        throttled = q.selector(c.GPU_THROTTLED.name, *s, f'reason=~"{reasons}"')
        busy = q.selector(c.GPU_UTILIZATION.name, *s)
        by = ("instance", "gpu", *g)
        out.append(alert(
            GPU_THROTTLED, "ticket", "hardware", "15m",
            f"avg_over_time({q.agg('max', by, throttled)}[{THROTTLE_WINDOW}:1m])\n"
            f"> {q.number(t.gpu_throttle_ratio)}\n"
            f"and on ({', '.join(by)})\n"
            f"avg_over_time({q.agg('max', by, busy)}[{THROTTLE_WINDOW}:1m]) > {q.number(BUSY_RATIO)}",
            f"{name}: GPU clocks throttled by power or heat",
            f"GPU {{{{ $labels.gpu }}}} on {{{{ $labels.instance }}}} ran with power or thermal "
            f"throttling {{{{ $value | humanizePercentage }}}} of the last {THROTTLE_WINDOW} while "
            f"busy (threshold {t.gpu_throttle_ratio:.0%}); kernels run slower than the hardware can."))
    return out


def health_scenarios(t: ResourceThresholds, at: Callable[..., dict[str, str]], n: int,
                     series: Callable[[str, dict[str, str]], Any], counter: Callable[[float, int], str],
                     gauge: Callable[[float, int], str], one_step: str) -> dict[tuple[str, str], Any]:
    """promtool inputs per (alert, severity): ``(fires, quiet, eval_time, expect)`` tuples."""
    fn = {"function": "predict"}
    gpu = {"gpu": "0", "uuid": "GPU-0", "model": "H100"}
    out: dict[tuple[str, str], Any] = {}
    if t.nonfinite_outputs:
        out[(NONFINITE_OUTPUTS, "ticket")] = (
            ((series(c.NONFINITE_OUTPUTS.name, at(0, **fn)), one_step),),
            (("finite outputs only", ((series(c.NONFINITE_OUTPUTS.name, at(0, **fn)), gauge(0, n)),)),),
            "5m", {"ticket": 1})
    if t.canary_mismatch:
        runs = c.CANARY_RUNS.name
        out[(CANARY_MISMATCH, "ticket")] = (
            ((series(runs, at(0, **fn, outcome="match")), counter(1, n)),
             (series(runs, at(0, **fn, outcome="mismatch")), one_step)),
            (("every run matches", ((series(runs, at(0, **fn, outcome="match")), counter(1, n)),
                                    (series(runs, at(0, **fn, outcome="mismatch")), gauge(0, n)))),),
            "5m", {"ticket": 1})
    if t.gpu_throttled:
        def throttle(power_cap: float, busy: float, reason: str = "sw_power_cap") -> tuple[Any, ...]:
            return ((series(c.GPU_THROTTLED.name, at(0, **gpu, reason=reason)), gauge(power_cap, n)),
                    (series(c.GPU_UTILIZATION.name, at(0, **gpu)), gauge(busy, n)))

        out[(GPU_THROTTLED, "ticket")] = (
            throttle(1, 0.9),
            (("throttled only while idle", throttle(1, 0.05)),
             ("busy and at full clocks", throttle(0, 0.9)),
             ("clocks lowered by an idle reason, not power or heat", throttle(1, 0.9, "gpu_idle"))),
            "35m", {"ticket": 1})
    return out
