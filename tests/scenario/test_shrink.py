"""Shrinking: the smallest failing scenario, written as a file that replays exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from click.testing import CliRunner

from persisters.stores import StoreSpec
from sim.cli.main import cli
from sim.scenario.model import Scenario
from sim.scenario.parse import load_scenario, parse_scenario
from sim.scenario.render import render_scenario
from sim.scenario.runner import run_scenario
from sim.scenario.shrink import (
    failure_groups,
    pin_random_switches,
    shape_of,
    shrink_failure,
    size_of,
    without_conversation,
    without_steps,
)

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: A late-snapshot-runtime failure (t2 is in flight when c1 switches) buried in noise: a
#: second conversation, expectations, a resave, sleeps and turns that play no part.
PADDED = """\
name: padded
seed: 3
profiles:
  inventory: {runtime_key: inventory@v1, latency_ms: 100, jitter_ms: 10}
  planner:   {runtime_key: planner@v1, latency_ms: 200, tool_rounds: 2, tool_latency_ms: 30}
  unused:    {runtime_key: unused@v9}
conversations:
  c1: {session: s1, profile: inventory}
  c2: {session: s2, profile: planner}
steps:
  - send: {conv: c2, turn: u1, prompt: "noise"}
  - send: {conv: c1, turn: t1, prompt: "one"}
  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}
  - switch_profile: {conv: c2, profile: inventory}
  - send: {conv: c2, turn: u2, prompt: "more noise"}
  - resave: {conv: c2, turn: u2, from: metadata}
  - sleep: 30
  - send: {conv: c1, turn: t2, prompt: "two", wait: false}
  - sleep: 50
  - switch_profile: {conv: c1, profile: planner}
  - wait_idle: all
  - send: {conv: c1, turn: t3, prompt: "three"}
  - expect_turn_count: {conv: c2, count: 2}
  - expect_conversation: {conv: c2, current_runtime_key: inventory@v1}
"""


def shrink(
    scenario: Scenario, seed: int, variants: tuple[str, ...], group: str, out: Path, **kw: Any
) -> Any:
    return anyio.run(
        lambda: shrink_failure(scenario, seed, variants, group, out_path=str(out), **kw)
    )


@pytest.fixture(scope="module")
def padded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The padded scenario shrunk once for the tests below: (output path, result)."""
    out = tmp_path_factory.mktemp("shrink") / "padded.min.yaml"
    scenario = parse_scenario(PADDED, "padded.yaml")
    return out, shrink(scenario, 3, ("late-snapshot-runtime",), "runtime-bound-at-start", out)


def test_padded_failure_shrinks_to_its_core(padded: tuple[Path, Any]) -> None:
    scenario = parse_scenario(PADDED, "padded.yaml")
    variant = ("late-snapshot-runtime",)
    before = anyio.run(lambda: run_scenario(scenario, seed=3, variants=variant))
    assert "runtime-bound-at-start" in failure_groups(before.failures)
    out, result = padded
    assert result.size.conversations == 1
    assert result.size.turns == 1
    assert result.size.steps <= 3
    assert result.size.key() < result.original_size.key()
    assert "runtime-bound-at-start" in failure_groups(result.failures)
    # nothing the original run did not fail with
    assert failure_groups(result.failures) <= failure_groups(before.failures)
    shrunk = parse_scenario(result.text, str(out))
    assert [p.slug for p in shrunk.profiles] != [p.slug for p in scenario.profiles]
    assert all(p.tool_rounds == 0 and p.jitter_ms == 0 for p in shrunk.profiles)


def test_shrunk_file_replays_exactly(padded: tuple[Path, Any]) -> None:
    variant = ("late-snapshot-runtime",)
    out, result = padded
    out.write_text(result.text)
    assert result.replay == f"turnsim run {out} --seed {result.seed} --variant {variant[0]}"
    assert f"# Replay: {result.replay}" in result.text
    loaded = load_scenario(out)
    assert loaded.seed == result.seed  # `turnsim run FILE` alone reproduces it too
    again = anyio.run(lambda: run_scenario(loaded, seed=result.seed, variants=variant))
    assert [f.to_json() for f in again.failures] == [f.to_json() for f in result.failures]
    cli_run = CliRunner().invoke(cli, result.replay.split()[1:])
    assert cli_run.exit_code == 1
    assert "runtime-bound-at-start" in cli_run.output
    passing = CliRunner().invoke(cli, ["run", str(out), "--seed", str(result.seed)])
    assert passing.exit_code == 0, passing.output  # the default build passes it


