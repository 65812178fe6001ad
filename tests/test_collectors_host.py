"""The host collector with real processes: the exporter itself and an app found through its multiprocess files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import fake_app  # noqa: E402

from jaxobs import catalog  # noqa: E402
from jaxobs.exporter.collectors.host import HostCollector, pids_from_multiproc_dir_names  # noqa: E402

UP = catalog.COLLECTOR_UP.name


def registry(collector: HostCollector) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(collector)
    return reg


def test_self_and_host_memory():
    reg = registry(HostCollector())
    assert reg.get_sample_value(catalog.PROCESS_RESIDENT_MEMORY.name, {"process": "exporter"}) > 1e6
    assert reg.get_sample_value(catalog.PROCESS_CPU.name + "", {"process": "exporter"}) >= 0
    assert reg.get_sample_value(catalog.HOST_MEMORY_AVAILABLE.name) > 0
    assert reg.get_sample_value(UP, {"collector": "host", "device": ""}) == 1
    # No app configured: no app series and no app up.
    assert reg.get_sample_value(UP, {"collector": "host", "device": "app"}) is None


def test_app_found_from_multiprocess_file_names(tmp_path):
    with fake_app(multiproc_dir=tmp_path) as app:
        reg = registry(HostCollector(multiproc_dir=tmp_path))
        assert reg.get_sample_value(UP, {"collector": "host", "device": "app"}) == 1
        assert reg.get_sample_value(catalog.PROCESS_RESIDENT_MEMORY.name, {"process": "app"}) > 1e6
        assert app.pid in pids_from_multiproc_dir_names(os.listdir(tmp_path))
    # The app exited and left its files behind: up 0, no stale RSS.
    assert reg.get_sample_value(UP, {"collector": "host", "device": "app"}) == 0
    assert reg.get_sample_value(catalog.PROCESS_RESIDENT_MEMORY.name, {"process": "app"}) is None


def test_explicit_pid_that_does_not_exist_is_down_not_an_error():
    reg = registry(HostCollector(app_pid=2**22 + 12345))
    assert reg.get_sample_value(UP, {"collector": "host", "device": "app"}) == 0
    assert reg.get_sample_value(UP, {"collector": "host", "device": ""}) == 1


def test_pid_parsing():
    names = ["counter_12.db", "gauge_max_345.db", "gauge_livesum_6.db", "notes.txt", "histogram_7.db"]
    assert pids_from_multiproc_dir_names(names) == {12, 345, 6, 7}
