"""Alertmanager configuration from the model: routing, grouping and inhibition.

* Pages and tickets go to different receivers (webhooks from the spec's
  ``alerting.receivers``; local placeholders by default).
* Notifications are grouped by ``alertname``, ``service`` and ``function`` (the
  seed's "deduplicate by service and function").
* A firing page inhibits the tickets of the same SLO (``service`` + ``slo``),
  and a resource alert's page inhibits its own tickets (``JaxobsTargetDown``
  with every target down silences the per-target tickets).
* Deploy windows silence compile-related alerts (categories in
  :data:`jaxobs.generate.rules.DEPLOY_SUPPRESSED_CATEGORIES`).

How a deploy opens its window
-----------------------------
The rules turn the gauge ``jaxobs_deploy_in_progress`` into the alert
``JaxobsDeployInProgress`` (kept firing for ``resources.deploy_grace_window``
after the gauge drops, because late replicas still compile).  Alertmanager
routes that alert to the ``blackhole`` receiver — nobody is notified — and uses
it as the *source* of an inhibition rule over alerts with
``category=~"compile|version"`` of the same ``service``.  A deploy sets the
gauge to 1 for its duration, for example by pushing it to a Pushgateway that
Prometheus scrapes with ``honor_labels: true``::

    echo 'jaxobs_deploy_in_progress 1' | curl --data-binary @- \\
        http://pushgateway:9091/metrics/job/inference      # rollout starts
    curl -X DELETE http://pushgateway:9091/metrics/job/inference   # rollout done

(the ``job`` must match the service's ``selector``), or by exporting it from
the process itself while it warms up after a rollout.

Pure function of the model; checked with ``amtool check-config`` in tests.
"""

from __future__ import annotations

from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import rules as r
from jaxobs.generate.render import dump_yaml
from jaxobs.slo.model import Spec

GROUP_BY: tuple[str, ...] = ("alertname", "service", "function")
#: Timing of notifications per severity: (repeat_interval).  Pages nag hourly, tickets daily.
REPEAT_INTERVAL: dict[str, str] = {"page": "1h", "ticket": "24h"}
BLACKHOLE = "blackhole"


def _m(label: str, op: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{label}{op}"{escaped}"'


def config(spec: Spec) -> dict[str, Any]:
    """The Alertmanager configuration as a plain dict."""
    urls = {"page": spec.routing.page_webhook_url, "ticket": spec.routing.ticket_webhook_url}
    return {
        "route": {
            "receiver": "ticket",
            "group_by": list(GROUP_BY),
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": REPEAT_INTERVAL["ticket"],
            "routes": [
                # The deploy marker only feeds the inhibition below; nobody needs its notification.
                {"matchers": [_m("alertname", "=", r.DEPLOY_IN_PROGRESS)], "receiver": BLACKHOLE},
                *({"matchers": [_m("severity", "=", sev)], "receiver": sev,
                   "repeat_interval": REPEAT_INTERVAL[sev]} for sev in ("page", "ticket")),
            ],
        },
        "receivers": [
            {"name": BLACKHOLE},
            *({"name": sev, "webhook_configs": [{"url": urls[sev], "send_resolved": True}]}
              for sev in ("page", "ticket")),
        ],
        "inhibit_rules": [
            {   # a page of an SLO silences the tickets of the same SLO
                "source_matchers": [_m("severity", "=", "page"), _m("slo", "=~", ".+")],
                "target_matchers": [_m("severity", "=", "ticket"), _m("slo", "=~", ".+")],
                "equal": ["service", "slo"],
            },
            {   # a resource alert escalated to a page silences its own tickets
                "source_matchers": [_m("severity", "=", "page"), _m("slo", "=", "")],
                "target_matchers": [_m("severity", "=", "ticket"), _m("slo", "=", "")],
                "equal": ["alertname", "service"],
            },
            {   # deploy windows: compiling everything once and mixed versions are expected
                "source_matchers": [_m("alertname", "=", r.DEPLOY_IN_PROGRESS)],
                "target_matchers": [_m("category", "=~",
                                       "|".join(r.DEPLOY_SUPPRESSED_CATEGORIES))],
                "equal": ["service"],
            },
        ],
    }


def render_alertmanager(spec: Spec, source: str) -> str:
    return dump_yaml(config(spec), source,
                     "Alertmanager routing for jaxobs alerts: pages and tickets to separate\n"
                     "receivers, tickets inhibited while the same SLO pages, compile alerts\n"
                     f"inhibited while {r.DEPLOY_IN_PROGRESS} fires ({c.DEPLOY_IN_PROGRESS.name} == 1).\n"
                     "Check: amtool check-config alerts/alertmanager.yml")
