"""The end-of-run goodput summary: the same numbers the metrics carry, as a value and as text."""

from __future__ import annotations

from dataclasses import dataclass, field

#: What each built-in badput reason means, for the summary's last column.
NOTES: dict[str, str] = {
    "startup": "before the first block (imports, JAX init) and startup()",
    "restore": "restoring checkpoints",
    "data": "waiting for input",
    "checkpoint": "saving checkpoints",
    "failed": "steps that raised",
}


@dataclass(frozen=True)
class GoodputSummary:
    """Totals since the tracker's start mark; ``badput_seconds`` has every reason seen."""

    service: str
    wall_seconds: float
    steps: int
    failed_steps: int
    compiled_steps: int
    anomalous_steps: int
    examples: int
    step_seconds: float
    goodput_seconds: float
    badput_seconds: dict[str, float] = field(default_factory=dict)
    redone_steps: int = 0
    overaccounted_seconds: float = 0.0
    expected_step_seconds: float | None = None
    step_time_deviation: float | None = None

    @property
    def badput_total(self) -> float:
        return sum(self.badput_seconds.values())

    @property
    def unaccounted_seconds(self) -> float:
        """Wall time in no block and no reason (logging, evaluation outside a block)."""
        return max(0.0, self.wall_seconds - self.goodput_seconds - self.badput_total)

    @property
    def goodput_ratio(self) -> float:
        return self.goodput_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def examples_per_second(self) -> float:
        """Throughput over the wall time (what the job as a whole achieved)."""
        return self.examples / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def mean_step_seconds(self) -> float:
        ok = self.steps - self.failed_steps
        return self.step_seconds / ok if ok else 0.0

    def format(self) -> str:
        """A few lines for the end of a training run."""
        wall = self.wall_seconds or 1.0
        lines = [
            f"{self.service}: {self.steps} steps ({self.failed_steps} failed) in "
            f"{self.wall_seconds:.2f}s, mean step {self.mean_step_seconds * 1e3:.2f} ms, "
            f"{self.examples_per_second:,.0f} examples/s",
            f"  goodput      {self.goodput_seconds:8.3f}s  {self.goodput_seconds / wall:6.1%}",
        ]
        notes = {**NOTES, "compile": f"{self.compiled_steps} steps compiled",
                 "anomaly": f"{self.anomalous_steps} anomalous steps",
                 "disruption": f"{self.redone_steps} steps re-done after a restart"}
        for reason, seconds in self.badput_seconds.items():
            note = notes.get(reason, "custom event")
            lines.append(f"  {reason:<12} {seconds:8.3f}s  {seconds / wall:6.1%}  {note}".rstrip())
        lines.append(f"  other        {self.unaccounted_seconds:8.3f}s  "
                     f"{self.unaccounted_seconds / wall:6.1%}  in no block")
        if self.expected_step_seconds is not None and self.step_time_deviation is not None:
            lines.append(f"  step time {self.step_time_deviation:.2f}x the expected "
                         f"{self.expected_step_seconds * 1e3:.2f} ms")
        if self.overaccounted_seconds > 0:
            lines.append(f"  ({self.overaccounted_seconds:.3f}s of overlapping charges were clipped)")
        return "\n".join(lines)
