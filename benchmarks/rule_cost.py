"""What the generated SLO rules cost to evaluate, against Sloth-shaped rules for the same SLOs.

    python benchmarks/rule_cost.py [--pods 200] [--functions 20] [--days 3] [--step 300] [--minutes 4]

1. A synthetic fleet: ``--pods`` pods of the example spec's ``inference``
   service (requests by outcome, request-latency histograms, ``--functions``
   functions' call counters), ``--days`` of history every ``--step`` seconds,
   then 15-second samples from an hour ago to 40 minutes ahead (so 5-minute
   rates have fresh samples while the rules run), written as OpenMetrics and
   imported with ``promtool tsdb create-blocks-from openmetrics``.

   Limits of this setup: history is coarse (``--step``), which under-weights
   rules that read days of raw samples (Sloth's ``rate(...[3d])``); and rules
   that build long windows from their own recorded series (jaxobs' windows
   and both SLO-window ratios) only have the run's few minutes of recorded
   history, which under-weights them.  A steady-state figure needs the
   recording rules backfilled (``promtool tsdb create-blocks-from rules``).
2. One real Prometheus loads the blocks and evaluates, in the same run and at
   the same interval, both ``alerts/jaxobs.rules.yaml`` (as checked in) and a
   rule file for the same SLOs written from Sloth's documented templates
   (per-window ``slo:sli_error:ratio_rateXX`` recordings, metadata recordings,
   multiwindow multi-burn-rate page and ticket alerts).
3. After ``--minutes`` it reads ``prometheus_rule_group_last_duration_seconds``
   (mean over the run's scrapes of its own /metrics) and counts the series each rule
   set records.

Prints a table; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from jaxobs import catalog
from jaxobs.slo.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "slo.yaml"
RULES = ROOT / "alerts" / "jaxobs.rules.yaml"

# Sloth's default SLO-period windows (30d) and alert tiers, from its documentation.
SLOTH_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLOTH_PAGE = ((14.4, "5m", "1h"), (6, "30m", "6h"))
SLOTH_TICKET = ((3, "2h", "1d"), (1, "6h", "3d"))


def sli_queries(service: str, slo) -> tuple[str, str]:  # noqa: ANN001
    """(errors, total) PromQL with ``{{.window}}`` for the same SLI the jaxobs rules use."""
    kind = slo.sli.kind
    if kind == "availability":
        return (f'sum(rate(jaxobs_requests_total{{outcome="error",service="{service}"}}[{{{{.window}}}}]))',
                f'sum(rate(jaxobs_requests_total{{service="{service}"}}[{{{{.window}}}}]))')
    if kind == "latency":
        le = catalog.le_label(slo.sli.threshold_seconds)
        count = f'sum(rate(jaxobs_request_duration_seconds_count{{service="{service}",start="steady"}}[{{{{.window}}}}]))'
        good = (f'sum(rate(jaxobs_request_duration_seconds_bucket{{le="{le}",service="{service}",'
                f'start="steady"}}[{{{{.window}}}}]))')
        return f"({count} - {good})", count
    if kind == "cold_start":
        return (f'sum(rate(jaxobs_request_duration_seconds_count{{service="{service}",start="cold"}}[{{{{.window}}}}]))',
                f'sum(rate(jaxobs_request_duration_seconds_count{{service="{service}"}}[{{{{.window}}}}]))')
    if kind == "cache_hit":
        sel = ",".join(f'{k}="{v}"' for k, v in slo.sli.selector)
        return (f'sum(rate(jaxobs_calls_total{{cache="miss",{sel},job="{service}"}}[{{{{.window}}}}]))',
                f'sum(rate(jaxobs_calls_total{{{sel},job="{service}"}}[{{{{.window}}}}]))')
    raise ValueError(kind)


def sloth_rules() -> dict:
    """Sloth's generated shape (sloth.dev, "SLO based on multiple windows/burn rates")."""
    groups = []
    for service in load_spec(SPEC).services:
        for slo in service.slos:
            errors, total = sli_queries(service.name, slo)
            sid = f"{service.name}-{slo.name}"
            labels = {"sloth_id": sid, "sloth_service": service.name, "sloth_slo": slo.name}
            sel = f'sloth_id="{sid}", sloth_service="{service.name}", sloth_slo="{slo.name}"'
            budget = slo.error_budget_ratio
            period = slo.window
            sli = [{"record": f"slo:sli_error:ratio_rate{w}",
                    "expr": f"({errors.replace('{{.window}}', w)})\n/\n({total.replace('{{.window}}', w)})",
                    "labels": {**labels, "sloth_window": w}} for w in SLOTH_WINDOWS]
            sli.append({"record": f"slo:sli_error:ratio_rate{period}",
                        "expr": f"sum_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])\n/ ignoring (sloth_window)\n"
                                f"count_over_time(slo:sli_error:ratio_rate5m{{{sel}}}[{period}])",
                        "labels": {**labels, "sloth_window": period}})
            meta = [
                {"record": "slo:objective:ratio", "expr": f"vector({slo.objective / 100})", "labels": labels},
                {"record": "slo:error_budget:ratio", "expr": f"vector(1-{slo.objective / 100})", "labels": labels},
                {"record": "slo:time_period:days", "expr": f"vector({int(period[:-1])})", "labels": labels},
                {"record": "slo:current_burn_rate:ratio",
                 "expr": f"slo:sli_error:ratio_rate5m{{{sel}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
                         f"slo:error_budget:ratio{{{sel}}}", "labels": labels},
                {"record": "slo:period_burn_rate:ratio",
                 "expr": f"slo:sli_error:ratio_rate{period}{{{sel}}}\n/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
                         f"slo:error_budget:ratio{{{sel}}}", "labels": labels},
                {"record": "slo:period_error_budget_remaining:ratio",
                 "expr": f"1 - slo:period_burn_rate:ratio{{{sel}}}", "labels": labels},
                {"record": "sloth_slo_info", "expr": "vector(1)",
                 "labels": {**labels, "sloth_mode": "cli-gen-prom", "sloth_version": "v0.11.0",
                            "sloth_spec": "prometheus/v1", "sloth_objective": str(slo.objective)}},
            ]

            def tier(pairs: tuple[tuple[float, str, str], ...]) -> str:
                parts = [f"(max(slo:sli_error:ratio_rate{short}{{{sel}}} > ({f} * {budget})) without (sloth_window)\n"
                         f"and\nmax(slo:sli_error:ratio_rate{long}{{{sel}}} > ({f} * {budget})) without (sloth_window))"
                         for f, short, long in pairs]
                return "(\n" + "\nor\n".join(parts) + "\n)"

            alerts = [{"alert": f"SlothPage-{sid}", "expr": tier(SLOTH_PAGE),
                       "labels": {"severity": "page", "sloth_severity": "page"}},
                      {"alert": f"SlothTicket-{sid}", "expr": tier(SLOTH_TICKET),
                       "labels": {"severity": "ticket", "sloth_severity": "ticket"}}]
            groups += [{"name": f"sloth-slo-sli-recordings-{sid}", "rules": sli},
                       {"name": f"sloth-slo-meta-recordings-{sid}", "rules": meta},
                       {"name": f"sloth-slo-alerts-{sid}", "rules": alerts}]
    return {"groups": groups}


