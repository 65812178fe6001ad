"""``jaxobs report --prometheus URL --format html``: one self-contained page, opened in a browser.

Live data: ``jaxobs demo`` (its own spec's rules, burn-rate windows and ``for`` divided by 60 so
tickets fire within the test) and a sidecar with the NVML and TPU doubles for device memory,
scraped by a real Prometheus.  The page is then opened in headless Chromium (Debian's
``chromium``) with a fresh profile: it must log nothing to the console, its charts must be in
the rendered DOM, and its screenshot must not be blank.  ``JAXOBS_UPDATE_SCREENSHOTS=1`` copies
the screenshot to docs/img/report.png (the README shows it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from realtools import REPO, Prometheus, free_port, http_get_json, require_module, require_tool, stop, wait_until

from jaxobs.report.oncall import AlertSpan, Latency, Memory, OnCallData, SLOBurn
from jaxobs.report.page import render_oncall_html

sys.path.insert(0, str(REPO / "tests" / "fakes"))

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
SCREENSHOT = REPO / "docs" / "img" / "report.png"


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        require_tool("chromium")  # skips locally, fails in CI
    return subprocess.run([str(binary), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--enable-logging=stderr", "--v=0", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# --- the page alone (no browser, no Prometheus) ----------------------------------------------


def _sample() -> OnCallData:
    now = time.time()
    points = tuple((now - 60 + i, 0.5 + i / 10) for i in range(60))
    return OnCallData(
        source="http://127.0.0.1:9090", range_seconds=300, generated_at=now,
        burn=(SLOBurn("inference", "availability", {"1m": 20.0, "5s": 0.2}, "5s", points, 0.999, 0.42),),
        latency=(Latency("inference", "steady", 1000, 0.001, 0.004, 0.02, points),
                 Latency("inference", "cold", 9, 0.5, 0.9, 1.2)),
        compile_seconds={"predict": {"trace": 0.1, "lower": 0.2, "backend": 1.5}},
        compile_causes={"predict": {"first": 1, "shape": 5}},
        memory=(Memory("NVML", "0", 30 * 2**30, 40 * 2**30),),
        alerts=(AlertSpan("JaxobsErrorBudgetBurn", "page", "inference/availability",
                          {"window": "1m", "team": "<ml>"}, now - 30, now, True, "burning <fast>"),))


def test_page_has_every_section_and_escapes_labels() -> None:
    page = render_oncall_html(_sample())
    for heading in ("Alerts in the range", "Burn rate per SLO", "Latency: steady and cold",
                    "Compile time and causes", "Device memory"):
        assert f"<h2>{heading}</h2>" in page
    assert "burning &lt;fast&gt;" in page and "<fast>" not in page
    assert "firing now" in page and "20.00x" in page and "42.0%" in page
    assert page.count('class="chart-svg"') == 4  # burn, steady p99, compile phases, causes
    assert "http://" not in page.replace("http://127.0.0.1:9090", "").replace("http://www.w3.org/2000/svg", "")


def test_empty_sections_say_why() -> None:
    page = render_oncall_html(OnCallData(source="x", range_seconds=60, generated_at=time.time()))
    assert "No alert fired in the range" in page
    assert "load the rules" in page
    assert "JAX's allocator reports nothing on CPU" in page


def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    """The browser check below can fail: a page with a script error is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><body><script>undefinedFunction()</script></body>")
    out = chromium(broken, tmp_path / "profile", "--dump-dom")
    assert any("undefinedFunction" in m for m in console_messages(out.stderr)), out.stderr


# --- live: Prometheus → report → browser -----------------------------------------------------


@pytest.mark.e2e
def test_report_page_from_live_prometheus_renders_in_chromium(tmp_path: Path) -> None:
    require_module("grpc")
    from fake_tpu_runtime import FakeTpuRuntime
    from processes import env_with_fakes, exporter

    from jaxobs.cli import cli
    from jaxobs.demo import config
    from jaxobs.generate import RULES_PATH

    binary = require_tool("prometheus")
    rules = tmp_path / "rules.yaml"
    rules.write_text(config.artifacts(None, scale=60)[RULES_PATH])
    demo_port = free_port()
    demo = subprocess.Popen([sys.executable, "-m", "jaxobs.cli", "demo", "--duration", "90", "--port",
                             str(demo_port), "--out", str(tmp_path / "demo")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=REPO,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    prom_proc = None
    try:
        with FakeTpuRuntime() as tpu, exporter(
                ["--collectors", "nvml,tpu", "--nvml-module", "fake_pynvml", "--tpu-address", tpu.address],
                env=env_with_fakes(FAKE_PYNVML_GPUS="2")) as devices:
            prom_config = yaml.safe_load(config.prometheus_config(
                config.Endpoints(target=f"127.0.0.1:{demo_port}", scrape_interval="1s",
                                 evaluation_interval="1s"), [str(rules)]))
            del prom_config["alerting"]
            prom_config["scrape_configs"].append(
                {"job_name": "devices", "static_configs": [{"targets": [f"127.0.0.1:{devices.port}"]}]})
            (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
            port = free_port()
            prom_proc = subprocess.Popen(
                [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)
            prom = Prometheus(f"http://127.0.0.1:{port}", prom_proc, tmp_path / "prometheus.log")
            wait_until(lambda: http_get_json(f"{prom.url}/api/v1/status/buildinfo"), 30, what="prometheus")
            prom_started = time.monotonic()
            prom.wait_value("count(count by (service, slo) (jaxobs_slo:error_budget:burn_rate))",
                            lambda v: v == 5, timeout=90)
            prom.wait_value('count(ALERTS{alertstate="firing"})', lambda v: v >= 1, timeout=60)
            time.sleep(max(0.0, 40 - (time.monotonic() - prom_started)))  # some history for the charts
            out = tmp_path / "report.html"
            result = CliRunner().invoke(cli, ["report", "--prometheus", prom.url, "--format", "html",
                                              "--range", "5m", "-o", str(out)])
            assert result.exit_code == 0, result.output
    finally:
        if prom_proc is not None:
            stop(prom_proc)
        stop(demo)  # type: ignore[arg-type]
    print("\n" + result.output.strip())
    page = out.read_text()
    assert re.search(r"5 SLOs, [1-9]\d* latency series, [1-9]\d* compiled functions, [1-9]\d* devices, "
                     r"[1-9]\d* alerts in the range", result.output), result.output
    # self-contained: nothing is fetched (the SVG namespace is an identifier, not a request)
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    for text in ("demo-inference/availability", "demo-inference", "steady", "cold", "predict",
                 "train_step", "NVML", "TPU runtime"):
        assert text in page, text
    assert re.search(r"<tr><td>Jaxobs\w+</td><td><span class='badge (page|ticket|other)'>", page)  # an alert row

    dom = chromium(out, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not console_messages(dom.stderr), console_messages(dom.stderr)
    charts = re.search(r'<body data-charts="(\d+)"', dom.stdout)
    assert charts and int(charts.group(1)) >= 8, dom.stdout[:500]  # 5 burn, 2+ latency, 2 compile
    assert f"{charts.group(1)} charts rendered" in dom.stdout

    shot = tmp_path / "report.png"
    taken = chromium(out, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1240,2500",
                     "--hide-scrollbars")
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    assert not console_messages(taken.stderr)
    from matplotlib import image

    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[0] == 2500 and pixels.shape[1] == 1240
    assert pixels.std() > 0.1  # a blank page is one colour
    if os.environ.get("JAXOBS_UPDATE_SCREENSHOTS"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, SCREENSHOT)
