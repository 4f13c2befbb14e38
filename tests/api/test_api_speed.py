"""The lean ``GET /api/debug/turns`` path: the same bytes as the plain one, fewer store calls.

The handler reads a page as rows in one store call and renders it with
:func:`sim.api.views.render_items` instead of building dicts for ``dumps``; with the per-turn
read path it reads no conversation record. These tests hold it to the plain path: every
answer is byte for byte what ``dumps`` of the read path's views gives, odd stored values
included (``test_views.py`` holds the renderer itself to ``dumps``). ``/conversations``
likewise counts every conversation's turns in one store call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from persisters.model import ConversationRecord, TurnQuery, TurnSnapshot, dumps
from persisters.readpath import PointerAsHistoryReadPath, ReadPath
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import TurnStore
from persisters.write_once import drop_triggers
from sim.api.app import create_app, page_reader
from sim.api.openapi import PREFIX
from sim.api.views import ITEM_FIELDS
from tests.api.api_fixtures import STORE_KINDS, T0, build_database, story_store

pytestmark = pytest.mark.anyio

TURNS = "/api/debug/turns"
#: Queries over the story: every filter, several limits, no match.
QUERIES = [
    {},
    {"conv_id": "c1"},
    {"conv_id": "c2", "runtime_key": "inventory@v1", "limit": "2"},
    {"session_id": "s1", "phase": "final"},
    {"runtime_key": "planner@v1"},
    {"inference_id": "inf-c1-2"},
    {"since_ms": str(T0 + 100), "limit": "3"},
    {"conv_id": "nope"},
]


def reference_body(
    snapshots: list[TurnSnapshot], read_path: ReadPath, records: dict[str, Any]
) -> bytes:
    """What the handler answered before the lean path: dumps of each view's to_json."""
    items = [read_path.view(s, records.get(s.conv_id)).to_json() for s in snapshots]
    return dumps({"items": items}).encode("utf-8", "backslashreplace")


def turn_query(params: dict[str, str]) -> TurnQuery:
    values: dict[str, Any] = dict(params)
    for name in ("limit", "since_ms"):
        if name in values:
            values[name] = int(values[name])
    return TurnQuery(**values)


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TurnStore]:
    async with story_store(request.param, tmp_path) as s:
        yield s


@pytest.mark.parametrize(
    "read_path", [ReadPath(), PointerAsHistoryReadPath()], ids=lambda r: r.name
)
async def test_turns_bytes_are_those_of_the_plain_path(store: Any, read_path: ReadPath) -> None:
    records = {r.conv_id: r for r in await store.conversations.list()}
    app = create_app(store, read_path=read_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for params in QUERIES:
            response = await http.get(TURNS, params=params)
            assert response.status_code == 200
            expected = reference_body(await store.list(turn_query(params)), read_path, records)
            assert response.content == expected, params


async def test_the_per_turn_path_reads_no_conversation_record(store: Any) -> None:
    """One store call per /turns request; the conversation index is not asked."""
    calls: list[str] = []

    async def refuse(conv_id: str) -> ConversationRecord | None:
        calls.append(f"conversations.get({conv_id})")
        raise AssertionError("the per-turn read path needs no conversation record")

    store.conversations.get = refuse
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(store)), base_url="http://test"
    ) as http:
        assert (await http.get(TURNS, params={"conv_id": "c1"})).status_code == 200
        assert (await http.get("/api/debug/turn/c1/s1/c1-t2")).status_code == 200
    assert calls == []


def count_reads(store: SQLiteTurnStore) -> list[Any]:
    """The functions ``store`` runs on its connection from now on (one per thread hop)."""
    reads: list[Any] = []
    read = store._db.read

    def counted(fn: Any, *args: Any) -> Any:
        reads.append(fn)
        return read(fn, *args)

    store._db.read = counted  # type: ignore[method-assign]
    return reads


async def test_sqlite_pages_are_one_read(tmp_path: Path) -> None:
    """A page is one read of the database (one worker-thread hop), equal to ``list``."""
    store = await SQLiteTurnStore.open(await build_database(tmp_path / "story.db"), read_only=True)
    try:
        reads = count_reads(store)
        read_page = page_reader(store)
        for params in QUERIES:
            query = turn_query(params)
            rows = await read_page(query)
            assert len(reads) == 1
            reads.clear()
            snapshots = await store.list(query)
            assert [tuple(r[:8]) for r in rows] == [
                tuple(getattr(s, f) for f in ITEM_FIELDS) for s in snapshots
            ]
            reads.clear()
    finally:
        await store.close()


async def test_a_blob_payload_reads_as_the_store_decodes_it(tmp_path: Path) -> None:
    """A payload that is not text (another tool wrote it) takes the store's conversion."""
    path = await build_database(tmp_path / "story.db")
    conn = sqlite3.connect(path)
    drop_triggers(conn)  # hand damage: past the file's write-once triggers
    conn.execute("UPDATE turn_snapshots SET payload = x'fffe00' WHERE turn_id = 'c1-t1'")
    conn.execute("UPDATE turn_snapshots SET payload = 42 WHERE turn_id = 'c2-t1'")
    conn.commit()
    conn.close()
    store = await SQLiteTurnStore.open(path, read_only=True)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(store)), base_url="http://test"
        ) as http:
            for params in ({}, {"conv_id": "c1"}, {"conv_id": "c2"}):
                response = await http.get(TURNS, params=params)
                expected = reference_body(await store.list(turn_query(params)), ReadPath(), {})
                assert response.content == expected
            items = (await http.get(TURNS, params={"conv_id": "c2"})).json()["items"]
            assert "42" in [item["payload"] for item in items]
    finally:
        await store.close()


class PerConversationTurnCounts:
    """A store whose ``turn_counts`` asks ``list_turns`` for each conversation in turn."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.conversations = store.conversations

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def turn_counts(self) -> dict[str, int]:
        counts = {}
        for record in await self.conversations.list():
            if n := len(await self._store.list_turns(record.conv_id)):
                counts[record.conv_id] = n
        return counts


async def test_conversations_bytes_are_those_of_the_per_conversation_path(store: Any) -> None:
    """``/conversations`` counts turns in one call; counting each conversation's turns in
    turn gives the same answer, byte for byte (the story has a conversation with no turn)."""
    bodies = []
    for app_store in (store, PerConversationTurnCounts(store)):
        transport = httpx.ASGITransport(app=create_app(app_store))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get(f"{PREFIX}/conversations")
            assert response.status_code == 200
            bodies.append(response.content)
    assert bodies[0] == bodies[1]
    items = httpx.Response(200, content=bodies[0]).json()["items"]
    assert 0 in [item["turn_count"] for item in items]
    for item in items:
        assert item["turn_count"] == len(await store.list_turns(item["conv_id"]))


async def test_sqlite_conversation_list_is_two_reads(tmp_path: Path) -> None:
    """The records and every turn count: two reads however many conversations there are."""
    store = await SQLiteTurnStore.open(await build_database(tmp_path / "story.db"), read_only=True)
    try:
        reads = count_reads(store)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(store)), base_url="http://test"
        ) as http:
            items = (await http.get(f"{PREFIX}/conversations")).json()["items"]
        assert len(items) >= 3
        assert len(reads) == 2
    finally:
        await store.close()
