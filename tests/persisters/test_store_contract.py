"""The TurnStore / ConversationIndex contract, run against every implementation.

A new implementation (e.g. a server-database store) joins by adding one param to
``make_store``; every test below then runs against it on both anyio backends.
"""

from __future__ import annotations

import inspect
import itertools
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import pytest

from persisters.errors import (
    EmptyRuntimeError,
    InvalidSaveError,
    PermanentStoreError,
    StoreError,
    TurnRewriteError,
)
from persisters.memory_store import MemoryTurnStore
from persisters.model import (
    FINAL,
    POST_INFERENCE,
    POST_TOOLS,
    PRE_INFERENCE,
    Turn,
    TurnQuery,
    TurnSaveOptions,
)
from persisters.normalized_store import open_normalized_store
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import (
    ConflictPolicy,
    ConversationIndex,
    TurnStore,
    WriteQueue,
    new_value_wins,
    refuse_rewrite,
)

pytestmark = pytest.mark.anyio

StoreFactory = Callable[..., Awaitable[Any]]

STORE_KINDS = ["memory", "sqlite-file", "sqlite-memory", "normalized-file", "normalized-memory"]


@pytest.fixture(params=STORE_KINDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    """A factory of fresh, empty stores of one kind; every store it made is closed after."""
    opened: list[Any] = []

    async def make(*, on_conflict: ConflictPolicy = refuse_rewrite) -> Any:
        if request.param == "memory":
            store: Any = MemoryTurnStore(on_conflict=on_conflict)
        elif request.param == "sqlite-file":
            path = tmp_path / f"t{len(opened)}.db"
            store = await SQLiteTurnStore.open(path, on_conflict=on_conflict)
        elif request.param == "sqlite-memory":
            store = await SQLiteTurnStore.open(":memory:", on_conflict=on_conflict)
        elif request.param == "normalized-file":  # the index in a timeline database
            turns, timeline = tmp_path / f"n{len(opened)}.db", tmp_path / f"tl{len(opened)}.db"
            store = await open_normalized_store(turns, timeline, on_conflict=on_conflict)
        elif request.param == "normalized-memory":  # the index in the same database
            store = await open_normalized_store(":memory:", on_conflict=on_conflict)
        else:  # pragma: no cover - a param without a branch is a mistake in this file
            raise AssertionError(request.param)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Any:
    return await make_store()


def payload(turn_id: str, marker: object = None, **metadata: Any) -> str:
    """A serialized turn whose data carries ``marker`` so each snapshot is recognisable."""
    return Turn(id=turn_id, metadata=metadata, data={"marker": marker}).serialize()


def marker_of(snapshot: Any) -> Any:
    return json.loads(snapshot.payload)["data"]["marker"]


def row(snapshot: Any) -> tuple[Any, ...]:
    """A snapshot without its implementation-specific snapshot id."""
    return (
        snapshot.conv_id,
        snapshot.session_id,
        snapshot.turn_id,
        snapshot.phase,
        snapshot.runtime_key,
        snapshot.inference_id,
        snapshot.created_at_ms,
        snapshot.payload,
    )


async def everything(store: Any) -> list[Any]:
    return await store.list(TurnQuery(limit=10_000))


# ---------------------------------------------------------------------------------------
# list: every filter combination against a reference filter

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
        found.append((fields["created_at_ms"], order, r))
    found.sort(reverse=True)  # newest first; on a tie the later save first
    return [r for _, _, r in found[: query.limit]]


async def test_list_every_filter_combination(store: Any) -> None:
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


async def test_list_returns_projection_columns(store: Any) -> None:
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


async def test_list_newest_first_with_later_save_first_on_ties(store: Any) -> None:
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


# ---------------------------------------------------------------------------------------
# projection: explicit options win, metadata fills what is empty


async def test_explicit_options_win_over_metadata(store: Any) -> None:
    body = payload("t1", noise=1, **{"geppetto.runtime@v1": "meta@v1", "inference_id": "m-1"})
    options = TurnSaveOptions(runtime_key="explicit@v1", inference_id="x-1")
    result = await store.save("c1", "s1", "t1", FINAL, 10, body, options)
    assert (result.runtime_key, result.inference_id) == ("explicit@v1", "x-1")
    assert result.created_turn is True
    record = await store.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("explicit@v1", "x-1")
    [snap] = await everything(store)
    assert (snap.runtime_key, snap.inference_id) == ("explicit@v1", "x-1")
    assert snap.payload == body  # the metadata stays in the payload untouched


async def test_one_explicit_field_other_from_metadata(store: Any) -> None:
    body = payload("t1", **{"geppetto.runtime@v1": "meta@v1", "geppetto.inference_id@v1": "m-1"})
    await store.save("c1", "s1", "t1", FINAL, 10, body, TurnSaveOptions(runtime_key="exp@v1"))
    await store.save("c1", "s1", "t2", FINAL, 11, body, TurnSaveOptions(inference_id="x-2"))
    t1 = await store.get_turn("c1", "s1", "t1")
    t2 = await store.get_turn("c1", "s1", "t2")
    assert (t1.runtime_key, t1.inference_id) == ("exp@v1", "m-1")
    assert (t2.runtime_key, t2.inference_id) == ("meta@v1", "x-2")


@pytest.mark.parametrize(
    ("metadata", "runtime", "inference"),
    [
        ({"geppetto.runtime@v1": "a@v1", "geppetto.inference_id@v1": "i"}, "a@v1", "i"),
        ({"geppetto.runtime@v1": {"key": "b@v1"}, "inference_id": "legacy"}, "b@v1", "legacy"),
        ({"geppetto.runtime@v1": {"profile": "p"}, "inference_id": 42}, "p", "42"),
        ({"geppetto.runtime@v1": "  ", "runtime": "c@v1"}, "c@v1", ""),
        ({"runtime_key": " d@v1 ", "geppetto.inference_id@v1": " "}, "d@v1", ""),
        ({"runtime": {"slug": "e"}, "runtime_key": "f@v1"}, "e", ""),
    ],
)
async def test_empty_options_fall_back_to_metadata(
    store: Any, metadata: dict[str, Any], runtime: str, inference: str
) -> None:
    body = payload("t1", **metadata)
    for n, options in enumerate((TurnSaveOptions(), TurnSaveOptions(" ", "\t"))):
        turn = f"t{n}"
        result = await store.save("c1", "s1", turn, FINAL, 10, body, options)
        assert (result.runtime_key, result.inference_id) == (runtime, inference)
        record = await store.get_turn("c1", "s1", turn)
        assert (record.runtime_key, record.inference_id) == (runtime, inference)
    assert {(s.runtime_key, s.inference_id) for s in await everything(store)} == {
        (runtime, inference)
    }


# ---------------------------------------------------------------------------------------
# write-once (rule 4) and refusals (rule 8, bad arguments)


async def _two_phases(store: Any) -> None:
    opts = TurnSaveOptions("inventory@v1", "inf-1")
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1", 1), opts)
    await store.save("c1", "s1", "t1", POST_INFERENCE, 20, payload("t1", 2), opts)


@pytest.mark.parametrize(
    ("options", "metadata", "field", "attempted"),
    [
        (TurnSaveOptions("planner@v1", "inf-1"), {}, "runtime_key", "planner@v1"),
        (TurnSaveOptions("inventory@v1", "inf-2"), {}, "inference_id", "inf-2"),
        (TurnSaveOptions(), {"geppetto.runtime@v1": "planner@v1"}, "runtime_key", "planner@v1"),
        (TurnSaveOptions(), {"inference_id": "inf-9"}, "inference_id", "inf-9"),
    ],
)
async def test_conflicting_save_is_refused_and_changes_nothing(
    store: Any, options: TurnSaveOptions, metadata: dict[str, Any], field: str, attempted: str
) -> None:
    await _two_phases(store)
    turn_before = await store.get_turn("c1", "s1", "t1")
    list_before = await everything(store)
    with pytest.raises(TurnRewriteError) as info:
        await store.save("c1", "s1", "t1", FINAL, 30, payload("t1", 3, **metadata), options)
    err = info.value
    assert isinstance(err, PermanentStoreError)
    assert (err.conv_id, err.session_id, err.turn_id) == ("c1", "s1", "t1")
    stored = {"runtime_key": "inventory@v1", "inference_id": "inf-1"}[field]
    assert (err.field, err.stored, err.attempted) == (field, stored, attempted)
    assert await store.get_turn("c1", "s1", "t1") == turn_before
    assert await everything(store) == list_before
    assert await store.list_turns("c1") == [turn_before]
    # the store is still usable after a refusal
    await store.save("c1", "s1", "t1", FINAL, 40, payload("t1", 4), TurnSaveOptions())
    assert len(await everything(store)) == 3


async def test_same_or_empty_value_is_accepted_and_keeps_stored(store: Any) -> None:
    await _two_phases(store)
    same = await store.save(
        "c1", "s1", "t1", POST_TOOLS, 25, payload("t1", 3), TurnSaveOptions("inventory@v1")
    )
    empty = await store.save("c1", "s1", "t1", FINAL, 30, payload("t1", 4), TurnSaveOptions())
    for result in (same, empty):
        assert (result.runtime_key, result.inference_id) == ("inventory@v1", "inf-1")
        assert result.created_turn is False
    snaps = await store.list(TurnQuery(turn_id="t1"))
    assert [marker_of(s) for s in snaps] == [4, 3, 2, 1]
    assert {(s.runtime_key, s.inference_id) for s in snaps} == {("inventory@v1", "inf-1")}
    record = await store.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("inventory@v1", "inf-1")
    assert (record.created_at_ms, record.updated_at_ms) == (10, 30)


async def test_filling_an_empty_inference_id_is_allowed_once(store: Any) -> None:
    rt = TurnSaveOptions(runtime_key="inventory@v1")
    first = await store.save("c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1", 1), rt)
    assert (first.inference_id, first.created_turn) == ("", True)
    filled = await store.save(
        "c1", "s1", "t1", FINAL, 20, payload("t1", 2, inference_id="inf-7"), TurnSaveOptions()
    )
    assert (filled.runtime_key, filled.inference_id) == ("inventory@v1", "inf-7")
    record = await store.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("inventory@v1", "inf-7")
    # append-only: the earlier snapshot keeps what it recorded
    snaps = await store.list(TurnQuery(turn_id="t1"))
    assert [(marker_of(s), s.inference_id) for s in snaps] == [(2, "inf-7"), (1, "")]
    # and now the filled value is write-once too
    with pytest.raises(TurnRewriteError):
        await store.save("c1", "s1", "t1", FINAL, 30, payload("t1", 3), TurnSaveOptions("", "x"))