def write_fleet(path: Path, pods: int, functions: int, days: float, step: int) -> int:
    """OpenMetrics with timestamps; returns the number of series."""
    # coarse history, then 15 s samples from an hour ago to 40 minutes ahead: the rules are
    # evaluated "now", and their 5-minute rates need fresh samples (future ones are not read
    # before their time comes)
    now = int(time.time())
    start = now - int(days * 86400)
    times = list(range(start, now - 3600, step)) + list(range(now - 3600, now + 2400, 15))
    bounds = [catalog.le_label(b) for b in catalog.LATENCY_BUCKETS] + ["+Inf"]
    # a request-latency distribution (cumulative share per bound) and rates per pod
    share = [min(1.0, 0.05 + i / len(catalog.LATENCY_BUCKETS)) for i in range(len(catalog.LATENCY_BUCKETS))] + [1.0]
    series = 0
    with path.open("w") as out:
        def family(name: str, typ: str, rows: list[tuple[str, str, float]]) -> None:
            """rows: (sample name, labels, per-second rate); counters grow linearly with noise-free rates."""
            nonlocal series
            out.write(f"# TYPE {name} {typ}\n")
            for sample, labels, rate in rows:
                series += 1
                out.write("".join(f"{sample}{{{labels}}} {rate * (t - start):.3f} {t}\n" for t in times))

        req_rows, dur_rows, call_rows = [], [], []
        for p in range(pods):
            base = f'instance="pod-{p}:9464",job="inference",service="inference"'
            rps = 5.0 + p % 7
            req_rows += [("jaxobs_requests_total", base + ',outcome="ok"', rps * 0.999),
                         ("jaxobs_requests_total", base + ',outcome="error"', rps * 0.001)]
            for start_kind, frac in (("steady", 0.995), ("cold", 0.005)):
                lab = base + f',start="{start_kind}"'
                r = rps * frac
                dur_rows += [("jaxobs_request_duration_seconds_bucket", lab + f',le="{le}"', r * s)
                             for le, s in zip(bounds, share)]
                dur_rows += [("jaxobs_request_duration_seconds_count", lab, r),
                             ("jaxobs_request_duration_seconds_sum", lab, r * 0.05)]
            for f in range(functions):
                name = "predict" if f == 0 else f"fn{f}"
                fl = f'function="{name}",instance="pod-{p}:9464",job="inference"'
                call_rows += [("jaxobs_calls_total", fl + ',cache="hit"', rps * 0.99),
                              ("jaxobs_calls_total", fl + ',cache="miss"', rps * 0.01)]
        family("jaxobs_requests", "counter", req_rows)
        family("jaxobs_request_duration_seconds", "histogram", dur_rows)
        family("jaxobs_calls", "counter", call_rows)
        out.write("# EOF\n")
    return series


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--functions", type=int, default=20)
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--step", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--interval", default="30s")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sloth = work / "sloth.rules.yaml"  # first: a broken rule file fails before the slow part
        sloth.write_text(yaml.safe_dump(sloth_rules(), sort_keys=False))
        subprocess.run(["promtool", "check", "rules", str(sloth)], check=True, stdout=subprocess.DEVNULL)
        om = work / "fleet.om"
        t0 = time.time()
        n_series = write_fleet(om, args.pods, args.functions, args.days, args.step)
        data = work / "data"
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(om), str(data)],
                       check=True, stdout=subprocess.DEVNULL)
        om.unlink()
        built = time.time() - t0
        config = work / "prometheus.yml"
        config.write_text(json.dumps({"global": {"evaluation_interval": args.interval, "scrape_interval": "15s"},
                                      "rule_files": [str(RULES), str(sloth)]}))
        port = free_port()
        prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                                 "--storage.tsdb.retention.time=60d", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        durations: dict[str, list[float]] = {}
        try:
            deadline = time.time() + 60
            while True:
                try:
                    get(url + "/-/ready")
                    break
                except OSError:
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
            stop = time.time() + args.minutes * 60
            pattern = re.compile(r'^prometheus_rule_group_last_duration_seconds\{rule_group="[^"]*;([^"]+)"\} (\S+)$', re.M)
            while time.time() < stop:
                time.sleep(15)
                for group, value in pattern.findall(get(url + "/metrics")):
                    if float(value) > 0:
                        durations.setdefault(group, []).append(float(value))

            def count(expr: str) -> int:
                body = json.loads(get(url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
                result = body["data"]["result"]
                return int(float(result[0]["value"][1])) if result else 0

            jaxobs_series = count('count({__name__=~"jaxobs_slo:.*"})')
            sloth_series = count('count({__name__=~"slo:.*|sloth_slo_info"})')
            sanity = {  # both rule sets should see the synthetic 0.1 % error ratio (x 1e6 = 1000)
                "jaxobs 5m availability": count('jaxobs_slo:sli_error:ratio{service="inference",'
                                                'slo="availability",window="5m"} * 1e6'),
                "sloth 5m availability": count('slo:sli_error:ratio_rate5m{sloth_id="inference-availability"} * 1e6'),
            }
        finally:
            prom.terminate()
            prom.wait(30)

    def mean_of(prefix: str) -> tuple[float, int]:
        groups = {g: statistics.fmean(v) for g, v in durations.items() if g.startswith(prefix)}
        return sum(groups.values()), len(groups)

    slo_j, n_j = mean_of("jaxobs-slo-")
    res_j, n_r = mean_of("jaxobs-resources-")
    slo_s, n_s = mean_of("sloth-")
    print(f"rule_cost: {args.pods} pods x {args.functions} functions, {args.days:g} days every {args.step}s "
          f"({n_series} raw series; built in {built:.0f}s), evaluation every {args.interval} for {args.minutes:g} min")
    print(f"  jaxobs SLO groups  : {n_j:2d} groups, {slo_j * 1e3:8.1f} ms per evaluation (sum of group means), "
          f"{jaxobs_series} recorded series")
    print(f"  Sloth-shaped groups: {n_s:2d} groups, {slo_s * 1e3:8.1f} ms per evaluation, {sloth_series} recorded series")
    print(f"  jaxobs resource alert groups (no Sloth counterpart): {n_r} groups, {res_j * 1e3:.1f} ms")
    print(f"  ratio jaxobs/Sloth (SLO groups): {slo_j / slo_s:.2f}x   sanity (per-mille x1000): {sanity}")


if __name__ == "__main__":
    main()
