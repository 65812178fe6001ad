"""Host and process resources through psutil.

In the sidecar there are two processes of interest: the exporter itself
(``process="exporter"``) and the JAX application (``process="app"``).  The app
is found, in this order, from ``--app-pid`` or from the pids in the names of
prometheus-client's multiprocess files (``gauge_max_<pid>.db``…), which works
when the pod shares its process namespace (``shareProcessNamespace: true``).
Several app processes (workers) are summed; host-side RSS is the leak signal
of failure, and CPU seconds a saturation signal.

Host memory available is ``psutil.virtual_memory().available``: the node's
view, not the container's cgroup limit.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import psutil

from jaxobs import catalog
from jaxobs.telemetry.collector import WHOLE_COLLECTOR, Collector, Samples

_MULTIPROC_FILE = re.compile(r"_(\d+)\.db$")


def pids_from_multiproc_dir_names(names: Iterable[str]) -> set[int]:
    """Pids in prometheus-client multiprocess file names (``counter_<pid>.db``…)."""
    pids = set()
    for name in names:
        m = _MULTIPROC_FILE.search(name)
        if m:
            pids.add(int(m.group(1)))
    return pids


def pids_from_multiproc_dir(path: str | os.PathLike[str]) -> set[int]:
    """Pids that wrote prometheus-client multiprocess files into ``path``."""
    try:
        return pids_from_multiproc_dir_names(os.listdir(path))
    except OSError:
        return set()


class HostCollector(Collector):
    """``jaxobs_process_resident_memory_bytes``, ``…_cpu_seconds_total``, ``jaxobs_host_memory_available_bytes``."""

    name = "host"

    def __init__(self, *, app_pid: int | None = None, multiproc_dir: str | Path | None = None,
                 self_name: str = "exporter") -> None:
        super().__init__()
        self.app_pid = app_pid
        self.multiproc_dir = multiproc_dir
        self.self_name = self_name
        self._procs: dict[int, psutil.Process] = {}

    def _process(self, pid: int) -> psutil.Process:
        proc = self._procs.get(pid)
        if proc is None or not proc.is_running():  # is_running() also catches pid reuse
            proc = self._procs[pid] = psutil.Process(pid)
        return proc

    def _app_pids(self) -> list[int] | None:
        """The app's pids; ``None`` when no app is expected (nothing configured)."""
        if self.app_pid is not None:
            return [self.app_pid]
        if self.multiproc_dir is None:
            return None
        me = os.getpid()
        return sorted(p for p in pids_from_multiproc_dir(self.multiproc_dir)
                      if p != me and psutil.pid_exists(p))

    def _add_processes(self, out: Samples, label: str, pids: Iterable[int]) -> bool:
        rss = cpu = 0.0
        found = False
        for pid in pids:
            try:
                proc = self._process(pid)
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                found = True
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
        if found:
            out.add(catalog.PROCESS_RESIDENT_MEMORY, (label,), rss)
            out.add(catalog.PROCESS_CPU, (label,), cpu)
        return found

    def _collect(self, out: Samples) -> None:
        out.add(catalog.HOST_MEMORY_AVAILABLE, (), psutil.virtual_memory().available)
        out.up(WHOLE_COLLECTOR, True)
        self._add_processes(out, self.self_name, [os.getpid()])
        pids = self._app_pids()
        if pids is not None:
            out.up("app", self._add_processes(out, "app", pids))