def test_shrinking_is_deterministic(tmp_path: Path) -> None:
    scenario = parse_scenario(PADDED, "padded.yaml")
    variant = ("late-snapshot-runtime",)
    a = shrink(scenario, 3, variant, "runtime-bound-at-start", tmp_path / "x.yaml", max_runs=15)
    b = shrink(scenario, 3, variant, "runtime-bound-at-start", tmp_path / "x.yaml", max_runs=15)
    assert a.text == b.text and a.runs == b.runs and a.seed == b.seed


def test_shrinking_on_the_memory_store_gives_the_same_file(tmp_path: Path) -> None:
    """Explore shrinks on its fast store; the file must be the one SQLite would give, and the
    violations it shows are a SQLite run's (the store `turnsim run` replays on)."""
    scenario = parse_scenario(PADDED, "padded.yaml")
    variant = ("late-snapshot-runtime",)
    out = tmp_path / "x.yaml"
    on_sqlite = shrink(scenario, 3, variant, "runtime-bound-at-start", out, max_runs=15)
    on_memory = shrink(
        scenario, 3, variant, "runtime-bound-at-start", out, max_runs=15, store=StoreSpec("memory")
    )
    assert on_memory == on_sqlite
    assert on_memory.shape == shape_of(parse_scenario(on_memory.text, str(out)))
    assert shape_of(attrs.evolve(scenario, seed=99)) == shape_of(scenario)  # seed left out


def test_shrinking_respects_its_budget(tmp_path: Path) -> None:
    scenario = parse_scenario(PADDED, "padded.yaml")
    result = shrink(
        scenario,
        3,
        ("late-snapshot-runtime",),
        "runtime-bound-at-start",
        tmp_path / "x.yaml",
        max_runs=4,
    )
    assert result.runs <= 4
    assert "runtime-bound-at-start" in failure_groups(result.failures)


def test_a_group_the_run_does_not_fail_with_is_not_shrunk(tmp_path: Path) -> None:
    scenario = parse_scenario(PADDED, "padded.yaml")
    result = shrink(scenario, 3, (), "never-rewritten", tmp_path / "x.yaml")
    assert result.runs == 0
    assert result.size == result.original_size
    assert not result.reduced


def test_upsert_overwrite_shrinks_to_a_second_writer(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "random_switches.yaml")
    variant = ("upsert-overwrite",)
    seed = next(
        s
        for s in range(20)
        if "never-rewritten"
        in failure_groups(
            anyio.run(lambda s=s: run_scenario(scenario, seed=s, variants=variant)).failures
        )
    )
    result = shrink(scenario, seed, variant, "never-rewritten", tmp_path / "rs.yaml", max_runs=60)
    assert result.size.conversations == 1
    assert result.size.steps < result.original_size.steps
    kinds = [s.kind for s in parse_scenario(result.text, "x").steps]
    assert "resave" in kinds  # the second writer is the cause and survives every cut


def test_pinning_random_switches_keeps_the_run() -> None:
    scenario = load_scenario(SCENARIOS / "random_switches.yaml")
    for seed in range(4):
        original = anyio.run(lambda s=seed: run_scenario(scenario, seed=s))
        pinned = pin_random_switches(scenario, original.events)
        assert all(isinstance(s.step.at, int) for s in pinned.steps if s.kind == "switch_profile")
        again = anyio.run(lambda s=seed, p=pinned: run_scenario(p, seed=s))
        assert again.events == original.events


def test_removing_a_send_removes_the_steps_naming_its_turn() -> None:
    scenario = parse_scenario(PADDED, "padded.yaml")
    index = next(i for i, s in enumerate(scenario.steps) if getattr(s.step, "turn", "") == "u2")
    smaller = without_steps(scenario, {index})
    assert not any(getattr(s.step, "turn", None) == "u2" for s in smaller.steps)
    parse_scenario(render_scenario(smaller), "x")  # still a valid scenario
    no_c2 = without_conversation(scenario, "c2")
    assert [c.name for c in no_c2.conversations] == ["c1"]
    assert all(getattr(s.step, "conv", "c1") in ("c1", "all") for s in no_c2.steps)
    assert size_of(no_c2).turns == 3
