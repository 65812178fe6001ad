"""What jaxobs' SLO rules cost Prometheus, against Sloth-shaped rules for the same SLOs.

    python benchmarks/rule_cost.py                       # 200 pods x 20 functions, 30 days
    python benchmarks/rule_cost.py --pods 20 --rounds 4  # a quick look

Steps (everything real except the workload, which is a model: ``fleet_model.py``):

1. Generate jaxobs' SLO rule groups from the spec and a Sloth-shaped set for the same
   SLOs (``sloth_shaped.py``); ``promtool check rules`` both.
2. Write a TSDB with ``promtool tsdb create-blocks-from openmetrics``, one 2-hour slice at
   a time: every SLI series of the fleet at 60 s resolution for the last ``--raw-days``
   (the longest window either rule set reads raw data over is 3 days), and the 30 days
   of the recordings the SLO-window ratios read (jaxobs' two 5-minute rates, Sloth's
   5-minute ratio) at the 30 s evaluation interval, computed from the same model.
3. Let a Prometheus compact those blocks as it would have over 30 days, then start
   it with both rule files, scraping the fleet's live counters from this process.
4. Over ``--rounds`` evaluations, read every group's evaluation time
   (``/api/v1/rules``, the value behind ``prometheus_rule_group_last_duration_seconds``),
   the samples each rule reads (``/api/v1/query?stats=all``), the series each set
   records, and the SLO-window ratios against the model's exact totals.

Prints a Markdown table (and ``--json`` writes the numbers).  Timings depend on the
machine; the samples read and the series written do not.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet_model import Fleet  # noqa: E402
from sloth_shaped import SHORT_WINDOW, ratio_name, slo_id_labels, sloth_rule_groups  # noqa: E402

from jaxobs.demo.processes import free_port  # noqa: E402
from jaxobs.generate.names import ERROR_RATIO, ERRORS_RATE, EVENTS_RATE  # noqa: E402
from jaxobs.generate.rules import rule_groups  # noqa: E402
from jaxobs.slo import duration  # noqa: E402
from jaxobs.slo.spec import load_spec  # noqa: E402

BLOCK_S = 7200
SCRAPE_S = 60
EVAL_S = 30
REPO = Path(__file__).resolve().parent.parent


def slos(spec: Any) -> list[tuple[Any, Any]]:
    return [(svc, slo) for svc in spec.services for slo in svc.slos if slo.enabled]


# --- 1. the two rule sets -------------------------------------------------------------------


def write_rule_files(spec: Any, out: Path) -> tuple[Path, Path]:
    ours = [g for g in rule_groups(spec) if g["name"].startswith("jaxobs-slo-")]
    paths = out / "jaxobs.yaml", out / "sloth.yaml"
    for path, groups in zip(paths, (ours, sloth_rule_groups(spec)), strict=True):
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        # Sloth's period ratio keeps only sloth_window as its own label, which promtool's
        # duplicate-rule lint flags across SLOs; Sloth's own output does the same.
        subprocess.run(["promtool", "check", "rules", "--lint=none", str(path)], check=True,
                       stdout=subprocess.DEVNULL)
    return paths


# --- 2. the TSDB ----------------------------------------------------------------------------


def recording_history(fleet: Fleet, spec: Any, origin: float,
                      times: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The 5-minute recordings both SLO-window ratios read, as Prometheus would have
    recorded them at ``times``: ``(series, values)``."""
    rel = times - origin
    out = []
    for svc, slo in slos(spec):
        bad_now, total_now = fleet.sli_totals(svc, slo, rel)
        bad_then, total_then = fleet.sli_totals(svc, slo, rel - 300)
        errors, events = (bad_now - bad_then) / 300, (total_now - total_then) / 300
        ours = f'service="{svc.name}",slo="{slo.name}"'
        out += [(f"{ERRORS_RATE}{{{ours}}}", errors), (f"{EVENTS_RATE}{{{ours}}}", events)]
        ids = {**slo_id_labels(svc, slo), "sloth_window": SHORT_WINDOW}
        sloth = ",".join(f'{k}="{v}"' for k, v in sorted(ids.items()))
        out.append((f"{ratio_name(SHORT_WINDOW)}{{{sloth}}}", errors / events))
    return out


def slice_text(fleet: Fleet, spec: Any, origin: float, start: float, end: float,
               raw: bool) -> str:
    lines: list[str] = []
    if raw:
        raw_times = np.arange(start, end, SCRAPE_S, dtype=float)
        lines.append(fleet.openmetrics(origin, raw_times).removesuffix("# EOF\n").rstrip("\n"))
    rec_times = np.arange(start, end, EVAL_S, dtype=float)
    stamps = [f"{int(x)}" for x in rec_times]
    for series, values in recording_history(fleet, spec, origin, rec_times):
        lines.append(f"# TYPE {series.split('{')[0]} gauge")
        lines.extend(f"{series} {v!r} {s}" for v, s in zip(values.tolist(), stamps, strict=True))
    lines.append("# EOF\n")
    return "\n".join(lines)


