"""Runbooks of the result- and hardware-health alerts (see :mod:`jaxobs.generate.health_alerts`)."""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate import names as r
from jaxobs.generate import promql
from jaxobs.generate.runbook_model import JOB, Runbook

SM_CLOCK = 'clock="sm"'


def _q(metric: str, *matchers: str) -> str:
    return promql.selector(metric, *matchers, ordered=True)


HEALTH_RUNBOOKS: dict[str, Runbook] = {
    r.NONFINITE_OUTPUTS: Runbook(
        severity="ticket",
        meaning="Sampled calls of a function returned NaN or Inf (jaxobs checks the floating-point "
                "outputs of sampled calls, 1% by default, with one fused reduction on the device). "
                "Callers may be receiving garbage without any error being raised.",
        checks=(
            ("Which functions, how often",
             f"sum by (function) (increase({_q(c.NONFINITE_OUTPUTS.name, JOB)}[1h]))"),
            ("Share of sampled calls affected (kernel samples are the checked calls)",
             f"sum by (function) (increase({_q(c.NONFINITE_OUTPUTS.name, JOB)}[1h]))\n/\n"
             f"sum by (function) (increase({_q(c.KERNEL_DURATION.name + '_count', JOB)}[1h]))"),
            ("Did it start with a new build (jax, jaxlib, driver)?",
             f"{_q(c.BUILD_INFO.name, JOB)}"),
        ),
        mitigations=(
            "Mixed precision: a bfloat16/float16 overflow turns into Inf; check loss scaling, "
            "normalisation layers and softmax inputs, or run the suspect op in float32.",
            "Inputs: NaN in, NaN out. Validate and clip inputs at the edge of the service; "
            "divide-by-zero and log/sqrt of non-positive values are the usual sources.",
            "A new driver, XLA or jax version: compare against the previous build with "
            "`jaxobs baseline compare` (docs/upgrades.md) and roll back if it started there.",
            "Reproduce locally with `jax.config.update('jax_debug_nans', True)` on a captured input.",
        ),
        escalation="Ticket for the model owners; page them if the affected share is large and "
                   "results are user-facing.",
    ),
    r.CANARY_MISMATCH: Runbook(
        severity="ticket",
        meaning="A determinism canary (`jaxobs.canary`) re-ran a fixed input and got an output "
                "different from its reference (its first run, or the golden file an earlier deploy "
                "wrote). The same input no longer gives the same answer: nondeterministic kernels, "
                "or a numerics change from a new driver, XLA version or flag.",
        checks=(
            ("Largest difference per function",
             f"{_q(c.CANARY_MAX_ABS_DIFF.name, JOB)}"),
            ("Runs by outcome",
             f"sum by (function, outcome) (increase({_q(c.CANARY_RUNS.name, JOB)}[1h]))"),
            ("What changed: jax, jaxlib, driver and CUDA versions per replica",
             f"{_q(c.BUILD_INFO.name, JOB)}"),
        ),
        mitigations=(
            "A difference right after a deploy with a golden file: the new build computes "
            "differently. Compare builds with `jaxobs baseline compare` (docs/upgrades.md) and "
            "decide whether the new numbers are acceptable (then replace the golden file) or "
            "roll back.",
            "Differences that come and go on one build: nondeterministic GPU ops (atomics in "
            "reductions and scatters). Set `XLA_FLAGS=--xla_gpu_deterministic_ops=true` and "
            "measure the cost.",
            "Small differences that do not matter: give the canary an `rtol`/`atol`.",
        ),
        escalation="Ticket for the model owners; involve the platform team if it follows a driver "
                   "or runtime upgrade.",
    ),
    r.GPU_THROTTLED: Runbook(
        severity="ticket",
        meaning="A busy GPU ran with its clocks held down by power capping or heat for a large "
                "share of 30 minutes. Kernels take longer than the hardware allows, which shows up "
                "as slower steps or higher latency with no change in the code.",
        checks=(
            ("Throttle reasons per GPU (1 = active)",
             f"max by (instance, gpu, reason) ({_q(c.GPU_THROTTLED.name, JOB)})"),
            ("SM clock against its maximum",
             f"{_q(c.GPU_CLOCK.name, JOB, SM_CLOCK)}\n/\n{_q(c.GPU_CLOCK_MAX.name, JOB, SM_CLOCK)}"),
            ("Power and temperature",
             f"{_q(c.GPU_POWER.name, JOB)}\n{_q(c.GPU_TEMPERATURE.name, JOB)}"),
            ("Kernel latency over the same time (the debug dashboard's throttling row)",
             f"histogram_quantile(0.99, sum by (function, le) "
             f"(rate({_q(c.KERNEL_DURATION.name + '_bucket', JOB)}[5m])))"),
        ),
        mitigations=(
            "Thermal: check the node's cooling and fan/ambient alerts; move the workload off a "
            "hot node (cordon and drain).",
            "Power cap: check the board's power limit (`nvidia-smi -q -d POWER`); a lowered "
            "limit or a shared power budget on the chassis throttles every GPU on it.",
            "If only one GPU of a node is affected, suspect the hardware: ask for it to be "
            "inspected.",
        ),
        escalation="Ticket for the infrastructure/hardware on-call.",
    ),
}
