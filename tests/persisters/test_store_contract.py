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
from persisters.errors import EmptyRuntimeError, InvalidSaveError, StoreError, TurnRewriteError
from persisters.memory_store import MemoryTurnStore
from persisters.model import FINAL, POST_TOOLS, PRE_INFERENCE, TurnQuery, TurnSaveOptions
from persisters.normalized_store import open_normalized_store
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import ConflictPolicy, refuse_rewrite
from persisters.testing import *  # noqa: F403 - the contract suite: every check is a test
from tests.servers import need, scratch_pool

STORE_KINDS = [
    "memory",
    "sqlite-file",
    "sqlite-memory",
    "normalized-file",
    "normalized-memory",
    "postgresql",
    "mysql",
]


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
        if kind == "normalized-file":  # the index in a timeline database
            n = next(numbers)
            return open_normalized_store(
                tmp_path / f"n{n}.db", tmp_path / f"tl{n}.db", on_conflict=on_conflict
            )
        if kind == "normalized-memory":  # the index in the same database
            return open_normalized_store(":memory:", on_conflict=on_conflict)
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


# ---------------------------------------------------------------------------------------
# The real store's rules (issue 15): sessions, Go's whitespace, "" as any phase


@pytest.fixture
async def store(turnsim_store_factory: Callable[..., Any]) -> Any:
    made = turnsim_store_factory()
    opened = await made if hasattr(made, "__await__") else made
    yield opened
    await opened.close()


def _marker(snapshot: Any) -> Any:
    import json

    return json.loads(snapshot.payload)["data"]["marker"]


@pytest.mark.anyio
@pytest.mark.parametrize("session_id", ["", " ", "\u3000"])
async def test_empty_session_id_is_refused(store: Any, session_id: str) -> None:
    # a turn without a session cannot even be addressed by the debug API's path
    with pytest.raises(InvalidSaveError, match="session_id is empty"):
        await store.save(
            "c1", session_id, "t1", FINAL, 10, payload("t1"), TurnSaveOptions("inventory@v1")
        )
    assert await everything(store) == []
    assert await store.list_turns("c1") == []


@pytest.mark.anyio
async def test_unicode_whitespace_is_whitespace(store: Any) -> None:
    """Whitespace is what Go's strings.TrimSpace trims: U+00A0, U+3000 and the rest too."""
    for options in (TurnSaveOptions("\u00a0"), TurnSaveOptions("\u3000\u2003 ", "i-1")):
        with pytest.raises(EmptyRuntimeError):
            await store.save("c1", "s1", "t1", FINAL, 10, payload("t1"), options)
    for conv_id, turn_id in (("\u3000", "t1"), ("c1", "\xa0\u2028")):
        with pytest.raises(InvalidSaveError):
            await store.save(conv_id, "s1", turn_id, FINAL, 10, payload("t1"), options)
    assert await everything(store) == []
    meta = {"geppetto.runtime@v1": "\u00a0", "runtime": "\u3000r@v1\u3000"}
    body = payload("t1", **meta)
    result = await store.save("c1", "s1", "t1", FINAL, 10, body, TurnSaveOptions("", "\u202fi-1"))
    assert (result.runtime_key, result.inference_id) == ("r@v1", "i-1")
    record = await store.get_turn("c1", "s1", "t1")
    assert (record.runtime_key, record.inference_id) == ("r@v1", "i-1")


@pytest.mark.anyio
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
        assert (latest.turn_id, latest.phase, _marker(latest)) == ("t2", PRE_INFERENCE, 2)
    assert (await store.load_latest_turn("c1", FINAL)).turn_id == "t1"
    await store.save("c1", "s1", "t4", POST_TOOLS, 30, payload("t4", 4), rt)  # a tie: later wins
    assert (await store.load_latest_turn("c1", "")).turn_id == "t4"
    assert await store.load_latest_turn("c3", "") is None