def build_tsdb(fleet: Fleet, spec: Any, origin: float, raw_from: float, data: Path,
               work: Path) -> tuple[float, int]:
    """Import every 2-hour slice from ``origin`` to now; returns (end, samples imported)."""
    data.mkdir(parents=True)
    pending: subprocess.Popen[bytes] | None = None
    start, samples, k = origin, 0, 0
    while True:
        now = time.time()
        end = min(start + BLOCK_S, now)
        text = slice_text(fleet, spec, origin, start, end, raw=end > raw_from)
        samples += text.count("\n") - text.count("# ")
        path = work / f"slice-{k % 2}.om"
        if pending is not None:
            _wait(pending)
        path.write_text(text)
        pending = subprocess.Popen(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                                    "-q", str(path), str(data)], stderr=subprocess.PIPE)
        k += 1
        if end >= now:
            break
        start = end
        if k % 24 == 0:
            print(f"  imported {(start - origin) / 86400:.0f} of {(now - origin) / 86400:.0f} days",
                  file=sys.stderr)
    if pending is not None:
        _wait(pending)
    return end, samples


def _wait(proc: subprocess.Popen[bytes]) -> None:
    _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"promtool failed: {err.decode()[-2000:]}")


# --- 3. Prometheus --------------------------------------------------------------------------


