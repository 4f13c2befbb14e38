"""Scenario files: the loader's messages, `turnsim run`, and the checkers' mutation test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from sim.cli.main import cli
from sim.runtime.variants import VARIANTS
from sim.scenario.invariants import INVARIANTS
from sim.scenario.parse import ScenarioError, load_scenario, parse_scenario
from sim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: For every bug variant: a shipped scenario that passes on the default build and the
#: invariant that must name the bug when the variant is re-introduced.
CATCHERS = {
    "late-snapshot-runtime": ("inflight_switch.yaml", "runtime-bound-at-start"),
    "upsert-overwrite": ("second_writer.yaml", "never-rewritten"),
    "default-turn-id": ("inventory_to_planner.yaml", "distinct-turns"),
    "swallow-snapshot-errors": ("permanent_fault.yaml", "nothing-lost"),
    "pointer-as-history": ("inventory_to_planner.yaml", "pointer-is-current"),
}

GOOD = """\
name: t
seed: 1
profiles:
  inventory: {runtime_key: inventory@v1}
conversations:
  c1: {session: s1, profile: inventory}
steps:
  - send: {conv: c1, turn: t1, prompt: hi}
"""


def test_every_variant_has_a_catcher() -> None:
    assert set(CATCHERS) == set(VARIANTS)
    assert {inv for _, inv in CATCHERS.values()} <= set(INVARIANTS)


@pytest.mark.parametrize("variant", sorted(CATCHERS))
def test_checkers_catch_each_variant(variant: str) -> None:
    """Mutation test of the checkers: pass on the default build, fail with the variant."""
    file, invariant = CATCHERS[variant]
    scenario = load_scenario(SCENARIOS / file)
    clean = anyio.run(run_scenario, scenario)
    assert clean.passed, clean.describe()
    broken = anyio.run(lambda: run_scenario(scenario, variants=[variant]))
    assert not broken.passed
    named = {f.name for f in broken.failures if f.kind == "invariant"}
    assert invariant in named, broken.describe()
    assert f"--variant {variant}" in broken.replay


@pytest.mark.parametrize(
    ("edit", "where", "message"),
    [
        (
            ("  - send: {conv: c1, turn: t1, prompt: hi}", "  - sned: {conv: c1}"),
            "8:5",
            "unknown step 'sned'; expected one of send, switch_profile",
        ),
        (
            ("{conv: c1, turn: t1", "{conv: c9, turn: t1"),
            "8:18",
            "unknown conversation 'c9'; expected one of c1",
        ),
        (
            ("profile: inventory}", "profile: planer}"),
            "6:30",
            "unknown profile 'planer'; expected one of inventory",
        ),
        (("seed: 1", "seed: one"), "2:7", "seed must be an integer, got a string"),
        (("prompt: hi}", "prompt: hi, wait: maybe}"), "8:50", "send: wait must be true or false"),
        (
            ("{conv: c1, turn: t1, prompt: hi}", "{conv: c1, turn: t1}"),
            "8:11",
            "missing required field 'prompt'",
        ),
        (
            ("{runtime_key: inventory@v1}", "{runtime_key: inventory@v1, latncy_ms: 3}"),
            "4:42",
            "unknown field 'latncy_ms'",
        ),
        (
            ("  - send: {conv: c1, turn: t1, prompt: hi}", "  - expect_turn: {conv: c1, turn: t7}"),
            "8:35",
            "unknown turn 't7'",
        ),
        (("profiles:", "profiles: ["), "5:1", "invalid YAML"),
    ],
)
def test_malformed_files_name_file_line_column(
    tmp_path: Path, edit: tuple[str, str], where: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    old, new = edit
    assert old in GOOD
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value).startswith(f"{path}:{where}: "), str(info.value)
    assert message in str(info.value)


def test_the_example_parses() -> None:
    scenario = parse_scenario(GOOD)
    assert [s.kind for s in scenario.steps] == ["send"]


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
