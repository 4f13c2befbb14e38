"""Contract checks of the store as a whole: the Protocol, concurrency, group commit,
the read-only fault."""

from __future__ import annotations

import inspect
from typing import Any

import anyio

from persisters.contract.base import Skip, StoreMaker, check, everything, marker_of, payload, raises
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
    TurnQuery,
    TurnSaveOptions,
)
from persisters.store import ConversationIndex, TurnStore, WriteQueue

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
    """``obj`` has every member of ``protocol``, coroutines where it declares them."""
    assert isinstance(obj, protocol), f"{type(obj).__name__} is not a {protocol.__name__}"
    for name, is_async in protocol_members(protocol).items():
        member = getattr(obj, name)  # raises if missing: a store implements all of it
        if is_async:
            assert inspect.iscoroutinefunction(member), f"{name} must be async"
        elif callable(getattr(protocol, name)):
            assert callable(member) and not inspect.iscoroutinefunction(member), name


@check("protocol")
async def check_store_implements_the_whole_protocol(make: StoreMaker) -> None:
    """Every member of TurnStore, ConversationIndex and WriteQueue (when there is one);
    ``conversations`` and ``group_commit`` are one object for the store's lifetime."""
    store = await make()
    assert_implements(store, TurnStore)
    assert_implements(store.conversations, ConversationIndex)
    assert store.conversations is store.conversations
    queue = store.group_commit
    assert queue is store.group_commit  # one object: the kernel flushes it once per instant
    if queue is not None:
        assert_implements(queue, WriteQueue)


@check("protocol")
async def check_closed_store_refuses_writes_and_closes_twice(make: StoreMaker) -> None:
    """After ``close`` a write raises StoreError; closing twice is harmless."""
    store = await make()
    await store.save("c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a@v1"))
    await store.close()
    with raises(StoreError):
        await store.save("c1", "s1", "t2", FINAL, 2, payload("t2"), TurnSaveOptions("a@v1"))
    await store.close()


# ---------------------------------------------------------------------------------------
# the read-only fault


@check("read-only")
async def check_make_read_only_refuses_every_write_and_keeps_reads(make: StoreMaker) -> None:
    """Saves and index writes fail with 'readonly'; every read still answers as before."""
    store = await make()
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
        with raises(PermanentStoreError, match="readonly"):
            await write
    with raises(InvalidSaveError):  # unusable arguments are still refused as such
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
    """Everything a store holds, ids left out, for comparing two stores."""
    snapshots = [attr_row(s) for s in await everything(store)]
    return (
        snapshots,
        await store.list_turns("c1"),
        await store.list_turns("c2"),
        await store.conversations.list(),
    )


def attr_row(snapshot: Any) -> tuple[Any, ...]:
    return (
        snapshot.conv_id,
        snapshot.turn_id,
        snapshot.phase,
        snapshot.runtime_key,
        snapshot.inference_id,
        snapshot.created_at_ms,
        snapshot.payload,
    )


def _without_id(outcome: Any) -> Any:
    """A save's result without its store-specific snapshot id; anything else as it is."""
    if hasattr(outcome, "snapshot_id"):
        return (outcome.runtime_key, outcome.inference_id, outcome.created_turn)
    return outcome


def _queue_of(store: Any) -> Any:
    if store.group_commit is None:
        raise Skip("this store has no group commit: its writes are awaited one by one")
    return store.group_commit


@check("concurrency")
async def check_group_commit_gives_what_awaited_calls_give(make: StoreMaker) -> None:
    """A flushed batch of every kind of write gives the outcomes and the stored state the
    same writes give awaited one by one (the reference store's)."""
    store = await make()
    _queue_of(store)
    reference = MemoryTurnStore()
    expected = await await_writes(reference)
    assert expected[3] is TurnRewriteError and expected[6] is EmptyRuntimeError
    got = await queue_writes(store)
    assert [_without_id(x) for x in got] == [_without_id(x) for x in expected]
    ids = [x.snapshot_id for x in got if hasattr(x, "snapshot_id")]
    assert ids == sorted(set(ids))  # each save's id greater than every earlier one's
    assert await stored_state(store) == await stored_state(reference)


@check("concurrency")
async def check_group_commit_refuses_unusable_arguments_at_once(make: StoreMaker) -> None:
    """``enqueue_save`` raises InvalidSaveError at once; an empty flush is harmless."""
    store = await make()
    queue = _queue_of(store)
    with raises(InvalidSaveError):
        queue.enqueue_save("c1", "s1", " ", FINAL, 1, payload(" "), TurnSaveOptions("a"))
    await queue.flush()  # nothing queued: harmless
    assert await everything(store) == []


@check("concurrency")
async def check_group_commit_flush_does_not_raise_for_failed_writes(make: StoreMaker) -> None:
    """A write that fails is that write's outcome; ``flush`` itself returns."""
    store = await make()
    queue = _queue_of(store)
    await store.make_read_only()
    op = queue.enqueue_save("c1", "s1", "t1", FINAL, 1, payload("t1"), TurnSaveOptions("a"))
    await queue.flush()
    with raises(PermanentStoreError, match="readonly"):
        op.outcome()


@check("concurrency")
async def check_concurrent_saves_all_land_in_per_conversation_order(make: StoreMaker) -> None:
    """Ten conversations saving at once: every save lands, each conversation in order."""
    store = await make()
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


@check("concurrency")
async def check_concurrent_refusals_fail_alone(make: StoreMaker) -> None:
    """Twenty concurrent saves of one turn, half conflicting: exactly those are refused."""
    store = await make()
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
