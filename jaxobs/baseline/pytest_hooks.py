"""pytest options ``--jaxobs-record=FILE`` and ``--jaxobs-compare=FILE`` (loaded by the jaxobs plugin).

``--jaxobs-record`` writes a baseline of every function instrumented with
``jaxobs.jit`` during the run (the same file ``jaxobs baseline record``
writes); ``--jaxobs-compare`` compares the run with a saved baseline, prints
the table in the terminal summary and fails the session on a regression.
Without either option this module imports nothing and records nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_SESSION = pytest.StashKey[Any]()
_OLD = pytest.StashKey[Any]()
_RESULT = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("jaxobs", "jaxobs performance baseline")
    group.addoption("--jaxobs-record", metavar="FILE", default=None,
                    help="write a baseline (compiles, FLOPs, memory, kernel timings) of every "
                         "jaxobs-instrumented function run by the tests")
    group.addoption("--jaxobs-compare", metavar="FILE", default=None,
                    help="compare this run with a baseline and fail the session on a regression")
    group.addoption("--jaxobs-thresholds", metavar="FILE", default=None,
                    help="YAML/JSON thresholds per quantity and per function for --jaxobs-compare")


def pytest_configure(config: pytest.Config) -> None:
    record, old = config.getoption("--jaxobs-record"), config.getoption("--jaxobs-compare")
    if not record and not old:
        return
    from jaxobs.baseline import compare
    from jaxobs.baseline.session import Session

    if old:  # check the inputs now: a typo should not cost a whole test run
        try:
            config.stash[_OLD] = (compare.load_baseline(old),
                                  compare.load_thresholds(config.getoption("--jaxobs-thresholds")))
        except compare.BaselineError as exc:
            raise pytest.UsageError(f"--jaxobs-compare: {exc}") from None
    config.stash[_SESSION] = Session().start()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    recording = config.stash.get(_SESSION, None)
    if recording is None:
        return
    doc = recording.finish()
    out = config.getoption("--jaxobs-record")
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    if _OLD in config.stash:
        from jaxobs.baseline import compare

        old, thresholds = config.stash[_OLD]
        result = compare.compare(old, doc, thresholds)
        config.stash[_RESULT] = result
        if result.regressions and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    out = config.getoption("--jaxobs-record", None)
    if out and _SESSION in config.stash:
        terminalreporter.write_line(f"jaxobs baseline written to {out}")
    result = config.stash.get(_RESULT, None)
    if result is None:
        return
    from jaxobs.baseline import compare

    terminalreporter.section("jaxobs baseline comparison")
    for line in compare.render_text(result).splitlines():
        terminalreporter.write_line(line, red=line.find("REGRESSION") >= 0)
