"""Contract checks of reading: filters and ordering, projection columns, per-turn reads."""

from __future__ import annotations

import itertools
from typing import Any

import attrs

from persisters.contract.base import (
    StoreMaker,
    check,
    everything,
    marker_of,
    payload,
    raises,
    row,
)
from persisters.errors import StoreError
from persisters.model import (
    FINAL,
    POST_INFERENCE,
    POST_TOOLS,
    PRE_INFERENCE,
    TurnQuery,
    TurnSaveOptions,
)

# (conv_id, session_id, turn_id, phase, created_at_ms, runtime_key, inference_id, via)
# ``via`` says whether the projection is passed explicitly or only lives in the metadata.
# Ties on created_at_ms are deliberate; saves happen in this order.
DATASET: tuple[tuple[str, str, str, str, int, str, str, str], ...] = (
    ("c1", "s1", "t1", PRE_INFERENCE, 100, "inventory@v1", "i1", "options"),
    ("c1", "s1", "t1", POST_INFERENCE, 105, "inventory@v1", "i1", "metadata"),
    ("c1", "s1", "t1", FINAL, 110, "inventory@v1", "i1", "options"),
    ("c2", "s2", "t1", PRE_INFERENCE, 105, "inventory@v1", "i3", "metadata"),
    ("c1", "s1", "t2", PRE_INFERENCE, 110, "planner@v1", "i2", "metadata"),
    ("c1", "s1", "t2", POST_TOOLS, 110, "planner@v1", "i2", "options"),
    ("c1", "s1", "t2", FINAL, 120, "planner@v1", "i2", "metadata"),
    ("c2", "s2", "t1", FINAL, 120, "inventory@v1", "i3", "options"),
    ("c1", "s3", "t3", FINAL, 130, "planner@v1", "", "options"),
    ("c2", "s2", "t2", PRE_INFERENCE, 90, "planner@v1", "i4", "metadata"),
)

FILTER_VALUES: dict[str, tuple[Any, ...]] = {
    "conv_id": (None, "c1", "c2"),
    "session_id": (None, "s1"),
    "turn_id": (None, "t1", "t2"),
    "phase": (None, FINAL, PRE_INFERENCE),
    "runtime_key": (None, "inventory@v1", "planner@v1"),
    "inference_id": (None, "i1", ""),
    "since_ms": (None, 110),
    "limit": (2, 100),
}

ROW_FIELDS = (
    "conv_id",
    "session_id",
    "turn_id",
    "phase",
    "runtime_key",
    "inference_id",
    "created_at_ms",
    "payload",
)


async def save_dataset(store: Any) -> list[tuple[Any, ...]]:
    """Save DATASET and return the expected stored rows in save order."""
    expected = []
    for n, (conv, session, turn, phase, at, runtime, inference, via) in enumerate(DATASET):
        if via == "options":
            body = payload(turn, n)
            options = TurnSaveOptions(runtime_key=runtime, inference_id=inference)
        else:
            meta: dict[str, Any] = {"geppetto.runtime@v1": runtime}
            if inference:
                meta["geppetto.inference_id@v1"] = inference
            body = payload(turn, n, **meta)
            options = TurnSaveOptions()
        result = await store.save(conv, session, turn, phase, at, body, options)
        assert (result.runtime_key, result.inference_id) == (runtime, inference)
        expected.append((conv, session, turn, phase, runtime, inference, at, body))
    return expected


def reference_list(saved: list[tuple[Any, ...]], query: TurnQuery) -> list[tuple[Any, ...]]:
    """The contract's semantics written out independently of the code under test."""
    equal = ("conv_id", "session_id", "turn_id", "phase", "runtime_key", "inference_id")
    found = []
    for order, r in enumerate(saved):
        fields = dict(zip(ROW_FIELDS, r, strict=True))
        if any(getattr(query, f) is not None and fields[f] != getattr(query, f) for f in equal):
            continue
        if query.since_ms is not None and fields["created_at_ms"] < query.since_ms:
            continue
        if query.as_of_ms is not None and fields["created_at_ms"] > query.as_of_ms:
            continue
        found.append((fields["created_at_ms"], order, r))
    found.sort(reverse=True)  # newest first; on a tie the later save first
    return [r for _, _, r in found[: query.limit]]


@check("filters-ordering")
async def check_list_every_filter_combination(make: StoreMaker) -> None:
    """Every combination of list filters gives what the reference filter gives."""
    store = await make()
    saved = await save_dataset(store)
    names = list(FILTER_VALUES)
    nonempty = 0
    for values in itertools.product(*FILTER_VALUES.values()):
        query = TurnQuery(**dict(zip(names, values, strict=True)))
        want = reference_list(saved, query)
        got = [row(s) for s in await store.list(query)]
        assert got == want, query
        nonempty += bool(want)
    # the dataset must exercise the filters, not only answer "nothing"
    assert nonempty > 100


