"""The TurnStore / ConversationIndex contract, run against every built-in store.

The suite itself is the conformance kit (``persisters.contract``, imported here through
``persisters.testing`` exactly as a user's own test module would): this module only says
which stores it runs on. A new store joins by adding a kind to ``turnsim_store_factory``;
every check then runs against it on both anyio backends. The server stores
(``postgresql``, ``mysql``) each get fresh scratch schemas/databases, dropped after; they
are skipped, and the run's summary says so, when the server is not there
(``tests/servers.py``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persisters.contract.base import everything, payload, row
from persisters.contract.reads import reference_list, save_dataset
from persisters.errors import StoreError, TurnRewriteError
from persisters.memory_store import MemoryTurnStore
from persisters.model import FINAL, TurnQuery, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, refuse_rewrite
from persisters.testing import *  # noqa: F403 - the contract suite: every check is a test
from tests.servers import need, scratch_pool

STORE_KINDS = ["memory", "sqlite-file", "sqlite-memory", "postgresql", "mysql"]


@pytest.fixture(params=STORE_KINDS)
def turnsim_store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """Fresh, empty stores of one kind (the kit closes each after its test)."""
    kind = request.param
    if kind in ("postgresql", "mysql"):
        need(kind)
    numbers = itertools.count()

    def factory(on_conflict: ConflictPolicy = refuse_rewrite) -> Any:
        if kind == "memory":
            return MemoryTurnStore(on_conflict=on_conflict)
        if kind == "sqlite-file":
            return SQLiteTurnStore.open(tmp_path / f"t{next(numbers)}.db", on_conflict=on_conflict)
        if kind == "sqlite-memory":
            return SQLiteTurnStore.open(":memory:", on_conflict=on_conflict)
        # pooled scratch namespaces: emptied between stores, dropped at the end of the run
        return scratch_pool(kind).open(on_conflict=on_conflict)

    return factory


# ---------------------------------------------------------------------------------------
# SQLite specifics


@pytest.mark.anyio
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


@pytest.mark.anyio
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
