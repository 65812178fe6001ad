"""The SLO spec: valid files get defaults; every invalid one gets a single clear message.

Each bad-input case names what the message must contain: the field path, the
problem and the fix.  Messages always start with ``<file>:<line>:`` (the
offending line) and are one line, because the CLI prints them verbatim.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from jaxobs import catalog
from jaxobs.slo import duration
from jaxobs.slo.model import DEFAULT_TIERS, BurnRateTier, Routing, default_tiers
from jaxobs.slo.spec import SpecError, load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]

BASE = """\
apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: inference
    slos:
      - name: availability
        objective: 99.9
        sli:
          availability: {}
      - name: latency
        objective: 99
        sli:
          latency:
            threshold: 0.2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slo.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str) -> SpecError:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return info.value


# --- valid specs and defaults -------------------------------------------------------------


def test_example_spec_parses_with_defaults() -> None:
    spec = load_spec(REPO / "examples" / "slo.yaml")
    inference, training = spec.services
    assert [s.name for s in inference.slos] == ["availability", "latency", "cold-start", "cache-hit"]
    availability = inference.slos[0]
    assert availability.window == "30d"
    assert availability.tiers == DEFAULT_TIERS
    assert availability.error_budget_ratio == pytest.approx(0.001)
    assert inference.slos[1].sli.threshold_seconds == 0.2
    assert inference.labels == (("team", "ml-serving"),)
    # The seed guide's "page when burn > 3x over 1h", short window defaulting to long/12.
    assert training.slos[0].tiers == default_tiers("7d")
    assert training.slos[0].window == "7d"


def test_minimal_spec_gets_every_default(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, BASE))
    service = spec.services[0]
    assert service.target_selector == (("job", "inference"),)
    assert service.labels == ()
    assert spec.routing == Routing()
    assert spec.runbook_base_url.startswith("https://")
    assert spec.source == str(tmp_path / "slo.yaml")
    assert all(slo.tiers == DEFAULT_TIERS and slo.window == "30d" for slo in service.slos)


def test_spec_wide_tiers_apply_to_every_slo_unless_overridden(tmp_path: Path) -> None:
    text = BASE.replace("services:", textwrap.dedent("""\
        alerting:
          tiers:
            - {severity: ticket, burn_rate: 2, long_window: 6h, for: 0m}
        services:""")) + textwrap.indent(textwrap.dedent("""\
        alerting:
          tiers:
            - {severity: page, burn_rate: 3, long_window: 60m, short_window: 10m}
        """), " " * 8)
    spec = parse_spec(text, "x.yaml")
    availability, latency = spec.services[0].slos
    assert availability.tiers == (BurnRateTier("ticket", 2.0, "6h", "30m", "0s"),)
    assert latency.tiers == (BurnRateTier("page", 3.0, "1h", "10m", "2m"),)  # 60m spelled 1h


def test_threshold_accepts_milliseconds_and_matches_the_bucket(tmp_path: Path) -> None:
    spec = parse_spec(BASE.replace("threshold: 0.2", "threshold: 250ms"), "x.yaml")
    assert spec.services[0].slos[1].sli.threshold_seconds == 0.25


@pytest.mark.parametrize(("text", "seconds", "canonical"), [
    ("5m", 300, "5m"), ("60m", 3600, "1h"), ("90m", 5400, "1h30m"), ("1w", 604800, "7d"),
    ("30d", 2592000, "30d"), ("1d12h", 129600, "1d12h"),
])
def test_durations_are_compared_by_length(text: str, seconds: int, canonical: str) -> None:
    assert duration.seconds(text) == seconds
    assert duration.canonical(text) == canonical


def test_short_window_defaults_to_a_twelfth() -> None:
    assert [duration.divide(t.long_window, 12) for t in DEFAULT_TIERS] == \
        [t.short_window for t in DEFAULT_TIERS]


# --- bad input: one clear message each ------------------------------------------------------

BUCKETS = ", ".join(f"{b:g}" for b in catalog.LATENCY_BUCKETS)

