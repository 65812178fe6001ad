"""Runbooks: one Markdown page per alert, rendered from data.

Each alert's ``runbook_url`` points at ``runbooks/<AlertName>.md``.  The content
lives in :data:`RUNBOOKS`: what the alert means, what to check first (PromQL
over catalog names and the SLO recording rules, with only placeholders the
alert itself carries), mitigations and escalation.  The renderer is a pure
function, so ``jaxobs generate`` and ``jaxobs runbook NAME`` print the same text
and regeneration is byte-identical.

To change a runbook, edit its entry here and run ``jaxobs generate``.
"""

from __future__ import annotations

import difflib

from jaxobs import catalog as c
from jaxobs.generate import names as r
from jaxobs.generate import promql
from jaxobs.generate.health_runbooks import HEALTH_RUNBOOKS
from jaxobs.generate.render import header_line
from jaxobs.generate.resources import COLD, MISS, OOM, RECOMPILE
from jaxobs.generate.runbook_model import JOB, PLACEHOLDERS, SVC, Runbook
from jaxobs.generate.sli import STEADY


def _q(metric: str, *matchers: str) -> str:
    return promql.selector(metric, *matchers, ordered=True)


RUNBOOKS: dict[str, Runbook] = {
    r.SLO_BURN: Runbook(
        severity="page when 2% of the budget is gone within the first tier's long window or "
                 "5% within the second (for a 30-day SLO: 14.4x over 1h/5m, 6x over 6h/30m), "
                 "ticket when 10% is gone within the third or fourth (3x over 1d/2h, 1x over "
                 "3d/6h); the windows scale with the SLO window and each SLO can set its own "
                 "tiers. A page tier with fewer than its minimum events (default 100) in the "
                 "long window files a ticket instead, labelled `low_traffic=\"true\"`",
        meaning="An SLO of `$service` is spending its error budget faster than the objective "
                "allows, over both a long and a short window, so the problem is real and still "
                "happening. The `sli` label says what is bad: `availability` (failed requests), "
                "`latency` (steady-state requests over the threshold; cold calls are excluded), "
                "`cold_start` (requests that waited for a JIT compile) or `cache_hit` (calls "
                "that missed the compile cache). The `window` label is the tier's long window. "
                "With `low_traffic=\"true\"` the long window held too few events to page on: "
                "a handful of failed requests can burn this fast. Low-traffic options (SRE "
                "workbook): generate synthetic traffic, merge small services into one SLO, "
                "raise the tier's `min_events` or set `low_traffic: silent`, or lower the "
                "objective.",
        checks=(
            ("How fast each window burns, and how much budget is left",
             f"{r.BURN_RATE}{{{SVC},slo=\"$slo\"}}\n{r.BUDGET_REMAINING}{{{SVC},slo=\"$slo\"}}"),
            ("Bad and all events per second (the two rules every ratio, panel and alert "
             "reads)",
             f"{r.ERRORS_RATE}{{{SVC},slo=\"$slo\"}}\n{r.EVENTS_RATE}{{{SVC},slo=\"$slo\"}}"),
            ("Compile-related or runtime? "
             "Compiles and cold requests right now",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, JOB)}[15m]))\n"
             f"sum(rate({_q(c.REQUEST_DURATION.name + '_count', SVC, COLD)}[5m]))"),
            ("availability: which functions raise, and which error class (oom, compile, "
             "runtime, trace)",
             f"sum by (function, error) (rate({_q(c.ERRORS.name, JOB)}[5m]))"),
            ("latency: steady-state p99 against the threshold, and device time per function",
             f"histogram_quantile(0.99, sum by (le) (rate("
             f"{_q(c.REQUEST_DURATION.name + '_bucket', SVC, STEADY)}[5m])))\n"
             f"histogram_quantile(0.99, sum by (le, function) (rate("
             f"{_q(c.KERNEL_DURATION.name + '_bucket', JOB)}[5m])))"),
            ("cache_hit / cold_start: miss ratio per function",
             f"sum by (function) (rate({_q(c.CALLS.name, JOB, MISS)}[5m]))\n/\n"
             f"sum by (function) (rate({_q(c.CALLS.name, JOB)}[5m]))"),
            ("Did something change? Versions across replicas and a deploy in progress",
             f"count by ({', '.join(c.BUILD_INFO.labels)}) ({_q(c.BUILD_INFO.name, JOB)})\n"
             f"max({_q(c.DEPLOY_IN_PROGRESS.name, JOB)})"),
        ),
        mitigations=(
            "With OpenTelemetry tracing on, open an exemplar point on the on-call dashboard's "
            "\"Cold requests\" or latency panel: its trace shows the request, the jaxobs.compile "
            "span it waited for, the cause (which shape or dtype changed) and the time per "
            "phase (docs/tracing.md).",
            "If the burn started with a deploy or a version change, roll back to the previous "
            "model binary / image first and investigate afterwards.",
            "availability with `error=\"oom\"`: follow JaxobsOOMErrors (reduce batch size, "
            "restart leaking replicas).",
            "latency: check host-side bottlenecks (low accelerator utilization, small batches) "
            "and that timings are `block_until_ready`-synchronized; scale out if saturated.",
            "cold_start / cache_hit: precompile the shapes that miss with `jaxobs.warmup` before "
            "taking traffic, bucket or pad dynamic shapes, and enable the persistent "
            "compilation cache.",
            "Protect the remaining budget: shed or slow non-critical traffic while you fix it.",
        ),
        escalation="A page that keeps burning for 30 minutes after a rollback, or a budget "
                   "below zero: open an incident and pull in the model owners (correctness, "
                   "numerical issues) and the infrastructure on-call (devices, drivers). "
                   "Tickets: the service owner reviews within a working day.",
    ),
    r.DEVICE_MEMORY_HIGH: Runbook(
        severity="ticket",
        meaning="A device has had more than the threshold (default 80%) of its allocator limit "
                "in use for 15 minutes. There is little headroom left for a larger batch, a new "
                "shape or fragmentation: out-of-memory errors come next.",
        checks=(
            ("Utilization per device",
             f"{_q(c.DEVICE_MEMORY_UTILIZATION.name, JOB)}"),
            ("In use, peak and limit in bytes",
             f"{_q(c.DEVICE_MEMORY.name, JOB)}"),
            ("Is it a leak? Live arrays and their bytes growing over hours",
             f"deriv({_q(c.LIVE_ARRAY_BYTES.name, JOB)}[1h])\n{_q(c.LIVE_ARRAYS.name, JOB)}"),
            ("Which functions need the most memory (XLA memory analysis)",
             f"topk(5, {_q(c.FUNCTION_PEAK_MEMORY.name, JOB)})"),
        ),
        mitigations=(
            "Reduce the batch size or the number of concurrent requests per replica.",
            "If live arrays grow steadily, the host keeps references to device arrays: drop "
            "them (`del`, `gc.collect()`), and restart the replica as a stop-gap.",
            "Shard parameters across more devices (pjit/sharding) or use gradient "
            "checkpointing for training.",
            "On GPU, remember NVML's \"used\" includes JAX's preallocated pool; trust "
            f"`{c.DEVICE_MEMORY.name}` (allocator stats) for this alert.",
        ),
        escalation="If OOMs start (JaxobsOOMErrors), handle that first. Otherwise the service "
                   "owner plans capacity within the week.",
    ),
    r.OOM_ERRORS: Runbook(
        severity="ticket for any out-of-memory error in 10 minutes; page when at least half "
                 "of the instances (default) keep hitting OOMs for 10 minutes",
        meaning=f"Instrumented calls raised out-of-memory errors (`{_q(c.ERRORS.name, OOM)}`): "
                "the requests or steps that hit them failed. A page means "
                "it is widespread and the service is failing.",
        checks=(
            ("Which functions, on which instances",
             f"sum by (instance, function) (increase({_q(c.ERRORS.name, JOB, OOM)}"
             f"[30m]))"),
            ("Memory headroom before the errors",
             f"max_over_time({_q(c.DEVICE_MEMORY_UTILIZATION.name, JOB)}[1h])"),
            ("Live arrays growing (host keeps device arrays alive)",
             f"{_q(c.LIVE_ARRAY_BYTES.name, JOB)}"),
            ("Did a new shape compile a bigger program?",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, JOB)}[1h]))\n"
             f"{_q(c.FUNCTION_PEAK_MEMORY.name, JOB)}"),
        ),
        mitigations=(
            "Reduce the batch size (or cap request concurrency) on the affected replicas.",
            "Check live arrays: delete references to device arrays you no longer need and "
            "call `gc.collect()`; leaking replicas recover after a restart (restart pod).",
            "If a deploy brought it, roll back; a model or shape change can raise peak memory.",
            "Shard parameters or scale up to devices with more memory if the model outgrew "
            "them.",
        ),
        escalation="Page: open an incident if restarting and reducing the batch do not stop "
                   "the errors within 15 minutes; involve the model owners. Ticket: the "
                   "service owner investigates within a working day.",
    ),
    r.CACHE_HIT_LOW: Runbook(
        severity="ticket",
        meaning="Over 30 minutes, fewer than the threshold (default 95%) of the calls of a "
                "function were served by an already compiled executable, with enough calls to "
                "judge. Each miss is a compile on the request path.",
        checks=(
            ("Hit ratio per function",
             f"1 - sum by (function) (rate({_q(c.CALLS.name, JOB, MISS)}[30m]))\n/\n"
             f"sum by (function) (rate({_q(c.CALLS.name, JOB)}[30m]))"),
            ("Why it recompiles: causes (shape, dtype, static_arg, sharding)",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, JOB)}[1h]))"),
            ("Persistent compilation cache hits",
             f"rate({_q(c.PERSISTENT_CACHE_HITS.name, JOB)}[30m])\n/\n"
             f"rate({_q(c.PERSISTENT_CACHE_REQUESTS.name, JOB)}[30m])"),
        ),
        mitigations=(
            "Bucket or pad inputs to a few static shapes; avoid shapes that vary per request.",
            "Pass changing Python values as traced arguments instead of `static_argnums`; "
            "keep static arguments hashable and stable.",
            "Precompile the common shapes with `jaxobs.warmup` at start-up, and enable the "
            "persistent compilation cache shared by replicas.",
            "Keep logging and metadata out of jitted function signatures (too many unique "
            "compile keys).",
        ),
        escalation="Ticket for the model owners; it becomes urgent only if the latency or "
                   "cold-start SLO burns (JaxobsErrorBudgetBurn).",
    ),
    r.COLD_START_HIGH: Runbook(
        severity="ticket",
        meaning="More than the threshold (default 1%) of the requests of `$service` waited for "
                "a JIT compile over 30 minutes. In steady state almost none should.",
        checks=(
            ("Cold-start ratio",
             f"sum(rate({_q(c.REQUEST_DURATION.name + '_count', SVC, COLD)}[30m]))\n/\n"
             f"sum(rate({_q(c.REQUEST_DURATION.name + '_count', SVC)}[30m]))"),
            ("Which functions compile, and why",
             f"sum by (function, cause) (increase({_q(c.COMPILATIONS.name, JOB)}[1h]))"),
            ("Replicas that took traffic before warmup finished",
             f"{_q(c.READY.name, JOB)} == 0"),
            ("Compile time per phase (trace, lower, backend)",
             f"histogram_quantile(0.9, sum by (le, phase) (rate("
             f"{_q(c.COMPILE_DURATION.name + '_bucket', JOB)}[1h])))"),
        ),
        mitigations=(
            "With OpenTelemetry tracing on, open an exemplar point on the on-call dashboard's "
            "\"Cold requests\" or latency panel: its trace shows the request, the jaxobs.compile "
            "span it waited for, the cause (which shape or dtype changed) and the time per "
            "phase (docs/tracing.md).",
            "Warm up on deploy: register the served shapes with `jaxobs.warmup` and gate "
            "readiness (`/readyz`) on it, so no user request compiles.",
            "If a new shape appears in traffic, add it to the warmup set or pad to an existing "
            "bucket.",
            "Keep a warm pool of replicas instead of scaling from zero; enable the persistent "
            "compilation cache to cut compile time.",
        ),
        escalation="Ticket for the service owner. Deploys are excluded (inhibited while "
                   "JaxobsDeployInProgress fires); if it fires outside deploys for days, "
                   "review autoscaling.",
    ),
    r.RECOMPILATION_STORM: Runbook(
        severity="ticket",
        meaning="A function recompiled more often than the threshold (default 10 per minute, "
                "first compiles not counted) for 10 minutes: every call with a new shape, "
                "dtype or static argument pays for a compile and host CPU spikes.",
        checks=(
            ("Recompiles per minute, by cause",
             f"sum by (function, cause) (rate({_q(c.COMPILATIONS.name, JOB, RECOMPILE)}"
             f"[5m])) * 60"),
            ("Compile time spent",
             f"sum by (function) (rate({_q(c.COMPILE_DURATION.name + '_sum', JOB)}[5m]))"),
            ("Compiles queued right now",
             f"sum by (function) ({_q(c.COMPILATIONS_IN_PROGRESS.name, JOB)})"),
        ),
        mitigations=(
            "cause=shape: bucket or pad inputs to a few static shapes (or use shape "
            "polymorphism with fewer variants).",
            "cause=static_arg: stop passing per-call values as static arguments.",
            "cause=dtype: normalise input dtypes (e.g. always float32) before the call.",
            "As a stop-gap, roll back the change that introduced the new shapes.",
        ),
        escalation="Ticket for the model owners; if it drives the latency SLO, the SLO alert "
                   "pages separately.",
    ),
    r.CONCURRENT_COMPILATION: Runbook(
        severity="ticket",
        meaning="Several replicas (default 3 or more) compiled the same function within 5 "
                "minutes: a thundering compilation. Every replica pays the same compile, "
                "usually because nothing shares compiled executables.",
        checks=(
            ("Replicas compiling each function",
             f"count by (function) (max_over_time("
             f"{_q(c.COMPILATIONS_IN_PROGRESS.name, JOB)}[5m]) > 0)"),
            ("Persistent cache use (is it shared?)",
             f"rate({_q(c.PERSISTENT_CACHE_HITS.name, JOB)}[15m])\n"
             f"rate({_q(c.PERSISTENT_CACHE_MISSES.name, JOB)}[15m])"),
            ("Was it a deploy or a scale-up?",
             f"max_over_time({_q(c.DEPLOY_IN_PROGRESS.name, JOB)}[30m])\n"
             f"count({_q(c.BUILD_INFO.name, JOB)})"),
        ),
        mitigations=(
            "Point every replica at a shared persistent compilation cache (a volume or "
            "bucket) so one compile serves all.",
            "Precompile during the image build or in a canary, and roll out replicas in "
            "smaller batches.",
            f"Signal deploys with `{c.DEPLOY_IN_PROGRESS.name}` so expected compiles are "
            "inhibited.",
        ),
        escalation="Ticket for the platform owners of the compilation cache.",
    ),
    r.TARGET_DOWN: Runbook(
        severity="ticket for one target down 5 minutes; page when every target of the service "
                 "is down",
        meaning="Prometheus cannot scrape jaxobs metrics from the target (`up == 0`). The "
                "process, the sidecar exporter or the network is down; while every target is "
                "down, the SLO alerts have no data and cannot fire.",
        checks=(
            ("Which targets are down",
             f"{r.UP}{{{JOB}}} == 0"),
            ("When they last answered",
             f"timestamp({r.UP}{{{JOB}}} == 1)"),
            ("Did the process restart (counter resets) or never finish its warmup?",
             f"sum by (instance) (resets({_q(c.CALLS.name, JOB)}[1h]))\n{_q(c.READY.name, JOB)}"),
        ),
        mitigations=(
            "Check the pod/process: crash loop (OOM kills show as restarts), stuck start-up, "
            "or the exporter port not listening.",
            "Check the scrape config / PodMonitor still selects the pods (labels, port name).",
            "Restart the replica if it hangs; roll back if a new version crashes at start.",
        ),
        escalation="Page (all targets down): treat as an outage of the service; open an "
                   "incident. Ticket: the service owner checks within hours.",
    ),
    r.COLLECTOR_DOWN: Runbook(
        severity="ticket",
        meaning="A jaxobs collector (JAX memory, NVML, TPU runtime, host) failed every scrape "
                f"for 10 minutes (`{c.COLLECTOR_UP.name} == 0`). Its metrics — and the alerts "
                "built on them — are missing; the other collectors keep working.",
        checks=(
            ("Which collector and device",
             f"{_q(c.COLLECTOR_UP.name, JOB)} == 0"),
            ("Internal errors by component (the exporter log has the first traceback)",
             f"sum by (component) (increase({_q(c.INTERNAL_ERRORS.name, JOB)}[1h]))"),
            ("Driver/runtime versions on that instance",
             f"{_q(c.BUILD_INFO.name, JOB)}"),
        ),
        mitigations=(
            "NVML: the driver library must be visible in the sidecar (`libnvidia-ml.so`); a "
            "GPU that fell off the bus also stops answering (see JaxobsGPUXidErrors).",
            "TPU: the runtime metrics service (localhost:8431) must be reachable from the "
            "sidecar.",
            "Restart the sidecar exporter; if the device itself is gone, drain the node.",
        ),
        escalation="Ticket for the platform owners; escalate to the hardware team if the "
                   "device is missing.",
    ),
    r.GPU_XID: Runbook(
        severity="ticket",
        meaning="NVML reported XID errors on a GPU: driver-level faults such as memory page "
                "retirement, ECC, a hung or fallen-off-the-bus GPU. Kernels on it may fail or "
                "return garbage.",
        checks=(
            ("XID codes per GPU",
             f"increase({_q(c.GPU_XID_ERRORS.name, JOB)}[1h])"),
            ("ECC errors on the same GPU",
             f"increase({_q(c.GPU_ECC_ERRORS.name, JOB)}[1h])"),
            ("Driver and CUDA versions (a fresh upgrade?)",
             f"{_q(c.BUILD_INFO.name, JOB)}"),
        ),
        mitigations=(
            "Look up the XID code in NVIDIA's XID table: 79 (fallen off the bus), 48/63/64 "
            "(ECC), 13/31/43 (often application faults).",
            "Cordon and drain the node for hardware XIDs; reset or replace the GPU.",
            "If they started with a driver upgrade, pin the previous driver.",
        ),
        escalation="Ticket for the infrastructure/hardware on-call; page them only if several "
                   "nodes are affected and the SLO burns.",
    ),
    r.BUILD_MISMATCH: Runbook(
        severity="ticket",
        meaning="The replicas of `$service` run different jax, jaxlib, backend, driver, CUDA "
                "or jaxobs versions for 30 minutes (outside a deploy). Mixed runtimes compile "
                "different kernels and behave differently.",
        checks=(
            ("The version sets and how many replicas run each",
             f"count by ({', '.join(c.BUILD_INFO.labels)}) ({_q(c.BUILD_INFO.name, JOB)})"),
            ("Which instances run the odd one out",
             f"{_q(c.BUILD_INFO.name, JOB)}"),
        ),
        mitigations=(
            "Before rolling the new versions forward, compare the old and new builds with "
            "`jaxobs baseline compare` (compiles, FLOPs, memory, kernel times; docs/upgrades.md).",
            "Finish or roll back the stuck rollout so every replica runs one image.",
            "Pin jax, jaxlib, CUDA and the driver in the image and the node pool; validate "
            "upgrades in staging first.",
        ),
        escalation="Ticket for the service owner; the platform owners if nodes run different "
                   "drivers.",
    ),
    r.DEPLOY_IN_PROGRESS: Runbook(
        severity="ticket label for routing only; Alertmanager sends it to the `blackhole` "
                 "receiver, so nobody is notified",
        meaning=f"A deploy window of `$service` is open (`{c.DEPLOY_IN_PROGRESS.name} == 1`, or it "
                "was within the grace window, default 10 minutes). While it fires, Alertmanager "
                "inhibits compile and version alerts of the same service (and the same grouping "
                "labels, such as `env`): a rollout compiles everything once and runs mixed "
                "versions for a while. After the maximum duration (default 2 hours) it stops, "
                "and JaxobsDeployWindowStuck files a ticket.",
        checks=(
            ("Who set the window, and since when",
             f"{_q(c.DEPLOY_IN_PROGRESS.name, JOB)}"),
            ("Compile activity during the deploy",
             f"sum by (function) (increase({_q(c.COMPILATIONS.name, JOB)}[15m]))"),
        ),
        mitigations=(
            "Nothing to do while a deploy runs. If it fires with no deploy running, the "
            "deploy tool did not clear the gauge (e.g. a Pushgateway series left behind): "
            "delete it, or compile alerts stay silenced.",
        ),
        escalation="None; if the window stays open for hours, tell the deploy tooling owners.",
    ),
    r.SLO_NO_DATA: Runbook(
        severity="page when the SLO has a page tier, otherwise ticket; it waits as long as the "
                 "fastest page tier would take to notice a total outage (2 minutes to 1 hour)",
        meaning="The SLO of `$service` named `$slo` has no SLI data: the recording rule of its "
                f"event rate (`{r.EVENTS_RATE}`) has no series. Either the SLI's metrics are "
                "gone (renamed or relabelled, the instrumentation was removed, a relabelling "
                "rule drops them) or the service's targets left service discovery (nodes "
                "reclaimed, pods Pending, the scrape config no longer selects them). While "
                "this fires, the SLO's burn-rate alerts cannot fire.",
        checks=(
            ("Are the targets still discovered and up?",
             f"{r.UP}{{$targets}}\ncount({r.UP}{{$targets}} == 1)"),
            ("Do the SLI's metrics still exist under these labels?",
             f"count by (service, outcome) ({_q(c.REQUESTS.name, JOB)})\n"
             f"count by (service, start) ({_q(c.REQUEST_DURATION.name + '_count', JOB)})"),
            ("When did the event rate last have a value?",
             f"timestamp({r.EVENTS_RATE}{{{SVC},slo=\"$slo\"}})"),
        ),
        mitigations=(
            "Targets gone: check the scheduler (pending pods, reclaimed or preempted nodes) "
            "and the scrape config / PodMonitor selector; bring the service back first.",
            "Metrics renamed: if a deploy changed the `service` label or metric names, roll "
            "back or update the SLO spec (`jaxobs generate`) to the new names.",
            "A service that is meant to be idle or gone: set `alerting: {no_data: false}` on "
            "its SLOs, or `enabled: false`.",
        ),
        escalation="Treat a page as an outage you cannot see: open an incident if the targets "
                   "are gone. A ticket: the service owner fixes the instrumentation within a "
                   "working day.",
    ),
    r.DEPLOY_STUCK: Runbook(
        severity="ticket",
        meaning=f"`{c.DEPLOY_IN_PROGRESS.name}` of `$service` has been 1 for longer than the "
                "maximum deploy duration (default 2 hours). Past it, the deploy window stops "
                "inhibiting compile and version alerts, so a forgotten marker cannot mute them "
                "forever.",
        checks=(
            ("Who set the window, and since when",
             f"{_q(c.DEPLOY_IN_PROGRESS.name, JOB)}\n"
             f"timestamp({_q(c.DEPLOY_IN_PROGRESS.name, JOB)})"),
            ("Is a rollout still running? Versions across replicas",
             f"count by ({', '.join(c.BUILD_INFO.labels)}) ({_q(c.BUILD_INFO.name, JOB)})"),
        ),
        mitigations=(
            "If no deploy runs, clear the marker (delete the Pushgateway group, or set the "
            "gauge to 0 in the process).",
            "If a rollout is genuinely this slow, raise `resources.deploy_max_duration` in the "
            "SLO spec and regenerate.",
        ),
        escalation="Ticket for the deploy tooling owners.",
    ),
    **HEALTH_RUNBOOKS,
}


