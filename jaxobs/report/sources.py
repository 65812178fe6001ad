"""Where a report's data comes from: one /metrics snapshot, or a Prometheus server's API."""

from __future__ import annotations

import http.client
import json
import math
import os
import stat
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from typing import Any

import click

from jaxobs import catalog
from jaxobs.report.data import (
    BURN_RATE_RULE,
    MAX_BURN_SERIES,
    BurnSeries,
    ReportData,
    _compile_breakdown,
    _histograms,
    _latency_rows,
)
from jaxobs.slo import duration

# --- source: a /metrics snapshot -----------------------------------------------------


#: Largest snapshot read (the sidecar's proxy limit): a bigger page is not a /metrics page.
SNAPSHOT_MAX_BYTES = 64 * 1024 * 1024
#: Total seconds to fetch a snapshot URL, however slowly the server dribbles bytes.
SNAPSHOT_DEADLINE_SECONDS = 30.0
#: Longest wait for any single read; the total deadline is checked between reads.
_READ_TIMEOUT = 5.0


class SnapshotError(click.ClickException):
    """A snapshot that cannot be read or parsed: one line naming it and what is wrong."""


def read_snapshot(where: str, *, max_bytes: int = SNAPSHOT_MAX_BYTES,
                  deadline_seconds: float = SNAPSHOT_DEADLINE_SECONDS) -> str:
    """The text of a saved ``/metrics`` file, or fetched from its URL, within size and time limits."""
    if where.startswith(("http://", "https://")):
        data = _fetch(where, max_bytes, deadline_seconds)
    else:
        data = _read_file(where, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(f"{where}: not UTF-8 text (byte {exc.start}); "
                            f"pass a saved /metrics page or its URL") from None


def _too_big(where: str, max_bytes: int) -> SnapshotError:
    return SnapshotError(f"{where}: more than {max_bytes:,} bytes; a /metrics page is far smaller "
                         f"(is this the right URL or file?)")


def _fetch(url: str, max_bytes: int, deadline_seconds: float) -> bytes:
    deadline = time.monotonic() + deadline_seconds
    chunks: list[bytes] = []
    size = 0
    try:
        with urllib.request.urlopen(url, timeout=min(_READ_TIMEOUT, deadline_seconds)) as resp:  # noqa: S310
            while True:  # ends: each turn reads >= 1 byte or stops; the deadline and size cap bound it
                if time.monotonic() > deadline:
                    raise SnapshotError(f"{url}: not complete after {deadline_seconds:g}s "
                                        f"({size:,} bytes so far); is the server stalled?")
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise _too_big(url, max_bytes)
                chunks.append(chunk)
    except SnapshotError:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SnapshotError(f"cannot read {url}: {exc}") from None
    return b"".join(chunks)


def _read_file(path: str, max_bytes: int) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SnapshotError(f"{path}: not a regular file; pass a saved /metrics page")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SnapshotError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise _too_big(path, max_bytes)
    return data


def _rows(text: str, source: str) -> list[tuple[str, dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    rows: list[tuple[str, dict[str, str], float]] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                le = s.labels.get("le")
                if le is not None and le not in ("+Inf", "Inf"):
                    float(le)  # a bucket bound must be a number
                rows.append((s.name, dict(s.labels), float(s.value)))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        line = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        raise SnapshotError(f"{source}: not Prometheus text exposition format ({line})") from None
    return rows


def from_snapshot(text: str, source: str, objectives: dict[str, float] | None = None,
                  default_objective: float = 99.9) -> ReportData:
    """Report data from one exposition (text format).  Burn is since process start per service."""
    rows = _rows(text, source)
    compile_rows = [(labels, v) for name, labels, v in rows
                    if name == catalog.COMPILE_DURATION.name + "_sum"]
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"ok": 0.0, "error": 0.0})
    for name, labels, v in rows:
        if name == catalog.REQUESTS.name:
            totals[labels.get("service", "")][labels.get("outcome", "ok")] += v
    now = time.time()
    burn = []
    for service, counts in sorted(totals.items()):
        total = counts["ok"] + counts["error"]
        if total <= 0:
            continue
        objective = (objectives or {}).get(service, default_objective)
        budget = 1.0 - objective / 100.0
        burn.append(BurnSeries(f"{service} (objective {objective:g}%)",
                               ((now, counts["error"] / total / budget),)))
    note = ("burn since process start: errors / requests / (1 - objective) "
            "(a snapshot has no history)")
    return ReportData(source=source, latency=_latency_rows(rows),
                      compile_seconds=_compile_breakdown(compile_rows), burn=tuple(burn),
                      burn_note=note, generated_at=now)


# --- source: Prometheus ----------------------------------------------------------------


class PrometheusAPI:
    """The two calls a report needs from Prometheus' HTTP API."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str]) -> Any:
        full = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(full, timeout=self.timeout) as resp:
                raw = resp.read(SNAPSHOT_MAX_BYTES + 1)
            if len(raw) > SNAPSHOT_MAX_BYTES:
                raise click.ClickException(f"Prometheus at {self.url} answered more than "
                                           f"{SNAPSHOT_MAX_BYTES:,} bytes for {params.get('query')!r}")
            body = json.loads(raw.decode())
        except (ValueError, http.client.HTTPException) as exc:
            raise click.ClickException(f"Prometheus at {self.url} did not answer JSON: {exc}") from None
        except OSError as exc:
            raise click.ClickException(f"cannot query Prometheus at {self.url}: {exc}") from None
        if body.get("status") != "success":
            raise click.ClickException(f"Prometheus refused {params.get('query')!r}: {body.get('error')}")
        return body["data"]["result"]

    def instant(self, query: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._get("/api/v1/query", {"query": query})]

    def series(self, query: str, start: float, end: float, step: float
               ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        result = self._get("/api/v1/query_range", {"query": query, "start": f"{start:.3f}",
                                                   "end": f"{end:.3f}", "step": f"{step:g}"})
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in result]


def _pick_window(windows: list[str], range_seconds: float) -> str:
    """The burn window closest to range/12: a 1h report reads 5m burn, a day reads 2h."""
    target = range_seconds / 12
    return min(windows, key=lambda w: (abs(math.log(duration.seconds(w) / target)), duration.seconds(w)))


def from_prometheus(url: str, range_seconds: float = 3600.0, objective: float = 99.9,
                    api: PrometheusAPI | None = None) -> ReportData:
    """Report data from a Prometheus server over the last ``range_seconds``."""
    api = api or PrometheusAPI(url)
    rng = duration.canonical(max(1, int(range_seconds)))
    end = time.time()
    start = end - range_seconds
    step = max(1.0, range_seconds / 240)
    buckets = api.instant(f"sum by (service, start, le) "
                          f"(increase({catalog.REQUEST_DURATION.name}_bucket[{rng}]))")
    latency = _histograms(buckets, ("service", "start"))
    if not latency:
        calls = api.instant(f"sum by (function, start, le) "
                            f"(increase({catalog.CALL_DURATION.name}_bucket[{rng}]))")
        latency = _histograms(calls, ("function", "start"))
    compile_rows = api.instant(f"sum by (function, phase) "
                               f"(last_over_time({catalog.COMPILE_DURATION.name}_sum[{rng}]))")

    burn: list[BurnSeries] = []
    recorded = api.series(BURN_RATE_RULE, start, end, step)
    if recorded:
        by_slo: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = defaultdict(dict)
        for labels, points in recorded:
            by_slo[(labels.get("service", ""), labels.get("slo", ""))][labels.get("window", "")] = points
        chosen_windows = set()
        for (service, slo), windows in sorted(by_slo.items()):
            valid = [w for w in windows if _is_duration(w)]
            if not valid:
                continue
            window = _pick_window(valid, range_seconds)
            chosen_windows.add(window)
            burn.append(BurnSeries(f"{service}/{slo} ({window})", tuple(windows[window])))
        note = (f"{BURN_RATE_RULE} (recorded by jaxobs' rules), per SLO the window closest "
                f"to range/12 ({', '.join(sorted(chosen_windows, key=duration.seconds))})")
    else:
        window = duration.canonical(max(60, int(range_seconds / 12)))
        budget = 1.0 - objective / 100.0
        req = catalog.REQUESTS.name
        query = (f"sum by (service) (rate({req}{{outcome=\"error\"}}[{window}]))"
                 f" / sum by (service) (rate({req}[{window}])) / {budget:g}")
        for labels, points in api.series(query, start, end, step):
            burn.append(BurnSeries(f"{labels.get('service', '')} availability ({window})", tuple(points)))
        note = (f"no SLO rules loaded: availability burn from {req} over {window}, "
                f"objective {objective:g}%")
    burn.sort(key=lambda b: -b.peak)
    return ReportData(source=url, latency=latency, compile_seconds=_compile_breakdown(compile_rows),
                      burn=tuple(burn[:MAX_BURN_SERIES]), burn_note=note, generated_at=end)


def _is_duration(text: str) -> bool:
    try:
        duration.seconds(text)
        return True
    except ValueError:
        return False
