"""``jaxobs report``: real metrics in, a PNG or HTML page out that is not blank.

The snapshot comes from a real instrumented JAX workload (isolated registry);
the Prometheus source is exercised against a real Prometheus in
``test_fullstack_e2e.py``.  "Not blank" is measured: the image's pixels vary
and use many colours, which an empty or failed figure does not.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

import jaxobs
import jaxobs.telemetry
from jaxobs import catalog
from jaxobs.cli import cli
from jaxobs.report import Histogram, from_snapshot
from jaxobs.report.sources import _pick_window

matplotlib = pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/metrics text of a small real workload: requests (some failed, some cold) and compiles."""
    import jax.numpy as jnp

    registry = CollectorRegistry()
    score = jaxobs.jit(lambda x: jnp.tanh(x).sum(), name="score", registry=registry)
    embed = jaxobs.jit(lambda x: (x @ x.T).mean(), name="embed", registry=registry)
    for i in range(40):
        try:
            with jaxobs.request("report-test", registry=registry):
                score(jnp.ones(4 + i % 3))  # three shapes: three cold requests
                embed(jnp.ones((8, 8)))
                if i % 10 == 0:
                    raise RuntimeError("injected")
        except RuntimeError:
            pass
    path = tmp_path_factory.mktemp("report") / "metrics.txt"
    path.write_bytes(generate_latest(registry))
    return path


def run_report(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["report", *args])
    return result.exit_code, result.output


def assert_not_blank(png: Path) -> None:
    import numpy as np
    from matplotlib import image

    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 30_000, len(data)  # three panels with text; a blank figure is ~5 kB
    pixels = image.imread(png)[..., :3]
    assert pixels.std() > 0.05  # white paper with nothing on it has 0
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # bars, lines, anti-aliased text


def test_png_from_a_snapshot_file(snapshot: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    code, output = run_report("--snapshot", str(snapshot), "-o", str(out))
    assert code == 0, output
    assert "2 latency series, 2 compiled functions, 1 burn series" in output
    assert_not_blank(out)


def test_html_embeds_the_picture_and_the_numbers(snapshot: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, output = run_report("--snapshot", str(snapshot), "-o", str(out))
    assert code == 0, output
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert 'src="data:image/png;base64,' in page
    assert "<td>score</td>" in page and "<td>embed</td>" in page
    assert "report-test steady" in page and "report-test cold" in page
    assert len(page) > 40_000


def test_snapshot_over_http_and_objective_from_a_spec(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    for outcome, n in (("ok", 98), ("error", 2)):
        jaxobs.telemetry.recorder_for(registry).counter(catalog.REQUESTS, "inference", outcome).inc(n)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        out = tmp_path / "r.png"
        spec = Path(__file__).resolve().parent.parent / "examples" / "slo.yaml"
        code, output = run_report("--snapshot", f"http://127.0.0.1:{server.server_port}/metrics",
                                  "--spec", str(spec), "-o", str(out))
        assert code == 0, output
        assert out.read_bytes()[:8] == PNG_MAGIC
    finally:
        server.shutdown()
        server.server_close()


def test_snapshot_data_is_what_the_metrics_say(snapshot: Path) -> None:
    data = from_snapshot(snapshot.read_text(), "s", objectives={"report-test": 90.0})
    steady = next(h for h in data.latency if h.name == "report-test steady")
    cold = next(h for h in data.latency if h.name == "report-test cold")
    assert (steady.total, cold.total) == (37, 3)
    assert math.isinf(steady.bounds[-1]) and steady.bounds[:-1] == catalog.LATENCY_BUCKETS
    assert set(data.compile_seconds) == {"score", "embed"}
    assert all(data.compile_seconds["score"][phase] > 0 for phase in ("trace", "lower", "backend"))
    (burn,) = data.burn
    assert burn.name == "report-test (objective 90%)"
    assert burn.points[0][1] == pytest.approx((4 / 40) / 0.10)  # 4 of 40 failed, budget 10%


def test_an_empty_source_still_renders_and_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n")
    out = tmp_path / "empty.png"
    code, output = run_report("--snapshot", str(empty), "-o", str(out))
    assert code == 0 and "no jaxobs series" in output
    assert out.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("args", [[], ["--snapshot", "a", "--prometheus", "http://127.0.0.1:1"]])
def test_exactly_one_source(args: list[str]) -> None:
    code, output = run_report(*args)
    assert code == 2 and "exactly one of" in output


def test_unreachable_prometheus_is_a_clear_error(tmp_path: Path) -> None:
    from realtools import free_port

    code, output = run_report("--prometheus", f"http://127.0.0.1:{free_port()}", "-o", str(tmp_path / "x.png"))
    assert code == 1 and "cannot query Prometheus" in output


def test_quantiles_interpolate_like_promql() -> None:
    h = Histogram("x", (0.1, 0.2, math.inf), (50.0, 50.0, 0.0))
    assert h.quantile(0.5) == pytest.approx(0.1)
    assert h.quantile(0.75) == pytest.approx(0.15)


@pytest.mark.parametrize(("range_s", "window"), [(3600, "5m"), (86400, "2h"), (300, "30s"), (60, "5s")])
def test_burn_window_is_the_one_closest_to_a_twelfth_of_the_range(range_s: int, window: str) -> None:
    windows = ["5s", "30s", "1m", "5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    assert _pick_window(windows, range_s) == window


def test_report_does_not_import_matplotlib_until_it_renders() -> None:
    import subprocess
    import sys

    code = "import sys, jaxobs.cli, jaxobs.report; print('matplotlib' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


@pytest.mark.e2e
def test_png_from_a_prometheus_without_slo_rules(tmp_path: Path) -> None:
    """No recording rules loaded: the burn panel falls back to jaxobs_requests_total."""
    import sys

    from realtools import REPO, running_inference_server, running_prometheus, wait_until

    from jaxobs.report import from_prometheus

    sys.path.insert(0, str(REPO / "examples" / "inference_server"))
    import loadgen

    with running_inference_server(["--allow-injection", "--duration", "120"]) as server:
        target = server.url.removeprefix("http://")
        with running_prometheus(tmp_path / "prom", [target], job="inference") as prom:
            prom.wait_value('up{job="inference"}', lambda v: v == 1)
            for _ in range(3):  # a few scrapes apart, so rates have two samples
                loadgen.run(loadgen.LoadConfig(url=server.url, requests=300, error_rate=0.2))
                wait_until(lambda: prom.value(f"sum({catalog.REQUESTS.name})"), 10, what="requests scraped")
            data = wait_until(lambda: (d := from_prometheus(prom.url, 300)).burn and d, 30,
                              what="a burn series")
            assert "no SLO rules loaded" in data.burn_note
            assert data.burn[0].name == "inference availability (1m)" and data.burn[0].peak > 1
            assert {h.name for h in data.latency} >= {"inference steady"}
            assert set(data.compile_seconds) == {"predict"}
            out = tmp_path / "prom.png"
            code, output = run_report("--prometheus", prom.url, "--range", "5m", "-o", str(out))
            assert code == 0, output
            assert_not_blank(out)
