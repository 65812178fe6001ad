"""Shared fixtures: an isolated registry (and its recorder) per test, and clean process state."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(registry: CollectorRegistry):  # type: ignore[no-untyped-def]
    from jaxobs.telemetry import recorder_for

    return recorder_for(registry)


@pytest.fixture(autouse=True)
def _fresh_process_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts not ready, with no pending warmups and default settings.

    Readiness and ``configure()`` are process-wide: without this, a test that
    checks readiness can pass only because an earlier test set it.  Tests that
    never imported the runtime (generators, the sidecar) pay nothing.
    """
    import sys

    if _runtime_loaded(sys.modules):
        _reset_runtime()
    yield
    if _runtime_loaded(sys.modules):
        _reset_runtime()


def _runtime_loaded(modules: dict[str, object]) -> bool:
    return "jaxobs.runtime.jit" in modules or "jaxobs.runtime.readiness" in modules


def _reset_runtime() -> None:
    from jaxobs.runtime import jit, readiness

    with readiness._lock:
        readiness._registered.clear()
    readiness._ready = False
    for name, value in dataclasses.asdict(jit.Settings()).items():  # configure() cannot unset
        setattr(jit._settings, name, value)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """A real OpenTelemetry SDK tracer provider with the in-memory exporter, for this test only."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    yield exporter
    provider.shutdown()