async def _nothing_written(store: Any) -> None:
    assert await everything(store) == []
    assert await store.list_turns("c1") == []
    assert await store.get_turn("c1", "s1", "t1") is None
    assert await store.load_latest_turn("c1", FINAL) is None


async def test_empty_runtime_on_a_new_turn_is_refused(store: Any) -> None:
    for body, options in (
        (payload("t1", inference_id="i"), TurnSaveOptions()),
        (payload("t1", **{"geppetto.runtime@v1": {"slug": " "}}), TurnSaveOptions(" ", "i")),
        ("not json at all", TurnSaveOptions()),
    ):
        with pytest.raises(EmptyRuntimeError):
            await store.save("c1", "s1", "t1", FINAL, 10, body, options)
    await _nothing_written(store)


async def test_runtime_is_never_taken_from_the_conversation_pointer(store: Any) -> None:
    await store.conversations.set_current_runtime("c1", "s1", "planner@v1", "planner", 5)
    with pytest.raises(EmptyRuntimeError):
        await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions())
    await _nothing_written(store)


@pytest.mark.parametrize(
    ("conv_id", "turn_id", "phase", "at_ms"),
    [
        ("c1", "", FINAL, 10),
        ("c1", "  ", FINAL, 10),
        ("", "t1", FINAL, 10),
        ("c1", "t1", "done", 10),
        ("c1", "t1", "", 10),
        ("c1", "t1", FINAL, -1),
    ],
)
async def test_invalid_save_arguments_are_refused(
    store: Any, conv_id: str, turn_id: str, phase: str, at_ms: int
) -> None:
    with pytest.raises(InvalidSaveError):
        await store.save(
            conv_id, "s1", turn_id, phase, at_ms, payload("t"), TurnSaveOptions("inventory@v1")
        )
    await _nothing_written(store)
    assert await store.list_turns("") == []


