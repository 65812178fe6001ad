"""The shape of a generated ``promtool test rules`` case, and promtool's input notation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jaxobs.generate import promql as q

Series = tuple[str, str]  # (series selector, promtool values notation)


def instance(i: int) -> str:
    """The ``instance`` label of replica ``i`` in test inputs."""
    return f"replica-{i}:9464"


@dataclass(frozen=True)
class Check:
    """One ``promql_expr_test``: ``expr`` at ``eval_time`` must return exactly ``samples``."""

    expr: str
    eval_time: str
    samples: tuple[tuple[str, float], ...] = ()  # (labels, value)


@dataclass(frozen=True)
class Case:
    name: str
    series: tuple[Series, ...]
    checks: tuple[Check, ...]
    interval: str = "1m"


def series(name: str, label_pairs: dict[str, str]) -> str:
    return q.selector(name, *(q.eq(k, v) for k, v in label_pairs.items()))


def num(value: float) -> str:
    return f"{value:.12g}"


def counter(per_step: float, steps: int) -> str:
    return f"0+{num(per_step)}x{steps}"


def gauge(value: float, steps: int) -> str:
    return f"{num(value)}x{steps}"


def segments(parts: Sequence[tuple[float, int]], start: float = 0.0) -> str:
    """A counter that grows by ``per_step`` for ``steps`` steps, segment after segment
    (promtool's ``a+bxn`` runs, each starting where the previous one ended)."""
    out, value = [], start
    first = True
    for per_step, steps in parts:
        if steps <= 0:
            continue
        if first:
            out.append(f"{num(value)}+{num(per_step)}x{steps}")
            first = False
        else:
            value_next = value + per_step
            out.append(f"{num(value_next)}+{num(per_step)}x{steps - 1}")
        value += per_step * steps
    return " ".join(out)


def labels(pairs: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={_quote(v)}" for k, v in sorted(pairs.items())) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
