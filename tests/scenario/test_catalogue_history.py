"""The catalogue's turn-content bugs (issue 18, cat-a's rows): each variant caught by its
invariant, each invariant silent on the default build, and the model they need (history,
block attribution, resumed runs, background snapshots) doing what the docs say."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from persisters.model import FINAL, PRE_INFERENCE
from sim.cli.main import cli
from sim.runtime.history import attribution, blocks_of_payload
from sim.runtime.variants import BUILT_IN
from sim.scenario.parse import load_scenario, parse_scenario
from sim.scenario.result import ScenarioResult
from sim.scenario.runner import run_scenario

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: cat-a's variants -> (the shipped scenario that catches it, the invariant that names it)
MINE = {
    "stamp-every-block": ("history_attribution", "block-attribution-stable"),
    "clone-turn-id": ("history_attribution", "distinct-turns"),
    "live-snapshot-payload": ("async_snapshots", "phase-snapshot-faithful"),
    "resume-in-place": ("resume_checkpoint", "never-rewritten"),
    "ignore-history-error": ("history_load_failure", "history-continuity"),
    "profile-resolved-once": ("inventory_to_planner", "switch-takes-effect"),
}


def invariants(result: ScenarioResult) -> set[str]:
    return {f.name for f in result.failures if f.kind == "invariant"}


def messages(result: ScenarioResult, invariant: str) -> list[str]:
    return [f.message for f in result.failures if f.name == invariant]


def snapshots(db: Path, turn_id: str) -> list[dict[str, Any]]:
    """A turn's stored snapshots, oldest first, with their decoded blocks."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT snapshot_id, phase, payload FROM turn_snapshots WHERE turn_id = ? "
            "ORDER BY snapshot_id",
            (turn_id,),
        ).fetchall()
    return [{"id": i, "phase": p, "blocks": blocks_of_payload(payload)} for i, p, payload in rows]


def started(result: ScenarioResult, label: str) -> dict[str, Any]:
    return next(
        e for e in result.events if e["event"] == "inference.started" and e["turn"] == label
    )


@pytest.mark.parametrize("variant", sorted(MINE))
async def test_each_variant_is_named_by_its_invariant_and_its_source(variant: str) -> None:
    stem, invariant = MINE[variant]
    declared = BUILT_IN[variant]
    assert declared.caught_by in {stem, "inventory_to_planner", "history_attribution"}
    assert declared.source and "Substitution: " in declared.description
    scenario = load_scenario(SCENARIOS / f"{stem}.yaml")
    assert (await run_scenario(scenario)).passed
    broken = await run_scenario(scenario, variants=(variant,))
    assert invariant in invariants(broken), broken.describe()