@pytest.mark.parametrize("session_id", ["", "  ", "\u3000"])
async def test_empty_session_id_is_refused(store: Any, session_id: str) -> None:
    # a turn without a session cannot even be addressed by the debug API's path
    with pytest.raises(InvalidSaveError, match="session_id is empty"):
        await store.save(
            "c1", session_id, "t1", FINAL, 10, payload("t1"), TurnSaveOptions("inventory@v1")
        )
    await _nothing_written(store)
    assert await store.list_turns("c1") == []


async def test_unicode_whitespace_is_whitespace(store: Any) -> None:
    """Whitespace is what Go's strings.TrimSpace trims: U+00A0, U+3000 and the rest too."""
    for options in (TurnSaveOptions("\u00a0"), TurnSaveOptions("\u3000\u2003 ", "i-1")):
        with pytest.raises(EmptyRuntimeError):
            await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), options)
    for conv_id, turn_id in (("\u3000", "t1"), ("c1", "\xa0\u2028")):
        with pytest.raises(InvalidSaveError):
            await store.save(conv_id, "s1", turn_id, FINAL, 10, payload("t1"), options)
    await _nothing_written(store)
    meta = {"geppetto.runtime@v1": "\u00a0", "runtime": "\u3000r@v1\u3000"}
    body = payload("t1", **meta)
    result = await store.save("c1", "s1", "t1", FINAL, 10, body, TurnSaveOptions("", "\u202fi-1"))
    assert (result.runtime_key, result.inference_id) == ("r@v1", "i-1")
    record = await store.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("r@v1", "i-1")


