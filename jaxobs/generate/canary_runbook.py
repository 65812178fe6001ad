"""The runbook of a failed canary analysis, as data (like :mod:`jaxobs.generate.health_runbooks`).

One page per service with a ``canary:`` block, written next to its AnalysisTemplate
(``alerts/kubernetes/<service>/canary-analysis.md``): how to roll back first, then per
analysis metric what its failure means, what to check and what to do.  Queries use
the placeholders ``$targets`` (the service's scrape targets, filled in), ``$canary`` and
``$stable`` (the pod-template hashes the AnalysisRun shows as its arguments).
"""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate import names as n
from jaxobs.generate import promql
from jaxobs.generate.render import header_line
from jaxobs.generate.runbook_model import Runbook
from jaxobs.slo.model import Service, Spec

TARGETS = "$targets"
CANARY = "$track=\"$canary\""
STABLE = "$track=\"$stable\""
SVC = 'service="$service"'
STEADY = 'start="steady"'
MISS = 'cache="miss"'


def _q(metric: str, *matchers: str) -> str:
    return promql.selector(metric, *matchers, ordered=True)


ROLLBACK = (
    "Argo Rollouts aborts the rollout by itself when a metric fails (more failed measurements "
    "than `failureLimit`): traffic returns to the stable ReplicaSet and the canary scales down. "
    "Check with `kubectl argo rollouts get rollout <name>` (status `Degraded`, message "
    "`RolloutAborted`). To finish the rollback, set the Rollout's pod template back to the "
    "stable version (`kubectl argo rollouts undo <name>`, or revert the image in Git if a "
    "GitOps tool owns it), otherwise the next sync starts the same canary again. An "
    "*inconclusive* measurement (no data yet, or a burn between the ticket and page rates) "
    "pauses the rollout: `kubectl argo rollouts promote <name>` continues it, "
    "`kubectl argo rollouts abort <name>` rolls back. `kubectl get analysisrun <run> -o yaml` "
    "shows every measurement and the hashes in `spec.args`.")

