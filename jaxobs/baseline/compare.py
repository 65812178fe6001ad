"""Compare two baselines: deterministic quantities by threshold, timings by a rank test.

Why two kinds of rule: XLA's compile count, FLOPs, bytes, peak memory and
fusion count do not depend on machine load — rerunning the same build gives
the same numbers, so any change is real and a tight threshold has no false
positives.  Kernel timings are noisy, so they are compared as samples: a
one-sided Mann–Whitney U test (is the new build slower?) *and* a minimum
effect (the ratio of a low quantile, the 10th percentile by default: noise
only adds time, so the fast end moves least with load), both of which must trip.

Thresholds, per quantity (``defaults``) and per function (``functions``,
keys may be glob patterns; the first match wins), from a YAML or JSON file::

    defaults:
      compiles: 0              # absolute: allowed increase
      flops: 1%                # relative: allowed increase in percent
      peak_memory_bytes: 5%
      compile_seconds: off     # not gated (reported only)
      kernel_seconds: {alpha: 0.01, min_effect: 0.25, quantile: 0.1, min_samples: 8}
    functions:
      "train_*":
        peak_memory_bytes: 10%
        kernel_seconds: off
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jaxobs.baseline import stats

DETERMINISTIC = ("compiles", "flops", "bytes_accessed", "peak_memory_bytes", "fusions")
DEFAULTS: dict[str, Any] = {
    "compiles": 0,
    "flops": "1%",
    "bytes_accessed": "5%",
    "peak_memory_bytes": "5%",
    "fusions": 0,
    "compile_seconds": None,
    "kernel_seconds": {"alpha": 0.01, "min_effect": 0.25, "quantile": 0.1, "min_samples": 8},
}
TIMING_KEYS = ("alpha", "min_effect", "quantile", "min_samples")


class BaselineError(ValueError):
    """A baseline or thresholds file that cannot be used (one line: file, field, fix)."""


@dataclass(frozen=True)
class Row:
    function: str
    quantity: str
    old: str
    new: str
    change: str
    verdict: str  # ok, REGRESSION, improved, info, skipped
    note: str = ""


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    old_versions: dict[str, str] = field(default_factory=dict)
    new_versions: dict[str, str] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "REGRESSION"]


# --- files -------------------------------------------------------------------------------------

def load_baseline(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise BaselineError(f"{p}: no such baseline. Fix: record one with `jaxobs baseline record -o {p} "
                            "-- python bench.py` or `pytest --jaxobs-record`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{p}: not a readable JSON baseline ({exc}). Fix: record it again") from None
    if not isinstance(doc, dict) or doc.get("format") != "jaxobs-baseline":
        raise BaselineError(f"{p}: field 'format' must be 'jaxobs-baseline'. Fix: pass a file written by "
                            "`jaxobs baseline record`")
    if not isinstance(doc.get("version"), int) or doc["version"] > 1:
        raise BaselineError(f"{p}: field 'version' is {doc.get('version')!r}, this jaxobs reads 1. "
                            "Fix: upgrade jaxobs")
    if not isinstance(doc.get("functions"), dict):
        raise BaselineError(f"{p}: field 'functions' must be a mapping. Fix: record it again")
    return doc


def load_thresholds(path: str | Path | None) -> dict[str, Any]:
    """Parse and check a thresholds file (YAML or JSON); ``None`` gives the defaults."""
    if path is None:
        return {"defaults": dict(DEFAULTS), "functions": {}}
    p = Path(path)
    try:
        import yaml

        raw = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError:
        raise BaselineError(f"{p}: no such thresholds file") from None
    except Exception as exc:
        raise BaselineError(f"{p}: not YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or set(raw) - {"defaults", "functions"}:
        raise BaselineError(f"{p}: top-level keys must be 'defaults' and 'functions'")
    defaults = dict(DEFAULTS)
    defaults.update(_check_rules(raw.get("defaults") or {}, p, "defaults"))
    functions = raw.get("functions") or {}
    if not isinstance(functions, dict):
        raise BaselineError(f"{p}: field 'functions' must map function names (or globs) to thresholds")
    checked = {str(k): _check_rules(v or {}, p, f"functions.{k}") for k, v in functions.items()}
    return {"defaults": defaults, "functions": checked}


def _check_rules(rules: Any, p: Path, where: str) -> dict[str, Any]:
    if not isinstance(rules, dict):
        raise BaselineError(f"{p}: field '{where}' must be a mapping of quantity to threshold")
    out: dict[str, Any] = {}
    for key, value in rules.items():
        field_name = f"{where}.{key}"
        if key not in DEFAULTS:
            raise BaselineError(f"{p}: unknown quantity '{field_name}'. Fix: use one of {', '.join(DEFAULTS)}")
        if value in (None, False, "off"):
            out[key] = None
        elif key == "kernel_seconds":
            if not isinstance(value, dict) or set(value) - set(TIMING_KEYS):
                raise BaselineError(f"{p}: field '{field_name}' takes {{{', '.join(TIMING_KEYS)}}} or off")
            out[key] = {**DEFAULTS["kernel_seconds"], **value}
        else:
            try:
                _allowed(value, 1.0)
            except (TypeError, ValueError):
                raise BaselineError(f"{p}: field '{field_name}' is {value!r}. Fix: a number (allowed "
                                    "increase), a percentage like '5%', or off") from None
            out[key] = value
    return out


def _rules_for(thresholds: dict[str, Any], function: str) -> dict[str, Any]:
    rules = dict(thresholds["defaults"])
    for pattern, override in thresholds["functions"].items():
        if fnmatch.fnmatchcase(function, pattern):
            for key, value in override.items():
                if key == "kernel_seconds" and value is not None and rules.get(key) is not None:
                    value = {**rules[key], **value}
                rules[key] = value
            break
    return rules


def _allowed(rule: Any, old: float) -> float:
    """How much ``new`` may exceed ``old`` under this rule."""
    if isinstance(rule, str) and rule.strip().endswith("%"):
        return abs(old) * float(rule.strip()[:-1]) / 100
    if isinstance(rule, bool):
        raise TypeError(rule)
    return float(rule)


# --- comparing -------------------------------------------------------------------------------

def compare(old: dict[str, Any], new: dict[str, Any], thresholds: dict[str, Any] | None = None) -> Comparison:
    thresholds = thresholds or load_thresholds(None)
    result = Comparison(old_versions=old.get("versions", {}), new_versions=new.get("versions", {}))
    names = sorted(set(old["functions"]) | set(new["functions"]))
    for name in names:
        a, b = old["functions"].get(name), new["functions"].get(name)
        if a is None or b is None:
            result.rows.append(Row(name, "function", "-" if a is None else "present",
                                   "-" if b is None else "present", "", "info",
                                   "only in the new run" if a is None else "not run by the new run"))
            continue
        rules = _rules_for(thresholds, name)
        for key in DETERMINISTIC:
            result.rows.append(_deterministic(name, key, a.get(key), b.get(key), rules.get(key)))
        result.rows.append(_compile_time(name, a, b, rules.get("compile_seconds")))
        result.rows.append(_timing(name, a.get("kernel_seconds") or [], b.get("kernel_seconds") or [],
                                   rules.get("kernel_seconds")))
    return result


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _pct(old: float, new: float) -> str:
    if old == 0:
        return "+inf%" if new > 0 else "0%"
    return f"{(new - old) / abs(old) * 100:+.1f}%"


def _deterministic(name: str, key: str, old: float | None, new: float | None, rule: Any) -> Row:
    if old is None or new is None:
        return Row(name, key, _fmt(old), _fmt(new), "", "skipped", "not measured in both runs")
    change = _pct(old, new)
    if rule is None:
        return Row(name, key, _fmt(old), _fmt(new), change, "info", "not gated")
    limit = _allowed(rule, old)
    if new > old + limit:
        return Row(name, key, _fmt(old), _fmt(new), change, "REGRESSION", f"allowed +{rule}")
    if new < old - limit:
        return Row(name, key, _fmt(old), _fmt(new), change, "improved")
    return Row(name, key, _fmt(old), _fmt(new), change, "ok")


def _compile_time(name: str, a: dict[str, Any], b: dict[str, Any], rule: Any) -> Row:
    old = sum((a.get("compile_seconds") or {}).values())
    new = sum((b.get("compile_seconds") or {}).values())
    phases = " ".join(f"{k} {_ms(v)}" for k, v in (b.get("compile_seconds") or {}).items())
    row = _deterministic(name, "compile_seconds", round(old, 4), round(new, 4), rule)
    return Row(row.function, row.quantity, f"{old:.3f}", f"{new:.3f}", row.change, row.verdict,
               f"{row.note}; new: {phases}".strip("; ") if phases else row.note)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f}ms"


def _timing(name: str, old: list[float], new: list[float], rule: Any) -> Row:
    if not old or not new:
        return Row(name, "kernel_seconds", "-", "-", "", "skipped", "no samples in one run")
    q = float(rule["quantile"]) if rule is not None else DEFAULTS["kernel_seconds"]["quantile"]
    qo, qn = stats.quantile(old, q), stats.quantile(new, q)
    label = f"p{q * 100:g}"
    shown_old, shown_new = f"{qo * 1e3:.3f}ms {label} (n={len(old)})", f"{qn * 1e3:.3f}ms {label} (n={len(new)})"
    ratio = qn / qo if qo > 0 else float("inf")
    change = f"x{ratio:.2f}"
    if rule is None:
        return Row(name, "kernel_seconds", shown_old, shown_new, change, "info", "not gated")
    if min(len(old), len(new)) < int(rule["min_samples"]):
        return Row(name, "kernel_seconds", shown_old, shown_new, change, "skipped",
                   f"fewer than {rule['min_samples']} samples")
    test = stats.mann_whitney_greater(old, new)
    note = f"p={test.p_value:.2g} (U test), needs p<{rule['alpha']} and x{1 + rule['min_effect']:.2f}"
    if test.p_value < rule["alpha"] and ratio >= 1 + rule["min_effect"]:
        return Row(name, "kernel_seconds", shown_old, shown_new, change, "REGRESSION", note)
    faster = stats.mann_whitney_greater(new, old)
    if faster.p_value < rule["alpha"] and 1 / ratio >= 1 + rule["min_effect"]:
        return Row(name, "kernel_seconds", shown_old, shown_new, change, "improved", note)
    return Row(name, "kernel_seconds", shown_old, shown_new, change, "ok", note)


# --- rendering -------------------------------------------------------------------------------

COLUMNS = ("function", "quantity", "old", "new", "change", "result", "note")


def _cells(row: Row) -> tuple[str, ...]:
    return (row.function, row.quantity, row.old, row.new, row.change, row.verdict, row.note)


def _versions_line(c: Comparison) -> str:
    keys = [k for k in ("jax", "jaxlib", "backend", "driver", "cuda", "jaxobs")
            if c.old_versions.get(k) or c.new_versions.get(k)]
    parts = []
    for k in keys:
        o, n = c.old_versions.get(k, "?"), c.new_versions.get(k, "?")
        parts.append(f"{k} {o}" if o == n else f"{k} {o} -> {n}")
    return ", ".join(parts)


def _summary(c: Comparison) -> str:
    n = len(c.regressions)
    functions = len({r.function for r in c.rows})
    if n:
        return f"{n} regression{'s' if n != 1 else ''} in {functions} functions"
    return f"no regressions in {functions} functions"


def render_text(c: Comparison) -> str:
    table = [COLUMNS, *(_cells(r) for r in c.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS) - 1)]
    lines = [f"versions: {_versions_line(c)}"]
    for row in table:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    lines.append(_summary(c))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_markdown(c: Comparison) -> str:
    head = "**jaxobs baseline: " + _summary(c) + "**"
    lines = [head, "", f"Versions: {_versions_line(c)}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in c.rows:
        cells = list(_cells(row))
        if row.verdict == "REGRESSION":
            cells[5] = "**REGRESSION**"
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
