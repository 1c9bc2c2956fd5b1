"""Suite-wide setup: hypothesis profiles and the fixture that runs a loop in both drivers."""

from __future__ import annotations

import os

import pytest
from doubles import Driver
from hypothesis import HealthCheck, settings

# Deterministic by default: fixed derandomised examples, no example database.
settings.register_profile(
    "ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=50)
settings.register_profile(
    "nightly", parent=settings.get_profile("ci"), max_examples=10_000, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest) -> Driver:
    """Run a loop with `composable_loop` or `async_composable_loop` (D9: every loop test runs twice)."""
    return Driver(request.param)
