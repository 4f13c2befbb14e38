"""The normalized store against the real server: what it writes, what it reads, what it adds.

The contract suite (test_store_contract.py) runs against this store too; these tests are
about fidelity: the real server's own List query reads what turnsim wrote, a database the
real server wrote (before the cutover) opens with its snapshot history, and each store
refuses the other's layout.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persisters.blocks import (
    HASH_ALGORITHM,
    block_of_row,
    blocks_of_payload,
    content_hash,
    go_json,
    payload_of_blocks,
)
from persisters.errors import SchemaError, TurnRewriteError
from persisters.migration import migrate
from persisters.model import FINAL, POST_INFERENCE, PRE_INFERENCE, Block, Turn, TurnQuery, dumps
from persisters.model import TurnSaveOptions as Options
from persisters.normalized_schema import (
    NORMALIZED,
    PRE_CUTOVER_TURNS_SCHEMA,
    REAL_TIMELINE_SCHEMA,
    layout_of,
)
from persisters.normalized_store import open_normalized_store
from persisters.sqlite_store import SQLiteTurnStore
from persisters.stores import open_database

pytestmark = pytest.mark.anyio

RT = "geppetto.runtime@v1"
INF = "geppetto.inference_id@v1"

# ---------------------------------------------------------------------------------------
# the content hash


def test_content_hash_is_the_real_one() -> None:
    """The real store's hash: SHA-256 of Go's JSON of {kind, role, payload, metadata}."""
    material = '{"kind":"llm_text","role":"assistant","payload":{"text":"hi"},"metadata":{}}'
    expected = hashlib.sha256(material.encode()).hexdigest()
    assert expected == "2dc3e67087722d45426233f85c7db236f85e340cf4c9dab6d6725a1add5d7885"
    assert content_hash("llm_text", "assistant", {"text": "hi"}, {}) == expected
    # a missing map counts as {}, kind and role are trimmed, key order does not matter
    assert content_hash(" llm_text\u3000", "assistant ", {"text": "hi"}, None) == expected
    a = content_hash("tool_call", "", {"b": 1, "a": [1, {"y": 2, "x": 1}]}, {"m": True})
    b = content_hash("tool_call", "", {"a": [1, {"x": 1, "y": 2}], "b": 1}, {"m": True})
    assert a == b
    assert content_hash("tool_call", "", {"a": 1}, {}) != content_hash("tool_call", "", {}, {})


@pytest.mark.parametrize(
    ("value", "go"),
    [
        ({"b": 1, "a": "x"}, '{"a":"x","b":1}'),
        ("<a&b>", '"\\u003ca\\u0026b\\u003e"'),  # HTML-safe, as Go writes strings
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("\x08\x0c\n\x01", '"\\b\\f\\n\\u0001"'),
        ("é\u3000", '"é\u3000"'),  # UTF-8 as it is
        ([1.0, 2.5, 1e-7, 1e21, 1e20, -0.0], "[1,2.5,1e-7,1e+21,100000000000000000000,-0]"),
        ({"\u00e9": 1, "z": 2, "a": 3}, '{"a":3,"z":2,"\u00e9":1}'),  # byte order of UTF-8
        (None, "null"),
        (True, "true"),
    ],
)
def test_go_json(value: Any, go: str) -> None:
    assert go_json(value) == go


# ---------------------------------------------------------------------------------------
# blocks: a turnsim turn as block rows and back

TURN = Turn(
    id="t1",
    blocks=(
        Block("system", "You are the inventory assistant."),
        Block("user", "How many widgets?"),
        Block("tool_call", "lookup", {"round": 1}),
        Block("tool_use", "result 1", {"round": 1}),
        Block("llm_text", "Twelve."),
    ),
    metadata={RT: "inventory@v1", INF: "i1"},
    data={"usage": {"tokens": 3}},
)


def test_a_turnsim_turn_comes_back_from_its_blocks_byte_for_byte() -> None:
    payload = TURN.serialize()
    rows = blocks_of_payload("t1", payload)
    assert [(r.block_id, r.kind, r.role) for r in rows] == [
        ("t1#0", "system", "system"),
        ("t1#1", "user", "user"),
        ("t1#2", "tool_call", ""),
        ("t1#3", "tool_use", ""),
        ("t1#4", "llm_text", "assistant"),
    ]
    assert json.loads(rows[2].payload_json) == {"text": "lookup", "data": {"round": 1}}
    blocks = [
        block_of_row("t1", r.ordinal, r.block_id, r.kind, r.role, r.payload_json, r.metadata_json)
        for r in rows
    ]
    metadata, data = json.dumps(dict(TURN.metadata)), json.dumps(dict(TURN.data))
    assert payload_of_blocks("t1", blocks, metadata, data) == payload


def test_a_real_block_keeps_every_field() -> None:
    """A block the real server wrote (own id, a payload of other fields, metadata)."""
    payload = {"id": "call_1", "name": "stock", "args": {"sku": 7}}
    block = block_of_row("t9", 0, "b-7", "tool_call", "", json.dumps(payload), '{"m":1}')
    assert block == {"kind": "tool_call", "payload": payload, "id": "b-7", "metadata": {"m": 1}}
    again = blocks_of_payload("t9", json.dumps({"id": "t9", "blocks": [block]}))
    assert [(r.block_id, json.loads(r.payload_json)) for r in again] == [("b-7", payload)]
    text = block_of_row("t9", 1, "t9#1", "llm_text", "assistant", '{"text":"hi"}', "{}")
    assert text == {"kind": "llm_text", "text": "hi"}
    odd_role = block_of_row("t9", 1, "t9#1", "llm_text", "system", '{"text":"hi"}', "{}")
    assert odd_role["role"] == "system"
    # a turn row whose metadata is unusable: the rebuilt turn has none (absent, not made up)
    rebuilt = json.loads(payload_of_blocks("t9", [text], "garbage{", None))
    assert "metadata" not in rebuilt and rebuilt["data"] == {}


# ---------------------------------------------------------------------------------------
# what the store writes, read by the real server's own query

#: pinocchio's SQLiteTurnStore.List at the GP-26 cutover (turn_store_sqlite.go), for one
#: conversation: a snapshot is a group of membership rows, its projection the turn row's.
REAL_LIST_SQL = """
SELECT
  m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms,
  COALESCE(MAX(t.runtime_key), '') AS runtime_key,
  COALESCE(MAX(t.inference_id), '') AS inference_id,
  COALESCE(MAX(t.turn_metadata_json), '{}') AS turn_metadata_json,
  COALESCE(MAX(t.turn_data_json), '{}') AS turn_data_json
