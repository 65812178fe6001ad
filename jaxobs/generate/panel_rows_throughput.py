"""Panels for training goodput and for batching servers' queues (how much of the time and of
the hardware did useful work)."""

from __future__ import annotations

from jaxobs import catalog as c
from jaxobs.generate.panels import RATE, SVC, Panel, Row, above, below, q, qs, quantile, rate, sel

PADDING = 'kind="padding"'
GOODPUT_RATIO = (f"sum({rate(c.STEP_GOODPUT, SVC)})\n"
                 f"/ sum({rate(c.STEP_WALL, SVC)})")
GOODPUT_OVER_RANGE = (f"sum(increase({sel(c.STEP_GOODPUT, SVC)}[$__range]))\n"
                      f"/ sum(increase({sel(c.STEP_WALL, SVC)}[$__range]))")


def executive_goodput_panel() -> Panel:
    return Panel("Training goodput", "stat", q(GOODPUT_OVER_RANGE, "goodput"), "percentunit",
                 "Share of the training jobs' wall time spent on productive steps over the range "
                 "(the rest is start-up, compile, data waits, checkpoints, anomalies and failures).",
                 steps=below(0.5), min=0.0, max=1.0, decimals=1, width=6)


def goodput_panels() -> tuple[Panel, ...]:
    badput_share = (f"sum by (reason) ({rate(c.STEP_BADPUT, SVC)})\n"
                    f"/ ignoring (reason) group_left\nsum({rate(c.STEP_WALL, SVC)})")
    return (
        Panel("Goodput %", "timeseries", q(GOODPUT_RATIO, "goodput"), "percentunit",
              "Productive step time as a share of wall time (counted from process start).",
              min=0.0, max=1.0, width=8),
        Panel("Badput breakdown", "timeseries", q(badput_share, "{{reason}}"), "percentunit",
              "Share of wall time lost, by reason: startup, restore, compile, data, checkpoint, "
              "anomaly, failed, disruption (steps redone after a restart) and custom events.",
              min=0.0, max=1.0, stack=True, width=8),
        Panel("Step time / expected", "timeseries",
              q(f"max by (service) ({sel(c.STEP_RECENT, SVC)})\n"
                f"/ max by (service) ({sel(c.STEP_EXPECTED, SVC)})", "{{service}}"), "short",
              "Median recent step time over the expected (configured or learned) step time. "
              "Above 1 for long: a permanent slowdown or a drift that anomaly flags no longer show.",
              steps=above(1.2), min=0.0, width=8),
    )


def queue_row() -> Row:
    fill = (f"sum by (service) ({rate(c.BATCH_FILL, SVC, suffix='_sum')})\n"
            f"/ sum by (service) ({rate(c.BATCH_FILL, SVC, suffix='_count')})")
    padding = (f"sum by (service) ({rate(c.BATCH_ROWS, SVC, PADDING)})\n"
               f"/ sum by (service) ({rate(c.BATCH_ROWS, SVC)})")
    return Row("Queue and batching", (
        Panel("Queue depth", "timeseries", q(f"sum by (service) ({sel(c.QUEUE_DEPTH, SVC)})", "{{service}}"),
              "short", "Requests waiting for a batch. Growing depth at flat traffic: the model "
              "cannot keep up (scale out, or a compile is blocking the batcher).", min=0.0, width=6),
        Panel("Queue wait p99", "timeseries",
              q(quantile(0.99, c.QUEUE_WAIT, "service", SVC), "{{service}}"), "s",
              "Time requests wait before their batch starts.", min=0.0, width=6),
        Panel("Batch fill and padding", "timeseries",
              qs((fill, "{{service}} fill"), (padding, "{{service}} padding")), "percentunit",
              "Mean share of a batch's rows that carried requests, and the share of computed rows "
              "that were padding (compute spent on nothing).", min=0.0, max=1.0, width=6),
        Panel("Rejected (overload)", "timeseries",
              q(f"sum by (service, reason) (rate({sel(c.REQUESTS_REJECTED, SVC)}[{RATE}]))",
                "{{service}} {{reason}}"), "reqps",
              "Requests answered 503 because the queue was full: shed load, not model errors.",
              min=0.0, width=6),
    ))
