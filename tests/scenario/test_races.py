"""Race coverage: ``expect_race`` fails a run (or an exploration) that never hit its window."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from click.testing import CliRunner

from sim.cli.main import cli
from sim.scenario.explore import explore_scenario
from sim.scenario.parse import load_scenario, parse_scenario
from sim.scenario.runner import run_scenario

SHIPPED = Path(__file__).resolve().parents[2] / "scenarios" / "race_switch_in_flight.yaml"

HEAD = """\
name: race
seed: 5
profiles:
  inventory: {runtime_key: inventory@v1, latency_ms: 200}
  planner:   {runtime_key: planner@v1}
conversations:
  c1: {session: s1, profile: inventory}
steps:
  - send: {conv: c1, turn: t1, prompt: "hi", wait: false}
"""


def run(text: str, seed: int | None = None):
    return anyio.run(lambda: run_scenario(parse_scenario(text, "race.yaml"), seed=seed))


def test_a_run_that_never_hit_the_window_fails_saying_so() -> None:
    after = HEAD + "  - wait_idle: {conv: c1}\n  - switch_profile: {conv: c1, profile: planner}\n"
    result = run(after + "  - expect_race: {conv: c1, kind: switch_in_flight}\n")
    assert not result.passed
    (failure,) = result.failures
    assert failure.name == "expect_race" or "expect_race" in failure.where
    assert "never hit in this run" in failure.message and "switch_in_flight" in failure.message
    # the same switch while t1 is in flight: hit, the run passes
    during = HEAD + "  - sleep: 50\n  - switch_profile: {conv: c1, profile: planner}\n"
    hit = run(during + "  - expect_race: {conv: c1, kind: switch_in_flight}\n")
    assert hit.passed, hit.describe()
    (checked,) = [e for e in hit.events if e["event"] == "race.checked"]
    assert checked["hits"] == 1 and checked["window"] == "switch_in_flight@c1"


def test_min_seeds_moves_the_requirement_to_the_exploration() -> None:
    after = HEAD + "  - wait_idle: {conv: c1}\n  - switch_profile: {conv: c1, profile: planner}\n"
    text = after + "  - expect_race: {conv: c1, kind: switch_in_flight, min_seeds: 2}\n"
    assert run(text).passed  # one run missing it is not a failure
    scenario = parse_scenario(text, "race.yaml")
    found = anyio.run(lambda: explore_scenario(scenario, range(3)))
    assert not found.failed and not found.passed
    assert found.race_hits == {"switch_in_flight@c1": 0}
    (short,) = found.races_short()
    assert "hit by 0 of 3 seeds, fewer than the 2" in short
    doc = found.to_json()
    assert doc["races"] == {"switch_in_flight@c1": {"hits": 0, "min_seeds": 2}}
    assert not doc["passed"]


def test_the_shipped_race_scenario_hits_its_windows_under_explore(tmp_path: Path) -> None:
    assert anyio.run(lambda: run_scenario(load_scenario(SHIPPED))).passed
    result = CliRunner().invoke(
        cli,
        [
            "explore",
            str(SHIPPED),
            "--seeds",
            "20",
            "--jobs",
            "1",
            "--no-failure-db",
            "--no-progress",
            "--json",
            "--out",
            str(tmp_path / "report"),
        ],
    )
    assert result.exit_code == 0, result.output
    (scenario,) = json.loads(result.stdout)["scenarios"]
    races = scenario["races"]
    assert races["switch_in_flight@c2"] == {"hits": 20, "min_seeds": 0}  # every run
    assert 1 <= races["switch_in_flight@c1"]["hits"] < 20  # sometimes, not always
    text = (
        CliRunner()
        .invoke(
            cli,
            [
                "explore",
                str(SHIPPED),
                "--seeds",
                "5",
                "--jobs",
                "1",
                "--no-failure-db",
                "--no-progress",
                "--out",
                str(tmp_path / "r2"),
            ],
        )
        .output
    )
    assert "race window switch_in_flight@c1: hit by" in text
