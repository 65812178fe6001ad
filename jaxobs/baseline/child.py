"""Recording inside a program started by ``jaxobs baseline record -- CMD``.

The CLI cannot import the user's program, so it starts CMD with a directory
on ``PYTHONPATH`` holding a ``sitecustomize`` module (:data:`SHIM`): every
Python process CMD starts opens a :class:`~jaxobs.baseline.session.Session`
before user code runs and writes its part to ``$JAXOBS_BASELINE_DIR/<pid>.json``
at exit.  The CLI then merges the parts.  An existing ``sitecustomize``
(Debian ships one) still runs: the shim loads it afterwards.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path

ENV_DIR = "JAXOBS_BASELINE_DIR"

SHIM = '''\
"""Written by `jaxobs baseline record`: record a jaxobs baseline of this process, then chain."""
import os as _os
import sys as _sys

try:
    from jaxobs.baseline.child import start_from_env as _start

    _start()
except Exception as _exc:  # recording must never stop the program
    print(f"jaxobs baseline: not recording this process: {_exc}", file=_sys.stderr)

_here = _os.path.dirname(_os.path.abspath(__file__))
for _entry in list(_sys.path):
    if _os.path.abspath(_entry or ".") == _here:
        continue
    import importlib.machinery as _machinery
    import importlib.util as _util

    _spec = _machinery.PathFinder.find_spec("sitecustomize", [_entry])
    if _spec is not None and _spec.loader is not None:
        _module = _util.module_from_spec(_spec)
        _spec.loader.exec_module(_module)
        break
'''


def start_from_env() -> None:
    """Open a session for this process if the CLI asked for one (``JAXOBS_BASELINE_DIR``)."""
    out_dir = os.environ.get(ENV_DIR)
    if not out_dir:
        return
    from jaxobs.baseline.session import Session

    session = Session().start()

    def write() -> None:
        doc = session.finish()
        if doc["functions"]:  # processes that ran no instrumented function leave nothing
            path = Path(out_dir) / f"{os.getpid()}.json"
            path.write_text(json.dumps(doc))

    atexit.register(write)
