"""Cost of the jaxobs pytest plugin for a suite that does not use it, as a ratio.

The plugin is active in every pytest run of an environment where jaxobs is
installed.  A suite without its markers or fixture should not pay for it: the
plugin imports neither jax nor the rest of jaxobs until a marker is used.

This writes a 200-test suite (plain asserts, fixtures, parametrize; no jaxobs
markers), then runs it with pytest in a fresh interpreter, alternating runs
with the plugin loaded and with ``-p no:jaxobs`` so drift hits both alike.
It reports the median wall time of each and their ratio (with / without).
A benchmark, not a test: no threshold is asserted.

    PYTHONPATH=$PWD python benchmarks/plugin_overhead.py [--rounds 10] [--tests 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PER_FILE = 20


def write_suite(root: Path, tests: int) -> None:
    """``tests`` ordinary tests in files of 20: fixtures, parametrize, plain asserts."""
    (root / "conftest.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture
        def numbers():
            return list(range(10))
    """))
    for f in range(0, tests, PER_FILE):
        n = min(PER_FILE, tests - f)
        body = ["import pytest", ""]
        plain = n - 4 if n > 4 else n
        for i in range(plain):
            body += [f"def test_plain_{i}(numbers):", f"    assert sum(numbers) + {i} == 45 + {i}", ""]
        if n > 4:
            body += ["@pytest.mark.parametrize('k', [1, 2, 3, 4])",
                     "def test_param(k):", "    assert k * k >= k", ""]
        (root / f"test_suite_{f // PER_FILE:02d}.py").write_text("\n".join(body))


def run_once(root: Path, disable: bool) -> float:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    if disable:
        args += ["-p", "no:jaxobs"]
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    t0 = time.perf_counter()
    proc = subprocess.run(args, cwd=root, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"suite failed ({'without' if disable else 'with'} the plugin):\n{proc.stdout[-2000:]}")
    return elapsed


def plugin_is_loaded(root: Path) -> bool:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider",
                           "--trace-config"], cwd=root, capture_output=True, text=True, check=False)
    return "jaxobs" in proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tests", type=int, default=200)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_suite(root, opts.tests)
        if not plugin_is_loaded(root):
            raise SystemExit("the jaxobs plugin is not registered in this environment (pip install -e .)")
        run_once(root, disable=False)  # warm the file system and bytecode caches
        run_once(root, disable=True)
        with_plugin, without = [], []
        for _ in range(opts.rounds):
            with_plugin.append(run_once(root, disable=False))
            without.append(run_once(root, disable=True))
    w, wo = statistics.median(with_plugin), statistics.median(without)
    print(f"{opts.tests} tests without jaxobs markers, {opts.rounds} rounds, median wall time per run:")
    low, high = min(with_plugin) * 1000, max(with_plugin) * 1000
    print(f"  with the plugin     {w * 1000:8.1f} ms   (range {low:.0f}-{high:.0f})")
    print(f"  with -p no:jaxobs   {wo * 1000:8.1f} ms   (range {min(without) * 1000:.0f}-{max(without) * 1000:.0f})")
    print(f"  ratio               {w / wo:8.3f}x")


if __name__ == "__main__":
    main()
