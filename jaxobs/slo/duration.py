"""Prometheus durations: parse, format canonically, divide.

Windows are compared and deduplicated by their length, not their spelling
("60m" and "1h" are one window, one recording rule), so everything that
handles a window goes through :func:`seconds` and :func:`canonical`.
"""

from __future__ import annotations

import re

#: Units the spec accepts, largest first.  Weeks are accepted on input but
#: never produced (``30d`` reads better than ``4w2d``).
UNITS: tuple[tuple[str, int], ...] = (
    ("w", 7 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("m", 60),
    ("s", 1),
)
_OUTPUT_UNITS = tuple(u for u in UNITS if u[0] != "w")
#: Prometheus stores a duration as int64 nanoseconds: about 292 years.
MAX_SECONDS = (2**63 - 1) // 10**9
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(text: str) -> int:
    """Seconds in a Prometheus duration such as ``5m``, ``1h30m`` or ``30d``.

    Raises ``ValueError`` (with the accepted syntax) on anything else,
    including zero-length durations, which no window can use.
    """
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; use a number and a unit "
                         f"({', '.join(u for u, _ in UNITS)}), e.g. 5m, 1h, 30d")
    if any(g and len(g) > 15 for g in match.groups()):
        raise ValueError(f"{text[:40]!r} is longer than Prometheus accepts (at most {MAX_SECONDS // 86400}d)")
    total = sum(int(g or 0) * size for g, (_, size) in zip(match.groups(), UNITS, strict=True))
    if total == 0:
        raise ValueError(f"{text!r} is zero; a window must be longer than that")
    if total > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than Prometheus accepts (at most {MAX_SECONDS // 86400}d)")
    return total


def canonical(value: str | int) -> str:
    """The one spelling of a duration (``60m`` → ``1h``, ``3600`` → ``1h``)."""
    total = seconds(value) if isinstance(value, str) else int(value)
    if total <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    parts = []
    for unit, size in _OUTPUT_UNITS:
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def divide(text: str, by: int) -> str:
    """``text / by`` rounded down to whole seconds (the workbook's short window is long/12)."""
    return canonical(max(1, seconds(text) // by))
