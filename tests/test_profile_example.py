"""`jaxobs profile` against the example inference server while the load generator drives it:
the capture comes back as files XProf and Perfetto can open, and traffic keeps being served."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import jax
import pytest
from click.testing import CliRunner
from realtools import REPO, running_inference_server

sys.path.insert(0, str(REPO / "examples" / "inference_server"))

import loadgen  # noqa: E402

from jaxobs.cli import cli  # noqa: E402

pytestmark = pytest.mark.e2e


def test_jaxobs_profile_captures_the_example_server_under_load(tmp_path: Path) -> None:
    with running_inference_server(["--profiling-port", "0"]) as server:
        debug = next(m.group(1) for line in server.lines
                     if (m := re.search(r"profiling on (http://\S+)", line)))
        stop = threading.Event()
        results: list[loadgen.LoadStats] = []
        load = threading.Thread(target=lambda: results.append(loadgen.run(
            loadgen.LoadConfig(url=server.url, requests=100_000, duration=30, concurrency=2), stop)))
        load.start()
        try:
            out = CliRunner().invoke(cli, ["profile", debug, "--seconds", "2", "-o", str(tmp_path / "p")])
        finally:
            stop.set()
            load.join(60)
        assert out.exit_code == 0, out.output
        xplanes = list((tmp_path / "p").rglob("*.xplane.pb"))
        assert xplanes and list((tmp_path / "p").rglob("perfetto_trace.json.gz"))
        data = jax.profiler.ProfileData.from_file(str(xplanes[0]))
        assert any(True for _ in data.planes)
        assert results and results[0].ok > 0  # the server kept answering during the capture
