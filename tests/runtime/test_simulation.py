"""The simulator's core through its Python API, on real SQLite files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from persisters.memory_store import MemoryTurnStore
from persisters.model import TurnQuery
from persisters.sqlite_store import SQLiteTurnStore
from sim import Profile, ProfileRegistry, World, build
from sim.errors import UnknownProfileError

pytestmark = pytest.mark.anyio

PROFILES = ProfileRegistry(
    [
        Profile("inventory", "inventory@v1", latency_ms=100),
        Profile("planner", "planner@v1", latency_ms=200, tool_rounds=1),
        Profile("broken", "", latency_ms=10),
    ]
)


async def _store(tmp_path: Path, variants: tuple[str, ...] = ()) -> SQLiteTurnStore:
    return await SQLiteTurnStore.open(tmp_path / "sim.db", on_conflict=build(variants).on_conflict)


async def _phases(store: SQLiteTurnStore, conv: str, turn_id: str) -> list[tuple[str, str, str]]:
    snaps = await store.list(TurnQuery(conv_id=conv, turn_id=turn_id, limit=100))
    return [(s.phase, s.runtime_key, s.inference_id) for s in reversed(snaps)]


async def test_inventory_to_planner_through_both_pipelines(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    world = World(seed=7, store=store, profiles=PROFILES)

    async def story() -> tuple[Any, Any]:
        c1 = world.open_conversation("c1", profile="inventory", session_id="s1")
        t1 = await c1.send("How many widgets?")
        await c1.switch_profile("planner")
        t2 = await c1.send("Plan the restock")
        return t1, t2

    t1, t2 = await world.run(story)
    assert (await store.get_turn("c1", "s1", t1.turn_id)).runtime_key == "inventory@v1"
    assert (await store.get_turn("c1", "s1", t2.turn_id)).runtime_key == "planner@v1"
    assert (await store.conversations.get("c1")).current_runtime_key == "planner@v1"
    turn1 = await _phases(store, "c1", t1.turn_id)
    # hook: pre, post, final; final persister: final
    assert [p for p, _, _ in turn1] == ["pre_inference", "post_inference", "final", "final"]
    assert {(r, i) for _, r, i in turn1} == {("inventory@v1", t1.inference_id)}
    saved = [e for e in world.recorder.events if e["event"] in ("snapshot.saved", "turn.persisted")]
    assert {e["pipeline"] for e in saved if e["turn_id"] == t1.turn_id} == {"snapshot", "final"}
    await store.close()


async def test_switch_in_flight_keeps_the_bound_runtime(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    world = World(seed=3, store=store, profiles=PROFILES)

    async def story() -> tuple[Any, Any, str]:
        c1 = world.open_conversation("c1", profile="planner", session_id="s1")
        t1 = await c1.send("long one", wait=False)
        await world.sleep(50)
        assert c1.inflight is t1
        await c1.switch_profile("inventory")
        pointer_during = c1.current_runtime_key
        await c1.wait_idle()
        t2 = await c1.send("next one")
        return t1, t2, pointer_during

    t1, t2, pointer_during = await world.run(story)
    assert pointer_during == "inventory@v1", "the pointer moves at once, mid-inference"
    phases = await _phases(store, "c1", t1.turn_id)
    assert [p for p, _, _ in phases] == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "final",
        "final",
    ]
    assert {r for _, r, _ in phases} == {"planner@v1"}
    assert {r for _, r, _ in await _phases(store, "c1", t2.turn_id)} == {"inventory@v1"}
    switched = next(e for e in world.recorder.events if e["event"] == "profile.switched")
    assert switched["inflight_turn_id"] == t1.turn_id
    await store.close()


async def test_prompts_queued_during_an_inference_run_in_order(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    world = World(seed=5, store=store, profiles=PROFILES)

    async def story() -> tuple[list[Any], list[int]]:
        c1 = world.open_conversation("c1", profile="inventory")
        prompts = [await c1.send(f"p{i}", wait=False) for i in range(1)]
        depths = []
        for i in range(1, 4):
            prompts.append(c1.send_nowait(f"p{i}"))
            await world.sleep(1)  # the actor takes the command; the first inference runs
            depths.append(c1.queue_depth)
        await c1.wait_idle()
        return prompts, depths

    prompts, depths = await world.run(story)
    assert depths == [1, 2, 3]
    started = [e["turn_id"] for e in world.recorder.events if e["event"] == "inference.started"]
    assert started == [p.turn_id for p in prompts]
    turns = await store.list_turns("c1")
    assert [t.turn_id for t in turns] == [p.turn_id for p in prompts]
    assert all(p.outcome == "completed" for p in prompts)
    await store.close()


async def _history(tmp_path: Path, seed: int, name: str) -> list[dict[str, Any]]:
    store = await SQLiteTurnStore.open(tmp_path / f"{name}.db")
    world = World(seed=seed, store=store, profiles=PROFILES)

    async def story() -> None:
        convs = [world.open_conversation(f"c{i}", profile="inventory") for i in range(3)]
        for c in convs:
            await c.send("hello", wait=False)
        await convs[1].switch_profile("planner")
        for c in convs:
            await c.send("again", wait=False)
        for c in convs:
            await c.wait_idle()

    await world.run(story)
    await store.close()
    return world.recorder.events


async def test_same_seed_same_history_different_seed_different_ids(tmp_path: Path) -> None:
    first = await _history(tmp_path, 42, "a")
    assert first == await _history(tmp_path, 42, "b")
    other = await _history(tmp_path, 43, "c")
    assert [e["event"] for e in other] != [] and other != first


def test_history_is_identical_on_asyncio_and_trio(tmp_path: Path) -> None:
    a = anyio.run(_history, tmp_path, 9, "asyncio", backend="asyncio")
    t = anyio.run(_history, tmp_path, 9, "trio", backend="trio")
    assert a == t


async def test_profile_without_runtime_refuses_to_start(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    world = World(seed=1, store=store, profiles=PROFILES)

    async def story() -> Any:
        c1 = world.open_conversation("c1", profile="broken")
        return await c1.send("hello")

    prompt = await world.run(story)
    assert prompt.outcome == "refused" and "no runtime" in prompt.error
    assert await store.list(TurnQuery(conv_id="c1")) == []
    assert any(e["event"] == "inference.refused" for e in world.recorder.events)
    await store.close()


async def test_unknown_profile_names_the_known_ones(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    world = World(seed=1, store=store, profiles=PROFILES)

    async def story() -> None:
        c1 = world.open_conversation("c1", profile="inventory")
        await c1.switch_profile("plannr")

    with pytest.raises(UnknownProfileError, match="known profiles: broken, inventory, planner"):
        await world.run(story)
    await store.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # backend parity is tested above
async def test_many_conversations_cost_seconds_not_virtual_minutes(tmp_path: Path) -> None:
    """1,000 conversations x 10 turns: virtual latency far above the wall time spent."""
    store = await SQLiteTurnStore.open(tmp_path / "many.db")
    profiles = ProfileRegistry([Profile("inventory", "inventory@v1", latency_ms=6_000)])
    world = World(seed=1, store=store, profiles=profiles, keep_history=False)

    async def story() -> None:
        convs = [world.open_conversation(f"c{i}", profile="inventory") for i in range(1000)]
        for _ in range(10):
            for c in convs:
                c.send_nowait("hi")
        for c in convs:
            await c.wait_idle()

    started = anyio.current_time()
    await world.run(story)
    wall_s = anyio.current_time() - started
    assert world.now_ms() >= 60_000, "at least a minute of virtual latency"
    assert wall_s * 1000 < world.now_ms(), "simulated latency must cost no wall time"
    assert store.writer.ops >= 40_000 and store.writer.batches < store.writer.ops / 5
    await store.close()


@pytest.mark.parametrize(
    "variants",
    [
        ("late-snapshot-runtime",),
        ("late-snapshot-runtime", "upsert-overwrite"),
        ("default-turn-id",),
        ("pointer-as-history",),
    ],
)
async def test_bug_variants_produce_the_wrong_state(tmp_path: Path, variants: tuple) -> None:
    if "upsert-overwrite" in variants:  # the SQLite file's write-once trigger would refuse it
        store: Any = MemoryTurnStore(on_conflict=build(variants).on_conflict)
    else:
        store = await _store(tmp_path, variants)
    world = World(seed=3, store=store, profiles=PROFILES, variants=build(variants))

    async def story() -> tuple[Any, Any]:
        c1 = world.open_conversation("c1", profile="planner", session_id="s1")
        t1 = await c1.send("long one", wait=False)
        await world.sleep(50)
        await c1.switch_profile("inventory")
        await c1.wait_idle()
        t2 = await c1.send("next one")
        return t1, t2

    t1, t2 = await world.run(story)
    phases = await _phases(store, "c1", t1.turn_id or "turn")
    runtimes = [r for _, r, _ in phases]
    if variants == ("late-snapshot-runtime",):
        # the store refused the late-bound saves: those phases are missing
        assert [p for p, _, _ in phases] == ["pre_inference", "final"]
        assert any(e["event"] == "snapshot.save_failed" for e in world.recorder.events)
    elif "upsert-overwrite" in variants:
        assert "inventory@v1" in runtimes, "the late-bound phases were stored"
        stored = [
            e["runtime_key"]
            for e in world.recorder.events
            if e["event"] == "snapshot.saved" and e["turn_id"] == t1.turn_id
        ]
        # the turn row was rewritten to the new runtime, then back by the final persister
        assert stored[0] == "planner@v1" and "inventory@v1" in stored
    elif variants == ("default-turn-id",):
        assert t1.turn_id == "" and t2.turn_id == ""
        assert [t.turn_id for t in await store.list_turns("c1")] == ["turn"]
    else:  # pointer-as-history: storage is right, reads are wrong
        assert set(runtimes) == {"planner@v1"}
        record = await store.conversations.get("c1")
        shown = {
            world.build.read_path.view(s, record).runtime_key
            for s in await store.list(TurnQuery(conv_id="c1", turn_id=t1.turn_id))
        }
        assert shown == {"inventory@v1"}
    await store.close()
