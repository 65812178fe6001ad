"""Alertmanager configuration from the model: a sub-route to merge, and a standalone file.

``alerts/alertmanager-route.yml`` is what a team that already runs Alertmanager
pastes into its own configuration: one route (matched on jaxobs' alert names,
so no one else's alert ever reaches a jaxobs receiver) to append under the root
route's ``routes:``, plus its receivers and inhibition rules (each of which also
matches only jaxobs alerts).  ``alerts/alertmanager.yml`` is the same route under
a root whose default receiver drops everything else: a complete config for the
demo and for ``amtool``.

* Pages and tickets go to different receivers (webhooks from the spec's
  ``alerting.receivers``; local placeholders by default).
* Notifications are grouped by ``alertname``, ``service``, ``slo``,
  ``function`` and every grouping label of the spec (``cluster``, ``env``, …),
  and every inhibition compares the same labels, so a staging deploy never
  mutes production.
* A firing page inhibits the tickets of the same SLO, and a resource alert's
  page inhibits its own tickets.
* Deploy windows silence compile and version alerts (categories in
  :data:`jaxobs.generate.names.DEPLOY_SUPPRESSED_CATEGORIES`) for at most
  ``resources.deploy_max_duration``: past it the rules stop the window alert and
  raise ``JaxobsDeployWindowStuck`` (a ticket) instead.

How a deploy opens its window
-----------------------------
The rules turn the gauge ``jaxobs_deploy_in_progress`` into the alert
``JaxobsDeployInProgress`` (kept firing for ``resources.deploy_grace_window``
after the gauge drops, because late replicas still compile).  Alertmanager
routes that alert to the ``jaxobs-blackhole`` receiver (nobody is notified) and
uses it as the *source* of an inhibition rule.  A deploy sets the gauge to 1
for its duration, for example by pushing it to a Pushgateway that Prometheus
scrapes with ``honor_labels: true``::

    echo 'jaxobs_deploy_in_progress 1' | curl --data-binary @- \\
        http://pushgateway:9091/metrics/job/inference      # rollout starts
    curl -X DELETE http://pushgateway:9091/metrics/job/inference   # rollout done

(the ``job`` must match the service's ``selector``, and the grouping labels
such as ``env`` must be on the series), or by exporting it from the process
itself while it warms up after a rollout.
"""

from __future__ import annotations

from typing import Any

from jaxobs import catalog as c
from jaxobs.generate import names as n
from jaxobs.generate.render import dump_yaml
from jaxobs.slo.model import Spec

ROUTE_PATH = "alerts/alertmanager-route.yml"
BASE_GROUP_BY: tuple[str, ...] = ("alertname", "service", "slo", "function")
#: repeat_interval per severity.  Pages nag hourly, tickets daily.
REPEAT_INTERVAL: dict[str, str] = {"page": "1h", "ticket": "24h"}
BLACKHOLE = "jaxobs-blackhole"
RECEIVER = {"page": "jaxobs-page", "ticket": "jaxobs-ticket"}
#: the standalone file's default receiver: everything that is not a jaxobs alert.
OTHERS = "others"


def _m(label: str, op: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{label}{op}"{escaped}"'


JAXOBS = _m("alertname", "=~", n.ALERT_NAME_PATTERN)


def group_by(spec: Spec) -> list[str]:
    """Notification grouping: the base labels and every grouping label of the spec."""
    return list(dict.fromkeys((*BASE_GROUP_BY, *spec.group_labels)))


def route(spec: Spec) -> dict[str, Any]:
    """The jaxobs sub-route: append it under your root route's ``routes:``."""
    sev = spec.outputs.severity
    return {
        "matchers": [JAXOBS],
        "receiver": RECEIVER["ticket"],
        "group_by": group_by(spec),
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": REPEAT_INTERVAL["ticket"],
        "continue": False,
        "routes": [
            # The deploy marker only feeds the inhibition below; nobody needs its notification.
            {"matchers": [_m("alertname", "=", n.DEPLOY_IN_PROGRESS)], "receiver": BLACKHOLE},
            *({"matchers": [_m("severity", "=", sev(s))], "receiver": RECEIVER[s],
               "repeat_interval": REPEAT_INTERVAL[s]} for s in ("page", "ticket")),
        ],
    }


def receivers(spec: Spec) -> list[dict[str, Any]]:
    urls = {"page": spec.routing.page_webhook_url, "ticket": spec.routing.ticket_webhook_url}
    return [
        {"name": BLACKHOLE},
        *({"name": RECEIVER[s], "webhook_configs": [{"url": urls[s], "send_resolved": True}]}
          for s in ("page", "ticket")),
    ]


def inhibit_rules(spec: Spec) -> list[dict[str, Any]]:
    """Inhibitions among jaxobs alerts only, equal on the grouping labels."""
    sev = spec.outputs.severity
    scope = list(spec.group_labels)
    page, ticket = _m("severity", "=", sev("page")), _m("severity", "=", sev("ticket"))
    return [
        {   # a page of an SLO silences the tickets of the same SLO
            "source_matchers": [JAXOBS, page, _m("slo", "=~", ".+")],
            "target_matchers": [JAXOBS, ticket, _m("slo", "=~", ".+")],
            "equal": ["service", "slo", *scope],
        },
        {   # a resource alert escalated to a page silences its own tickets
            "source_matchers": [JAXOBS, page, _m("slo", "=", "")],
            "target_matchers": [JAXOBS, ticket, _m("slo", "=", "")],
            "equal": ["alertname", "service", *scope],
        },
        {   # deploy windows: compiling everything once and mixed versions are expected
            "source_matchers": [_m("alertname", "=", n.DEPLOY_IN_PROGRESS)],
            "target_matchers": [JAXOBS, _m("category", "=~",
                                           "|".join(n.DEPLOY_SUPPRESSED_CATEGORIES))],
            "equal": ["service", *scope],
        },
    ]


def sub_route(spec: Spec) -> dict[str, Any]:
    """The pieces to merge into an existing Alertmanager configuration."""
    return {"route": route(spec), "receivers": receivers(spec),
            "inhibit_rules": inhibit_rules(spec)}


def config(spec: Spec) -> dict[str, Any]:
    """A complete configuration: the sub-route under a root that drops other alerts."""
    return {
        "route": {"receiver": OTHERS, "group_by": ["alertname"], "routes": [route(spec)]},
        "receivers": [{"name": OTHERS}, *receivers(spec)],
        "inhibit_rules": inhibit_rules(spec),
    }


def render_route(spec: Spec, source: str) -> str:
    return dump_yaml(sub_route(spec), source,
                     "jaxobs' Alertmanager routing, to merge into your own configuration:\n"
                     "append `route` under your root route's `routes:` (before any catch-all),\n"
                     "and add `receivers` and `inhibit_rules` to yours. It matches only\n"
                     f"alertname=~\"{n.ALERT_NAME_PATTERN}\"; no other alert is routed or inhibited.")


def render_alertmanager(spec: Spec, source: str) -> str:
    return dump_yaml(config(spec), source,
                     "A standalone Alertmanager config for jaxobs alerts (the demo's): the route\n"
                     "of alerts/alertmanager-route.yml under a root that drops other alerts.\n"
                     "Pages and tickets go to separate receivers, tickets are inhibited while the\n"
                     f"same SLO pages, compile alerts while {n.DEPLOY_IN_PROGRESS} fires\n"
                     f"({c.DEPLOY_IN_PROGRESS.name} == 1, at most resources.deploy_max_duration).\n"
                     "Check: amtool check-config alerts/alertmanager.yml")
