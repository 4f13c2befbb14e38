"""Every async test runs on both anyio backends (anyio's own pytest plugin)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Simulation events are not test output; tests that need them capture them."""
    from sim.logs.setup import configure_logging

    configure_logging(fmt="json", level="error")
