"""Dynamic batching with bucketed batch sizes: bounded compiles under any traffic.

Every distinct input shape costs a JIT compile (a cold start, and a recompile when shapes keep changing).
Concurrent requests are merged into one batch and padded up to the smallest
of a few *bucket* sizes, so the model only ever sees ``len(buckets)`` shapes —
all of which the server compiles during warmup, before it reports ready.

The batch runs on the batcher's thread while the requests wait on theirs, so
the batch runs inside :class:`jaxobs.compile_probe`.  A compile
delays every request queued behind it, not only the ones in the compiling
batch: every request enqueued before a compiling batch *finished* is cold.

Queue and batch metrics (catalog names, label ``service``): queue depth, the
time each request waited for its batch, the fill ratio of each padded batch,
and real vs padding rows.  A full queue refuses at once (:class:`Overloaded`,
HTTP 503 with ``Retry-After``) instead of blocking a handler thread.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Sequence
from time import monotonic, perf_counter
from typing import Any

import numpy as np
from opentelemetry import trace

from jaxobs import catalog, compile_probe
from jaxobs.telemetry import recorder_for

#: Padded batch sizes the model is compiled for.
DEFAULT_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


def bucket_for(rows: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding ``rows`` rows."""
    for size in sorted(buckets):
        if rows <= size:
            return size
    raise ValueError(f"{rows} rows exceed the largest bucket ({max(buckets)})")


def pad_rows(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with zero rows appended up to ``size`` rows (rows are independent in an MLP)."""
    if len(x) == size:
        return x
    pad = np.zeros((size - len(x),) + x.shape[1:], dtype=x.dtype)
    return np.concatenate([x, pad])


class Overloaded(Exception):
    """The queue is full: refuse now (HTTP 503 + Retry-After), do not block or time out later."""


class Pending:
    """One request's rows waiting for their batch; the handler thread waits on it."""

    __slots__ = ("rows", "seq", "enqueued", "result", "error", "cold", "batch_size", "batch_span", "_done")

    def __init__(self, rows: np.ndarray, seq: int = 0) -> None:
        self.rows = rows
        self.seq = seq
        self.enqueued = perf_counter()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.cold = False
        self.batch_size = 0
        self.batch_span: Any = None  # the span context of the batch that served it (tracing on)
        self._done = threading.Event()

    def wait(self, timeout: float) -> np.ndarray:
        """The outputs of this request's rows; re-raises the batch's exception."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"no batch result within {timeout}s")
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def finish(self, result: np.ndarray | None, error: BaseException | None, cold: bool,
               batch_size: int) -> None:
        self.result, self.error, self.cold, self.batch_size = result, error, cold, batch_size
        self._done.set()


class Batcher:
    """Collects requests for up to ``max_wait`` seconds (or a full largest bucket) and runs
    them as one padded batch through ``run`` (rows in, rows out; it must block until done)."""

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], buckets: Sequence[int] = DEFAULT_BUCKETS,
                 max_wait: float = 0.002, max_queue: int = 1024, *, service: str = "inference",
                 registry: Any = None) -> None:
        self._run = run
        self.buckets = tuple(sorted(buckets))
        self.max_rows = self.buckets[-1]
        self.max_wait = max_wait
        self._queue: queue.Queue[Pending] = queue.Queue(max_queue)
        self._carry: Pending | None = None  # taken from the queue but did not fit the last batch
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)
        self.batches = 0
        self._seq = itertools.count(1)
        self._cold_below = 0  # requests with a lower seq were enqueued before a compile finished
        rec = recorder_for(registry)
        self._depth = rec.gauge(catalog.QUEUE_DEPTH, service)
        self._wait = rec.histogram(catalog.QUEUE_WAIT, service)
        self._fill = rec.histogram(catalog.BATCH_FILL, service)
        self._rows = rec.counter(catalog.BATCH_ROWS, service, "request")
        self._padding = rec.counter(catalog.BATCH_ROWS, service, "padding")

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._closed.set()
        self._thread.join(timeout)

    def submit(self, rows: np.ndarray) -> Pending:
        """Queue ``rows`` (1..largest bucket rows) for the next batch."""
        if not 1 <= len(rows) <= self.max_rows:
            raise ValueError(f"a request holds 1..{self.max_rows} rows, got {len(rows)}")
        pending = Pending(rows, next(self._seq))  # count() is atomic: seqs follow enqueue order
        try:
            self._queue.put_nowait(pending)
        except queue.Full:
            raise Overloaded(f"the queue holds {self._queue.maxsize} requests") from None
        self._depth.inc()
        return pending

    def _next(self, timeout: float) -> Pending | None:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        try:
            item = self._queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None
        self._depth.dec()
        return item

    def _collect(self) -> list[Pending]:
        first = self._next(0.1)
        if first is None:
            return []
        batch, rows = [first], len(first.rows)
        deadline = monotonic() + self.max_wait
        while rows < self.max_rows:
            item = self._next(deadline - monotonic())
            if item is None:
                break
            if rows + len(item.rows) > self.max_rows:
                self._carry = item
                break
            batch.append(item)
            rows += len(item.rows)
        return batch

    def _loop(self) -> None:
        while not self._closed.is_set():
            batch = self._collect()
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[Pending]) -> None:
        x = np.concatenate([p.rows for p in batch])
        size = bucket_for(len(x), self.buckets)
        self.batches += 1
        started = perf_counter()
        for p in batch:
            self._wait.observe(started - p.enqueued)
        self._fill.observe(len(x) / size)
        self._rows.inc(len(x))
        self._padding.inc(size - len(x))
        # One span per batch (when the app configured tracing); each request's span links to it.
        with trace.get_tracer("examples.inference_server").start_as_current_span(
                "batch", attributes={"batch.size": size, "batch.requests": len(batch),
                                     "batch.padding_rows": size - len(x)}) as span:
            for p in batch:
                p.batch_span = span.get_span_context()
            try:
                with compile_probe() as probe:
                    out = self._run(pad_rows(x, size))
            except BaseException as exc:  # every waiting request gets the batch's failure
                for p in batch:
                    p.finish(None, exc, False, size)
                return
            span.set_attribute("jaxobs.start", "cold" if probe.cold else "steady")
        if probe.cold:  # everyone already queued waited for this compile too
            self._cold_below = next(self._seq)
        offset = 0
        for p in batch:
            n = len(p.rows)
            p.finish(out[offset:offset + n], None, probe.cold or p.seq < self._cold_below, size)
            offset += n