BAD: list[tuple[str, str, tuple[str, ...]]] = [
    ("unknown-top-level-key", BASE.replace("services:", "servics:"),
     ("servics: unknown key 'servics'", "did you mean 'services'?")),
    ("unknown-slo-key", BASE.replace("objective: 99.9", "objectiv: 99.9"),
     ("services[0].slos[0].objectiv: unknown key", "did you mean 'objective'?")),
    ("unknown-sli-kind", BASE.replace("availability: {}", "availabilty: {}"),
     ("services[0].slos[0].sli.availabilty: unknown key", "did you mean 'availability'?")),
    ("objective-above-100", BASE.replace("99.9", "100.5"),
     ("services[0].slos[0].objective: 100.5 is out of range", "percentage strictly between 0 and 100")),
    ("objective-as-ratio", BASE.replace("99.9", "0.999"),
     ("services[0].slos[0].objective", "looks like a ratio", "write 99.9 for 99.9%")),
    ("objective-not-a-number", BASE.replace("99.9", "high"),
     ("services[0].slos[0].objective: expected a number", "e.g. 99.9")),
    ("bad-duration", BASE.replace("objective: 99.9", "objective: 99.9\n        window: 30 days"),
     ("services[0].slos[0].window: bad duration", "'30 days' is not a duration", "30d")),
    ("threshold-not-a-bucket", BASE.replace("threshold: 0.2", "threshold: 0.3"),
     ("services[0].slos[1].sli.latency.threshold", "0.3s is not a bucket bound",
      f"pick one of: {BUCKETS}")),
    ("latency-without-threshold", BASE.replace("threshold: 0.2", "selector: {}"),
     ("services[0].slos[1].sli.latency.threshold: is required", "add 'threshold:'")),
    ("empty-sli", BASE.replace("availability: {}", "{}").replace("sli:\n          {}", "sli: {}"),
     ("services[0].slos[0].sli: empty SLI", "set exactly one of: availability, latency")),
    ("two-sli-kinds", BASE.replace("availability: {}", "availability: {}\n          cold_start: {}"),
     ("services[0].slos[0].sli: several SLI kinds (availability, cold_start)", "one SLO per kind")),
    ("raw-without-total", BASE.replace(
        "availability: {}", "raw:\n            errors: sum(rate(my_errors_total[$window]))"),
     ("services[0].slos[0].sli.raw.total: is required", "add 'total:'")),
    ("raw-without-window", BASE.replace(
        "availability: {}", "raw:\n            errors: sum(rate(e_total[5m]))\n"
                            "            total: sum(rate(t_total[$window]))"),
     ("services[0].slos[0].sli.raw.errors", "no '$window' placeholder",
      "so each alert window gets its own rate")),
    ("raw-unknown-jaxobs-metric", BASE.replace(
        "availability: {}", "raw:\n            errors: sum(rate(jaxobs_reqests_total[$window]))\n"
                            "            total: sum(rate(jaxobs_requests_total[$window]))"),
     ("services[0].slos[0].sli.raw.errors: unknown jaxobs metric 'jaxobs_reqests_total'",
      "did you mean 'jaxobs_requests_total'?")),
    ("duplicate-slo-names", BASE.replace("name: latency", "name: availability"),
     ("services[0].slos[1].name: duplicate name 'availability'", "must be unique")),
    ("short-window-not-shorter", BASE + "        alerting:\n          tiers:\n"
     "            - {severity: page, burn_rate: 3, long_window: 1h, short_window: 60m}\n",
     ("services[0].slos[1].alerting.tiers[0].short_window",
      "short_window 1h is not shorter than long_window 1h", "long/12, here 5m")),
    ("bad-severity", BASE + "        alerting:\n          tiers:\n"
     "            - {severity: pager, burn_rate: 3, long_window: 1h}\n",
     ("services[0].slos[1].alerting.tiers[0].severity: unknown severity 'pager'",
      "did you mean 'page'?", "use one of: page, ticket")),
    ("tiers-not-a-list", BASE + "        alerting:\n          tiers: page\n",
     ("services[0].slos[1].alerting.tiers: expected a list of burn-rate tiers",)),
    ("duplicate-tier", BASE + "        alerting:\n          tiers:\n"
     "            - {severity: page, burn_rate: 3, long_window: 1h}\n"
     "            - {severity: page, burn_rate: 6, long_window: 60m}\n",
     ("services[0].slos[1].alerting.tiers[1].long_window", "would collide")),
    ("unreachable-burn-rate", BASE.replace("objective: 99\n", "objective: 90\n"),
     ("services[0].slos[1].objective: a 14.4x burn of the default tier 0 (page 14.4x over 1h)",
      "can never fire", "burn_rate below 10, or set services[0].slos[1].alerting.tiers")),
    ("unreachable-override", BASE + "        alerting:\n          tiers:\n"
     "            - {severity: page, burn_rate: 200, long_window: 1h}\n",
     ("services[0].slos[1].alerting.tiers[0].burn_rate: a 200x burn", "needs an error ratio of 200%")),
    ("tier-longer-than-slo-window", BASE.replace("objective: 99\n", "objective: 99\n        window: 1d\n")
     + "        alerting:\n          tiers:\n"
     "            - {severity: ticket, burn_rate: 1, long_window: 3d}\n",
     ("services[0].slos[1].alerting.tiers[0].long_window: long_window 3d is "
      "longer than the SLO window 1d", "shorter long_window")),
    ("wrong-api-version", BASE.replace("jaxobs/v1", "jaxobs/v2"),
     ("apiVersion: unsupported apiVersion 'jaxobs/v2'", "use 'apiVersion: jaxobs/v1'")),
    ("wrong-kind", BASE.replace("kind: SLOSpec", "kind: PrometheusRule"),
     ("kind: unsupported kind 'PrometheusRule'", "use 'kind: SLOSpec'")),
    ("no-services", "apiVersion: jaxobs/v1\nkind: SLOSpec\nservices: []\n",
     ("services: the list of services is empty", "add at least one service")),
    ("slos-not-a-list", "apiVersion: jaxobs/v1\nkind: SLOSpec\nservices:\n  - name: x\n"
     "    slos: availability\n", ("services[0].slos: expected a list of SLOs",)),
    ("group-by-an-sli-label", BASE + "        group_by: [service]\n",
     ("services[0].slos[1].group_by[0]: label 'service' is set by jaxobs itself",)),
    ("bad-low-traffic", BASE + "        alerting:\n          tiers:\n"
     "            - {severity: page, burn_rate: 3, long_window: 1h, low_traffic: mute}\n",
     ("services[0].slos[1].alerting.tiers[0].low_traffic: unknown low-traffic action 'mute'",
      "use one of: ticket, silent")),
    ("bad-severity-labels", BASE + "alerting:\n  severity_labels: p1-p2\n",
     ("alerting.severity_labels: unknown severity convention 'p1-p2'", "critical-warning")),
    ("reserved-label", BASE.replace("  - name: inference\n",
                                    "  - name: inference\n    labels: {severity: low}\n"),
     ("services[0].labels.severity: label 'severity' is set by jaxobs itself", "rename it")),
    ("invalid-label-name", BASE.replace("  - name: inference\n",
                                        "  - name: inference\n    labels: {team-name: a}\n"),
     ("services[0].labels.team-name", "not a valid Prometheus label name")),
    ("selector-overrides-sli-label", BASE.replace("availability: {}",
                                                  "availability: {selector: {outcome: ok}}"),
     ("services[0].slos[0].sli.availability.selector.outcome", "set by jaxobs itself")),
    ("duplicate-service", BASE + BASE[BASE.index("  - name: inference"):],
     ("services[1].name: duplicate name 'inference'",)),
    ("duplicate-selector", BASE + BASE[BASE.index("  - name: inference"):].replace(
        "name: inference", "name: other\n    selector: {job: inference}"),
     ("services[1].selector: duplicate selector", "resource alerts fire twice")),
    ("resource-ratio-as-percent", BASE + "resources:\n  device_memory_ratio: 80\n",
     ("resources.device_memory_ratio: 80 is out of range", "use a ratio, e.g. 0.8")),
    ("unknown-resource", BASE + "resources:\n  device_memory: 0.8\n",
     ("resources.device_memory: unknown key", "did you mean 'device_memory_ratio'?")),
    ("bad-webhook-url", BASE + "alerting:\n  receivers:\n    page: {webhook_url: pager}\n",
     ("alerting.receivers.page.webhook_url", "use an http(s) URL")),
    ("duplicate-yaml-key", BASE.replace("objective: 99.9", "objective: 99.9\n        objective: 99"),
     ("services[0].slos[0].objective: duplicate key 'objective'", "keep one of them")),
    ("yaml-syntax-error", BASE.replace("        objective: 99.9", "      objective: [99.9"),
     ("YAML syntax error", "fix the YAML at that line")),
    ("empty-file", "# nothing yet\n", ("the file is empty", "apiVersion: jaxobs/v1")),
    ("slo-not-a-mapping", BASE.replace("      - name: availability\n", "      - availability\n"
                                       "      - name: availability\n"),
     ("services[0].slos[0]: expected a mapping, got a string",)),
]


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BAD])
def test_bad_spec_gets_one_clear_message(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    message = str(_error(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'slo.yaml'}:"), message
    assert "\n" not in message
    assert "Fix: " in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_there_are_at_least_twenty_bad_input_cases() -> None:
    assert len(BAD) >= 20


def test_messages_point_at_the_offending_line(tmp_path: Path) -> None:
    text = BASE.replace("threshold: 0.2", "threshold: 0.3")
    err = _error(tmp_path, text)
    line = text.splitlines().index("            threshold: 0.3") + 1
    assert err.line == line
    assert str(err).startswith(f"{tmp_path / 'slo.yaml'}:{line}: ")


def test_yaml_syntax_error_names_its_line(tmp_path: Path) -> None:
    err = _error(tmp_path, "apiVersion: jaxobs/v1\nkind: SLOSpec\nservices: [\n  - x\n")
    assert err.line is not None and err.line >= 3
    assert "YAML syntax error" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"missing\.yaml: \(file\): no such file\. Fix: check the path"):
        load_spec(tmp_path / "missing.yaml")


def test_default_ladder_scales_with_the_window_and_keeps_the_budget_shares() -> None:
    """Each tier fires after the same share of the budget whatever the SLO window."""
    assert default_tiers("30d") == DEFAULT_TIERS
    assert [(t.factor, t.long_window, t.short_window) for t in DEFAULT_TIERS] == [
        (14.4, "1h", "5m"), (6.0, "6h", "30m"), (3.0, "1d", "2h"), (1.0, "3d", "6h")]
    for window in ("7d", "28d", "30d", "90d"):
        shares = [round(t.factor * duration.seconds(t.long_window) / duration.seconds(window), 6)
                  for t in default_tiers(window)]
        assert shares == [0.02, 0.05, 0.1, 0.1], window
    seven = default_tiers("7d")
    assert [(t.severity, t.long_window) for t in seven] == [
        ("page", "1h"), ("page", "1h24m"), ("ticket", "5h36m"), ("ticket", "16h48m")]


def test_per_slo_and_per_tier_controls(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, """\
apiVersion: jaxobs/v1
kind: SLOSpec
alerting:
  group_by: [cluster]
  severity_labels: {page: P1, ticket: P3}
outputs:
  grafana_url: https://grafana.example/
  prometheus_rule_labels: {release: kube-prometheus-stack}
services:
  - name: api
    group_by: [cluster, env]
    slos:
      - name: legacy
        objective: 99
        enabled: false
        sli: {availability: {}}
      - name: quiet
        objective: 99
        record_only: true
        group_by: []
        sli: {availability: {}}
      - name: availability
        objective: 99.9
        alerting:
          no_data: false
          tiers:
            - {severity: page, burn_rate: 14.4, long_window: 1h, for: 0h, min_events: 20,
               low_traffic: silent, labels: {team: core}}
            - {severity: ticket, burn_rate: 1, long_window: 3d}
        sli: {availability: {}}
"""))
    (service,) = spec.services
    assert [s.name for s in service.slos] == ["quiet", "availability"]
    quiet, availability = service.slos
    assert quiet.record_only and not quiet.alerting and quiet.group_by == ()
    assert availability.group_by == ("cluster", "env") and not availability.no_data
    page = availability.tiers[0]
    assert (page.for_, page.min_events, page.low_traffic, page.labels) == \
        ("0s", 20, "silent", (("team", "core"),))
    assert spec.outputs.severity("page") == "P1" and spec.outputs.grafana_url == \
        "https://grafana.example"
    assert dict(spec.outputs.prometheus_rule_labels) == {"release": "kube-prometheus-stack"}
    assert spec.group_labels == ("cluster", "env")
