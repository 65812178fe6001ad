"""Bad multiprocess files: each is skipped and counted, the healthy processes' data is served.

The files are made with prometheus-client's own writer (``MmapedDict``) and then damaged the way
the fault probe found them: zero-length (every new file is, for an instant), truncated, with a
key that is not a series key, a FIFO named like a ``.db`` file, and a file rewritten under a read.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

sys.path.insert(0, str(Path(__file__).parent / "fakes"))

from processes import exporter, fake_app  # noqa: E402

from jaxobs.exporter.sources import MultiprocessSource  # noqa: E402


def write_db(path: Path, n: int, value: float = 1.0, metric: str = "jaxobs_errors") -> bytes:
    d = MmapedDict(str(path))
    for i in range(n):
        d.write_value(mmap_key(metric, metric + "_total", ["function", "error"], [f"f{i}", "oom"], "h"),
                      value, 0.0)
    d.close()
    return path.read_bytes()


def damage(mp: Path) -> None:
    (mp / "counter_900001.db").write_bytes(b"")
    good = write_db(mp / "scratch", 50)
    (mp / "scratch").unlink()
    used = int.from_bytes(good[:4], "little")
    (mp / "counter_900002.db").write_bytes(good[: used // 2])  # header promises more than is there
    bad_key = bytearray(good)
    start = 8 + 4
    bad_key[start:start + 5] = b"nope!"  # the first key is no longer JSON
    (mp / "counter_900003.db").write_bytes(bytes(bad_key))
    os.mkfifo(mp / "histogram_900004.db")


def sample(body: str, prefix: str) -> list[str]:
    return [line for line in body.splitlines() if line.startswith(prefix)]


def test_bad_files_are_skipped_and_counted_and_the_healthy_app_is_served(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    with fake_app(multiproc_dir=mp, series=6, ready=1.0):
        damage(mp)
        with exporter(["--multiproc-dir", str(mp), "--collectors", "host"]) as ex:
            started = time.monotonic()
            status, body = ex.get("/metrics", timeout=10)
            took = time.monotonic() - started
            ready = ex.get("/readyz", timeout=10)
    assert status == 200 and took < 5
    assert 'jaxobs_collector_up{collector="app",device=""} 1.0' in body
    assert len(sample(body, "jaxobs_requests_total{")) == 6  # the healthy process, whole
    assert 'jaxobs_exporter_skipped_files{reason="empty"} 1.0' in body
    assert 'jaxobs_exporter_skipped_files{reason="corrupt"} 2.0' in body
    assert 'jaxobs_exporter_skipped_files{reason="not_regular"} 1.0' in body
    assert ready[0] == 200, ready


def test_a_fifo_named_like_a_db_file_does_not_hang_collection(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    os.mkfifo(mp / "counter_900005.db")
    source = MultiprocessSource(mp, check_pids=False)
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(source.collect()), daemon=True)
    t.start()
    t.join(timeout=5)
    assert result, "collection blocked on the FIFO"


def test_a_file_rewritten_during_reads_is_never_served_partially(tmp_path):
    mp = tmp_path / "mp"
    mp.mkdir()
    n = 400
    data = write_db(mp / "counter_900006.db", n, value=7.0)
    write_db(mp / "counter_900007.db", 3, value=1.0, metric="jaxobs_calls")
    stop = threading.Event()

    def rewrite() -> None:
        while not stop.is_set():
            with open(mp / "counter_900006.db", "wb", buffering=0) as f:
                for i in range(0, len(data), 4096):  # the file grows in steps, as a copy would
                    f.write(data[i:i + 4096])

    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    source = MultiprocessSource(mp, check_pids=False)
    seen_full = seen_skipped = 0
    try:
        for _ in range(150):
            families = source.collect()
            errors = [s for f in families if f.name == "jaxobs_errors" for s in f.samples]
            calls = [s for f in families if f.name == "jaxobs_calls" for s in f.samples]
            assert len(calls) == 3  # the healthy file, every time
            assert len(errors) in (0, n), len(errors)  # all or nothing, never a part
            assert all(s.value == 7.0 for s in errors)
            if errors:
                seen_full += 1
            else:
                seen_skipped += 1
                skipped = {s.labels["reason"]: s.value for f in families
                           if f.name == "jaxobs_exporter_skipped_files" for s in f.samples}
                assert sum(skipped.values()) >= 1, skipped  # and it says what was left out
    finally:
        stop.set()
        writer.join(timeout=5)
    assert seen_full + seen_skipped == 150


@pytest.mark.parametrize("content", [b"", b"\x00" * 7, b"\xff" * 64])
def test_junk_alone_still_yields_an_answer(tmp_path, content):
    mp = tmp_path / "mp"
    mp.mkdir()
    (mp / "gauge_max_900008.db").write_bytes(content)
    source = MultiprocessSource(mp, check_pids=False)
    source.collect()
    assert source.readiness().ready is False
