"""One scrape of the sidecar: deadline, single-flight, and merging families from several sources."""

from __future__ import annotations

import threading
import time

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from jaxobs import catalog
from jaxobs.exporter.app import _Families
from jaxobs.exporter.scrape import Scraper


class Static:
    def __init__(self, name: str, families):
        self.name = name
        self._families = families

    def collect(self):
        return list(self._families())


class Hanging:
    """A source stuck in a driver call until released (a wedged GPU)."""

    name = "nvml"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self):
        self.calls += 1
        self.release.wait(10)
        up = GaugeMetricFamily(catalog.COLLECTOR_UP.name, catalog.COLLECTOR_UP.help, labels=["collector", "device"])
        up.add_metric(["nvml", ""], 1)
        return [up]


def host_families():
    g = GaugeMetricFamily(catalog.HOST_MEMORY_AVAILABLE.name, catalog.HOST_MEMORY_AVAILABLE.help)
    g.add_metric([], 123.0)
    up = GaugeMetricFamily(catalog.COLLECTOR_UP.name, catalog.COLLECTOR_UP.help, labels=["collector", "device"])
    up.add_metric(["host", ""], 1)
    return [g, up]


def render(families) -> str:
    return generate_latest(_Families(families)).decode()


def value(text: str, name: str, **labels: str):
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_a_hanging_source_costs_the_deadline_not_the_scrape():
    hanging = Hanging()
    scraper = Scraper([Static("host", host_families), hanging])
    try:
        started = time.monotonic()
        text = render(scraper.collect(0.3))
        assert time.monotonic() - started < 1.0
        assert value(text, catalog.HOST_MEMORY_AVAILABLE.name) == 123
        assert value(text, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 0
        assert value(text, catalog.COLLECTOR_UP.name, collector="host", device="") == 1
        # Still stuck: the next scrapes join the running call instead of stacking threads.
        render(scraper.collect(0.2))
        render(scraper.collect(0.2))
        assert hanging.calls == 1
    finally:
        hanging.release.set()
    time.sleep(0.1)
    text = render(scraper.collect(1.0))
    assert value(text, catalog.COLLECTOR_UP.name, collector="nvml", device="") == 1


def test_a_raising_source_is_down_and_counted():
    def boom():
        raise OSError("multiprocess dir vanished")

    scraper = Scraper([Static("app", boom), Static("host", host_families)])
    text = render(scraper.collect(1.0))
    assert value(text, catalog.COLLECTOR_UP.name, collector="app", device="") == 0
    assert value(text, catalog.INTERNAL_ERRORS.name, component="exporter.scrape") >= 1
    assert value(text, catalog.HOST_MEMORY_AVAILABLE.name) == 123


def test_same_family_from_app_and_sidecar_is_merged_once():
    def app():
        errors = CounterMetricFamily(catalog.INTERNAL_ERRORS.base_name, "app help", labels=["component"])
        errors.add_metric(["listener"], 2)
        info = GaugeMetricFamily(catalog.BUILD_INFO.name, "h", labels=list(catalog.BUILD_INFO.labels))
        info.add_metric(["0.10.2", "0.10.2", "cpu", "", "", "0.1.0"], 1)
        return [errors, info]

    def gpu():
        info = GaugeMetricFamily(catalog.BUILD_INFO.name, "h", labels=list(catalog.BUILD_INFO.labels))
        info.add_metric(["", "", "gpu", "550.54.15", "12.4", "0.1.0"], 1)
        info2 = GaugeMetricFamily(catalog.BUILD_INFO.name, "h", labels=list(catalog.BUILD_INFO.labels))
        info2.add_metric(["0.10.2", "0.10.2", "cpu", "", "", "0.1.0"], 1)  # exact duplicate: dropped
        return [info, info2]

    shared = app()
    scraper = Scraper([Static("app", lambda: shared), Static("nvml", gpu)])
    text = render(scraper.collect(1.0))
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))
    assert text.count(f"# TYPE {catalog.BUILD_INFO.name} ") == 1
    assert text.count(f"{catalog.BUILD_INFO.name}{{") == 2
    assert value(text, catalog.INTERNAL_ERRORS.name, component="listener") == 2
    # The source's own family objects were not mutated (they may be shared with a concurrent scrape).
    assert len(shared[1].samples) == 1


def test_cached_multiprocess_reader_equals_the_library_merge(tmp_path):
    import glob
    import sys
    from pathlib import Path

    from prometheus_client.multiprocess import MultiProcessCollector

    from jaxobs.exporter.sources import CachedMultiprocessReader

    sys.path.insert(0, str(Path(__file__).parent / "fakes"))
    from processes import fake_app

    with fake_app(multiproc_dir=tmp_path, series=50) as app:
        app.set_ready(1)
        files = sorted(glob.glob(str(tmp_path / "*.db")))
        reader = CachedMultiprocessReader()
        assert reader._fast
        for _ in range(2):  # second read comes from the key cache
            ours = generate_latest(_Families(reader.read(files)))
            theirs = generate_latest(_Families(MultiProcessCollector.merge(files)))
            assert ours == theirs