class LiveFleet(ThreadingHTTPServer):
    """Serves the fleet's counters at the current time, continuing the history."""

    daemon_threads = True

    def __init__(self, fleet: Fleet, origin: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(inner) -> None:  # noqa: N805
                body = fleet.exposition(origin, time.time()).encode()
                inner.send_response(200)
                inner.send_header("Content-Type", "text/plain; version=0.0.4")
                inner.send_header("Content-Length", str(len(body)))
                inner.end_headers()
                inner.wfile.write(body)

            def log_message(inner, *args: Any) -> None:  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def start_prometheus(work: Path, data: Path, rules: tuple[Path, ...],
                     target: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config: dict[str, Any] = {"global": {"scrape_interval": f"{SCRAPE_S}s",
                                         "evaluation_interval": f"{EVAL_S}s"},
                              "rule_files": [str(p) for p in rules]}
    if target:
        config["scrape_configs"] = [{"job_name": "fleet", "honor_labels": True,
                                     "static_configs": [{"targets": [target]}]}]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(work / "prometheus.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}",
         f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=90d",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"prometheus exited; see {work / 'prometheus.log'}") from None
            time.sleep(0.5)
    raise SystemExit("prometheus did not become ready")


def api(url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=120) as r:
        return json.load(r)["data"]


def scalar(url: str, expr: str, at: float | None = None) -> float:
    """The first value of an instant query (at ``at``, default now); NaN when empty."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    result = api(url, "/api/v1/query", **params)["result"]
    return float(result[0]["value"][1]) if result else math.nan


def own_metric(url: str, name: str) -> float:
    """A metric of Prometheus itself, from its /metrics (it does not scrape itself here)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return math.nan


def compact(work: Path, data: Path, timeout_s: float) -> int:
    """Run a Prometheus without rules until it has compacted the 2h blocks as far as a
    long-running one would; returns the number of blocks left."""
    proc, url = start_prometheus(work, data, (), None)
    try:
        deadline, last, stable_since = time.time() + timeout_s, -1.0, time.time()
        while time.time() < deadline:
            time.sleep(5)
            blocks = own_metric(url, "prometheus_tsdb_blocks_loaded")
            running = own_metric(url, "prometheus_tsdb_compactions_total")
            if (blocks, running) != last:
                last, stable_since = (blocks, running), time.time()
            elif running > 0 and time.time() - stable_since > 30:
                break
        return int(own_metric(url, "prometheus_tsdb_blocks_loaded"))
    finally:
        proc.terminate()
        proc.wait(60)


# --- 4. measurement -------------------------------------------------------------------------


def wait_for_scrapes(url: str, scrapes: int = 2, timeout_s: float = 600) -> None:
    """Until the live counters are in every 5m window (two scrapes): before that the 5m
    rates read only the end of the history."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if scalar(url, 'count_over_time(up{job="fleet"}[5m])') >= scrapes:
            return
        time.sleep(5)
    raise SystemExit("prometheus did not scrape the live fleet; see prometheus.log")


def group_times(url: str, files: set[str], rounds: int) -> dict[str, list[float]]:
    """``group name -> evaluation seconds`` over ``rounds`` evaluations from the next one."""
    seen: dict[str, dict[str, float]] = {}
    begin = time.time()
    deadline = begin + (rounds + 3) * EVAL_S
    while time.time() < deadline:
        for group in api(url, "/api/v1/rules")["groups"]:
            if group["file"] not in files or not group.get("lastEvaluation"):
                continue
            stamp = group["lastEvaluation"]
            if _parse_time(stamp) >= begin:
                seen.setdefault(group["name"], {})[stamp] = float(group["evaluationTime"])
        if seen and min(len(v) for v in seen.values()) >= rounds:
            break
        time.sleep(3)
    return {name: list(evals.values()) for name, evals in seen.items()}


def _parse_time(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()


def samples_read(url: str, path: Path, at: float) -> tuple[int, list[tuple[int, str]]]:
    """Samples every rule of ``path`` reads in one evaluation (Prometheus' query stats)."""
    total, per_rule = 0, []
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            stats = api(url, "/api/v1/query", query=rule["expr"], time=f"{at:.3f}",
                        stats="all")["stats"]["samples"]["totalQueryableSamples"]
            total += stats
            name = rule.get("record") or rule.get("alert")
            window = rule.get("labels", {}).get("window") or rule.get("labels", {}).get("sloth_window")
            per_rule.append((stats, f"{name}{' ' + window if window else ''}"))
    return total, sorted(per_rule, reverse=True)


def window_ratios(url: str, fleet: Fleet, spec: Any, origin: float, at: float) -> list[dict[str, Any]]:
    """Each SLO's SLO-window error ratio: the model's exact one, jaxobs', Sloth's."""
    rows = []
    for svc, slo in slos(spec):
        span = duration.seconds(slo.window)
        t = np.array([at - origin, at - origin - span])
        bad, total = fleet.sli_totals(svc, slo, t)
        truth = (bad[0] - bad[1]) / (total[0] - total[1])
        ours = scalar(url, f'{ERROR_RATIO}{{service="{svc.name}",slo="{slo.name}",'
                              f'window="{slo.window}"}}', at)
        ids = slo_id_labels(svc, slo)
        sloth = scalar(url, f'{ratio_name(slo.window)}{{sloth_id="{ids["sloth_id"]}"}}', at)
        rows.append({"slo": f"{svc.name}/{slo.name}", "window": slo.window, "truth": truth,
                     "jaxobs": ours, "sloth": sloth})
    return rows


def model_check(url: str, fleet: Fleet, spec: Any, origin: float, at: float) -> float:
    """Largest relative gap between the live 5m event rates Prometheus recorded from the
    scraped counters and the model's: the history written from the model is what these
    rules would have recorded only if this is small."""
    worst = 0.0
    for svc, slo in slos(spec):
        series = f'{EVENTS_RATE}{{service="{svc.name}",slo="{slo.name}"}}'
        result = api(url, "/api/v1/query", query=f"timestamp({series})",
                     time=f"{at:.3f}")["result"]
        if not result:
            return math.inf
        stamp = float(result[0]["value"][1])
        got = scalar(url, series, at)
        t = np.array([stamp - origin, stamp - origin - 300])
        _, total = fleet.sli_totals(svc, slo, t)
        want = (total[0] - total[1]) / 300
        worst = max(worst, abs(got - want) / want)
    return worst


# --- report ---------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> str:
    j, s = result["jaxobs"], result["sloth"]
    fleet = result["fleet"]
    rows = [
        ("recording rules", j["recording_rules"], s["recording_rules"]),
        ("alerting rules", j["alerting_rules"], s["alerting_rules"]),
        ("rule groups", j["groups"], s["groups"]),
        ("series written per evaluation", j["series_written"], s["series_written"]),
        ("samples read per evaluation", f"{j['samples_read']:,}", f"{s['samples_read']:,}"),
        ("evaluation time per round, median (ms)", f"{j['eval_ms_median']:.1f}", f"{s['eval_ms_median']:.1f}"),
        ("evaluation time per round, max (ms)", f"{j['eval_ms_max']:.1f}", f"{s['eval_ms_max']:.1f}"),
    ]
    out = [f"Fleet: {fleet['pods']} inference pods x {fleet['functions']} functions + "
           f"{fleet['training_pods']} training pods, {fleet['series']:,} SLI series; "
           f"{fleet['raw_days']} days raw at {SCRAPE_S}s, {fleet['days']} days of recordings at "
           f"{EVAL_S}s; {fleet['samples']:,} samples imported into {fleet['blocks']} blocks. "
           f"{result['rounds']} evaluation rounds.", "",
           "| | jaxobs | Sloth-shaped | jaxobs / Sloth |", "|---|---|---|---|"]
    for label, a, b in rows:
        fa, fb = (float(str(x).replace(",", "")) for x in (a, b))
        out.append(f"| {label} | {a} | {b} | {fa / fb:.2f} |" if fb else f"| {label} | {a} | {b} | |")
    out += ["", "| SLO | window | exact (model) | jaxobs | Sloth-shaped |", "|---|---|---|---|---|"]
    for r in result["window_ratios"]:
        out.append(f"| {r['slo']} | {r['window']} | {r['truth']:.6f} | {r['jaxobs']:.6f} "
                   f"({_off(r['jaxobs'], r['truth'])}) | {r['sloth']:.6f} ({_off(r['sloth'], r['truth'])}) |")
    out += ["", f"Model check: the live 5m event rates differ from the model's by at most "
                f"{100 * result['model_gap']:.2f}%.", "", "Costliest rules (samples read):"]
    for name in ("jaxobs", "sloth"):
        top = ", ".join(f"{r} {n:,}" for n, r in result[name]["top_rules"][:4])
        out.append(f"- {name}: {top}")
    return "\n".join(out)


def _off(value: float, truth: float) -> str:
    return f"{100 * (value - truth) / truth:+.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default=str(REPO / "examples" / "slo.yaml"))
    ap.add_argument("--pods", type=int, default=200, help="inference pods")
    ap.add_argument("--functions", type=int, default=20, help="instrumented functions per pod")
    ap.add_argument("--training-pods", type=int, default=20)
    ap.add_argument("--days", type=float, default=31, help="history (>= the longest SLO window)")
    ap.add_argument("--raw-days", type=float, default=3.1, help="raw-series history")
    ap.add_argument("--rounds", type=int, default=10, help="evaluations measured per group")
    ap.add_argument("--compact-timeout", type=float, default=900)
    ap.add_argument("--workdir", help="keep the TSDB and logs here (default: a temporary dir)")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()

    spec = load_spec(args.spec)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="jaxobs-rule-cost-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    fleet = Fleet(args.pods, args.functions, args.training_pods)
    files = write_rule_files(spec, work)

    now = time.time()
    origin = float(int(now - args.days * 86400) // BLOCK_S * BLOCK_S)
    raw_from = now - args.raw_days * 86400
    print(f"writing {args.days:g} days of history for {fleet.series_count():,} series into {data}",
          file=sys.stderr)
    t0 = time.time()
    _, samples = build_tsdb(fleet, spec, origin, raw_from, data, work)
    print(f"  imported {samples:,} samples in {time.time() - t0:.0f}s; compacting", file=sys.stderr)
    blocks = compact(work, data, args.compact_timeout)

    live = LiveFleet(fleet, origin)
    threading.Thread(target=live.serve_forever, daemon=True).start()
    proc, url = start_prometheus(work, data, files, f"127.0.0.1:{live.server_address[1]}")
    try:
        print(f"measuring {args.rounds} evaluation rounds at {url}", file=sys.stderr)
        wait_for_scrapes(url)
        times = group_times(url, {str(p) for p in files}, args.rounds)
        if not times:
            raise SystemExit(f"no rule group was evaluated; see {work / 'prometheus.log'}")
        at = time.time() - 5
        result: dict[str, Any] = {"rounds": args.rounds, "fleet": {
            "pods": args.pods, "functions": args.functions, "training_pods": args.training_pods,
            "series": fleet.series_count(), "days": args.days, "raw_days": args.raw_days,
            "samples": samples, "blocks": blocks}}
        for name, path, pattern in (("jaxobs", files[0], "jaxobs_slo:.+"),
                                    ("sloth", files[1], "slo:.+|sloth_slo_info")):
            groups = yaml.safe_load(path.read_text())["groups"]
            mine = {g["name"] for g in groups}
            per_round = [sum(vals) for vals in zip(*(times[g] for g in mine if g in times), strict=False)]
            read, top = samples_read(url, path, at)
            rules = [r for g in groups for r in g["rules"]]
            result[name] = {
                "groups": len(groups),
                "recording_rules": sum(1 for r in rules if "record" in r),
                "alerting_rules": sum(1 for r in rules if "alert" in r),
                "series_written": int(scalar(url, f'count({{__name__=~"{pattern}"}})')),
                "samples_read": read, "top_rules": top[:8],
                "eval_ms_median": 1000 * statistics.median(per_round),
                "eval_ms_max": 1000 * max(per_round),
                "group_ms_median": {g: 1000 * statistics.median(times[g]) for g in mine if g in times},
            }
        result["window_ratios"] = window_ratios(url, fleet, spec, origin, at)
        result["model_gap"] = model_check(url, fleet, spec, origin, at)
    finally:
        proc.terminate()
        proc.wait(60)
        live.shutdown()
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