@check("filters-ordering")
async def check_list_returns_projection_columns(make: StoreMaker) -> None:
    """Each listed snapshot carries its ids, phase, runtime_key, inference_id and time."""
    store = await make()
    saved = await save_dataset(store)
    items = await everything(store)
    assert len(items) == len(DATASET)
    by_payload = {s.payload: s for s in items}
    for conv, session, turn, phase, runtime, inference, at, body in saved:
        s = by_payload[body]
        assert (s.conv_id, s.session_id, s.turn_id, s.phase) == (conv, session, turn, phase)
        assert (s.runtime_key, s.inference_id, s.created_at_ms) == (runtime, inference, at)
        assert s.to_json()["runtime_key"] == runtime
        assert s.to_json()["inference_id"] == inference


@check("filters-ordering")
async def check_list_newest_first_with_later_save_first_on_ties(make: StoreMaker) -> None:
    """Newest first; on equal timestamps the later save first (snapshot ids decrease)."""
    store = await make()
    rt = TurnSaveOptions(runtime_key="inventory@v1")
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 50, payload("t1", "a"), rt)
    for n in range(5):  # five snapshots of distinct turns and phases in one millisecond
        await store.save("c1", "s1", f"u{n}", FINAL, 70, payload(f"u{n}", n), rt)
    await store.save("c1", "s1", "t1", FINAL, 60, payload("t1", "b"), rt)
    markers = [marker_of(s) for s in await store.list(TurnQuery(conv_id="c1"))]
    assert markers == [4, 3, 2, 1, 0, "b", "a"]
    ids = [s.snapshot_id for s in await store.list(TurnQuery(conv_id="c1", since_ms=70))]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 5


@check("filters-ordering")
async def check_list_rows_are_list_as_tuples_in_snapshot_field_order(make: StoreMaker) -> None:
    """``list_rows`` is ``list`` as plain tuples, payload as text."""
    store = await make()
    await save_dataset(store)
    queries = [TurnQuery(limit=10_000), TurnQuery(conv_id="c1", limit=3)]
    queries += [TurnQuery(conv_id="c2", phase=FINAL), TurnQuery(runtime_key="nobody")]
    for query in queries:
        snapshots = await store.list(query)
        rows = await store.list_rows(query)
        assert list(rows) == [attrs.astuple(s, recurse=False) for s in snapshots]
        assert all(type(r) is tuple and type(r[7]) is str for r in rows)


@check("filters-ordering")
async def check_load_latest_turn(make: StoreMaker) -> None:
    """The newest snapshot of a conversation at a phase (the later save on a tie)."""
    store = await make()
    assert await store.load_latest_turn("c1", FINAL) is None
    rt = TurnSaveOptions("inventory@v1")
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1", 1), rt)
    await store.save("c1", "s1", "t2", FINAL, 30, payload("t2", 2), rt)
    await store.save("c1", "s1", "t3", FINAL, 20, payload("t3", 3), rt)  # older, saved later
    await store.save("c1", "s1", "t4", PRE_INFERENCE, 99, payload("t4", 4), rt)
    await store.save("c2", "s2", "t5", FINAL, 50, payload("t5", 5), rt)
    latest = await store.load_latest_turn("c1", FINAL)
    assert (latest.turn_id, marker_of(latest), latest.runtime_key) == ("t2", 2, "inventory@v1")
    assert (await store.load_latest_turn("c1", PRE_INFERENCE)).turn_id == "t4"
    assert await store.load_latest_turn("c1", POST_TOOLS) is None
    assert await store.load_latest_turn("c3", FINAL) is None
    # tie on the timestamp: the later save is the latest
    await store.save("c1", "s1", "t6", FINAL, 30, payload("t6", 6), rt)
    assert (await store.load_latest_turn("c1", FINAL)).turn_id == "t6"


