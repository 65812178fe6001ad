"""The building blocks of spec validation: where a field is, and checks of one value.

Every check fails through :meth:`Context.fail`, which raises :class:`SpecError`
with the file, the line, the field path and the fix, so the sections in
:mod:`jaxobs.slo.spec` read as a list of rules, not of error handling.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from jaxobs.slo import duration

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")


class SpecError(ValueError):
    """An invalid spec: the message names the file, line, field path and the fix."""

    def __init__(self, source: str, path: str, problem: str, fix: str, line: int | None = None):
        self.source, self.path, self.problem, self.fix, self.line = source, path, problem, fix, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {path}: {problem}. Fix: {fix}")



# --------------------------------------------------------------------------- context


class Context:
    """Where we are: the file, and the line of every field path (for messages)."""

    def __init__(self, source: str):
        self.source = source
        self.lines: dict[str, int] = {}

    def index(self, node: yaml.Node, path: str) -> None:
        """Record the line of every path and reject duplicate keys (YAML keeps the last)."""
        self.lines.setdefault(path or "(document)", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = f"{path}.{key}" if path else key
                if key in seen:
                    self.fail(child, f"duplicate key {key!r}", "keep one of them",
                              line=key_node.start_mark.line + 1)
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self.index(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.index(item, f"{path}[{i}]")

    def line_of(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            parent = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
            if parent == path:  # a top-level key
                break
            path = parent
        return self.lines.get("(document)")

    def fail(self, path: str, problem: str, fix: str, line: int | None = None) -> Any:
        raise SpecError(self.source, path or "(document)", problem, fix,
                        line=line or self.line_of(path))


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# --------------------------------------------------------------------------- primitives


def mapping(ctx: Context, value: Any, path: str, allowed: tuple[str, ...],
             required: tuple[str, ...] = ()) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping, got {kind_of(value)}",
                 f"write it as 'key: value' lines (allowed keys: {', '.join(allowed)})")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
            ctx.fail(join(path, str(key)), f"unknown key {key!r}", hint)
    for key in required:
        if value.get(key) is None:
            ctx.fail(join(path, key), "is required", f"add '{key}:' under {path or 'the top level'}")
    return value


def kind_of(value: Any) -> str:
    return {type(None): "nothing", bool: "a boolean", int: "a number", float: "a number",
            str: "a string", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def string(ctx: Context, value: Any, path: str, pattern: re.Pattern[str] | None = None,
            fix: str = "") -> str:
    if not isinstance(value, str) or not value.strip():
        ctx.fail(path, f"expected a non-empty string, got {kind_of(value)}", fix or "quote the value")
    if pattern is not None and not pattern.fullmatch(value):
        ctx.fail(path, f"{value!r} is not allowed here", fix)
    return value


def number(ctx: Context, value: Any, path: str, low: float, high: float, fix: str,
            low_open: bool = True, high_open: bool = False, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (integer and not isinstance(value, int)):
        ctx.fail(path, f"expected {'an integer' if integer else 'a number'}, got {kind_of(value)} "
                       f"{value!r}", fix)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
        ctx.fail(path, f"{value!r} is out of range {lo}{low:g}, {high:g}{hi}", fix)
    return value


def duration_field(ctx: Context, value: Any, path: str) -> str:
    if not isinstance(value, str):
        ctx.fail(path, f"expected a duration string, got {kind_of(value)} {value!r}",
                 "quote a number with a unit, e.g. '5m', '1h', '30d'")
    try:
        return duration.canonical(value)
    except ValueError as exc:
        return ctx.fail(path, f"bad duration: {exc}", "use e.g. 5m, 1h, 6h, 1d, 30d")


def labels(ctx: Context, value: Any, path: str, reserved: frozenset[str] = frozenset()
            ) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a mapping of label names to values, got {kind_of(value)}",
                 "write e.g. 'team: serving'")
    out = []
    for key, val in value.items():
        sub = join(path, str(key))
        if not isinstance(key, str) or not _LABEL_NAME.match(key) or key.startswith("__"):
            ctx.fail(sub, f"{key!r} is not a valid Prometheus label name",
                     "use letters, digits and underscores, not starting with a digit or '__'")
        if key in reserved:
            ctx.fail(sub, f"label {key!r} is set by jaxobs itself",
                     f"rename it (reserved here: {', '.join(sorted(reserved))})")
        if isinstance(val, bool) or not isinstance(val, (str, int, float)):
            ctx.fail(sub, f"expected a label value (string), got {kind_of(val)}", "quote the value")
        out.append((key, str(val)))
    return tuple(sorted(out))


def nonempty_list(ctx: Context, value: Any, path: str, what: str, fix: str) -> list[Any]:
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of {what}, got {kind_of(value)}", fix)
    if not value:
        ctx.fail(path, f"the list of {what} is empty", fix)
    return value




def label_names(ctx: Context, value: Any, path: str, reserved: frozenset[str] = frozenset()
                ) -> tuple[str, ...]:
    """A list of Prometheus label names (``group_by: [cluster, env]``); ``[]`` is allowed."""
    if value is None:
        return ()
    if not isinstance(value, list):
        ctx.fail(path, f"expected a list of label names, got {kind_of(value)}",
                 "write e.g. '[cluster, env]', or '[]' for one fleet-wide result")
    out: list[str] = []
    for i, name in enumerate(value):
        sub = join(path, i)
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            ctx.fail(sub, f"{name!r} is not a valid Prometheus label name",
                     "use letters, digits and underscores, not starting with a digit or '__'")
        if name in reserved:
            ctx.fail(sub, f"label {name!r} is set by jaxobs itself",
                     f"drop it (reserved here: {', '.join(sorted(reserved))})")
        if name in out:
            ctx.fail(sub, f"label {name!r} is listed twice", "keep one")
        out.append(name)
    return tuple(out)


def boolean(ctx: Context, value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        ctx.fail(path, f"expected true or false, got {kind_of(value)} {value!r}",
                 "write true or false (without quotes)")
    return value
