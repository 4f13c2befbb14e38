"""The catalogue's lifecycle bugs (issue 18 rows 3, 10, 11, 12, 13, 20): each invariant
passes the correct build and names its bug variant; the model each one needed (server
restarts, recovery on boot, paired tool calls, scheduled events, write policies) works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from persisters.model import FINAL, TurnSnapshot
from sim.runtime.profiles import ProfileRegistry
from sim.runtime.variants import BUILT_IN, parse_variants
from sim.scenario.batches import Source
from sim.scenario.executors import InProcess
from sim.scenario.explore import Settings, Target
from sim.scenario.explore import explore as explore_targets
from sim.scenario.invariants import INVARIANTS, check_all
from sim.scenario.lifecycle_actions import Schedule
from sim.scenario.lifecycle_invariants import (
    check_no_zombie_inflight,
    check_single_writer,
    check_terminal_is_last,
    check_tool_pairing,
)
from sim.scenario.parse import load_scenario, parse_scenario, read_scenario_text
from sim.scenario.result import ScenarioResult
from sim.scenario.run_state import RunState
from sim.scenario.runner import run_scenario
from sim.scenario.shrink import shrink_failure

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

#: variant -> (the scenario that catches it, the invariant that names it)
CATALOGUE = {
    "restart-id-counter": ("server_restart", "distinct-turns"),
    "advance-before-durable": ("slow_tool_results", "durable-before-advance"),
    "unpaired-tool-call": ("crash_mid_tool_round", "tool-pairing"),
    "no-restart-recovery": ("server_restart", "no-zombie-inflight"),
    "unlocked-scheduled-events": ("scheduled_reminders", "single-writer"),
    "timer-batched-snapshots": ("inventory_to_planner", "terminal-is-last"),
}


def run(stem: str, *variants: str, seed: int | None = None) -> ScenarioResult:
    scenario = load_scenario(SCENARIOS / f"{stem}.yaml")
    return anyio.run(lambda: run_scenario(scenario, seed=seed, variants=variants))


def invariants(result: ScenarioResult) -> set[str]:
    return {f.name for f in result.failures if f.kind == "invariant"}


def stored(result: ScenarioResult, label: str) -> list[dict[str, Any]]:
    """The saved events of the turn a scenario calls ``label``."""
    turn_id = next(
        e["turn_id"]
        for e in result.events
        if e["event"] == "inference.started" and e.get("turn") == label
    )
    return [e for e in result.events if e.get("turn_id") == turn_id]


# -- each variant: its source, its scenario, its invariant ------------------------------


@pytest.mark.parametrize("variant", sorted(CATALOGUE))
def test_the_variant_names_its_source_and_its_catcher(variant: str) -> None:
    stem, invariant = CATALOGUE[variant]
    entry = BUILT_IN[variant]
    assert entry.source  # system and issue/commit
    bug, substitution = entry.description.split(" Substitution: ")  # the bug, then the swap
    assert bug.endswith(".") and substitution.endswith(".")
    assert entry.caught_by == stem and (SCENARIOS / f"{stem}.yaml").exists()
    assert invariant in INVARIANTS


@pytest.mark.parametrize("variant", sorted(CATALOGUE))
def test_the_invariant_passes_the_correct_build_and_names_the_variant(variant: str) -> None:
    stem, invariant = CATALOGUE[variant]
    clean = run(stem)
    assert clean.passed, clean.describe()
    broken = run(stem, variant)
    assert invariant in invariants(broken), broken.describe()
    assert f"--variant {variant}" in broken.replay


# -- the model each needed --------------------------------------------------------------


def test_a_restart_interrupts_the_inflight_turn_and_the_boot_closes_it() -> None:
    result = run("server_restart")
    names = [e["event"] for e in result.events]
    assert names.index("server.stopped") < names.index("server.started")
    (stopped,) = [e for e in result.events if e["event"] == "server.stopped"]
    (recovered,) = [e for e in result.events if e["event"] == "turn.recovered"]
    assert stopped["interrupted"] == [recovered["turn_id"]]
    assert recovered["runtime_key"] == "planner@v1"  # the turn's own, not re-resolved
    t2 = stored(result, "t2")
    assert not [e for e in t2 if e["event"] == "inference.finished"]  # the process died
    (final,) = [e for e in t2 if e["event"] == "turn.persisted"]
    assert final["seq"] > recovered["seq"] and final["runtime_key"] == "planner@v1"
    ids = [e["turn_id"] for e in result.events if e["event"] == "inference.started"]
    assert len(ids) == len(set(ids)) == 4  # new turns never reuse an id across the restart


def test_the_counter_variant_reuses_an_id_stored_before_the_restart() -> None:
    result = run("server_restart", "restart-id-counter")
    ids = [e["turn_id"] for e in result.events if e["event"] == "inference.started"]
    assert ids == ["turn-1", "turn-2", "turn-1", "turn-2"]


def test_the_final_save_answers_a_tool_call_left_open(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "crash_mid_tool_round.yaml")
    db = tmp_path / "run.db"

    async def main() -> list[TurnSnapshot]:
        from persisters.model import MAX_LIMIT, TurnQuery
        from persisters.sqlite_store import SQLiteTurnStore

        result = await run_scenario(scenario, db=db)
        assert result.passed, result.describe()
        store = await SQLiteTurnStore.open(db)
        try:
            return await store.list(TurnQuery(phase=FINAL, limit=MAX_LIMIT))
        finally:
            await store.close()

    finals = anyio.run(main)
    ended = [json.loads(s.payload) for s in finals]
    ended = [t for t in ended if t["data"].get("status") in ("cancelled", "interrupted")]
    assert {t["data"]["status"] for t in ended} == {"cancelled", "interrupted"}
    for turn in ended:
        kinds = [b["kind"] for b in turn["blocks"]]
        assert kinds.count("tool_call") == kinds.count("tool_use") >= 1
        assert turn["blocks"][-1]["data"]["synthetic"] is True


def test_the_engine_waits_for_a_tool_round_write_before_the_next_model_call() -> None:
    result = run("slow_tool_results")
    saves = [e for e in result.events if e["event"] in ("snapshot.saved", "turn.persisted")]
    post_tools = next(e for e in saves if e["phase"] == "post_tools")
    later = [e for e in saves if e["created_at_ms"] > post_tools["created_at_ms"]]
    assert later and all(e["created_at_ms"] >= post_tools["t_ms"] for e in later)
    assert post_tools["t_ms"] - post_tools["created_at_ms"] == 250  # the retry's backoff


def test_a_scheduled_event_queues_behind_the_running_inference() -> None:
    result = run("scheduled_reminders")
    fired = next(e for e in result.events if e["event"] == "schedule.fired")
    assert fired["delivery"] == "actor"
    queued = next(e for e in result.events if e["event"] == "prompt.queued" and e["turn"] == "r1")
    assert queued["inflight"] is True  # the seed fires it mid-inference; it waits its turn


def test_schedule_round_trips_and_simplifies() -> None:
    text = (
        "name: s\nprofiles: {p: {runtime_key: p@v1}}\nconversations: {c1: {profile: p}}\n"
        "steps:\n  - schedule: {conv: c1, turn: r1, prompt: hi, at: random, within_ms: 30}\n"
        "  - restart_server: {}\n"
    )
    steps = [s.step for s in parse_scenario(text, "s.yaml").steps]
    assert steps[0] == Schedule("c1", "hi", "r1", "random", 30)
    assert steps[0].simpler() == Schedule("c1", "hi", "r1")
    assert steps[1].to_yaml() == []


# -- the race: explore finds it without a hand-placed race, and shrinks it ---------------


def explore(seeds: range, variants: tuple[str, ...] = ()) -> Any:
    path = SCENARIOS / "scheduled_reminders.yaml"
    target = Target(Source(str(path), read_scenario_text(path)), parse_variants(variants), seeds)
    return explore_targets([target], Settings(shrink=False), InProcess()).explorations[0]


def test_the_reminder_race_is_not_placed_by_hand() -> None:
    scenario = load_scenario(SCENARIOS / "scheduled_reminders.yaml")
    schedules = [s.step for s in scenario.steps if isinstance(s.step, Schedule)]
    assert schedules and all(s.at == "random" for s in schedules)
    assert not any(s.kind == "sleep" for s in scenario.steps)
    assert any(p.jitter_ms for p in scenario.profiles)


def test_explore_finds_the_unlocked_reminder_and_it_shrinks(tmp_path: Path) -> None:
    assert explore(range(0, 20)).passed
    found = explore(range(0, 20), ("unlocked-scheduled-events",))
    failed = sorted(f.seed for f in found.failed)
    assert failed and len(failed) < 20  # the seed decides: a race
    scenario = load_scenario(SCENARIOS / "scheduled_reminders.yaml")
    shrunk = anyio.run(
        lambda: shrink_failure(
            scenario,
            failed[0],
            ("unlocked-scheduled-events",),
            "single-writer",
            out_path=str(tmp_path / "small.yaml"),
            max_runs=60,
        )
    )
    assert "single-writer" in {f.name for f in shrunk.failures}
    small = parse_scenario(shrunk.text, "small.yaml")
    assert len(small.steps) <= 3 < len(scenario.steps)
    assert any(isinstance(s.step, Schedule) for s in small.steps)


@pytest.mark.slow
def test_explore_finds_the_unlocked_reminder_within_200_seeds() -> None:
    assert explore(range(0, 200)).passed
    found = explore(range(0, 200), ("unlocked-scheduled-events",))
    assert len(found.failed) > 20


# -- the checkers on hand-made states ---------------------------------------------------


def state(events: list[dict[str, Any]], snapshots: list[TurnSnapshot] = ()) -> RunState:
    numbered = [{"seq": i, "t_ms": 0, **e} for i, e in enumerate(events, 1)]
    return RunState(numbered, list(snapshots), [], [], ProfileRegistry([]))


def snap(turn: str, phase: str, snapshot_id: int, blocks: list[dict[str, Any]]) -> TurnSnapshot:
    payload = json.dumps({"blocks": blocks, "data": {}, "id": turn, "metadata": {}})
    return TurnSnapshot("c", "s", turn, phase, "r@v1", "i-" + turn, 0, payload, snapshot_id)


def test_single_writer_forgets_what_a_dead_process_ran() -> None:
    start = {"event": "inference.started", "conv_id": "c", "turn_id": "t"}
    overlapping = state([{**start, "inference_id": "a"}, {**start, "inference_id": "b"}])
    assert [v.invariant for v in check_single_writer(overlapping)] == ["single-writer"]
    restarted = state(
        [
            {**start, "inference_id": "a"},
            {"event": "server.stopped"},
            {**start, "inference_id": "b"},
        ]
    )
    assert list(check_single_writer(restarted)) == []


def test_tool_pairing_reads_the_final_saves_in_the_history() -> None:
    final = {"event": "turn.persisted", "conv_id": "c", "turn_id": "t", "phase": FINAL}
    assert list(check_tool_pairing(state([{**final, "snapshot_id": 1}]))) == []
    unpaired = {**final, "snapshot_id": 2, "open_tool_calls": 1}
    (found,) = check_tool_pairing(state([unpaired]))
    assert (found.actual, found.seq) == ("1 unpaired", 1)


def test_no_zombie_spares_a_turn_whose_final_save_failed_visibly() -> None:
    snaps = [snap("t", "pre_inference", 1, [])]
    assert [v.turn_id for v in check_no_zombie_inflight(state([], snaps))] == ["t"]
    failed = {"event": "turn.persist_failed", "conv_id": "c", "turn_id": "t", "phase": FINAL}
    assert list(check_no_zombie_inflight(state([failed], snaps))) == []


def test_terminal_is_last_reads_the_store_too() -> None:
    snaps = [snap("t", FINAL, 1, []), snap("t", "post_inference", 2, [])]
    found = list(check_terminal_is_last(state([], snaps)))
    assert [(v.invariant, v.phase) for v in found] == [("terminal-is-last", "post_inference")]
    assert {v.invariant for v in check_all(state([], snaps))} >= {"terminal-is-last"}


def test_the_timeline_shows_the_interrupted_turn() -> None:
    from sim.logs.timeline import build_timelines

    (timeline,) = build_timelines(run("server_restart").events)
    turns = {t.label: t for c in timeline.conversations.values() for t in c.turns.values()}
    assert turns["t2"].outcome == "interrupted" and turns["t2"].finished
    (zombie,) = build_timelines(run("server_restart", "no-restart-recovery").events)
    turns = {t.label: t for c in zombie.conversations.values() for t in c.turns.values()}
    assert turns["t2"].outcome == ""  # nothing closed it: still running, for ever


RESTART_AT = """\
name: restart-at
profiles:
  tools: {runtime_key: tools@v1, latency_ms: 60, tool_rounds: 2, tool_latency_ms: 40}
  loop: {runtime_key: loop@v1, latency_ms: 50, tool_rounds: 1, phase_pattern: toolloop}
