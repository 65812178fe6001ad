"""Shared fixtures: an isolated registry (and its recorder) per test."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(registry: CollectorRegistry):  # type: ignore[no-untyped-def]
    import jaxobs

    return jaxobs.recorder_for(registry)