async def test_same_phase_same_millisecond_snapshots_both_stay(store: Any) -> None:
    opts = TurnSaveOptions("inventory@v1", "i1")
    a = await store.save("c1", "s1", "t1", POST_TOOLS, 10, payload("t1", "a"), opts)
    b = await store.save("c1", "s1", "t1", POST_TOOLS, 10, payload("t1", "b"), opts)
    assert a.snapshot_id != b.snapshot_id
    assert (a.created_turn, b.created_turn) == (True, False)
    snaps = await store.list(TurnQuery(conv_id="c1", phase=POST_TOOLS))
    assert [marker_of(s) for s in snaps] == ["b", "a"]
    assert [s.snapshot_id for s in snaps] == [b.snapshot_id, a.snapshot_id]


# ---------------------------------------------------------------------------------------
# load_latest_turn, get_turn, list_turns


async def test_load_latest_turn(store: Any) -> None:
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


async def test_load_latest_turn_with_an_empty_phase_means_any_phase(store: Any) -> None:
    """As the real store defines it: ``""`` (after trimming) filters by conversation only."""
    assert await store.load_latest_turn("c1", "") is None
    rt = TurnSaveOptions("inventory@v1")
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1", 1), rt)
    await store.save("c1", "s1", "t2", PRE_INFERENCE, 30, payload("t2", 2), rt)
    await store.save("c1", "s2", "t3", POST_TOOLS, 20, payload("t3", 3), rt)  # older, later
    await store.save("c2", "s1", "t9", FINAL, 99, payload("t9", 9), rt)
    for phase in ("", " ", "\u3000"):
        latest = await store.load_latest_turn("c1", phase)
        assert (latest.turn_id, latest.phase, marker_of(latest)) == ("t2", PRE_INFERENCE, 2)
    assert (await store.load_latest_turn("c1", FINAL)).turn_id == "t1"
    await store.save("c1", "s1", "t4", POST_TOOLS, 30, payload("t4", 4), rt)  # a tie: later wins
    assert (await store.load_latest_turn("c1", "")).turn_id == "t4"
    assert await store.load_latest_turn("c3", "") is None


