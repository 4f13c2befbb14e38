"""Contract checks of the conversation index: a pointer, kept apart from turn history."""

from __future__ import annotations

import attrs

from persisters.contract.base import StoreMaker, check, payload, raises
from persisters.errors import TurnRewriteError
from persisters.model import FINAL, TurnSaveOptions


@check("pointer")
async def check_conversation_pointer_create_update_clear(make: StoreMaker) -> None:
    """Create, update (newest call wins, activity never back), clear with ''."""
    store = await make()
    index = store.conversations
    assert await index.get("c1") is None
    created = await index.set_current_runtime("c1", "s1", "inventory@v1", "inventory", 100)
    assert attrs.asdict(created) == {
        "conv_id": "c1",
        "session_id": "s1",
        "current_runtime_key": "inventory@v1",
        "profile_slug": "inventory",
        "created_at_ms": 100,
        "last_activity_ms": 100,
    }
    assert await index.get("c1") == created
    updated = await index.set_current_runtime("c1", "s2", "planner@v1", "planner", 200)
    assert updated == attrs.evolve(
        created,
        session_id="s2",
        current_runtime_key="planner@v1",
        profile_slug="planner",
        last_activity_ms=200,
    )
    assert await index.get("c1") == updated
    # an out-of-order update never moves activity backwards
    late = await index.set_current_runtime("c1", "s2", "planner@v1", "planner", 150)
    assert (late.created_at_ms, late.last_activity_ms) == (100, 200)
    # a profile that resolves to nothing clears the pointer (a non-empty value must not win)
    cleared = await index.set_current_runtime("c1", "s2", "", "broken", 300)
    assert (cleared.current_runtime_key, cleared.profile_slug) == ("", "broken")
    assert (await index.get("c1")).current_runtime_key == ""
    assert [c.to_json()["current_runtime_key"] for c in await index.list()] == [""]
    assert "runtime_key" not in cleared.to_json()


@check("pointer")
async def check_conversation_list_is_ordered_and_touch_updates_activity(
    make: StoreMaker,
) -> None:
    """``list`` in conv_id order; ``touch`` moves activity forward only, creates nothing."""
    store = await make()
    index = store.conversations
    assert await index.list() == []
    for conv, at in (("c2", 10), ("c10", 20), ("a", 30), ("c1", 40), ("B", 50)):
        await index.set_current_runtime(conv, f"s-{conv}", f"{conv}@v1", conv, at)
    assert [c.conv_id for c in await index.list()] == ["B", "a", "c1", "c10", "c2"]
    await index.touch("c2", 500)
    await index.touch("c2", 400)  # never backwards
    await index.touch("ghost", 600)  # unknown conversations are not created
    c2 = await index.get("c2")
    assert (c2.created_at_ms, c2.last_activity_ms, c2.current_runtime_key) == (10, 500, "c2@v1")
    assert await index.get("ghost") is None
    assert len(await index.list()) == 5


@check("pointer")
async def check_pointer_switch_never_rewrites_turns(make: StoreMaker) -> None:
    """The canonical scenario, at store level: a switch moves the pointer, not history."""
    store = await make()
    index = store.conversations
    await index.set_current_runtime("c1", "s1", "inventory@v1", "inventory", 1)
    pointer = (await index.get("c1")).current_runtime_key
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions(pointer, "i1"))
    await index.set_current_runtime("c1", "s1", "planner@v1", "planner", 20)
    pointer = (await index.get("c1")).current_runtime_key
    await store.save("c1", "s1", "t2", FINAL, 30, payload("t2"), TurnSaveOptions(pointer, "i2"))
    assert (await index.get("c1")).current_runtime_key == "planner@v1"
    assert [(t.turn_id, t.runtime_key) for t in await store.list_turns("c1")] == [
        ("t1", "inventory@v1"),
        ("t2", "planner@v1"),
    ]
    with raises(TurnRewriteError):
        await store.save("c1", "s1", "t1", FINAL, 40, payload("t1"), TurnSaveOptions(pointer))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "inventory@v1"
