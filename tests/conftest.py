"""Every async test runs on both anyio backends (anyio's own pytest plugin)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Simulation events are not test output; tests that need them capture them."""
    from sim.logs.setup import configure_logging

    configure_logging(fmt="json", level="error")


@pytest.fixture(autouse=True)
def _own_failure_database(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> None:
    """`turnsim explore` remembers failing seeds and replays them first next time: each test
    gets a database of its own, so no test sees another's seeds (nor the repo's)."""
    monkeypatch.setenv("TURNSIM_FAILURE_DB", str(tmp_path_factory.mktemp("failure-db")))
