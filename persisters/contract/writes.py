"""Contract checks of saving: write-once, refusals, append-only snapshots, projection."""

from __future__ import annotations

from typing import Any

from persisters.contract.base import (
    StoreMaker,
    check,
    everything,
    marker_of,
    payload,
    raises,
)
from persisters.errors import (
    EmptyRuntimeError,
    InvalidSaveError,
    PermanentStoreError,
    TurnRewriteError,
)
from persisters.model import (
    FINAL,
    POST_INFERENCE,
    POST_TOOLS,
    PRE_INFERENCE,
    TurnQuery,
    TurnSaveOptions,
)
from persisters.store import new_value_wins

# ---------------------------------------------------------------------------------------
# projection (rule 5): explicit options win, metadata fills what is empty


@check("projection")
async def check_explicit_options_win_over_metadata(make: StoreMaker) -> None:
    """Values passed in TurnSaveOptions win over the metadata; the payload is untouched."""
    store = await make()
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


@check("projection")
async def check_one_explicit_field_other_from_metadata(make: StoreMaker) -> None:
    """One field passed, the other taken from the metadata."""
    store = await make()
    body = payload("t1", **{"geppetto.runtime@v1": "meta@v1", "geppetto.inference_id@v1": "m-1"})
    await store.save("c1", "s1", "t1", FINAL, 10, body, TurnSaveOptions(runtime_key="exp@v1"))
    await store.save("c1", "s1", "t2", FINAL, 11, body, TurnSaveOptions(inference_id="x-2"))
    t1 = await store.get_turn("c1", "s1", "t1")
    t2 = await store.get_turn("c1", "s1", "t2")
    assert (t1.runtime_key, t1.inference_id) == ("exp@v1", "m-1")
    assert (t2.runtime_key, t2.inference_id) == ("meta@v1", "x-2")


METADATA_CASES: tuple[tuple[str, Any], ...] = (
    ("v1-keys", ({"geppetto.runtime@v1": "a@v1", "geppetto.inference_id@v1": "i"}, "a@v1", "i")),
    (
        "object-key-legacy-id",
        ({"geppetto.runtime@v1": {"key": "b@v1"}, "inference_id": "legacy"}, "b@v1", "legacy"),
    ),
    (
        "profile-numeric-id",
        ({"geppetto.runtime@v1": {"profile": "p"}, "inference_id": 42}, "p", "42"),
    ),
    ("blank-then-runtime", ({"geppetto.runtime@v1": "  ", "runtime": "c@v1"}, "c@v1", "")),
    ("trimmed", ({"runtime_key": " d@v1 ", "geppetto.inference_id@v1": " "}, "d@v1", "")),
    ("runtime-before-runtime-key", ({"runtime": {"slug": "e"}, "runtime_key": "f@v1"}, "e", "")),
)


@check("projection", cases=METADATA_CASES)
async def check_empty_options_fall_back_to_metadata(make: StoreMaker, case: Any) -> None:
    """Empty (or blank) options: the metadata's aliases, shapes and precedence decide."""
    metadata, runtime, inference = case
    store = await make()
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
# write-once (rule 4)


async def _two_phases(store: Any) -> None:
    opts = TurnSaveOptions("inventory@v1", "inf-1")
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1", 1), opts)
    await store.save("c1", "s1", "t1", POST_INFERENCE, 20, payload("t1", 2), opts)


CONFLICT_CASES: tuple[tuple[str, Any], ...] = (
    ("runtime-explicit", (TurnSaveOptions("planner@v1", "inf-1"), {}, "runtime_key", "planner@v1")),
    ("inference-explicit", (TurnSaveOptions("inventory@v1", "inf-2"), {}, "inference_id", "inf-2")),
    (
        "runtime-metadata",
        (TurnSaveOptions(), {"geppetto.runtime@v1": "planner@v1"}, "runtime_key", "planner@v1"),
    ),
    ("inference-metadata", (TurnSaveOptions(), {"inference_id": "inf-9"}, "inference_id", "inf-9")),
)


@check("write-once", cases=CONFLICT_CASES)
async def check_conflicting_save_is_refused_and_changes_nothing(
    make: StoreMaker, case: Any
) -> None:
    """A save carrying another non-empty value raises TurnRewriteError and writes nothing."""
    options, metadata, field, attempted = case
    store = await make()
    await _two_phases(store)
    turn_before = await store.get_turn("c1", "s1", "t1")
    list_before = await everything(store)
    with raises(TurnRewriteError) as info:
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


@check("write-once")
async def check_same_or_empty_value_is_accepted_and_keeps_stored(make: StoreMaker) -> None:
    """The stored value or an empty one is accepted; the stored value stays."""
    store = await make()
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


@check("write-once")
async def check_filling_an_empty_inference_id_is_allowed_once(make: StoreMaker) -> None:
    """An empty inference id may be filled once; then it is write-once too."""
    store = await make()
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
    with raises(TurnRewriteError):
        await store.save("c1", "s1", "t1", FINAL, 30, payload("t1", 3), TurnSaveOptions("", "x"))


