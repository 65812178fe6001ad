"""What the demo writes next to its generated rules: a Prometheus and an Alertmanager config.

The demo's own SLO spec (``examples/demo-slo.yaml``, embedded as ``demo-slo.yaml``
here) names the demo's services and scrape jobs, so the rules generated from it
select exactly the series the demo's traffic produces.  The demo runs its
inference requests and training steps in one process; the Prometheus config
scrapes that one target as two jobs, ``demo-inference`` and ``demo-training``,
and splits the series between them with ``metric_relabel_configs`` — what two
processes would give, so each service has its own target selector as in
``examples/slo.yaml``.

Everything here is pure data → text; :mod:`jaxobs.demo.stack` starts the
processes, :mod:`jaxobs.demo.cli` prints the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jaxobs.slo import duration

#: The embedded copy of examples/demo-slo.yaml (a symlink in the source tree, a file in wheels).
DEMO_SPEC = Path(__file__).parent / "demo-slo.yaml"
DEMO_SPEC_SOURCE = "examples/demo-slo.yaml"
INFERENCE_JOB = "demo-inference"
TRAINING_JOB = "demo-training"
#: series of the training service (its requests, or its jitted step) — the rest is inference
_TRAINING_SERIES = r"demo-training;.*|.*;train_step"
PROMETHEUS_CONFIG = "prometheus.yml"
ALERTMANAGER_CONFIG = "alertmanager.yml"


def spec_path(spec: str | None) -> Path:
    return Path(spec) if spec else DEMO_SPEC


def artifacts(spec: str | None, *, scale: int = 1) -> dict[str, str]:
    """What ``jaxobs generate`` makes from ``spec`` (default: the demo's own spec).

    ``scale`` > 1 divides every burn-rate window and ``for`` by it (``--stack`` uses 60:
    hours become minutes), so a page can fire and resolve within a short run.
    """
    from jaxobs.generate import ALERTMANAGER_PATH, RULES_PATH, generate_all
    from jaxobs.slo.spec import load_spec, parse_spec

    path = spec_path(spec)
    source = DEMO_SPEC_SOURCE if spec is None else str(path)
    if scale == 1:
        return generate_all(load_spec(path), source=source)
    load_spec(path)  # one clear error for a bad spec, before scaling its text
    scaled = parse_spec(shortened_spec(path.read_text(encoding="utf-8"), scale), source)
    files = generate_all(scaled, source=source)
    files[RULES_PATH] = scale_rule_for(files[RULES_PATH], scale)
    files[ALERTMANAGER_PATH] = scale_alertmanager_timings(files[ALERTMANAGER_PATH], scale)
    return files


# --- configs for the demo's target --------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the demo's parts listen (all on one host)."""

    target: str  # host:port of the /metrics Prometheus scrapes (the demo, or its sidecar)
    alertmanager: str = "127.0.0.1:9093"
    scrape_interval: str = "5s"
    evaluation_interval: str = "5s"


def _scrape_job(job: str, target: str, action: str) -> dict[str, Any]:
    return {
        "job_name": job,
        "static_configs": [{"targets": [target]}],
        "metric_relabel_configs": [{"source_labels": ["service", "function"], "separator": ";",
                                    "regex": _TRAINING_SERIES, "action": action}],
    }


def prometheus_config(endpoints: Endpoints, rule_files: list[str]) -> str:
    """A complete prometheus.yml: the demo's two scrape jobs, the rule files, the Alertmanager."""
    config = {
        "global": {"scrape_interval": endpoints.scrape_interval,
                   "evaluation_interval": endpoints.evaluation_interval},
        "rule_files": rule_files,
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [endpoints.alertmanager]}]}]},
        "scrape_configs": [_scrape_job(INFERENCE_JOB, endpoints.target, "drop"),
                           _scrape_job(TRAINING_JOB, endpoints.target, "keep")],
    }
    header = ("# Written by `jaxobs demo`: scrapes the demo (one process) as two jobs, one per\n"
              "# service of examples/demo-slo.yaml, and loads the rules generated from it.\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(generated: str, *, webhook_url: str | None = None) -> str:
    """The generated Alertmanager config, ready to run (receivers optionally pointed at one
    local webhook: ``<url>/page`` and ``<url>/ticket``)."""
    doc = yaml.safe_load(generated)
    if webhook_url:
        for receiver in doc.get("receivers", []):
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = f"{webhook_url}/{receiver['name']}"
    header = "# Written by `jaxobs demo` from the generated alerts/alertmanager.yml.\n"
    return header + yaml.safe_dump(doc, sort_keys=False)


def start_commands(out_dir: str, endpoints: Endpoints, prometheus_port: int = 9090) -> list[str]:
    """The one command that starts each part against the files in ``out_dir``."""
    am_port = endpoints.alertmanager.rsplit(":", 1)[1]
    return [
        f"prometheus --config.file={out_dir}/{PROMETHEUS_CONFIG} "
        f"--storage.tsdb.path={out_dir}/prometheus-data "
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        f"prometheus-alertmanager --config.file={out_dir}/{ALERTMANAGER_CONFIG} "
        f"--storage.path={out_dir}/alertmanager-data "
        f"--web.listen-address=127.0.0.1:{am_port} --cluster.listen-address=",
    ]


def configs(files: dict[str, str], endpoints: Endpoints, *,
            webhook_url: str | None = None) -> dict[str, str]:
    """prometheus.yml and alertmanager.yml for the generated ``files`` (written next to them)."""
    from jaxobs.generate import ALERTMANAGER_PATH, RULES_PATH

    return {
        PROMETHEUS_CONFIG: prometheus_config(endpoints, [RULES_PATH]),
        ALERTMANAGER_CONFIG: alertmanager_config(files[ALERTMANAGER_PATH], webhook_url=webhook_url),
    }


# --- shortened alerting (``--stack``) -------------------------------------------------------


def scale_duration(text: str, factor: int) -> str:
    """A Prometheus duration divided by ``factor`` (at least 1s): ``1h`` / 60 = ``1m``."""
    return duration.canonical(max(1, duration.seconds(text) // factor))


def _scale_tier(tier: dict[str, Any], factor: int) -> dict[str, Any]:
    out = dict(tier)
    for key in ("long_window", "short_window", "for"):
        if key in out and str(out[key]) not in ("0", "0s"):
            out[key] = scale_duration(str(out[key]), factor)
    return out


def shortened_spec(spec_text: str, factor: int) -> str:
    """The spec with every burn-rate tier's windows and ``for`` divided by ``factor``
    (SLO windows and resource thresholds unchanged)."""
    from jaxobs.slo.model import DEFAULT_TIERS

    spec = yaml.safe_load(spec_text)
    alerting = spec.get("alerting") or {}
    spec["alerting"] = alerting
    defaults = alerting.get("tiers") or [
        {"severity": t.severity, "burn_rate": t.factor, "long_window": t.long_window,
         "short_window": t.short_window, "for": t.for_} for t in DEFAULT_TIERS]
    alerting["tiers"] = [_scale_tier(t, factor) for t in defaults]
    for service in spec.get("services") or []:
        for slo in service.get("slos") or []:
            tiers = (slo.get("alerting") or {}).get("tiers")
            if tiers:
                slo["alerting"]["tiers"] = [_scale_tier(t, factor) for t in tiers]
    return yaml.safe_dump(spec, sort_keys=False)


def scale_rule_for(rules_text: str, factor: int) -> str:
    """A generated rule file with every alert's ``for:`` divided by ``factor``."""
    header = "".join(line for line in rules_text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(rules_text)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scale_duration(rule["for"], factor)
    return header + f"# Shortened for `jaxobs demo --stack`: every `for:` divided by {factor}.\n" \
        + yaml.safe_dump(doc, sort_keys=False)


def scale_alertmanager_timings(config_text: str, factor: int) -> str:
    """Alertmanager's group_wait/group_interval/repeat_interval divided by ``factor``."""
    doc = yaml.safe_load(config_text)

    def scale(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in route:
                route[key] = scale_duration(route[key], factor)
        for child in route.get("routes", []):
            scale(child)

    scale(doc["route"])
    return yaml.safe_dump(doc, sort_keys=False)
