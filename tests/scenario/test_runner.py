"""Running scenarios: `turnsim run`, its report, its exit codes and its determinism."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
from click.testing import CliRunner

from sim.cli.main import cli
from sim.runtime.variants import VARIANTS
from sim.scenario.parse import load_scenario
from sim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def test_run_shipped_suite_passes_and_reports_json() -> None:
    result = CliRunner().invoke(cli, ["run", str(SCENARIOS), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] is True
    names = {s["scenario"] for s in report["scenarios"]}
    assert {"inventory-to-planner", "inflight-switch", "second-writer"} <= names
    assert all(s["failures"] == [] for s in report["scenarios"])


def test_run_with_a_variant_fails_with_a_replay_line() -> None:
    result = CliRunner().invoke(
        cli, ["run", str(SCENARIOS / "inflight_switch.yaml"), "--variant", "late-snapshot-runtime"]
    )
    assert result.exit_code == 1
    assert "invariant runtime-bound-at-start" in result.output
    assert "caused by step 5" in result.output and "(switch_profile)" in result.output
    assert "--seed 7 --variant late-snapshot-runtime" in result.output


def test_bad_input_exits_2_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    for args in (
        ["run", str(bad)],
        ["run", str(tmp_path / "missing.yaml")],
        ["run", str(SCENARIOS), "--variant", "no-such-bug"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "sim", *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("turnsim: ")


def test_variants_lists_each_with_a_description() -> None:
    result = CliRunner().invoke(cli, ["variants", "--json"])
    listed = {v["name"]: v["description"] for v in json.loads(result.output)}
    assert listed == VARIANTS


def test_db_flag_keeps_the_database_and_refuses_reuse(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    path = str(SCENARIOS / "inventory_to_planner.yaml")
    first = CliRunner().invoke(cli, ["run", path, "--db", str(db)])
    assert first.exit_code == 0 and db.exists()
    again = CliRunner().invoke(cli, ["run", path, "--db", str(db)])
    assert again.exit_code == 2 and "already holds conversations" in again.output


def test_same_seed_same_history_other_seed_other_ids() -> None:
    scenario = load_scenario(SCENARIOS / "concurrent_conversations.yaml")
    a = anyio.run(run_scenario, scenario)
    b = anyio.run(run_scenario, scenario)
    c = anyio.run(lambda: run_scenario(scenario, seed=scenario.seed + 1))
    assert a.events == b.events
    assert a.events != c.events and c.passed