async def test_history_is_fed_and_carried_answers_keep_their_runtime(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    result = await run_scenario(load_scenario(SCENARIOS / "history_attribution.yaml"), db=db)
    assert result.passed, result.describe()
    t1, t3 = started(result, "t1"), started(result, "t3")
    assert t1["history_blocks"] == 0 and t3["history_blocks"] > 2
    first_answer = snapshots(db, t1["turn_id"])[-1]["blocks"]
    fed = snapshots(db, t3["turn_id"])[0]["blocks"]
    assert fed[0].kind == "user" and fed[-1].kind == "user"  # the history, then the prompt
    assert [attribution(b) for b in fed[: len(first_answer)]] == [
        attribution(b) for b in first_answer
    ]
    assert attribution(fed[1])[2] == "inventory@v1"  # t1's answer, carried into a planner turn


async def test_stamping_every_block_restamps_the_earlier_answer() -> None:
    scenario = load_scenario(SCENARIOS / "history_attribution.yaml")
    broken = await run_scenario(scenario, variants=("stamp-every-block",))
    assert invariants(broken) == {"block-attribution-stable"}
    assert any(
        "as inventory@v1" in m and "carries planner@v1" in m
        for m in messages(broken, "block-attribution-stable")
    )


async def test_a_conversation_without_history_stores_the_same_payloads_as_before(
    tmp_path: Path,
) -> None:
    """No history, no attribution: block data stays as it was (payloads unchanged)."""
    db = tmp_path / "run.db"
    result = await run_scenario(load_scenario(SCENARIOS / "inventory_to_planner.yaml"), db=db)
    assert result.passed
    turn = started(result, "t1")["turn_id"]
    assert "history_blocks" not in started(result, "t1")
    assert all(not b.data for s in snapshots(db, turn) for b in s["blocks"])


HISTORY = """\
name: history-faults
seed: 3
profiles:
  inventory: {runtime_key: inventory@v1}
conversations:
  c1: {session: s1, profile: inventory, history: true}
steps:
  - send: {conv: c1, turn: t1, prompt: first}
  - inject_fault: {point: history.load, conv: c1, kind: KIND, times: TIMES}
  - send: {conv: c1, turn: t2, prompt: second}
"""


@pytest.mark.parametrize(
    ("kind", "times", "outcome"),
    [("transient", 2, "completed"), ("transient", 3, "refused"), ("permanent", 1, "refused")],
)
async def test_a_history_that_cannot_be_loaded_refuses_the_inference(
    kind: str, times: int, outcome: str
) -> None:
    text = HISTORY.replace("KIND", kind).replace("TIMES", str(times))
    result = await run_scenario(parse_scenario(text, "history.yaml"))
    assert result.passed, result.describe()  # retries: 3 attempts by default
    refused = [e for e in result.events if e["event"] == "inference.refused"]
    if outcome == "refused":
        assert len(refused) == 1 and "history" in refused[0]["error"]
        assert [e["turn"] for e in result.events if e["event"] == "inference.started"] == ["t1"]
    else:
        assert not refused and started(result, "t2")["history_blocks"] == 2


async def test_ignoring_the_history_error_runs_on_an_empty_history() -> None:
    text = HISTORY.replace("KIND", "permanent").replace("TIMES", "1")
    broken = await run_scenario(
        parse_scenario(text, "history.yaml"), variants=("ignore-history-error",)
    )
    assert invariants(broken) == {"history-continuity"}
    assert started(broken, "t2")["history_blocks"] == 0
    assert any(e["event"] == "history.load_error_ignored" for e in broken.events)
    assert "ran without its history" in messages(broken, "history-continuity")[0]


async def test_async_snapshots_show_each_phase_and_the_final_save_comes_last(
    tmp_path: Path,
) -> None:
    db = tmp_path / "run.db"
    result = await run_scenario(load_scenario(SCENARIOS / "async_snapshots.yaml"), db=db)
    assert result.passed, result.describe()
    t1 = started(result, "t1")
    stored = snapshots(db, t1["turn_id"])
    assert [s["phase"] for s in stored][-1] == FINAL
    pre = next(s for s in stored if s["phase"] == PRE_INFERENCE)
    assert [b.kind for b in pre["blocks"]] == ["user"]
    # the writes overlapped the inference: a snapshot saved after the next phase was taken
    saves = [
        e for e in result.events if e["event"] == "snapshot.saved" and e["turn_id"] == t1["turn_id"]
    ]
    assert any(a["created_at_ms"] < b["created_at_ms"] < a["t_ms"] for a in saves for b in saves)


async def test_the_live_payload_bug_needs_a_write_that_runs_after_the_inference_moved_on() -> None:
    scenario = load_scenario(SCENARIOS / "async_snapshots.yaml")
    broken = await run_scenario(scenario, variants=("live-snapshot-payload",))
    assert invariants(broken) == {"phase-snapshot-faithful"}
    assert any(
        "(pre_inference) ends with a tool_use block" in m
        for m in messages(broken, "phase-snapshot-faithful")
    )
    text = (SCENARIOS / "async_snapshots.yaml").read_text().replace("durability: async", "")
    waited = await run_scenario(
        parse_scenario(text, "sync.yaml"), variants=("live-snapshot-payload",)
    )
    assert waited.passed  # a synchronous write serializes the turn before it moves on


async def test_resuming_copies_the_checkpoint_and_in_place_rewrites_it(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "resume_checkpoint.yaml")
    db = tmp_path / "run.db"
    result = await run_scenario(scenario, db=db)
    assert result.passed, result.describe()
    t1, t2 = started(result, "t1"), started(result, "t2")
    assert t2["resumed_from"] == t1["turn_id"] and t2["turn_id"] != t1["turn_id"]
    checkpoint = snapshots(db, t1["turn_id"])
    phases = [s["phase"] for s in checkpoint]  # resuming twice added nothing to it:
    assert phases == [PRE_INFERENCE, "post_inference", FINAL, FINAL]  # the hook's, the final's
    resumed = snapshots(db, t2["turn_id"])[0]["blocks"]
    assert [b.text for b in resumed[:-1]] == [b.text for b in checkpoint[-1]["blocks"]]
    broken = await run_scenario(scenario, variants=("resume-in-place",))
    assert "never-rewritten" in invariants(broken)
    assert any("rewrote the finished turn" in m for m in messages(broken, "never-rewritten"))


async def test_a_cloned_turn_id_is_named_by_distinct_turns() -> None:
    scenario = load_scenario(SCENARIOS / "history_attribution.yaml")
    broken = await run_scenario(scenario, variants=("clone-turn-id",))
    assert any("started under turn id" in m for m in messages(broken, "distinct-turns"))


async def test_a_profile_resolved_once_ignores_the_switch() -> None:
    scenario = load_scenario(SCENARIOS / "inventory_to_planner.yaml")
    broken = await run_scenario(scenario, variants=("profile-resolved-once",))
    found = [f for f in broken.failures if f.name == "switch-takes-effect"]
    assert found and found[0].expected == "planner@v1" and found[0].actual == "inventory@v1"
    assert found[0].where  # located at the switch that was ignored


def test_describe_prints_source_bug_substitution_and_the_catching_scenario() -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["variants", "--describe", "ignore-history-error", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["source"].startswith("pinocchio commit eee44ff2")
    assert d["invariants"] == ["history-continuity"]
    assert d["replay"].endswith("history_load_failure.yaml --variant ignore-history-error")
    text = runner.invoke(cli, ["variants", "--describe", "stamp-every-block"])
    assert text.exit_code == 0 and "block-attribution-stable" in text.output
    assert runner.invoke(cli, ["variants", "--describe", "no-such"]).exit_code == 2


def test_describe_fails_when_the_named_scenario_does_not_catch_it(tmp_path: Path) -> None:
    """A folder whose history_attribution.yaml is some other scenario: exit 1, not caught."""
    (tmp_path / "history_attribution.yaml").write_text(
        (SCENARIOS / "permanent_fault.yaml").read_text()
    )
    out = CliRunner().invoke(
        cli, ["variants", "--describe", "stamp-every-block", str(tmp_path), "--json"]
    )
    assert out.exit_code == 1, out.output
    assert json.loads(out.output)["caught_by"] == []


# -- the race: background snapshots vs jittered steps, found by exploring seeds -----------

RACE = SCENARIOS / "random_async_snapshots.yaml"


def explored(seeds: range, variants: tuple[str, ...] = ()) -> Any:
    from sim.runtime.variants import parse_variants
    from sim.scenario.batches import Source
    from sim.scenario.executors import InProcess
    from sim.scenario.explore import Settings, Target
    from sim.scenario.explore import explore as explore_targets
    from sim.scenario.parse import read_scenario_text

    target = Target(Source(str(RACE), read_scenario_text(RACE)), parse_variants(variants), seeds)
    return explore_targets([target], Settings(shrink=False), InProcess()).explorations[0]


def test_the_race_scenario_places_nothing_by_hand() -> None:
    from sim.scenario.actions import Sleep

    scenario = load_scenario(RACE)
    assert not any(isinstance(s.step, Sleep) for s in scenario.steps)
    assert all(p.jitter_ms for p in scenario.profiles)
    assert all(c.durability == "async" for c in scenario.conversations)


def test_explore_finds_the_live_payload_race_on_a_small_budget() -> None:
    """Seeds 8..15 hold hits (seed 10 among them); the default build passes them all, and
    the scenario's own seed misses the race: only exploring finds it."""
    assert explored(range(8, 16)).passed
    found = explored(range(8, 16), ("live-snapshot-payload",))
    assert found.failed and len(found.failed) < 8  # a race: some seeds, not all
    assert all({f.name for f in r.failures} == {"phase-snapshot-faithful"} for r in found.failed)


def test_the_live_payload_race_shrinks_to_one_turn(tmp_path: Path) -> None:
    from sim.scenario.shrink import shrink_failure, size_of

    scenario = load_scenario(RACE)
    out = tmp_path / "min.yaml"
    result = anyio.run(
        lambda: shrink_failure(
            scenario,
            10,
            ("live-snapshot-payload",),
            "phase-snapshot-faithful",
            out_path=str(out),
            max_runs=40,
        )
    )
    assert result.size.key() < size_of(scenario).key()
    shrunk = parse_scenario(result.text, str(out))
    assert len(shrunk.steps) == 1 and shrunk.steps[0].kind == "send"
    replay = anyio.run(
        lambda: run_scenario(shrunk, seed=result.seed, variants=("live-snapshot-payload",))
    )
    assert invariants(replay) == {"phase-snapshot-faithful"}


@pytest.mark.slow
def test_explore_finds_the_live_payload_race_within_200_seeds() -> None:
    assert explored(range(0, 200)).passed
    found = explored(range(0, 200), ("live-snapshot-payload",))
    assert 0 < len(found.failed) < 200


# -- turnsim check: what a database alone and a log alone show of these bugs ---------------


@pytest.mark.parametrize(
    ("stem", "variant", "invariant"),
    [
        ("history_attribution", "stamp-every-block", "block-attribution-stable"),
        ("async_snapshots", "live-snapshot-payload", "phase-snapshot-faithful"),
    ],
)
def test_a_database_alone_shows_the_content_bugs(
    tmp_path: Path, stem: str, variant: str, invariant: str
) -> None:
    from sim.check.db_check import check_sqlite

    scenario = load_scenario(SCENARIOS / f"{stem}.yaml")
    clean, broken = tmp_path / "clean.db", tmp_path / "broken.db"
    anyio.run(lambda: run_scenario(scenario, db=clean))
    anyio.run(lambda: run_scenario(scenario, variants=(variant,), db=broken))
    ok = check_sqlite(clean)
    assert ok.ok and invariant in ok.judged
    report = check_sqlite(broken)
    assert invariant in {f.invariant for f in report.findings}
    assert all(e.startswith("turn_snapshots ") for f in report.findings for e in f.evidence)
    assert {"history-continuity", "switch-takes-effect"} <= {n.invariant for n in report.not_judged}


def test_a_log_alone_finds_an_inference_fed_no_history(tmp_path: Path) -> None:
    from sim.check.log_check import check_log

    log = tmp_path / "run.jsonl"
    runner = CliRunner()
    path = str(SCENARIOS / "history_load_failure.yaml")
    args = ["run", path, "--variant", "ignore-history-error", "--log-file", str(log)]
    assert runner.invoke(cli, args).exit_code == 1
    from sim.logs.setup import configure_quiet

    configure_quiet()
    report = check_log(log)
    assert {f.invariant for f in report.findings} == {"history-continuity"}
    assert "history-continuity" in report.judged
    assert "block-attribution-stable" in {n.invariant for n in report.not_judged}
