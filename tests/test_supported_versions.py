"""The versions jaxobs claims are the versions `make test` runs.

The pin in pyproject.toml, the Python classifiers and the two constraint files
that build the test matrix (.ci/constraints-*.txt) are three spellings of one
promise; these tests keep them from drifting apart, and check that the JAX the
suite is running on is one the pin admits.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jax
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins() -> dict[str, SpecifierSet]:
    reqs = (Requirement(r) for r in _project()["dependencies"])
    return {r.name: r.specifier for r in reqs if r.name in ("jax", "jaxlib")}


def _constraints(name: str) -> dict[str, Version]:
    out = {}
    for line in (ROOT / ".ci" / f"constraints-{name}.txt").read_text().splitlines():
        m = re.fullmatch(r"\s*(jax|jaxlib)==(\S+)\s*", line)
        if m:
            out[m.group(1)] = Version(m.group(2))
    return out


def test_the_oldest_tested_jax_is_the_pins_lower_bound() -> None:
    pins, oldest = _pins(), _constraints("oldest")
    assert set(oldest) == {"jax", "jaxlib"}
    for pkg, spec in pins.items():
        lower = [Version(s.version) for s in spec if s.operator == ">="]
        assert lower == [oldest[pkg]], f"{pkg}: pin {spec} vs oldest tested {oldest[pkg]}"


def test_the_pin_admits_current_jax() -> None:
    pins, newest = _pins(), _constraints("newest")
    assert set(newest) == {"jax", "jaxlib"}
    for pkg, spec in pins.items():
        for version in ("0.11.0", "0.11.2", "0.12.0", str(newest[pkg])):
            assert spec.contains(version), f"{pkg} {version} is refused by the pin {spec}"


def test_this_suite_runs_on_a_jax_the_pin_admits() -> None:
    spec = _pins()["jax"]
    assert spec.contains(jax.__version__), f"running on jax {jax.__version__}, pin {spec}"


def test_python_classifiers_match_requires_python() -> None:
    project = _project()
    requires = SpecifierSet(project["requires-python"])
    listed = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"]
              if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert listed, "no Python version classifiers"
    assert all(requires.contains(v + ".0") for v in listed), (listed, str(requires))
    running = "{}.{}".format(*sys.version_info[:2])
    assert running in listed, f"this suite runs on Python {running}, which the classifiers omit"