async def test_list_turns_oldest_first_with_records(store: Any) -> None:
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


async def test_turn_key_includes_session(store: Any) -> None:
    # the same turn id in two sessions of one conversation is two turns, not a rewrite
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions("a@v1"))
    await store.save("c1", "s2", "t1", FINAL, 20, payload("t1"), TurnSaveOptions("b@v1"))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "a@v1"
    assert (await store.get_turn("c1", "s2", "t1")).runtime_key == "b@v1"
    assert len(await store.list_turns("c1")) == 2


async def test_turn_counts_count_turns_not_snapshots(store: Any) -> None:
    """One count per conversation with turns: sessions apart, phases and refusals not."""
    assert await store.turn_counts() == {}
    await store.save("c1", "s1", "a", PRE_INFERENCE, 1, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s1", "a", FINAL, 2, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s2", "a", FINAL, 3, payload("a"), TurnSaveOptions("r@v1"))
    await store.save("c1", "s1", "b", FINAL, 4, payload("b"), TurnSaveOptions("r@v1"))
    await store.save("c2", "s1", "a", FINAL, 5, payload("a"), TurnSaveOptions("r@v1"))
    with pytest.raises(StoreError):  # refused: writes no turn
        await store.save("c3", "s1", "a", FINAL, 6, payload("a"), TurnSaveOptions())
    await store.conversations.set_current_runtime("c4", "s1", "r@v1", "p", 7)  # no turn yet
    counts = await store.turn_counts()
    assert counts == {"c1": 3, "c2": 1}
    for conv_id in ("c1", "c2", "c3", "c4"):
        assert counts.get(conv_id, 0) == len(await store.list_turns(conv_id))


# ---------------------------------------------------------------------------------------
# the whole Protocol: every store has every member (no feature is probed for)


def protocol_members(protocol: type) -> dict[str, bool]:
    """Public member name -> whether the Protocol declares it as a coroutine function."""
    return {
        name: inspect.iscoroutinefunction(member)
        for name, member in vars(protocol).items()
        if not name.startswith("_")
    }


def assert_implements(obj: Any, protocol: type) -> None:
    assert isinstance(obj, protocol)
    for name, is_async in protocol_members(protocol).items():
        member = getattr(obj, name)  # raises if missing: a store implements all of it
        if is_async:
            assert inspect.iscoroutinefunction(member), f"{name} must be async"
        elif callable(getattr(protocol, name)):
            assert callable(member) and not inspect.iscoroutinefunction(member), name


async def test_store_implements_the_whole_protocol(store: Any) -> None:
    assert_implements(store, TurnStore)
    assert_implements(store.conversations, ConversationIndex)
    assert store.conversations is store.conversations
    queue = store.group_commit
    assert queue is store.group_commit  # one object: the kernel flushes it once per instant
    if queue is not None:
        assert_implements(queue, WriteQueue)


async def test_list_rows_are_list_as_tuples_in_snapshot_field_order(store: Any) -> None:
    await save_dataset(store)
    queries = [TurnQuery(limit=10_000), TurnQuery(conv_id="c1", limit=3)]
    queries += [TurnQuery(conv_id="c2", phase=FINAL), TurnQuery(runtime_key="nobody")]
    for query in queries:
        snapshots = await store.list(query)
        rows = await store.list_rows(query)
        assert rows == [attrs.astuple(s, recurse=False) for s in snapshots]
        assert all(type(r) is tuple and type(r[7]) is str for r in rows)


