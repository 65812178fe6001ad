"""Spec bombs: each gets one line from ``jaxobs check`` in well under a second of work and little memory.

Each case runs the real CLI in a child process with a 2 GiB address-space limit (so a regression
fails the test instead of the machine) and reads its peak RSS from ``wait4``.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MINI = """apiVersion: jaxobs/v1
kind: SLOSpec
services:
  - name: inference
    slos:
      - name: availability
        objective: 99.9
        sli: {availability: {}}
"""
LAUGHS = "".join(
    f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 9 if i else ['"lol"'] * 9) + "]\n"
    for i in range(9))

BOMBS = {
    "billion_laughs": (LAUGHS, "YAML alias *a is not allowed"),
    "deep_nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than 32 levels"),
    "nan_objective": (MINI.replace("objective: 99.9", "objective: .nan"), "'.nan' is not a finite number"),
    "nan_burn_rate": (MINI + "        alerting: {tiers: [{severity: page, burn_rate: .nan, long_window: 1h}]}\n",
                      "'.nan' is not a finite number"),
    "inf_objective": (MINI.replace("objective: 99.9", "objective: -.inf"), "is not a finite number"),
    "huge_integer": (MINI.replace("objective: 99.9", "objective: " + "9" * 5000), "an integer with 5000 digits"),
    "huge_duration": (MINI.replace("objective: 99.9", "objective: 99.9\n        window: 99999999d"),
                      "is longer than Prometheus accepts"),
    "huge_duration_digits": (MINI.replace("objective: 99.9", "objective: 99.9\n        window: " + "9" * 5000 + "d"),
                             "is longer than Prometheus accepts"),
    "trailing_newline_slo": (MINI.replace("name: availability", 'name: "availability\\n"'),
                             "slos[0].name: 'availability\\n' is not allowed"),
    "trailing_newline_service": (MINI.replace("name: inference", 'name: "inference\\n"'),
                                 "services[0].name: 'inference\\n' is not allowed"),
    "long_service_name": (MINI.replace("name: inference", "name: " + "a" * 300), "(at most 63)"),
    "too_many_nodes": ("a: [" + ",".join(["1"] * 12_000) + "]\n", "more than 10,000 YAML nodes"),
}


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


#: Runs ``jaxobs check PATH`` and writes the process's own peak RSS (KiB) to RSS_FILE at exit.
CHILD = """
import atexit, resource, runpy, sys
rss_file, path = sys.argv[1], sys.argv[2]
def _peak_kib():  # VmHWM is this program's own peak; ru_maxrss would include the forked parent's
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return line.split()[1]
    return str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
atexit.register(lambda: open(rss_file, "w").write(_peak_kib()))
sys.argv = ["jaxobs", "check", path]
runpy.run_module("jaxobs.cli", run_name="__main__")
"""


def run_check(path: Path) -> tuple[int, str, float, int]:
    """(exit code, stderr, seconds, peak RSS bytes) of ``jaxobs check path``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    rss_file = path.with_suffix(".rss")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(rss_file), str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_limit)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    seconds = time.monotonic() - started
    rss = int(rss_file.read_text() or 0) * 1024 if rss_file.exists() else 0
    return proc.returncode, err, seconds, rss


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_spec_bomb_gets_one_line(tmp_path, name):
    text, expected = BOMBS[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    code, err, seconds, rss = run_check(path)
    lines = err.strip().splitlines()
    print(f"{name}: {seconds:.2f}s, peak RSS {rss / 2**20:.0f} MiB, {len(path.read_bytes())} bytes")
    assert code != 0
    assert len(lines) == 1, err[-3000:]
    assert expected in lines[0] and str(path) in lines[0], lines[0][:500]
    assert 0 < rss < 256 * 2**20


def test_an_oversized_file_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(MINI + "# " + "x" * (2 * 1024 * 1024) + "\n")
    code, err, _, _ = run_check(path)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "over the 1,048,576-byte limit" in lines[0], err[-2000:]


def test_a_fifo_as_spec_does_not_hang(tmp_path):
    path = tmp_path / "fifo.yaml"
    os.mkfifo(path)
    code, err, seconds, _ = run_check(path)
    assert code != 0 and "not a regular file" in err and len(err.strip().splitlines()) == 1, err[-2000:]


def test_generate_writes_nothing_when_a_name_cannot_become_a_file(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(BOMBS["long_service_name"][0])
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "jaxobs.cli", "generate", str(path), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
