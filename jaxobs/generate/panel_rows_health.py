"""Panels on the health of results and hardware: NaN/Inf outputs, the determinism canary,
GPU throttling and clocks, model FLOPs utilization, and on-demand profiles."""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate.health_alerts import THROTTLE_REASONS
from jaxobs.generate.names import CANARY_MISMATCH, GPU_THROTTLED, NONFINITE_OUTPUTS
from jaxobs.generate.panels import FN, RATE, Panel, Row, above, increase, q, rate, sel


def achieved_flops(*matchers: str) -> str:
    """Achieved FLOP/s per function: FLOPs per call over the mean sampled kernel time."""
    flops = f"max by (function) ({sel(c.FUNCTION_FLOPS, *matchers)})"
    mean_kernel = (f"sum by (function) ({rate(c.KERNEL_DURATION, *matchers, suffix='_sum')})\n"
                   f"/ sum by (function) ({rate(c.KERNEL_DURATION, *matchers, suffix='_count')})")
    return f"{flops}\n/ on (function) (\n{mean_kernel}\n> 0)"


def mfu(*matchers: str) -> str:
    """Model FLOPs utilization: achieved over the accelerator's peak (absent on CPU: no peak)."""
    # on () group_left, not scalar(): without a peak (CPU) the result is empty, not NaN
    return f"(\n{achieved_flops(*matchers)}\n)\n/ on () group_left\nmax({sel(c.DEVICE_PEAK_FLOPS)})"


ACHIEVED = achieved_flops(FN)
MFU = mfu(FN)
#: the executive dashboard has no function variable: every function counts
MFU_ALL_FUNCTIONS = mfu()
THROTTLING = 'reason=~"' + "|".join(THROTTLE_REASONS) + '"'
SM = 'clock="sm"'
PROFILE_HOWTO = ("To see what a slow function is doing, capture a profile of the running process: "
                 "`jaxobs profile http://<pod>:<port> --seconds 5 -o ./profile` (the app serves "
                 "`jaxobs.start_http_server(port, profiling=True)`; the sidecar forwards with "
                 "--app-profile-url). It prints how to open the result in XProf or Perfetto.")


def oncall_results_row() -> Row:
    return Row("Results health", (
        Panel("NaN / Inf outputs", "timeseries",
              q(f"sum by (function) ({increase(c.NONFINITE_OUTPUTS, FN)})", "{{function}}"), "short",
              "Sampled calls whose floating-point outputs held NaN or Inf, per interval. Any value "
              "means some users got garbage results.", steps=above(1.0), min=0.0, bars=True,
              width=12, runbook=NONFINITE_OUTPUTS),
        Panel("Determinism canary: max abs difference", "timeseries",
              q(f"max by (function) ({sel(c.CANARY_MAX_ABS_DIFF, FN)})", "{{function}}"), "short",
              "How far the canary's latest output is from its reference (jaxobs.canary). 0 is "
              "deterministic; any other value means the same input gave a different answer.",
              min=0.0, width=12, runbook=CANARY_MISMATCH),
    ))


def debug_efficiency_panels() -> tuple[Panel, ...]:
    return (
        Panel("Model FLOPs utilization (MFU)", "timeseries", q(MFU, "{{function}}"), "percentunit",
              "Achieved FLOP/s (XLA's FLOPs per call / mean sampled kernel time) divided by the "
              "accelerator's dense peak for the configured dtype. Empty on CPU, which has no "
              "peak; see Achieved FLOP/s per kernel instead.", min=0.0, max=1.0, width=8),
        Panel("Achieved FLOP/s per kernel", "timeseries", q(ACHIEVED, "{{function}}"), "flops",
              "FLOPs per call divided by the mean sampled kernel time: how fast each kernel "
              "computes while it runs. " + PROFILE_HOWTO, min=0.0, width=8),
        Panel("Profile captures", "stat",
              q(f"sum by (outcome) (increase({sel(c.PROFILES)}[$__range]))", "{{outcome}}"),
              "short", PROFILE_HOWTO, width=8),
    )


def debug_throttling_panels() -> tuple[Panel, ...]:
    gpu = "{{gpu}} {{reason}}"
    return (
        Panel("GPU clock throttling", "timeseries",
              q(f"max by (gpu, reason) ({sel(c.GPU_THROTTLED, THROTTLING)})", gpu), "short",
              "1 while NVML reports power or thermal throttling on a GPU. Read it next to kernel "
              "latency: kernels slow down while clocks are held down.", min=0.0, max=1.0,
              width=8, runbook=GPU_THROTTLED),
        Panel("SM clock / maximum", "timeseries",
              q(f"max by (gpu) ({sel(c.GPU_CLOCK, SM)})\n/ max by (gpu) ({sel(c.GPU_CLOCK_MAX, SM)})",
                "{{gpu}}"),
              "percentunit", "Streaming-multiprocessor clock as a share of its maximum.",
              min=0.0, max=1.0, width=8),
        Panel("PCIe throughput", "timeseries",
              q(f"sum by (gpu, direction) ({sel(c.GPU_PCIE_THROUGHPUT)})", "{{gpu}} {{direction}}"),
              "Bps", "Host-device traffic per GPU. High PCIe with low utilization: the model "
              "waits for inputs to be copied.", min=0.0, width=8),
        Panel("GPU memory per process of this workload", "timeseries",
              q(f"max by (gpu, pid) ({sel(c.GPU_PROCESS_MEMORY)})", "{{gpu}} pid {{pid}}"), "bytes",
              "Device memory used by each of this workload's processes; pid=others sums every "
              "other process on the same (shared or time-sliced) GPU.", min=0.0, width=8),
        Panel("GPU energy", "timeseries",
              q(f"sum by (gpu) (rate({sel(c.GPU_ENERGY)}[{RATE}]))", "{{gpu}}"), "watt",
              "Average power from the energy counter (more precise than sampled power).",
              min=0.0, width=8),
    )