async def test_make_read_only_refuses_every_write_and_keeps_reads(store: Any) -> None:
    await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions("a@v1", "i1"))
    record = await store.conversations.set_current_runtime("c1", "s1", "a@v1", "a", 10)
    before = (await everything(store), await store.list_turns("c1"), await store.turn_counts())
    await store.make_read_only()
    writes = (
        store.save("c1", "s1", "t2", FINAL, 20, payload("t2"), TurnSaveOptions("a@v1")),
        store.save("c1", "s1", "t1", FINAL, 20, payload("t1"), TurnSaveOptions("a@v1")),
        store.conversations.set_current_runtime("c1", "s1", "b@v1", "b", 20),
        store.conversations.set_current_runtime("c2", "s2", "b@v1", "b", 20),
        store.conversations.touch("c1", 20),
    )
    for write in writes:
        with pytest.raises(PermanentStoreError, match="readonly"):
            await write
    with pytest.raises(InvalidSaveError):  # unusable arguments are still refused as such
        await store.save("c1", "s1", "", FINAL, 20, payload(""), TurnSaveOptions("a@v1"))
    after = (await everything(store), await store.list_turns("c1"), await store.turn_counts())
    assert after == before
    assert await store.conversations.get("c1") == record
    assert await store.conversations.list() == [record]
    assert await store.load_latest_turn("c1", FINAL) == before[0][0]


# ---------------------------------------------------------------------------------------
# group commit: queued writes give what the awaited calls give


async def queue_writes(store: Any) -> list[Any]:
    """One virtual instant's writes, queued on ``store``'s group commit and flushed once:
    every kind, a refusal and a write depending on an earlier one of the same flush."""
    queue = store.group_commit
    ops = [
        queue.enqueue_set_current_runtime("c1", "s1", "a@v1", "a", 10),
        queue.enqueue_save(
            "c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1", 0), TurnSaveOptions("a@v1")
        ),
        queue.enqueue_save(
            "c1", "s1", "t1", FINAL, 10, payload("t1", 1, **{"geppetto.inference_id@v1": "i1"})
        ),
        queue.enqueue_save("c1", "s1", "t1", FINAL, 11, payload("t1", 2), TurnSaveOptions("b@v1")),
        queue.enqueue_touch("c1", 12),
        queue.enqueue_set_current_runtime("c1", "s1", "b@v1", "b", 11),
        queue.enqueue_save("c2", "s2", "t1", FINAL, 12, payload("t1", 3), TurnSaveOptions()),
        queue.enqueue_touch("ghost", 13),
    ]
    await queue.flush()
    outcomes: list[Any] = []
    for op in ops:
        try:
            outcomes.append(op.outcome())
        except StoreError as exc:
            outcomes.append(type(exc))
    return outcomes


async def await_writes(store: Any) -> list[Any]:
    """The same writes as :func:`queue_writes`, each awaited in turn."""
    index = store.conversations
    calls = [
        lambda: index.set_current_runtime("c1", "s1", "a@v1", "a", 10),
        lambda: store.save(
            "c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1", 0), TurnSaveOptions("a@v1")
        ),
        lambda: store.save(
            "c1", "s1", "t1", FINAL, 10, payload("t1", 1, **{"geppetto.inference_id@v1": "i1"})
        ),
        lambda: store.save("c1", "s1", "t1", FINAL, 11, payload("t1", 2), TurnSaveOptions("b@v1")),
        lambda: index.touch("c1", 12),
        lambda: index.set_current_runtime("c1", "s1", "b@v1", "b", 11),
        lambda: store.save("c2", "s2", "t1", FINAL, 12, payload("t1", 3), TurnSaveOptions()),
        lambda: index.touch("ghost", 13),
    ]
    outcomes: list[Any] = []
    for call in calls:
        try:
            outcomes.append(await call())
        except StoreError as exc:
            outcomes.append(type(exc))
    return outcomes