def runbook_names() -> tuple[str, ...]:
    return tuple(sorted(RUNBOOKS))


def _numbered(checks: tuple[tuple[str, str], ...]) -> str:
    out = []
    for i, (what, query) in enumerate(checks, 1):
        body = "\n".join(f"   {line}" for line in query.splitlines())
        colon = "" if what.endswith("?") else ":"
        out.append(f"{i}. {what}{colon}\n\n   ```promql\n{body}\n   ```\n")
    return "\n".join(out)


def render_runbook(name: str) -> str:
    """The Markdown runbook of alert ``name`` (without the generated-file header)."""
    rb = RUNBOOKS[name]
    parts = [
        f"# {name}\n",
        f"**Severity:** {rb.severity}.\n",
        f"## What it means\n\n{rb.meaning}\n",
        f"## What to check first\n\n{PLACEHOLDERS}\n\n{_numbered(rb.checks)}",
        "## Mitigations\n\n" + "".join(f"- {m}\n" for m in rb.mitigations),
        f"## Escalation\n\n{rb.escalation}\n",
    ]
    return "\n".join(parts)


def runbook_file(name: str, source: str) -> str:
    return f"<!-- {header_line(source)} Edit RUNBOOKS in jaxobs/generate/runbooks.py. -->\n\n" \
           + render_runbook(name)


def build_runbooks(alert_names: tuple[str, ...], source: str) -> dict[str, str]:
    """``{"runbooks/<AlertName>.md": text}`` for exactly the alerts generated."""
    missing = [n for n in alert_names if n not in RUNBOOKS]
    if missing:
        raise KeyError(f"no runbook content for {', '.join(missing)}; add it to RUNBOOKS")
    return {f"runbooks/{name}.md": runbook_file(name, source) for name in alert_names}


def suggest(name: str) -> str | None:
    """The closest known alert name (for did-you-mean on typos)."""
    close = difflib.get_close_matches(name, list(RUNBOOKS), n=1, cutoff=0.5)
    if not close:
        lowered = {n.lower(): n for n in RUNBOOKS}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
        return lowered[close[0]] if close else None
    return close[0]
