"""The one-sided Mann–Whitney U test and an effect size, in plain Python (no scipy needed).

Why Mann–Whitney rather than a t-test or a fixed percentage: kernel timings on
a shared machine are skewed and heavy-tailed (a descheduled thread adds a
long outlier), and a rank test does not care.  A p-value alone flags
differences too small to matter once there are many samples, so a
regression also needs a minimum effect, measured at the fast end of the
distribution (:func:`quantile`, the 10th percentile by default): load on a
shared machine only ever adds time, so the fastest calls are the least
disturbed estimate of what a kernel costs.

Exact p-values (no ties, the smaller sample ≤ 50) come from the distribution
of U, the coefficients of a Gaussian binomial; otherwise the normal
approximation with tie and continuity corrections (as scipy's
``mannwhitneyu(..., method="asymptotic")``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EXACT_MAX = 50


@dataclass(frozen=True)
class MannWhitney:
    """U of ``new`` (how often a new sample beats an old one) and the one-sided p-value."""

    u: float
    p_value: float
    method: str  # "exact" or "normal"
    #: probability that a new sample exceeds an old one (0.5: no difference)
    common_language: float


def ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) and the sizes of tied groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            out[order[k]] = rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return out, ties


def mann_whitney_greater(old: Sequence[float], new: Sequence[float]) -> MannWhitney:
    """Test H1 "new tends to be larger than old" (a slowdown, for timings)."""
    m, n = len(old), len(new)
    if m == 0 or n == 0:
        raise ValueError("both samples need at least one value")
    r, ties = ranks([*old, *new])
    u = sum(r[m:]) - n * (n + 1) / 2
    if not ties and min(m, n) <= EXACT_MAX:
        p, method = _exact_upper_tail(m, n, u), "exact"
    else:
        p, method = _normal_upper_tail(m, n, u, ties), "normal"
    return MannWhitney(u, min(1.0, max(0.0, p)), method, u / (m * n))


def _u_distribution(m: int, n: int) -> list[int]:
    """How many arrangements give U = 0..m*n: coefficients of the Gaussian binomial [m+n, m]."""
    poly = [1]
    for i in range(1, m + 1):  # multiply by (1 - q^(n+i)) / (1 - q^i), exactly, in integers
        grown = poly + [0] * (n + i)
        for k in range(len(grown) - 1, n + i - 1, -1):
            grown[k] -= grown[k - n - i]
        for k in range(i, len(grown)):  # divide by (1 - q^i): running sum with stride i
            grown[k] += grown[k - i]
        poly = grown[: m * n + 1] if len(grown) > m * n + 1 else grown
    return poly[: m * n + 1]


def _exact_upper_tail(m: int, n: int, u: float) -> float:
    dist = _u_distribution(m, n)
    total = sum(dist)
    start = math.ceil(u - 1e-9)
    return sum(dist[start:]) / total


def _normal_upper_tail(m: int, n: int, u: float, ties: Sequence[int]) -> float:
    total = m + n
    mu = m * n / 2
    tie_term = sum(t ** 3 - t for t in ties) / (total * (total - 1)) if total > 1 else 0.0
    var = m * n / 12 * ((total + 1) - tie_term)
    if var <= 0:
        return 1.0 if u <= mu else 0.0
    z = (u - mu - 0.5) / math.sqrt(var)
    return 0.5 * math.erfc(z / math.sqrt(2))


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile with linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    if not s:
        raise ValueError("quantile of no values")
    pos = (len(s) - 1) * min(1.0, max(0.0, q))
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    s = sorted(values)
    if not s:
        raise ValueError("median of no values")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