async def stored_state(store: Any) -> tuple[Any, ...]:
    return (
        await everything(store),
        await store.list_turns("c1"),
        await store.list_turns("c2"),
        await store.conversations.list(),
    )


async def test_group_commit_gives_what_awaited_calls_give(make_store: StoreFactory) -> None:
    store = await make_store()
    if store.group_commit is None:
        pytest.skip("this store has no group commit: its writes are awaited one by one")
    reference = MemoryTurnStore()
    expected = await await_writes(reference)
    assert expected[3] is TurnRewriteError and expected[6] is EmptyRuntimeError
    assert await queue_writes(store) == expected
    assert await stored_state(store) == await stored_state(reference)


async def test_group_commit_refuses_unusable_arguments_at_once(store: Any) -> None:
    if store.group_commit is None:
        pytest.skip("this store has no group commit: its writes are awaited one by one")
    with pytest.raises(InvalidSaveError):
        store.group_commit.enqueue_save(
            "c1", "s1", " ", FINAL, 1, payload(" "), TurnSaveOptions("a")
        )
    await store.group_commit.flush()  # nothing queued: harmless
    assert await everything(store) == []


async def test_group_commit_flush_does_not_raise_for_failed_writes(store: Any) -> None:
    if store.group_commit is None:
        pytest.skip("this store has no group commit: its writes are awaited one by one")
    await store.make_read_only()
    op = store.group_commit.enqueue_save(
        "c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a")
    )
    await store.group_commit.flush()
    with pytest.raises(PermanentStoreError, match="readonly"):
        op.outcome()


# ---------------------------------------------------------------------------------------
# the conversation index: a pointer, not history


async def test_conversation_pointer_create_update_clear(store: Any) -> None:
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


async def test_conversation_list_is_ordered_and_touch_updates_activity(store: Any) -> None:
    index = store.conversations
    assert await index.list() == []
    for conv, at in (("c2", 10), ("c10", 20), ("a", 30), ("c1", 40)):
        await index.set_current_runtime(conv, f"s-{conv}", f"{conv}@v1", conv, at)
    assert [c.conv_id for c in await index.list()] == ["a", "c1", "c10", "c2"]
    await index.touch("c2", 500)
    await index.touch("c2", 400)  # never backwards
    await index.touch("ghost", 600)  # unknown conversations are not created
    c2 = await index.get("c2")
    assert (c2.created_at_ms, c2.last_activity_ms, c2.current_runtime_key) == (10, 500, "c2@v1")
    assert await index.get("ghost") is None
    assert len(await index.list()) == 4


async def test_pointer_switch_never_rewrites_turns(store: Any) -> None:
    """The canonical scenario, at store level."""
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
    with pytest.raises(TurnRewriteError):
        await store.save("c1", "s1", "t1", FINAL, 40, payload("t1"), TurnSaveOptions(pointer))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "inventory@v1"


# ---------------------------------------------------------------------------------------
# concurrency


async def test_concurrent_saves_all_land_in_per_conversation_order(store: Any) -> None:
    conversations, turns_per_conv, saves_per_conv = 10, 2, 20
    phases = (PRE_INFERENCE, POST_INFERENCE, POST_TOOLS, FINAL)

    async def conversation(c: int) -> None:
        for n in range(saves_per_conv):
            t = n % turns_per_conv
            opts = TurnSaveOptions(f"rt{c}-{t}@v1", f"inf-{c}-{t}")
            # many saves share a millisecond, so only save order can order them
            await store.save(
                f"c{c}", "s", f"t{t}", phases[n % 4], 1000 + n // 5, payload(f"t{t}", n), opts
            )
            if n % 3 == 0:
                await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        for c in range(conversations):
            tg.start_soon(conversation, c)

    everything_saved = await everything(store)
    assert len(everything_saved) == conversations * saves_per_conv
    assert len({s.snapshot_id for s in everything_saved}) == len(everything_saved)
    for c in range(conversations):
        snaps = await store.list(TurnQuery(conv_id=f"c{c}", limit=1000))
        assert [marker_of(s) for s in snaps] == list(reversed(range(saves_per_conv)))
        for s in snaps:
            assert s.runtime_key == f"rt{c}-{s.turn_id[1:]}@v1"
        turns = await store.list_turns(f"c{c}")
        assert [t.turn_id for t in turns] == ["t0", "t1"]
        assert [t.updated_at_ms for t in turns] == [1003, 1003]


