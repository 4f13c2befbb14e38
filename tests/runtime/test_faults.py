"""Faults: save failures on either pipeline, a slow store, cancellation, actor crashes and
restarts, and a database that turns read-only mid-run. Nothing may be lost silently: every
save an inference makes is either stored or surfaced as a failure.

The shipped ``scenarios/fault_*.yaml`` run with the rest of the suite (the pytest plugin);
this file adds the matrices and the accounting that scenario steps cannot express.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from persisters.errors import PermanentStoreError, TransientStoreError
from persisters.model import TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from sim.runtime.world import World
from sim.scenario.actions import MakeReadOnly
from sim.scenario.director import Director
from sim.scenario.invariants import check_all
from sim.scenario.model import Located
from sim.scenario.parse import parse_scenario
from sim.scenario.result import Failure, ScenarioResult
from sim.scenario.runner import collect_state, run_scenario
from sim.scenario.steps import StepEnv

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

PROFILES = """\
profiles:
  inventory: {runtime_key: inventory@v1, latency_ms: 100, tool_rounds: 1, tool_latency_ms: 40}
  planner:   {runtime_key: planner@v1, latency_ms: 60}
conversations:
  c1: {session: s1, profile: inventory}
"""
#: saves per inference: the hook's pre_inference, post_inference, post_tools per round and
#: final, plus the final persister's one
SAVES = {"inventory@v1": 5, "planner@v1": 4}


def run(text: str, *, seed: int = 1, variants: tuple[str, ...] = (), db: Path) -> ScenarioResult:
    scenario = parse_scenario(text, "fault.yaml")
    return anyio.run(lambda: run_scenario(scenario, seed=seed, variants=variants, db=db))


def rows_per_inference(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(r[0] for r in conn.execute("SELECT inference_id FROM turn_snapshots"))


def account(result: ScenarioResult, db: Path) -> dict[str, int]:
    """Independent bookkeeping: every save an inference makes is stored or surfaced."""
    stored = rows_per_inference(db)
    surfaced: Counter[str] = Counter(
        e["inference_id"]
        for e in result.events
        if e["event"] in ("snapshot.save_failed", "turn.persist_failed")
    )
    figures = {"saves": 0, "stored": 0, "surfaced": 0}
    for e in result.events:
        if e["event"] != "inference.finished" or e["outcome"] != "completed":
            continue
        expected = SAVES[e["runtime_key"]]
        got = stored[e["inference_id"]] + surfaced[e["inference_id"]]
        assert got == expected, (e["turn"], stored[e["inference_id"]], surfaced)
        figures["saves"] += expected
        figures["stored"] += stored[e["inference_id"]]
        figures["surfaced"] += surfaced[e["inference_id"]]
    return figures


# -- save failures on either pipeline ---------------------------------------------------


@pytest.mark.parametrize("pipeline", ["snapshot", "final"])
@pytest.mark.parametrize(
    ("kind", "times", "surfaced"),
    [
        ("transient", 2, {"snapshot": 0, "final": 0}),
        ("transient", 3, {"snapshot": 1, "final": 1}),
        ("permanent", 1, {"snapshot": 1, "final": 1}),
        # every snapshot of t1 (4 phases) fails; the final persister saves once per turn (2)
        ("permanent", 4, {"snapshot": 4, "final": 2}),
    ],
    ids=["transient-retried", "transient-exhausted", "permanent-once", "permanent-every"],
)
def test_save_failures_are_retried_or_surfaced(
    tmp_path: Path, pipeline: str, kind: str, times: int, surfaced: dict[str, int]
) -> None:
    expected = surfaced[pipeline]
    expect = f"  - expect_failure: {{conv: c1, pipeline: {pipeline}, count: {expected}}}\n"
    text = (
        "name: save-faults\nretry: {attempts: 3, backoff_ms: 5}\n"
        + PROFILES
        + "steps:\n"
        + f"  - inject_fault: {{conv: c1, pipeline: {pipeline}, kind: {kind}, times: {times}}}\n"
        + "  - send: {conv: c1, turn: t1, prompt: one, wait: false}\n"
        + "  - sleep: 30\n"
        + "  - switch_profile: {conv: c1, profile: planner}      # t1 is in flight\n"
        + "  - wait_idle: c1\n"
        + "  - send: {conv: c1, turn: t2, prompt: two}\n"
        + expect
        + "  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1, outcome: completed}\n"
        + "  - expect_turn: {conv: c1, turn: t2, runtime_key: planner@v1, outcome: completed}\n"
    )
    db = tmp_path / "faults.db"
    result = run(text, db=db)
    assert result.passed, result.describe()
    figures = account(result, db)
    assert figures["surfaced"] == expected
    assert figures["stored"] == figures["saves"] - expected
    failed = [e for e in result.events if e["event"].endswith(("save_failed", "persist_failed"))]
    retries = [e for e in result.events if e["event"].endswith(("save_retry", "persist_retry"))]
    assert all(e["pipeline"] == pipeline and e["surfaced"] for e in failed)
    bound = {
        e["inference_id"]: e["runtime_key"]
        for e in result.events
        if e["event"] == "inference.started"
    }
    assert all(e["runtime_key"] == bound[e["inference_id"]] for e in failed)  # bound at start
    if kind == "transient":
        assert len(retries) == 2 and all(e["attempts"] == 3 for e in failed)
    else:
        assert not retries and all(e["attempts"] == 1 for e in failed)
    assert len(failed) == expected


def test_a_swallowed_snapshot_failure_is_caught(tmp_path: Path) -> None:
    """The checkers notice a save that was only logged (the test above can fail)."""
    text = (
        "name: swallowed\n"
        + PROFILES
        + "steps:\n"
        + "  - inject_fault: {conv: c1, pipeline: snapshot, phase: post_tools}\n"
        + "  - send: {conv: c1, turn: t1, prompt: one}\n"
    )
    db = tmp_path / "swallowed.db"
    result = run(text, variants=("swallow-snapshot-errors",), db=db)
    assert "nothing-lost" in {f.name for f in result.failures}
    with pytest.raises(AssertionError):
        account(result, db)


# -- a slow store -----------------------------------------------------------------------


def test_a_slow_store_delays_every_save_but_loses_nothing(tmp_path: Path) -> None:
    text = (SCENARIOS / "fault_slow_store.yaml").read_text()
    db = tmp_path / "slow.db"
    result = run(text, seed=23, db=db)
    assert result.passed, result.describe()
    starts = {
        e["inference_id"]: e["t_ms"] for e in result.events if e["event"] == "inference.started"
    }
    pre = [
        e["t_ms"] - starts[e["inference_id"]]
        for e in result.events
        if e["event"] == "snapshot.saved" and e["phase"] == "pre_inference"
    ]
    assert pre and all(d >= 300 for d in pre)  # each save takes longer than an inference
    assert sum(rows_per_inference(db).values()) == sum(
        1 for e in result.events if e["event"] in ("snapshot.saved", "turn.persisted")
    )


# -- cancellation -----------------------------------------------------------------------


def cancel_text(at: int) -> str:
    return (
        "name: cancel-anywhere\n"
        + PROFILES
        + "steps:\n"
        + "  - send: {conv: c1, turn: t1, prompt: one, wait: false}\n"
        + "  - switch_profile: {conv: c1, profile: planner, at: 20}\n"
        + f"  - sleep: {at}\n"
        + "  - cancel: c1\n"
        + "  - wait_idle: c1\n"
        + "  - send: {conv: c1, turn: t2, prompt: two}\n"
        + "  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}\n"
        + "  - expect_turn: {conv: c1, turn: t2, runtime_key: planner@v1, outcome: completed}\n"
        + "  - expect_turn_count: {conv: c1, count: 2}\n"
    )


# Between phases (15 ms past each 45 ms step) and, separately, at the very instant a save
# of the in-flight turn is being committed (t1 starts, and saves pre_inference, at 0).
@pytest.mark.parametrize(
    "at",
    [0, *range(15, 400, 45)],
)
def test_cancel_at_any_point_keeps_the_turn_whole(tmp_path: Path, at: int) -> None:
    db = tmp_path / "cancel.db"
    result = run(cancel_text(at), db=db)
    assert result.passed, result.describe()
    outcomes = {
        e["turn"]: e["outcome"] for e in result.events if e["event"] == "inference.finished"
    }
    assert outcomes["t1"] in ("cancelled", "completed")
    persisted = [e for e in result.events if e["event"] == "turn.persisted" and e["turn_id"]]
    assert len(persisted) == 2  # the final persister ran for the cancelled turn too


# -- actor crashes ----------------------------------------------------------------------


# t2 (planner@v1, 60 ms) starts at 240 and saves at 240 and 300: 0 and 60 after the sleep
# starts land on a save being committed.
@pytest.mark.parametrize(
    "at",
    [0, 60, *range(15, 330, 30)],
)
def test_a_crashed_actor_resumes_from_the_store(tmp_path: Path, at: int) -> None:
    text = (
        "name: crash-anywhere\n"
        + PROFILES
        + "steps:\n"
        + "  - send: {conv: c1, turn: t1, prompt: one}\n"
        + "  - switch_profile: {conv: c1, profile: planner}\n"
        + "  - send: {conv: c1, turn: t2, prompt: two, wait: false}\n"
        + f"  - sleep: {at}\n"
        + "  - crash: c1\n"
        + "  - send: {conv: c1, turn: t3, prompt: three}\n"
        + "  - expect_turn_count: {conv: c1, count: 3}\n"
        + "  - expect_conversation: {conv: c1, current_runtime_key: planner@v1, session: s1}\n"
        + "  - expect_turn: {conv: c1, turn: t3, runtime_key: planner@v1, outcome: completed}\n"
    )
    db = tmp_path / "crash.db"
    result = run(text, db=db)
    assert result.passed, result.describe()
    events = result.events
    assert sum(e["event"] == "conversation.restarted" for e in events) == 1
    started = [e for e in events if e["event"] == "inference.started"]
    assert [e["turn"] for e in started] == ["t1", "t2", "t3"]  # no duplicate, none lost
    assert len({e["turn_id"] for e in started}) == 3
    with sqlite3.connect(db) as conn:
        turns = conn.execute("SELECT turn_id, session_id, runtime_key FROM turns").fetchall()
    assert sorted(turns) == sorted((e["turn_id"], "s1", e["runtime_key"]) for e in started)


def test_crashing_past_the_restart_budget_fails_the_run_loudly(tmp_path: Path) -> None:
    crashes = "".join("  - crash: c1\n  - sleep: 1\n" for _ in range(4))
    text = "name: crash-loop\n" + PROFILES + "steps:\n" + crashes
    result = run(text, db=tmp_path / "loop.db")
    assert [f.kind for f in result.failures] == ["error"]
    assert result.failures[0].name == "InjectedCrash"
    assert sum(e["event"] == "conversation.crashed" for e in result.events) == 4


def test_a_crash_at_the_fault_point_loses_no_command(tmp_path: Path) -> None:
    text = (
        "name: crash-point\n"
        + PROFILES
        + "steps:\n"
        + "  - inject_fault: {point: actor.crash, conv: c1}\n"
        + "  - send: {conv: c1, turn: t1, prompt: one}\n"
        + "  - expect_turn_count: {conv: c1, count: 1}\n"
    )
    result = run(text, db=tmp_path / "point.db")
    assert result.passed, result.describe()


# -- the database turns read-only mid-run -----------------------------------------------


class QueryOnly(MakeReadOnly):
    """Plays ``make_readonly`` steps: the store's connection stops accepting writes, as a
    database file that became read-only does (SQLite: "attempt to write a readonly
    database")."""

    async def run(self, env: StepEnv) -> None:
        store: SQLiteTurnStore = env.world.raw_store  # type: ignore[assignment]

        def flip() -> None:
            with store._db.lock:
                store._db.conn.execute("PRAGMA query_only = ON")

        async def io() -> None:
            await anyio.to_thread.run_sync(flip)

        await env.world.kernel.io(io)


READ_ONLY = """\
name: read-only
profiles:
  inventory: {runtime_key: inventory@v1, latency_ms: 100}
  planner:   {runtime_key: planner@v1, latency_ms: 100}
conversations:
  c1: {session: s1, profile: inventory}
  c2: {session: s2, profile: planner}
steps:
  - send: {conv: c1, turn: t1, prompt: one}
  - send: {conv: c2, turn: u1, prompt: two, wait: false}
  - sleep: 50
  - sleep: 0
  - send: {conv: c1, turn: t2, prompt: three}
  - wait_idle: all
"""


async def run_read_only(text: str, flip_at: int) -> tuple[list[Failure], list[Any], Any]:
    """Run with the step at position ``flip_at`` replaced by ``make_readonly``."""
    scenario = parse_scenario(text, "read-only.yaml")
    steps = list(scenario.steps)
    steps[flip_at] = Located(steps[flip_at].index, QueryOnly(), steps[flip_at].where)
    scenario = scenario.with_steps(tuple(steps))
    with tempfile.TemporaryDirectory() as tmp:
        store = await SQLiteTurnStore.open(Path(tmp) / "ro.db")
        try:
            world = World(seed=1, store=store, profiles=scenario.registry(), scenario=scenario.name)
            director = Director(world, scenario)
            failures = []
            try:
                await world.run(director.run)
            except Exception as exc:  # what run_scenario would report as an error
                failures.append(Failure("error", type(exc).__name__, str(exc)))
            world.recorder.closed = False
            state = await collect_state(world, director)
            violations = check_all(state)
            return director.failures + failures, world.recorder.events, (state, violations)
        finally:
            await store.close()


def test_a_read_only_store_refuses_writes_as_permanent_errors(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SQLiteTurnStore.open(tmp_path / "ro.db")
        try:
            opts = TurnSaveOptions(runtime_key="inventory@v1", inference_id="i1")
            await store.save("c", "s", "t1", "final", 1, "{}", opts)
            with store._db.lock:
                store._db.conn.execute("PRAGMA query_only = ON")
            with pytest.raises(PermanentStoreError) as caught:
                await store.save("c", "s", "t2", "final", 2, "{}", opts)
            assert not isinstance(caught.value, TransientStoreError)  # retrying cannot help
            assert "readonly" in str(caught.value)
            assert [t.turn_id for t in await store.list_turns("c")] == ["t1"]  # reads work
        finally:
            await store.close()

    anyio.run(main)


def test_read_only_mid_run_surfaces_every_refused_save() -> None:
    failures, events, (state, violations) = anyio.run(run_read_only, READ_ONLY, 3)
    assert not [f for f in failures if f.kind == "error"], failures
    refused = [e for e in events if e["event"] in ("snapshot.save_failed", "turn.persist_failed")]
    assert refused and all("readonly" in e["error"] for e in refused)
    # nothing lost silently: every refused save is reported by the run
    lost = [v for v in violations if v.invariant == "nothing-lost"]
    assert len(lost) == len(refused)
    # what was stored before the flip is intact
    assert {s.phase for s in state.snapshots if s.conv_id == "read-only.c1"} >= {"final"}


def test_a_switch_on_a_read_only_database_fails_visibly() -> None:
    """The pointer cannot be written: the run must say so (naming the cause), not stall."""
    text = READ_ONLY.replace(
        "  - send: {conv: c1, turn: t2, prompt: three}\n",
        "  - switch_profile: {conv: c1, profile: planner}\n",
    )
    failures, _, (_, violations) = anyio.run(run_read_only, text, 3)
    assert not [f for f in failures if f.name == "stalled"], failures
    reported = [f.message for f in failures] + [v.message for v in violations]
    assert any("readonly" in m for m in reported), reported
