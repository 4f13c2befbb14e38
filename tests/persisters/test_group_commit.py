"""Group commit: the leader/follower batching alone (a fake commit stream, no SQL), then
as the SQLite store's writer (arrival order, saves joining the open transaction)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from persisters.errors import InvalidSaveError, TransientStoreError, TurnsimError
from persisters.group_commit import GroupCommit, PendingWrite
from persisters.model import FINAL, Turn, TurnQuery, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore

pytestmark = pytest.mark.anyio


def payload(turn_id: str, marker: object = None) -> str:
    return Turn(id=turn_id, data={"marker": marker}).serialize()


def marker_of(snapshot: Any) -> Any:
    return json.loads(snapshot.payload)["data"]["marker"]


async def everything(store: SQLiteTurnStore) -> list[Any]:
    return await store.list(TurnQuery(limit=10_000))


class FakeStream:
    """A commit stream without a database: applies ops as taken, one 'transaction' per call.

    ``fail`` fails every op of a transaction, as a failed commit does.
    """

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[int] = []

    def __call__(self, take: Any) -> list[PendingWrite]:
        batch: list[PendingWrite] = []
        while (op := take()) is not None:
            batch.append(op)
            try:
                op.result = op.fn(None, *op.args)
            except TurnsimError as exc:
                op.error = exc
        for op in batch:
            if self.fail:
                op.error = TransientStoreError("commit failed")
            op.done = True
        self.batches.append(len(batch))
        return batch


# ---------------------------------------------------------------------------------------
# the batching alone


async def test_concurrent_writes_commit_in_arrival_order_in_bounded_batches() -> None:
    stream = FakeStream()
    writer = GroupCommit(stream, max_batch=3)
    arrivals: list[int] = []
    applied: list[int] = []

    def apply(conn: None, n: int) -> int:
        applied.append(n)
        return n * 10

    async def write(n: int) -> None:
        arrivals.append(n)  # no await between this and the op being queued
        assert await writer.submit(apply, n) == n * 10

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(write, n)
    assert applied == arrivals
    assert sum(stream.batches) == writer.ops == 20
    assert max(stream.batches) <= 3 and writer.batches == len(stream.batches)


async def test_a_refused_write_fails_alone() -> None:
    writer = GroupCommit(FakeStream())

    def refuse(conn: None) -> None:
        raise InvalidSaveError("refused")

    async def ok() -> str:
        return await writer.submit(lambda conn: "ok")

    results: list[Any] = []

    async def run(fn: Any) -> None:
        try:
            results.append(await fn())
        except InvalidSaveError as exc:
            results.append(str(exc))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, ok)
        tg.start_soon(run, lambda: writer.submit(refuse))
        tg.start_soon(run, ok)
    assert sorted(results) == ["ok", "ok", "refused"]


async def test_flush_commits_what_was_queued_and_never_raises_for_it() -> None:
    stream = FakeStream(fail=True)
    writer = GroupCommit(stream)
    ops = [writer.enqueue(lambda conn, n: n, n) for n in range(3)]
    assert not any(op.done for op in ops)  # enqueue never commits
    await writer.flush()
    assert all(op.done for op in ops)
    for op in ops:
        with pytest.raises(TransientStoreError):
            op.outcome()


async def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommit(FakeStream(), max_batch=0)


# ---------------------------------------------------------------------------------------
# as the SQLite store's writer


@pytest.mark.parametrize("target", ["file", ":memory:"])
async def test_sqlite_group_commit_keeps_arrival_order(tmp_path: Path, target: str) -> None:
    """Saves batched into one transaction keep the order in which ``save`` was called."""
    path = os.fspath(tmp_path / "batch.db") if target == "file" else target
    store = await SQLiteTurnStore.open(path)
    arrivals: list[int] = []

    async def save(n: int) -> None:
        arrivals.append(n)  # no await between this and the save being queued
        await store.save(f"c{n}", "s", "t", FINAL, 1000, payload("t", n), TurnSaveOptions("a"))

    try:
        async with anyio.create_task_group() as tg:
            for n in range(50):
                tg.start_soon(save, n)
        assert store.writer.ops == 50
        assert store.writer.batches < 50  # saves really were batched together
        newest_first = [marker_of(s) for s in await everything(store)]
        assert newest_first == list(reversed(arrivals))
    finally:
        await store.close()


async def test_sqlite_saves_queued_while_a_transaction_applies_join_it(tmp_path: Path) -> None:
    """The writer's thread takes ops as they come: saves queued while it is applying the
    transaction run in that transaction (one commit), not in a second one after it."""
    store = await SQLiteTurnStore.open(tmp_path / "stream.db")
    entered, release = threading.Event(), threading.Event()

    def held(conn: Any) -> None:  # the first op of the transaction blocks its thread
        entered.set()
        assert release.wait(10)

    async def save(n: int) -> None:
        await store.save(f"c{n}", "s", "t", FINAL, 1000, payload("t", n), TurnSaveOptions("a"))

    try:
        batches = store.writer.batches
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.writer.submit, held)
            await anyio.to_thread.run_sync(entered.wait)
            for n in range(10):
                tg.start_soon(save, n)
            await anyio.wait_all_tasks_blocked()  # all ten queued behind the open transaction
            release.set()
        assert store.writer.batches - batches == 1
        assert len(await everything(store)) == 10
    finally:
        await store.close()