conversations:
  c1: {session: s1, profile: tools}
  c2: {session: s2, profile: loop}
steps:
  - send: {conv: c1, turn: a1, prompt: one, wait: false}
  - send: {conv: c1, turn: a2, prompt: queued, wait: false}
  - send: {conv: c2, turn: b1, prompt: two, wait: false}
  - switch_profile: {conv: c1, profile: loop, at: 70}
  - sleep: %d
  - restart_server: {}
  - send: {conv: c1, turn: a3, prompt: after}
  - send: {conv: c2, turn: b2, prompt: after}
  - wait_idle: all
"""


@pytest.mark.parametrize("delay", [0, 1, 30, 59, 60, 61, 100, 130, 170, 240, 400])
def test_a_restart_at_any_point_keeps_every_turn_whole(delay: int) -> None:
    """Wherever the process dies (mid model call, mid save, mid tool, with a prompt queued
    or a switch pending), every invariant holds after the boot and new turns run."""
    scenario = parse_scenario(RESTART_AT % delay, "restart_at.yaml")
    result = anyio.run(lambda: run_scenario(scenario))
    assert result.passed, result.describe()
    outcomes = [e["outcome"] for e in result.events if e["event"] == "inference.finished"]
    assert outcomes[-2:] == ["completed", "completed"]


def test_durable_before_advance_compares_each_stamp_with_the_time_stored() -> None:
    from sim.scenario.lifecycle_invariants import check_durable_before_advance

    def save(event: str, phase: str, stamp: int, settled: int) -> dict[str, Any]:
        return {
            "event": event,
            "conv_id": "c",
            "turn_id": "t",
            "inference_id": "i",
            "phase": phase,
            "created_at_ms": stamp,
            "t_ms": settled,
        }

    tools = save("snapshot.saved", "post_tools", 100, 300)
    early = save("snapshot.saved", "post_inference", 200, 200)  # taken before t=300
    (found,) = check_durable_before_advance(state([tools, early]))
    assert (found.phase, found.actual) == ("post_tools", "stored at t=300ms")
    declared = {"event": "inference.started", "inference_id": "i", "durability": "async"}
    assert list(check_durable_before_advance(state([declared, tools, early]))) == []
    late = save("snapshot.saved", "post_inference", 300, 300)  # taken once it was stored
    assert list(check_durable_before_advance(state([tools, late]))) == []
    # a write that failed for good is settled when its failure is surfaced (nothing to wait
    # for); its event carries no stamp, so only stored writes are held to the rule
    failed = save("snapshot.save_failed", "post_tools", 100, 300)
    assert list(check_durable_before_advance(state([failed, early]))) == []


@pytest.mark.parametrize(
    ("stem", "variant", "invariant"),
    [
        ("crash_mid_tool_round", "unpaired-tool-call", "tool-pairing"),
        ("inventory_to_planner", "timer-batched-snapshots", "terminal-is-last"),
    ],
)
def test_a_database_alone_shows_the_unpaired_call_and_the_late_snapshot(
    tmp_path: Path, stem: str, variant: str, invariant: str
) -> None:
    from sim.check.db_check import check_sqlite

    scenario = load_scenario(SCENARIOS / f"{stem}.yaml")
    clean, broken = tmp_path / "clean.db", tmp_path / "broken.db"
    anyio.run(lambda: run_scenario(scenario, db=clean))
    anyio.run(lambda: run_scenario(scenario, db=broken, variants=(variant,)))
    assert check_sqlite(clean).ok
    report = check_sqlite(broken)
    assert invariant in report.judged
    found = [f for f in report.findings if f.invariant == invariant]
    assert found and all(e.startswith("turn_snapshots ") for f in found for e in f.evidence)