FROM turn_block_membership m
LEFT JOIN turns t
  ON t.conv_id = m.conv_id AND t.session_id = m.session_id AND t.turn_id = m.turn_id
WHERE m.conv_id = ?
GROUP BY m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms
ORDER BY m.snapshot_created_at_ms DESC
LIMIT 200"""

#: Its loadSnapshotBlocks.
REAL_BLOCKS_SQL = """
SELECT b.block_id, b.kind, b.role, b.payload_json, b.block_metadata_json
FROM turn_block_membership m
JOIN blocks b ON b.block_id = m.block_id AND b.content_hash = m.content_hash
WHERE m.conv_id = ? AND m.session_id = ? AND m.turn_id = ? AND m.phase = ?
  AND m.snapshot_created_at_ms = ?
ORDER BY m.ordinal ASC"""


def real_list(path: Path, conv_id: str) -> list[tuple[Any, ...]]:
    """(turn_id, phase, created, runtime, inference, blocks) as the real server reads them."""
    conn = sqlite3.connect(path)
    try:
        out = []
        for row in conn.execute(REAL_LIST_SQL, (conv_id,)).fetchall():
            key = row[:5]
            blocks = conn.execute(REAL_BLOCKS_SQL, key).fetchall()
            out.append((row[2], row[3], row[4], row[5], row[6], blocks))
        return out
    finally:
        conn.close()


def phases_of(turn: Turn) -> list[tuple[str, Turn]]:
    """pre_inference (system + user), post_inference (+ tool call), final (all blocks)."""
    return [
        (PRE_INFERENCE, attrs_evolve(turn, turn.blocks[:2])),
        (POST_INFERENCE, attrs_evolve(turn, turn.blocks[:3])),
        (FINAL, turn),
    ]


def attrs_evolve(turn: Turn, blocks: tuple[Block, ...]) -> Turn:
    return Turn(id=turn.id, blocks=blocks, metadata=turn.metadata, data=turn.data)


async def test_the_real_servers_list_reads_what_the_store_wrote(tmp_path: Path) -> None:
    path, timeline = tmp_path / "turns.db", tmp_path / "timeline.db"
    store = await open_normalized_store(path, timeline)
    try:
        for n, (phase, turn) in enumerate(phases_of(TURN)):
            await store.save("c1", "s1", "t1", phase, 100 + n, turn.serialize(), Options())
        ours = await store.list(TurnQuery(conv_id="c1"))
    finally:
        await store.close()
    theirs = real_list(path, "c1")
    assert [(t[0], t[1], t[2], t[3], t[4]) for t in theirs] == [
        (s.turn_id, s.phase, s.created_at_ms, s.runtime_key, s.inference_id) for s in ours
    ]
    for (_, _, _, _, _, blocks), snapshot in zip(theirs, ours, strict=True):
        rebuilt = [block_of_row("t1", i, *b) for i, b in enumerate(blocks)]
        metadata, data = json.dumps(dict(TURN.metadata)), json.dumps(dict(TURN.data))
        assert payload_of_blocks("t1", rebuilt, metadata, data) == snapshot.payload
    conn = sqlite3.connect(path)
    try:
        # five blocks stored once for 2 + 3 + 5 memberships, with the real hash and algorithm
        assert conn.execute("SELECT count(*) FROM turn_block_membership").fetchone() == (10,)
        rows = conn.execute(
            "SELECT kind, role, payload_json, block_metadata_json, content_hash, hash_algorithm, "
            "first_seen_at_ms FROM blocks ORDER BY block_id"
        ).fetchall()
        assert len(rows) == 5
        for kind, role, body, meta, digest, algorithm, _ in rows:
            assert digest == content_hash(kind, role, json.loads(body), json.loads(meta))
            assert algorithm == HASH_ALGORITHM
        assert [r[6] for r in rows] == [100, 100, 101, 102, 102]  # the earliest save's time
        turn_row = conn.execute(
            "SELECT turn_created_at_ms, updated_at_ms, runtime_key, inference_id, "
            "turn_metadata_json FROM turns"
        ).fetchall()
        assert turn_row == [(100, 102, "inventory@v1", "i1", dumps(dict(TURN.metadata)))]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()


async def test_one_millisecond_one_phase_twice_the_log_keeps_both(tmp_path: Path) -> None:
    """The real key (phase, millisecond) holds one snapshot; turnsim's log holds both."""
    path = tmp_path / "turns.db"
    first = attrs_evolve(TURN, TURN.blocks[:2])
    async with await open_normalized_store(path) as store:
        await store.save("c1", "s1", "t1", FINAL, 100, first.serialize(), Options())
        await store.save("c1", "s1", "t1", FINAL, 100, TURN.serialize(), Options())
        ours = await store.list(TurnQuery(conv_id="c1"))
    assert [s.payload for s in ours] == [TURN.serialize(), first.serialize()]
    [(_, _, _, _, _, blocks)] = real_list(path, "c1")
    assert len(blocks) == len(TURN.blocks)  # the later save's blocks, as the real store keeps


