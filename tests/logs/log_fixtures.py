"""Logs written by real runs, for the tests of :mod:`sim.logs` (helpers, not fixtures:
each test module wraps what it needs in a fixture of its own scope)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from sim.cli.main import cli
from sim.logs.read import read_events
from sim.logs.setup import configure_quiet

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def run_log(tmp_path: Path, scenario: str, *args: str, name: str = "run") -> Path:
    """Run one shipped scenario with ``--log-file``; the log's path (it may pass or fail)."""
    log = tmp_path / f"{name}.jsonl"
    result = CliRunner().invoke(
        cli, ["run", str(SCENARIOS / scenario), "--log-file", str(log), *args]
    )
    assert result.exit_code in (0, 1), result.output
    return log


def late_events(directory: Path) -> list[dict[str, Any]]:
    """The issue's example: a switch while t2 is in flight, late-bound snapshot runtime."""
    path = run_log(directory, "inflight_switch.yaml", "--variant", "late-snapshot-runtime")
    configure_quiet()
    return read_events(str(path))