async def test_concurrent_refusals_fail_alone(store: Any) -> None:
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 1, payload("t1"), TurnSaveOptions("a@v1"))
    outcomes: dict[int, str] = {}

    async def save(n: int) -> None:
        opts = TurnSaveOptions(runtime_key="a@v1" if n % 2 == 0 else "b@v1")
        try:
            await store.save("c1", "s1", "t1", FINAL, 10 + n, payload("t1", n), opts)
        except TurnRewriteError:
            outcomes[n] = "refused"
        else:
            outcomes[n] = "saved"

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(save, n)
    assert outcomes == {n: "saved" if n % 2 == 0 else "refused" for n in range(20)}
    snaps = await store.list(TurnQuery(phase=FINAL))
    assert sorted(marker_of(s) for s in snaps) == list(range(0, 20, 2))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "a@v1"


# ---------------------------------------------------------------------------------------
# the bug variant's policy really overwrites (so the correct policy's test can fail)


async def test_upsert_overwrite_policy_does_overwrite(make_store: StoreFactory) -> None:
    buggy = await make_store(on_conflict=new_value_wins)
    await buggy.save("c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1"), TurnSaveOptions("a@v1"))
    result = await buggy.save(
        "c1", "s1", "t1", FINAL, 20, payload("t1"), TurnSaveOptions("b@v1", "i2")
    )
    assert (result.runtime_key, result.inference_id) == ("b@v1", "i2")
    record = await buggy.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("b@v1", "i2")
    # empty runtime on a new turn is refused even by the buggy policy
    with pytest.raises(EmptyRuntimeError):
        await buggy.save("c1", "s1", "t2", FINAL, 30, payload("t2"), TurnSaveOptions())


# ---------------------------------------------------------------------------------------
# SQLite specifics


async def test_sqlite_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "reopen.db"
    store = await SQLiteTurnStore.open(path)
    saved = await save_dataset(store)
    await store.conversations.set_current_runtime("c1", "s1", "planner@v1", "planner", 7)
    turns = await store.list_turns("c1")
    await store.close()

    again = await SQLiteTurnStore.open(path)
    try:
        assert again.migration_report is None  # already current: nothing to migrate
        got = [row(s) for s in await everything(again)]
        assert got == reference_list(saved, TurnQuery(limit=10_000))
        assert await again.list_turns("c1") == turns
        assert (await again.conversations.get("c1")).current_runtime_key == "planner@v1"
        # write-once survives the reopen
        with pytest.raises(TurnRewriteError):
            await again.save("c1", "s1", "t1", FINAL, 999, payload("t1"), TurnSaveOptions("x"))
    finally:
        await again.close()


@pytest.mark.parametrize("target", ["file", ":memory:"])
async def test_sqlite_closed_store_raises_store_error(tmp_path: Path, target: str) -> None:
    path = os.fspath(tmp_path / "closed.db") if target == "file" else target
    store = await SQLiteTurnStore.open(path)
    await store.save("c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a@v1"))
    await store.close()
    with pytest.raises(StoreError):
        await store.save("c1", "s1", "t2", FINAL, 2, payload("t2"), TurnSaveOptions("a@v1"))
    with pytest.raises(StoreError):
        await store.list(TurnQuery())
    with pytest.raises(StoreError):
        await store.conversations.set_current_runtime("c1", "s1", "a@v1", "a", 3)
    await store.close()  # closing twice is harmless
