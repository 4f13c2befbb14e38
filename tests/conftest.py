"""Every async test runs on both anyio backends (anyio's own pytest plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    """Simulation events are not test output; tests that need them capture them."""
    from sim.logs.setup import configure_logging

    configure_logging(fmt="json", level="error")


@pytest.fixture(autouse=True, scope="session")
def _drop_scratch_namespaces() -> Iterator[None]:
    """The server tests' pooled scratch schemas/databases are dropped at the end."""
    yield
    from tests.servers import close_scratch_pools

    close_scratch_pools()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say clearly which server tests were skipped, and how CI makes them required."""
    from tests.servers import NAMES, SKIP_PREFIX

    skipped = terminalreporter.stats.get("skipped", [])
    by_server: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        for kind, name in NAMES.items():
            if SKIP_PREFIX in reason and name in reason:
                by_server[kind] = by_server.get(kind, 0) + 1
    if by_server:
        counts = ", ".join(f"{n} {NAMES[k]} test(s)" for k, n in by_server.items())
        terminalreporter.write_line(
            f"SERVER TESTS SKIPPED: {counts} (server not reachable; `-rs` shows why). "
            "CI runs them: TURNSIM_REQUIRE_SERVERS=1 turns these skips into failures.",
            yellow=True,
            bold=True,
        )