@check("filters-ordering")
async def check_list_turns_oldest_first_with_records(make: StoreMaker) -> None:
    """Turn rows oldest first (ties in first-save order), created/updated times kept."""
    store = await make()
    await store.save("c1", "s1", "b", FINAL, 20, payload("b"), TurnSaveOptions("r2@v1", "i2"))
    await store.save("c1", "s1", "a", FINAL, 20, payload("a"), TurnSaveOptions("r1@v1", "i1"))
    await store.save("c1", "s1", "z", PRE_INFERENCE, 5, payload("z"), TurnSaveOptions("r3@v1"))
    await store.save("c1", "s1", "z", FINAL, 40, payload("z"), TurnSaveOptions())
    await store.save("c1", "s1", "z", POST_TOOLS, 30, payload("z"), TurnSaveOptions())
    await store.save("c2", "s1", "a", FINAL, 1, payload("a"), TurnSaveOptions("r9@v1"))
    turns = await store.list_turns("c1")
    assert [(t.turn_id, t.runtime_key, t.inference_id) for t in turns] == [
        ("z", "r3@v1", ""),
        ("b", "r2@v1", "i2"),
        ("a", "r1@v1", "i1"),
    ]
    z = turns[0]
    assert (z.conv_id, z.session_id, z.created_at_ms, z.updated_at_ms) == ("c1", "s1", 5, 40)
    assert await store.get_turn("c1", "s1", "z") == z
    assert await store.get_turn("c1", "s2", "z") is None
    assert [t.turn_id for t in await store.list_turns("c2")] == ["a"]
    assert await store.list_turns("nope") == []


@check("filters-ordering")
async def check_point_in_time_reads(make: StoreMaker) -> None:
    """``as_of_ms``: snapshots saved by then, and turns as their snapshots then said."""
    store = await make()
    saved = await save_dataset(store)
    for as_of in (89, 105, 110, 1000):
        for conv in (None, "c1"):
            query = TurnQuery(conv_id=conv, as_of_ms=as_of)
            assert [row(s) for s in await store.list(query)] == reference_list(saved, query)
    query = TurnQuery(conv_id="c1", since_ms=105, as_of_ms=110)
    assert [row(s) for s in await store.list(query)] == reference_list(saved, query)
    # c1/s1/t2: saved at 110, 110 and 120
    assert await store.get_turn("c1", "s1", "t2", as_of_ms=109) is None
    t2 = await store.get_turn("c1", "s1", "t2", as_of_ms=110)
    assert (t2.runtime_key, t2.inference_id, t2.created_at_ms, t2.updated_at_ms) == (
        "planner@v1",
        "i2",
        110,
        110,
    )
    assert await store.get_turn("c1", "s1", "t2", as_of_ms=10_000) == await store.get_turn(
        "c1", "s1", "t2"
    )
    assert [t.turn_id for t in await store.list_turns("c1", as_of_ms=99)] == []
    assert [t.turn_id for t in await store.list_turns("c1", as_of_ms=110)] == ["t1", "t2"]
    assert await store.list_turns("c1", as_of_ms=10_000) == await store.list_turns("c1")
    # a turn whose inference id was filled by a later save: empty before it
    await store.save("c9", "s9", "u", PRE_INFERENCE, 5, payload("u"), TurnSaveOptions("r@v1"))
    await store.save("c9", "s9", "u", FINAL, 9, payload("u"), TurnSaveOptions("r@v1", "i9"))
    assert (await store.get_turn("c9", "s9", "u", as_of_ms=8)).inference_id == ""
    assert (await store.get_turn("c9", "s9", "u", as_of_ms=9)).inference_id == "i9"


@check("filters-ordering")
async def check_turn_key_includes_session(make: StoreMaker) -> None:
    """The same turn id in two sessions of one conversation is two turns, not a rewrite."""
    store = await make()
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions("a@v1"))
    await store.save("c1", "s2", "t1", FINAL, 20, payload("t1"), TurnSaveOptions("b@v1"))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "a@v1"
    assert (await store.get_turn("c1", "s2", "t1")).runtime_key == "b@v1"
    assert len(await store.list_turns("c1")) == 2


@check("filters-ordering")
async def check_turn_counts_count_turns_not_snapshots(make: StoreMaker) -> None:
    """One count per conversation with turns: sessions apart, phases and refusals not."""
    store = await make()
    assert await store.turn_counts() == {}
    await store.save("c1", "s1", "a", PRE_INFERENCE, 1, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s1", "a", FINAL, 2, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s2", "a", FINAL, 3, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s1", "b", FINAL, 4, payload("b"), TurnSaveOptions("r@v1"))
    await store.save("c2", "s1", "a", FINAL, 5, payload("a"), TurnSaveOptions("r@v1"))
    with raises(StoreError):  # refused: writes no turn
        await store.save("c3", "s1", "a", FINAL, 6, payload("a"), TurnSaveOptions())
    await store.conversations.set_current_runtime("c4", "s1", "r@v1", "p", 7)  # no turn yet
    counts = await store.turn_counts()
    assert counts == {"c1": 3, "c2": 1}
    for conv_id in ("c1", "c2", "c3", "c4"):
        assert counts.get(conv_id, 0) == len(await store.list_turns(conv_id))
