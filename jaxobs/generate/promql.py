"""PromQL text builders shared by the rules, the dashboard panels and the runbooks.

One set of helpers, so a selector, a grouped sum or a ratio is spelled the
same way everywhere: a query an on-call engineer copies from a runbook is the
query a panel draws and (where it can be) the recording rule an alert reads.

Everything returns plain strings; nothing here knows about a spec.
"""

from __future__ import annotations

from collections.abc import Iterable


def quote(value: str) -> str:
    """``value`` as a PromQL double-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def eq(label: str, value: str) -> str:
    """An equality matcher, ``label="value"``, with the value escaped."""
    return f"{label}={quote(value)}"


def matchers(pairs: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """Equality matchers for ``(label, value)`` pairs."""
    return tuple(eq(k, v) for k, v in pairs)


def le_matcher(bound: float) -> str:
    """Match a histogram bucket bound however it was exposed.

    prometheus-client writes ``le="1.0"``, Prometheus 3 normalises it to ``le="1"``.
    """
    if float(bound).is_integer():
        return f'le=~"{int(bound)}(\\\\.0)?"'
    return f'le="{float(bound)!r}"'


def selector(name: str, *match: str, ordered: bool = False) -> str:
    """``name{matchers}``; matchers are sorted unless ``ordered`` (so output never depends
    on call order, while dashboards keep their ``job`` variable first)."""
    parts = match if ordered else tuple(sorted(match))
    return f"{name}{{{','.join(parts)}}}"


def by(labels: Iterable[str]) -> str:
    """The grouping clause ``by (a, b) `` of an aggregation, or "" for none."""
    names = tuple(labels)
    return f"by ({', '.join(names)}) " if names else ""


def agg(op: str, labels: Iterable[str], expr: str) -> str:
    """``op by (labels) (expr)``, e.g. ``sum by (cluster) (rate(x[5m]))``."""
    return f"{op} {by(labels)}({expr})" if tuple(labels) else f"{op}({expr})"


def rate(series: str, window: str) -> str:
    return f"rate({series}[{window}])"


def increase(series: str, window: str) -> str:
    return f"increase({series}[{window}])"


def gained(series: str, window: str) -> str:
    """What counters gained over ``window``, counting those born inside it.

    Error counters appear at their first increment (nothing is exposed until
    something fails), and ``increase()`` sees no gain in a series whose first
    sample is already 1: the first error of a process would never alert.  A
    series absent ``window`` ago counts its whole value; the others their increase.
    """
    return f"({series} unless {series} offset {window})\nor\n{increase(series, window)}"


def sum_rate(series: str, window: str, labels: Iterable[str] = ()) -> str:
    """``sum by (labels) (rate(series[window]))``."""
    return agg("sum", labels, rate(series, window))


def ratio(numerator: str, denominator: str) -> str:
    """``(numerator) / (denominator)`` on three lines (readable in YAML and Grafana)."""
    return f"({numerator})\n/\n({denominator})"


def positive(expr: str) -> str:
    """``(expr > 0)``: drop zeros, so a ratio over no traffic has no sample instead of NaN."""
    return f"({expr} > 0)"


def histogram_quantile(phi: float, buckets_rate: str, labels: Iterable[str] = ()) -> str:
    """``histogram_quantile(phi, sum by (le, labels) (buckets_rate))``."""
    return f"histogram_quantile({phi:g}, {agg('sum', ('le', *labels), buckets_rate)})"


def number(value: float) -> str:
    """A number as PromQL and promtool print it (no trailing zeros, 12 significant digits)."""
    return f"{value:.12g}"
