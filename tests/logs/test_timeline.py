"""sim.logs.timeline: the timeline model (runs, conversations, turns) on logs written by
real runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sim.logs.read import read_events
from sim.logs.select import LogFilter, Selector
from sim.logs.setup import configure_quiet
from sim.logs.timeline import TimelineBuilder, build_timelines
from tests.logs.log_fixtures import late_events, run_log


@pytest.fixture(scope="module")
def late_log(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return late_events(tmp_path_factory.mktemp("late"))


def test_timeline_names_the_turn_that_got_the_wrong_runtime(
    late_log: list[dict[str, Any]],
) -> None:
    (run,) = build_timelines(late_log)
    assert (run.scenario, run.seed, run.variants, run.result) == (
        "inflight-switch",
        7,
        ("late-snapshot-runtime",),
        "fail",
    )
    findings = run.findings()
    assert [(c.conv_id, t.label) for c, t in findings] == [("inflight-switch.c1", "t2")]
    turn = findings[0][1]
    assert turn.runtime_key == "planner@v1" and turn.started_ms == 100
    assert [(t, phase, carried) for _, t, phase, carried, _, _ in turn.wrong] == [
        (300, "post_inference", "inventory@v1"),
        (350, "post_tools", "inventory@v1"),
        (550, "final", "inventory@v1"),
    ]
    switch = next(e for e in late_log if e["event"] == "profile.switched" and e["t_ms"] == 150)
    assert turn.raced == [(switch["seq"], 150, "planner@v1", "inventory@v1")]
    assert dict(turn.violations) == {"runtime-bound-at-start": 3, "nothing-lost": 3}
    # each violation sits on the save it is about (its at_seq)
    conv = run.conversations["inflight-switch.c1"]
    placed = {
        e.seq: sorted(v.invariant for v in e.violations) for e in conv.entries if e.violations
    }
    failed = [e["seq"] for e in late_log if e["event"] == "snapshot.save_failed"]
    assert placed == {s: ["nothing-lost", "runtime-bound-at-start"] for s in failed}
    # the in-flight switch is drawn inside t2's block
    raced_entry = next(e for e in conv.entries if e.seq == switch["seq"])
    assert raced_entry.turn is turn and raced_entry.inside and raced_entry.severity == "warn"


def test_timeline_of_a_correct_run_has_no_findings(tmp_path: Path) -> None:
    (run,) = build_timelines(read_events(str(run_log(tmp_path, "inflight_switch.yaml"))))
    assert run.result == "pass"
    assert run.findings() == []
    conv = run.conversations["inflight-switch.c1"]
    assert [t.label for t in conv.turns.values()] == ["t1", "t2", "t3"]
    assert all(e.severity != "bad" for e in conv.entries)
    (t2,) = [t for t in conv.turns.values() if t.label == "t2"]
    assert t2.stored == dict.fromkeys(
        ("pre_inference", "post_inference", "post_tools", "final"), "planner@v1"
    )
    assert len(t2.raced) == 1  # the switch still raced; the turn kept its runtime


def test_final_state_violations_go_to_the_stored_save_they_describe(tmp_path: Path) -> None:
    log = run_log(  # the memory store: on SQLite the write-once trigger refuses the rewrite
        tmp_path,
        "inflight_switch.yaml",
        "--variant",
        "late-snapshot-runtime+upsert-overwrite",
        "--store",
        "memory",
    )
    (run,) = build_timelines(read_events(str(log)))
    conv = run.conversations["inflight-switch.c1"]
    (t2,) = [t for t in conv.turns.values() if t.label == "t2"]
    assert {w[4] for w in t2.wrong} == {"inventory@v1"}  # stored, not only carried
    stored_wrong = [
        e
        for e in conv.entries
        if e.turn is t2 and e.event == "snapshot.saved" and e.data["runtime_key"] != "planner@v1"
    ]
    assert len(stored_wrong) == 3
    for entry in stored_wrong:
        kinds = sorted(v.invariant for v in entry.violations)
        assert kinds == ["never-rewritten", "runtime-bound-at-start", "runtime-bound-at-start"]
        assert sum(v.at_seq == 0 for v in entry.violations) == 1


def test_turns_without_ids_stay_apart(tmp_path: Path) -> None:
    log = run_log(tmp_path, "inflight_switch.yaml", "--variant", "default-turn-id")
    (run,) = build_timelines(read_events(str(log)))
    turns = list(run.conversations["inflight-switch.c1"].turns.values())
    assert [(t.label, t.no_turn_id) for t in turns] == [("t1", True), ("t2", True), ("t3", True)]
    assert len({t.inference_id for t in turns}) == 3
    assert all("no turn id" in t.name for t in turns)


def test_each_run_is_handed_over_when_it_finishes(tmp_path: Path) -> None:
    a = read_events(str(run_log(tmp_path, "inventory_to_planner.yaml", name="a")))
    configure_quiet()
    b = read_events(str(run_log(tmp_path, "tool_rounds.yaml", name="b")))
    builder = TimelineBuilder()
    handed = [len(builder.feed(e)) for e in a]
    assert handed == [0] * (len(a) - 1) + [1]  # at scenario.finished, not before
    assert builder.run.empty and builder.close() == []
    done = [run for e in b[:-1] for run in builder.feed(e)]
    assert done == []
    (unfinished,) = builder.close()  # a log cut short still shows what it has
    assert unfinished.scenario == "tool-rounds" and unfinished.result == ""


def test_filtered_out_run_boundaries_still_split_runs(tmp_path: Path) -> None:
    a = read_events(str(run_log(tmp_path, "inventory_to_planner.yaml", name="a")))
    configure_quiet()
    b = read_events(str(run_log(tmp_path, "tool_rounds.yaml", name="b")))
    select = Selector(LogFilter(convs=("c1",), events=("inference.*",)))
    builder = TimelineBuilder()
    runs = [run for e in a + b for run in builder.feed(e, select(e))] + builder.close()
    assert [(r.scenario, r.result, list(r.conversations)) for r in runs] == [
        ("inventory-to-planner", "pass", ["inventory-to-planner.c1"]),
        ("tool-rounds", "pass", ["tool-rounds.c1"]),
    ]
