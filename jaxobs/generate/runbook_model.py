"""The shape of a runbook, and the placeholders runbooks may use (filled from the alert)."""

from __future__ import annotations

from dataclasses import dataclass

#: Placeholders, each filled from the alert: ``$service`` and ``$slo`` are its labels,
#: ``$targets`` its ``targets`` annotation (the service's scrape-target matchers).
JOB = "$targets"
SVC = 'service="$service"'
PLACEHOLDERS = ("Fill in `$service` (and `$slo`) from the alert's labels and `$targets` from its "
                "`targets` annotation (the service's scrape targets, e.g. `job=\"inference\"`).")


@dataclass(frozen=True)
class Runbook:
    severity: str
    meaning: str
    checks: tuple[tuple[str, str], ...]  # (what it tells you, PromQL)
    mitigations: tuple[str, ...]
    escalation: str