@check("write-once")
async def check_upsert_overwrite_policy_does_overwrite(make: StoreMaker) -> None:
    """The bug variant's policy (new_value_wins) really overwrites, so the write-once
    checks can fail, unless the database itself refuses the rewrite (the SQLite store's
    write-once triggers: a :class:`TurnRewriteError` with ``by_trigger``, nothing changed);
    even it refuses a new turn without a runtime."""
    buggy = await make(on_conflict=new_value_wins)
    await buggy.save("c1", "s1", "t1", PRE_INFERENCE, 10, payload("t1"), TurnSaveOptions("a@v1"))
    try:
        result = await buggy.save(
            "c1", "s1", "t1", FINAL, 20, payload("t1"), TurnSaveOptions("b@v1", "i2")
        )
    except TurnRewriteError as exc:
        assert exc.by_trigger, exc  # only the database's own guard may refuse it
        record = await buggy.get_turn("c1", "s1", "t1")
        assert (record.runtime_key, record.inference_id) == ("a@v1", "")
        assert len(await everything(buggy)) == 1
    else:
        assert (result.runtime_key, result.inference_id) == ("b@v1", "i2")
        record = await buggy.get_turn("c1", "s1", "t1")
        assert (record.runtime_key, record.inference_id) == ("b@v1", "i2")
    with raises(EmptyRuntimeError):
        await buggy.save("c1", "s1", "t2", FINAL, 30, payload("t2"), TurnSaveOptions())


# ---------------------------------------------------------------------------------------
# refusals (rule 8, unusable arguments)


async def _nothing_written(store: Any) -> None:
    assert await everything(store) == []
    assert await store.list_turns("c1") == []
    assert await store.get_turn("c1", "s1", "t1") is None
    assert await store.load_latest_turn("c1", FINAL) is None


@check("empty-runtime")
async def check_empty_runtime_on_a_new_turn_is_refused(make: StoreMaker) -> None:
    """A new turn with no runtime (none passed, none usable in the metadata) is refused."""
    store = await make()
    for body, options in (
        (payload("t1", inference_id="i"), TurnSaveOptions()),
        (payload("t1", **{"geppetto.runtime@v1": {"slug": " "}}), TurnSaveOptions(" ", "i")),
        ("not json at all", TurnSaveOptions()),
    ):
        with raises(EmptyRuntimeError):
            await store.save("c1", "s1", "t1", FINAL, 10, body, options)
    await _nothing_written(store)


@check("empty-runtime")
async def check_runtime_is_never_taken_from_the_conversation_pointer(make: StoreMaker) -> None:
    """A pointer on the conversation does not give a new turn its runtime."""
    store = await make()
    await store.conversations.set_current_runtime("c1", "s1", "planner@v1", "planner", 5)
    with raises(EmptyRuntimeError):
        await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), TurnSaveOptions())
    await _nothing_written(store)


INVALID_CASES: tuple[tuple[str, Any], ...] = (
    ("empty-turn-id", ("c1", "", FINAL, 10)),
    ("blank-turn-id", ("c1", "  ", FINAL, 10)),
    ("empty-conv-id", ("", "t1", FINAL, 10)),
    ("unknown-phase", ("c1", "t1", "done", 10)),
    ("empty-phase", ("c1", "t1", "", 10)),
    ("negative-time", ("c1", "t1", FINAL, -1)),
)


@check("empty-runtime", cases=INVALID_CASES)
async def check_invalid_save_arguments_are_refused(make: StoreMaker, case: Any) -> None:
    """Empty ids, an unknown phase or a negative time raise InvalidSaveError, write nothing."""
    conv_id, turn_id, phase, at_ms = case
    store = await make()
    with raises(InvalidSaveError):
        await store.save(
            conv_id, "s1", turn_id, phase, at_ms, payload("t"), TurnSaveOptions("inventory@v1")
        )
    await _nothing_written(store)
    assert await store.list_turns("") == []


# ---------------------------------------------------------------------------------------
# append-only snapshots


@check("append-only")
async def check_same_phase_same_millisecond_snapshots_both_stay(make: StoreMaker) -> None:
    """Two snapshots of one phase in one millisecond both stay, the later listed first."""
    store = await make()
    opts = TurnSaveOptions("inventory@v1", "i1")
    a = await store.save("c1", "s1", "t1", POST_TOOLS, 10, payload("t1", "a"), opts)
    b = await store.save("c1", "s1", "t1", POST_TOOLS, 10, payload("t1", "b"), opts)
    assert a.snapshot_id != b.snapshot_id
    assert (a.created_turn, b.created_turn) == (True, False)
    snaps = await store.list(TurnQuery(conv_id="c1", phase=POST_TOOLS))
    assert [marker_of(s) for s in snaps] == ["b", "a"]
    assert [s.snapshot_id for s in snaps] == [b.snapshot_id, a.snapshot_id]


@check("append-only")
async def check_every_save_appends_and_earlier_snapshots_keep_their_values(
    make: StoreMaker,
) -> None:
    """Each save adds exactly one snapshot; earlier ones keep payload and projection."""
    store = await make()
    saved = []
    for n, phase in enumerate((PRE_INFERENCE, POST_INFERENCE, POST_TOOLS, POST_TOOLS, FINAL)):
        options = TurnSaveOptions("inventory@v1", "i1" if n else "")
        await store.save("c1", "s1", "t1", phase, 10 + n, payload("t1", n), options)
        saved.append((n, phase, "i1" if n else ""))
        snaps = await store.list(TurnQuery(conv_id="c1"))
        assert len(snaps) == n + 1
        got = sorted((marker_of(s), s.phase, s.inference_id) for s in snaps)
        assert got == saved
