"""Real behaviour the simulator reproduces on request: the real tool loop's hook calls, a
final persister that runs only on success and drops its error, a profile whose runtime
version changes during a run, the session taken from the turn's metadata, and the
command-line persister as a first writer (issue 15)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from persisters.errors import InvalidSaveError
from persisters.memory_store import MemoryTurnStore
from persisters.model import KEY_SESSION_ID, Turn, TurnQuery
from persisters.pipeline import SaveRequest, session_from_metadata
from persisters.sqlite_store import SQLiteTurnStore
from sim import Profile, ProfileRegistry, World, build
from sim.errors import UnknownProfileError
from sim.scenario.parse import load_scenario, parse_scenario
from sim.scenario.runner import run_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"

PRE, POST, TOOLS, FINAL = "pre_inference", "post_inference", "post_tools", "final"


def profiles(pattern: str) -> ProfileRegistry:
    return ProfileRegistry(
        [
            Profile("researcher", "researcher@v1", tool_rounds=2, phase_pattern=pattern),
            Profile("inventory", "inventory@v1", phase_pattern=pattern),
        ]
    )


async def one_turn(
    tmp_path: Path, pattern: str, slug: str, variants: tuple[str, ...] = ()
) -> tuple[World, Any]:
    store = await SQLiteTurnStore.open(tmp_path / f"{pattern}.db")
    world = World(seed=5, store=store, profiles=profiles(pattern), variants=build(variants))

    async def story() -> Any:
        c1 = world.open_conversation("c1", profile=slug, session_id="s1")
        return await c1.send("go")

    prompt = await world.run(story)
    await store.close()
    return world, prompt


def hook_phases(world: World) -> list[str]:
    return [e["phase"] for e in world.recorder.events if e["event"] == "snapshot.saved"]


# -- the tool loop's phase pattern ---------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("slug", "turnsim", "toolloop"),
    [
        ("inventory", [PRE, POST, FINAL], [PRE, POST]),
        (
            "researcher",
            [PRE, POST, TOOLS, TOOLS, FINAL],
            [PRE, POST, TOOLS, PRE, POST, TOOLS, PRE, POST],
        ),
    ],
)
async def test_the_tool_loop_calls_the_hook_around_every_model_call_and_never_at_final(
    tmp_path: Path, slug: str, turnsim: list[str], toolloop: list[str]
) -> None:
    old_world, _ = await one_turn(tmp_path, "turnsim", slug)
    new_world, _ = await one_turn(tmp_path, "toolloop", slug)
    assert hook_phases(old_world) == turnsim  # the default stays what it was
    assert hook_phases(new_world) == toolloop
    # what the invariant nothing-lost expects is exactly what the engine does
    assert profiles("toolloop").get(slug).hook_phases() == toolloop
    assert profiles("turnsim").get(slug).hook_phases() == turnsim
    # the final persister saves final either way; same blocks, same virtual time
    for world in (old_world, new_world):
        persisted = [e for e in world.recorder.events if e["event"] == "turn.persisted"]
        assert [e["phase"] for e in persisted] == [FINAL]
    assert new_world.now_ms() == old_world.now_ms()
    old_rows = sqlite3.connect(tmp_path / "turnsim.db").execute(
        "SELECT payload FROM turn_snapshots WHERE phase = 'final' ORDER BY snapshot_id DESC"
    )
    new_rows = sqlite3.connect(tmp_path / "toolloop.db").execute(
        "SELECT payload FROM turn_snapshots WHERE phase = 'final'"
    )
    assert next(old_rows)[0] == next(new_rows)[0]


def test_an_unknown_phase_pattern_is_refused_where_it_is_written() -> None:
    text = (
        "name: x\nprofiles:\n  p: {runtime_key: p@v1, phase_pattern: geppetto}\n"
        "conversations:\n  c1: {profile: p}\nsteps:\n  - sleep: 1\n"
    )
    with pytest.raises(ValueError, match="phase_pattern 'geppetto' is not known; expected one"):
        parse_scenario(text, "x.yaml")


# -- the final persister that runs only on success and drops its error ---------------------


def run_file(
    name: str, variants: str = "", db: Path | None = None, kept: list[Any] | None = None
) -> Any:
    """Run a shipped scenario; with ``kept``, on a memory store appended to it (its data
    stays readable after the run closed it)."""
    scenario = load_scenario(SCENARIOS / name)
    chosen = [v for v in variants.split("+") if v]
    make = None
    if kept is not None:

        async def make(on_conflict: Any) -> MemoryTurnStore:
            kept.append(MemoryTurnStore(on_conflict=on_conflict))
            return kept[-1]

    return anyio.run(lambda: run_scenario(scenario, variants=chosen, db=db, fresh=make))


def memory_turn_rows(store: MemoryTurnStore) -> dict[str, str]:
    async def rows() -> dict[str, str]:
        return {
            t.turn_id: t.runtime_key
            for c in await store.conversations.list()
            for t in await store.list_turns(c.conv_id)
        }

    return anyio.run(rows)


def turn_rows(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT turn_id, runtime_key FROM turns"))


def test_final_on_success_only_leaves_a_failed_turn_on_the_new_runtime_for_good(
    tmp_path: Path,
) -> None:
    """As the real system ran: the late hook rewrites the row, and no final save of the
    failed inference puts the bound runtime back."""
    # The memory store: it reproduces the overwrite the SQLite file's triggers refuse.
    kept: list[MemoryTurnStore] = []
    run_file("real_tool_loop.yaml", "late-snapshot-runtime+upsert-overwrite", kept=kept)
    real = run_file(
        "real_tool_loop.yaml",
        "late-snapshot-runtime+upsert-overwrite+final-on-success-only",
        kept=kept,
    )
    a, b = kept
    failed = [e for e in real.events if e["event"] == "inference.finished" and e["error"]]
    (t3,) = [e["turn_id"] for e in failed]
    assert memory_turn_rows(a)[t3] == "researcher@v1"  # the final save put it back
    assert memory_turn_rows(b)[t3] == "inventory@v1"  # nothing did
    named = {f.name for f in real.failures if f.kind == "invariant"}
    assert {"runtime-bound-at-start", "never-rewritten", "nothing-lost"} <= named


def test_final_on_success_only_saves_no_failed_turn_and_says_nothing(tmp_path: Path) -> None:
    result = run_file("real_tool_loop.yaml", "final-on-success-only")
    finished = {
        e["inference_id"]: e["outcome"]
        for e in result.events
        if e["event"] == ("inference.finished")
    }
    persisted = {e["inference_id"] for e in result.events if e["event"] == "turn.persisted"}
    assert persisted == {i for i, outcome in finished.items() if outcome == "completed"}
    assert set(finished.values()) == {"completed", "failed"}
    # the real runner logged nothing: no event beyond what the default build records
    assert {e["event"] for e in result.events} <= {
        e["event"] for e in run_file("real_tool_loop.yaml").events
    } | {"invariant.violated", "expectation.failed"}


def test_final_on_success_only_drops_the_final_persisters_error(tmp_path: Path) -> None:
    clean = run_file("fault_final_persister_permanent.yaml")
    dropped = run_file("fault_final_persister_permanent.yaml", "final-on-success-only")
    assert clean.passed
    assert [e for e in clean.events if e["event"] == "turn.persist_failed"]
    assert not [e for e in dropped.events if e["event"] == "turn.persist_failed"]
    named = {f.name for f in dropped.failures}
    assert "nothing-lost" in named and "expect_failure" in named


# -- a profile whose runtime version changes during a run ----------------------------------


def test_a_registry_update_changes_only_the_runtime() -> None:
    registry = ProfileRegistry([Profile("rebuilder", "rebuilder@v1", latency_ms=7)])
    assert registry.update("rebuilder", " rebuilder@v2 ") == "rebuilder@v1"
    assert registry.get("rebuilder") == Profile("rebuilder", "rebuilder@v2", latency_ms=7)
    with pytest.raises(UnknownProfileError, match="unknown profile 'nope'"):
        registry.update("nope", "x@v1")


@pytest.mark.anyio
async def test_only_conversations_on_the_profile_move_and_only_when_it_changed(
    tmp_path: Path,
) -> None:
    store = await SQLiteTurnStore.open(tmp_path / "u.db")
    registry = ProfileRegistry(
        [Profile("rebuilder", "rebuilder@v1"), Profile("inventory", "inventory@v1")]
    )
    world = World(seed=1, store=store, profiles=registry)

    async def story() -> None:
        c1 = world.open_conversation("c1", profile="rebuilder", session_id="s1")
        c2 = world.open_conversation("c2", profile="inventory", session_id="s2")
        await c1.refresh_profile("rebuilder")  # nothing changed yet: no switch
        registry.update("rebuilder", "rebuilder@v2")
        for conv in (c1, c2):
            await conv.refresh_profile("rebuilder")
        assert (c1.current_runtime_key, c2.current_runtime_key) == (
            "rebuilder@v2",
            "inventory@v1",
        )

    await world.run(story)
    switches = [e for e in world.recorder.events if e["event"] == "profile.switched"]
    assert [(e["conv_id"], e["reason"], e["runtime_key"]) for e in switches] == [
        ("c1", "profile_updated", "rebuilder@v2")
    ]
    assert (await store.conversations.get("c1")).current_runtime_key == "rebuilder@v2"
    await store.close()


# -- the session taken from the turn's metadata --------------------------------------------


def request(session: str, metadata: dict[str, Any]) -> SaveRequest:
    return SaveRequest(
        pipeline="snapshot",
        conv_id="c1",
        session_id=session,
        turn_id="t1",
        phase=PRE,
        turn=Turn(id="t1", metadata=metadata),
        bound_runtime_key="r@v1",
        current_runtime=lambda: "r@v1",
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("handed", "metadata", "expected"),
    [
        ("s1", {KEY_SESSION_ID: "s2"}, "s1"),  # the handed session wins
        ("", {KEY_SESSION_ID: " s2 "}, "s2"),
        (" ", {KEY_SESSION_ID: "s2"}, "s2"),
    ],
)
async def test_the_session_comes_from_the_metadata_when_none_is_handed(
    handed: str, metadata: dict[str, Any], expected: str
) -> None:
    req = request(handed, metadata)
    await session_from_metadata(req, None)  # type: ignore[arg-type]
    assert req.session_id == expected


@pytest.mark.anyio
@pytest.mark.parametrize("metadata", [{}, {KEY_SESSION_ID: "  "}, {KEY_SESSION_ID: 7}])
async def test_no_session_either_way_is_refused(metadata: dict[str, Any]) -> None:
    with pytest.raises(InvalidSaveError, match="has no session"):
        await session_from_metadata(request("", metadata), None)  # type: ignore[arg-type]


def test_a_conversation_without_a_session_of_its_own_stores_under_the_metadata_one() -> None:
    """The shipped scenario checks every turn's stored session (expect_turn: session)."""
    result = run_file("session_from_metadata.yaml")
    assert result.passed, result.describe()
    saves = [e for e in result.events if e["event"] in ("snapshot.saved", "turn.persisted")]
    assert saves and {e["session_id"] for e in saves} == {"s1"}