CANARY_RUNBOOKS: dict[str, Runbook] = {
    "burn": Runbook(
        severity="fails when the canary burns its SLO's error budget as fast as the fastest page "
                 "tier (over that tier's short window); passes below the slowest tier's rate",
        meaning="The canary alone spends the error budget fast enough to page if it were the "
                "whole fleet. The rates are the SLI rates the burn-rate alerts read, split by "
                "version: the metric name says which SLO (availability, latency, cold start, "
                "cache hit).",
        checks=(
            ("Bad and all events per second, canary against stable",
             f"{n.TRACK_ERRORS_RATE}{{{SVC},$track=~\"$canary|$stable\"}}\n"
             f"{n.TRACK_EVENTS_RATE}{{{SVC},$track=~\"$canary|$stable\"}}"),
            ("Which functions raise in the canary, and which error class",
             f"sum by (function, error) (rate({_q(c.ERRORS.name, TARGETS, CANARY)}[5m]))"),
        ),
        mitigations=(
            "Roll back first, then reproduce: the stable version serves the same traffic "
            "without the burn, so the difference is the new build.",
            "`error=\"oom\"` in the canary only: the new model or batch size needs more device "
            "memory; see runbooks/JaxobsOOMErrors.md.",
        ),
        escalation="The owners of the change that the canary carries.",
    ),
    "latency": Runbook(
        severity="fails when the canary's steady-state latency quantile exceeds both the stable "
                 "one times `latency_tolerance` and the latency SLO's threshold",
        meaning="Requests that did not compile are slower in the canary: a kernel regression, a "
                "lost fusion, a new XLA flag, or a smaller batch.",
        checks=(
            ("p99 of steady requests, canary and stable",
             f"histogram_quantile(0.99, sum by (le) (rate("
             f"{_q(c.REQUEST_DURATION.name + '_bucket', SVC, STEADY, CANARY)}[5m])))\n"
             f"histogram_quantile(0.99, sum by (le) (rate("
             f"{_q(c.REQUEST_DURATION.name + '_bucket', SVC, STEADY, STABLE)}[5m])))"),
            ("Device time per function (a kernel regression shows here first)",
             f"histogram_quantile(0.99, sum by (le, function, $track) (rate("
             f"{_q(c.KERNEL_DURATION.name + '_bucket', TARGETS)}[5m])))"),
        ),
        mitigations=(
            "Roll back; then compare builds offline with `jaxobs baseline compare` "
            "(docs/upgrades.md) to find the slower function.",
        ),
        escalation="The model owners; the platform team if the canary also changed jax, jaxlib "
                   "or the driver.",
    ),
    "cold-start": Runbook(
        severity="fails when more than the cold-start threshold of the warm canary's requests "
                 "waited for a compile (`resources.cold_start_ratio`)",
        meaning="Replicas of the canary that finished warming up still compile on requests: "
                "the warm-start manifest misses shapes the new build sees, or the new build "
                "traces differently (new static arguments, new dtypes).",
        checks=(
            ("Compiles by function and cause in the canary",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, TARGETS, CANARY)}[15m]))"),
            ("Warm-start manifest: shapes warmed, stale or unmatched at start-up",
             f"sum by (outcome) ({_q(c.MANIFEST_SIGNATURES.name, TARGETS, CANARY)})"),
        ),
        mitigations=(
            "`stale`/`unmatched` signatures: regenerate the manifest from the canary "
            "(docs/upgrades.md) and ship it with the build.",
            "`cause=\"shape\"`: pad inputs to fixed buckets, as the example server does.",
        ),
        escalation="The service owners.",
    ),
    "compiles": Runbook(
        severity="fails when warm canary replicas compile more than `max_compiles_per_replica` "
                 "times per interval",
        meaning="After warm-up a replica should serve from its compiled executables. Repeated "
                "compiles mean recompilation (shapes, dtypes or static arguments change per "
                "request) and cost latency on every replica that will run this build.",
        checks=(
            ("Calls that compiled, by function, in the canary",
             f"sum by (function) (increase({_q(c.CALLS.name, TARGETS, MISS, CANARY)}[15m]))"),
            ("Why they compiled",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, TARGETS, CANARY)}[15m]))"),
        ),
        mitigations=(
            "Roll back; reproduce with `jaxobs.testing` recompile guards in the test suite to "
            "find the argument that changes.",
        ),
        escalation="The service owners.",
    ),
    "version-skew": Runbook(
        severity="fails when the canary's replicas report more than one set of versions "
                 "(jax, jaxlib, backend, driver, CUDA, jaxobs)",
        meaning="The canary does not run one build: nodes with different drivers, or an image "
                "tag that moved during the rollout. Its measurements mix builds.",
        checks=(
            ("Versions per canary replica",
             f"count by ({', '.join(c.BUILD_INFO.labels)}) ({_q(c.BUILD_INFO.name, TARGETS, CANARY)})"),
        ),
        mitigations=(
            "Pin the image by digest and the driver by node pool; then restart the rollout.",
        ),
        escalation="The platform team.",
    ),
}


def _fill(text: str, service: Service) -> str:
    canary = service.canary
    track = canary.track_label if canary else "track"
    targets = ",".join(promql.matchers(service.target_selector))
    return (text.replace("$targets", targets).replace("$service", service.name)
            .replace("$track", track))


def render_canary_runbook(service: Service, spec: Spec, source: str) -> str:
    """The Markdown runbook of one service's canary analysis."""
    from jaxobs.generate.canary_analysis import checks

    by_kind: dict[str, list[str]] = {}
    for check in checks(service, spec):
        by_kind.setdefault(check.kind, []).append(f"`{check.name}`")
    parts = [f"<!-- {header_line(source)} Edit CANARY_RUNBOOKS in "
             f"jaxobs/generate/canary_runbook.py. -->\n",
             f"# Canary analysis of {service.name} failed\n",
             "Fill in `$canary` and `$stable` with the AnalysisRun's `canary-hash` and "
             "`stable-hash` arguments.\n",
             f"## Roll back first\n\n{ROLLBACK}\n"]
    for kind, book in CANARY_RUNBOOKS.items():
        if kind not in by_kind:
            continue
        checks_md = "\n".join(
            f"{i}. {what}:\n\n   ```promql\n"
            + "\n".join(f"   {line}" for line in _fill(query, service).splitlines())
            + "\n   ```\n" for i, (what, query) in enumerate(book.checks, 1))
        parts.append(f"## {', '.join(by_kind[kind])}\n\n**Condition:** {book.severity}.\n\n"
                     f"{_fill(book.meaning, service)}\n\n### What to check\n\n{checks_md}\n"
                     f"### What to do\n\n" + "".join(f"- {m}\n" for m in book.mitigations)
                     + f"\n**Escalation:** {book.escalation}\n")
    return "\n".join(parts)