async def test_a_snapshot_without_blocks_is_in_the_log_only(tmp_path: Path) -> None:
    async with await open_normalized_store(tmp_path / "t.db") as store:
        empty = Turn(id="t1", metadata={RT: "a@v1"})
        await store.save("c1", "s1", "t1", PRE_INFERENCE, 5, empty.serialize(), Options())
        assert [s.payload for s in await store.list(TurnQuery())] == [empty.serialize()]
        # a payload that is no turn at all is kept as it is: nothing goes to the blocks
        await store.save("c1", "s1", "t2", FINAL, 6, "not json", Options("a@v1"))
        assert (await store.load_latest_turn("c1", "")).payload == "not json"
    assert real_list(tmp_path / "t.db", "c1") == []


async def test_write_once_holds_on_the_real_turn_row(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    async with await open_normalized_store(path) as store:
        await store.save("c1", "s1", "t1", PRE_INFERENCE, 1, TURN.serialize(), Options())
        with pytest.raises(TurnRewriteError):
            await store.save("c1", "s1", "t1", FINAL, 2, TURN.serialize(), Options("planner@v1"))
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT runtime_key FROM turns").fetchall() == [("inventory@v1",)]
        # the refused save wrote no membership either
        phases = conn.execute("SELECT DISTINCT phase FROM turn_block_membership").fetchall()
        assert phases == [(PRE_INFERENCE,)]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# a database the real server wrote, before the cutover


def real_database(path: Path, timeline: Path | None = None) -> list[tuple[Any, ...]]:
    """A pre-cutover turn database (and timeline) as the real server left it; returns the
    snapshots written: (conv, session, turn, phase, created, payload)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for statement in PRE_CUTOVER_TURNS_SCHEMA.split(";"):
        conn.execute(statement)
    written = []
    turns = [
        ("c1", "s1", "t1", 1000, TURN),
        ("c1", "s1", "t2", 2000, Turn(id="t2", blocks=(Block("user", "next"),), metadata={})),
    ]
    for conv, session, turn_id, at, turn in turns:
        meta, data = json.dumps(dict(turn.metadata)), json.dumps(dict(turn.data))
        conn.execute(
            "INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, 0)",
            (conv, session, turn_id, at, meta, data),
        )
        for n, (phase, snap) in enumerate(phases_of(turn) if len(turn.blocks) > 2 else []):
            payload = snap.serialize()
            for b in blocks_of_payload(turn_id, payload):
                conn.execute(
                    "INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (b.block_id, b.content_hash, HASH_ALGORITHM, b.kind, b.role,
                     b.payload_json, b.metadata_json, at),
                )  # fmt: skip
                conn.execute(
                    "INSERT INTO turn_block_membership VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (conv, session, turn_id, phase, at + n, b.ordinal, b.block_id, b.content_hash),
                )
            written.append((conv, session, turn_id, phase, at + n, payload))
    conn.execute("COMMIT")
    conn.close()
    if timeline is not None:
        conn = sqlite3.connect(timeline)
        conn.executescript(REAL_TIMELINE_SCHEMA)
        conn.execute(
            "INSERT INTO timeline_conversations (conv_id, session_id, runtime_key, "
            "created_at_ms, last_activity_ms) VALUES ('c1', 's1', 'planner@v1', 900, 2500)"
        )
        conn.commit()
        conn.close()
    return written


async def test_a_real_pre_cutover_database_opens_with_its_snapshot_history(
    tmp_path: Path,
) -> None:
    path, timeline = tmp_path / "turns.db", tmp_path / "timeline3.db"
    written = real_database(path, timeline)
    assert layout_of({"turns", "blocks", "turn_block_membership"}) is not None
    with pytest.raises(SchemaError, match="turnsim db migrate"):  # read-only never migrates
        await open_database(path, read_only=True, timeline_path=timeline)
    store = await open_normalized_store(path, timeline)
    try:
        report = store.migration_report
        assert report is not None and report.layout == "normalized"
        assert report.snapshots_imported == 3
        assert report.columns_added == ("turns.runtime_key", "turns.inference_id")
        assert report.updated_at_filled == 2  # the real server's repair: created time
        assert store.timeline_migration_report.columns_added == (
            "timeline_conversations.profile_slug",
        )
        got = await store.list(TurnQuery(conv_id="c1"))
        assert [(s.turn_id, s.phase, s.created_at_ms, s.payload) for s in got] == [
            (t, p, at, body) for _, _, t, p, at, body in reversed(written)
        ]
        assert {(s.runtime_key, s.inference_id) for s in got} == {("inventory@v1", "i1")}
        turns = [(t.turn_id, t.runtime_key, t.updated_at_ms) for t in await store.list_turns("c1")]
        assert turns == [("t1", "inventory@v1", 1000), ("t2", "", 2000)]  # t2: unknown
        [conv] = await store.conversations.list()
        assert (conv.current_runtime_key, conv.profile_slug) == ("planner@v1", "")
        # turnsim writes on: a new turn, and the pointer (which it may clear)
        await store.save("c1", "s1", "t3", FINAL, 3000, TURN.serialize(), Options("planner@v1"))
        cleared = await store.conversations.set_current_runtime("c1", "s1", "", "broken", 3100)
        assert cleared.current_runtime_key == ""
    finally:
        await store.close()
    # the files are what a served, read-only store reads
    served = await open_database(path, read_only=True, timeline_path=timeline)
    try:
        assert len(await served.list(TurnQuery(conv_id="c1"))) == 4
        assert (await served.conversations.get("c1")).profile_slug == "broken"
    finally:
        await served.close()


async def test_snapshots_written_after_the_migration_are_copied_by_the_next(
    tmp_path: Path,
) -> None:
    """What the store wrote is exactly what the migration would rebuild from the blocks."""
    path = tmp_path / "turns.db"
    async with await open_normalized_store(path) as store:
        for n, (phase, turn) in enumerate(phases_of(TURN)):
            await store.save("c1", "s1", "t1", phase, 100 + n, turn.serialize(), Options())
        before = await store.list(TurnQuery())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DELETE FROM turn_snapshots")  # as if the real server had written them
        report = migrate(conn, layout=NORMALIZED)
        assert (report.snapshots_imported, report.changed) == (3, True)
        assert migrate(conn, layout=NORMALIZED).changed is False
    finally:
        conn.close()
    async with await open_normalized_store(path) as store:
        after = await store.list(TurnQuery())
    strip = [(s.turn_id, s.phase, s.created_at_ms, s.runtime_key, s.payload) for s in before]
    assert [(s.turn_id, s.phase, s.created_at_ms, s.runtime_key, s.payload) for s in after] == strip


async def test_each_store_refuses_the_other_layout(tmp_path: Path) -> None:
    real, ours = tmp_path / "real.db", tmp_path / "ours.db"
    real_database(real)
    async with await SQLiteTurnStore.open(ours):
        pass
    for opener, path, hint in (
        (SQLiteTurnStore.open, real, "--store normalized"),
        (open_normalized_store, ours, "--store sqlite"),
    ):
        before = path.read_bytes()
        with pytest.raises(SchemaError, match=hint):
            await opener(path)
        assert path.read_bytes() == before
    # a file is opened with the store of its layout
    async with await open_database(ours) as store:
        assert type(store) is SQLiteTurnStore
    store = await open_database(real)
    try:
        assert type(store).__name__ == "NormalizedTurnStore"
    finally:
        await store.close()


# The fast hash (our JSON encoder plus Go's escapes) must equal Go's encoding everywhere.
_TEXT = st.text(
    st.sampled_from(["a", "é", "<", ">", "&", "\u2028", "\x01", '"', "\\", "\ud800", "𝄞"]),
    max_size=5,
)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(["llm_text", "tool_call", " user ", "<x>"]),
    fields=st.dictionaries(_TEXT, _VALUES, max_size=4),
    metadata=st.none() | st.dictionaries(_TEXT, _VALUES, max_size=3),
)
def test_the_fast_hash_is_gos(kind: str, fields: dict[str, Any], metadata: Any) -> None:
    block = {**fields, "kind": kind}
    if metadata is not None:
        block["metadata"] = metadata
    payload = json.dumps({"id": "t", "blocks": [block]})  # ASCII: lone surrogates survive
    [row] = blocks_of_payload("t", payload)
    decoded = json.loads(payload)["blocks"][0]
    body = {k: v for k, v in decoded.items() if k not in ("id", "kind", "role", "metadata")}
    if set(body) == {"payload"} and isinstance(body["payload"], dict):
        body = body["payload"]
    role = decoded["role"] if isinstance(decoded.get("role"), str) else row.role
    meta = decoded.get("metadata") if isinstance(decoded.get("metadata"), dict) else {}
    assert row.content_hash == content_hash(row.kind, role, body, meta)