# -- the command-line persister as a first writer ------------------------------------------


def test_a_refusal_the_scenario_did_not_expect_fails_the_step(tmp_path: Path) -> None:
    text = (
        "name: cli\nprofiles:\n  p: {runtime_key: p@v1}\nconversations:\n"
        "  c1: {session: s1, profile: p}\nsteps:\n"
        "  - cli_save: {conv: c1, turn: k1, runtime_key: ''}\n"
        "  - cli_save: {conv: c1, turn: k2, runtime_key: p@v1, metadata_session: false}\n"
    )
    result = anyio.run(lambda: run_scenario(parse_scenario(text, "cli.yaml")))
    messages = [f.message for f in result.failures]
    assert len(messages) == 2, result.describe()
    assert "has no runtime key" in messages[0]
    assert "sessionID is empty" in messages[1]


@pytest.mark.anyio
async def test_cli_turns_read_back_like_any_other(tmp_path: Path) -> None:
    result = await run_scenario(
        load_scenario(SCENARIOS / "cli_first_writer.yaml"), db=tmp_path / "c"
    )
    assert result.passed, result.describe()
    async with await SQLiteTurnStore.open(tmp_path / "c") as store:
        snaps = await store.list(TurnQuery(conv_id="cli-first-writer.c1", limit=100))
    by_writer = {(s.session_id, s.runtime_key) for s in snaps if '"writer":"cli"' in s.payload}
    assert by_writer == {("s1", "planner@v1"), ("s1", "planner"), ("s9", "planner@v1")}


def test_expect_turn_names_the_session_a_turn_is_stored_under() -> None:
    text = (
        "name: s\nprofiles:\n  p: {runtime_key: p@v1}\nconversations:\n"
        "  c1: {session: s1, profile: p}\nsteps:\n"
        "  - cli_save: {conv: c1, turn: k1, runtime_key: p@v1, session: s9}\n"
        "  - expect_turn: {conv: c1, turn: k1, session: s9}\n"
        "  - expect_turn: {conv: c1, turn: k1, session: s1}\n"
    )
    result = anyio.run(lambda: run_scenario(parse_scenario(text, "s.yaml")))
    assert [f.message for f in result.failures] == [
        "turn 'k1': stored under session 's9', expected 's1'"
    ]
