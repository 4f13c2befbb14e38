"""Migrating pre-cutover databases: additive, idempotent, honest, one transaction."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from persisters import migration, schema
from persisters.errors import NotSQLiteError, SchemaError, StoreError, TurnRewriteError
from persisters.model import FINAL, POST_TOOLS, PRE_INFERENCE, Turn, TurnQuery, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from persisters.write_once import TRIGGERS

# ---------------------------------------------------------------------------------------
# an old database: a turns.db-style store plus a timeline3.db-style conversation table

RT = "geppetto.runtime@v1"
INF = "geppetto.inference_id@v1"
SESSION = "geppetto.session_id@v1"

# turn_id -> (conv_id, turn_metadata_json, expected runtime_key, expected inference_id)
OLD_TURNS: dict[str, tuple[str, str, str, str]] = {
    "t01": (
        "c1",
        json.dumps({RT: "inventory@v1", INF: "inf-01", SESSION: "s1"}),
        "inventory@v1",
        "inf-01",
    ),
    "t02": (
        "c1",
        json.dumps(
            {RT: {"runtime_key": "planner@v1", "key": "k", "slug": "s"}, "inference_id": "leg-02"}
        ),
        "planner@v1",
        "leg-02",
    ),
    "t03": ("c1", json.dumps({RT: {"key": "key@v1", "slug": "s"}}), "key@v1", ""),
    "t04": ("c1", json.dumps({RT: {"slug": "slug@v1", "profile": "p"}}), "slug@v1", ""),
    "t05": ("c1", json.dumps({RT: {"profile": "prof", "profile_key": "pk"}}), "prof", ""),
    "t06": ("c1", json.dumps({RT: {"profile_key": "pk@v1"}}), "pk@v1", ""),
    # whitespace-only object fields fall through to the next field
    "t07": (
        "c1",
        json.dumps({RT: {"runtime_key": "  ", "key": "\t", "slug": "ws@v1"}}),
        "ws@v1",
        "",
    ),
    # a whitespace-only value falls through to the next alias
    "t08": ("c1", json.dumps({RT: "   ", "runtime": "top@v1"}), "top@v1", ""),
    # top-level runtime_key, numeric inference id
    "t09": ("c2", json.dumps({"runtime_key": "rk@v1", INF: 12345}), "rk@v1", "12345"),
    # top-level runtime object wins over runtime_key; blank canonical id falls to the legacy
    "t10": (
        "c2",
        json.dumps(
            {
                "runtime": {"key": "objtop@v1"},
                "runtime_key": "no@v1",
                INF: " ",
                "inference_id": "l10",
            }
        ),
        "objtop@v1",
        "l10",
    ),
    # an object with no usable field falls through; values are trimmed
    "t11": ("c2", json.dumps({RT: {"slug": ""}, "runtime_key": " padded@v1 "}), "padded@v1", ""),
    # a list is not a runtime
    "t12": ("c2", json.dumps({RT: ["x@v1"], "runtime": "afterlist@v1"}), "afterlist@v1", ""),
    # no runtime anywhere, although c1's pointer is set: stays unknown
    "t13": ("c1", json.dumps({SESSION: "s1"}), "", ""),
    "t14": ("c1", "{}", "", ""),
    "t15": ("c1", json.dumps({INF: "inf-15"}), "", "inf-15"),
    # malformed: not JSON, a JSON array, a JSON string
    "t16": ("c1", "{not json", "", ""),
    "t17": ("c1", "[1, 2]", "", ""),
    "t18": ("c2", '"inventory@v1"', "", ""),
    # absent: empty text
    "t19": ("c2", "", "", ""),
}

# (turn_id, phase, created_at_ms, metadata or raw payload text, expected runtime, inference)
OLD_SNAPSHOTS: tuple[tuple[str, str, int, Any, str, str], ...] = (
    ("t01", PRE_INFERENCE, 1000, {RT: "inventory@v1", INF: "inf-01"}, "inventory@v1", "inf-01"),
    ("t01", FINAL, 1005, {RT: "inventory@v1", INF: "inf-01"}, "inventory@v1", "inf-01"),
    # two phases of one turn in one millisecond
    (
        "t02",
        FINAL,
        1010,
        {RT: {"runtime_key": "planner@v1"}, "inference_id": "leg-02"},
        "planner@v1",
        "leg-02",
    ),
    ("t02", PRE_INFERENCE, 1010, {"runtime": "planner@v1"}, "planner@v1", ""),
    ("t09", POST_TOOLS, 1040, {"runtime_key": "rk@v1", INF: 12345}, "rk@v1", "12345"),
    ("t13", FINAL, 1020, {SESSION: "s1"}, "", ""),  # no runtime: unknown, not the pointer
    ("t16", FINAL, 1030, "garbage{", "", ""),  # malformed payload
    # metadata that is a list, not an object
    ("t17", FINAL, 1050, json.dumps({"id": "t17", "metadata": [1, 2]}), "", ""),
)

CONVERSATIONS = (
    ("c1", "s1", "planner@v1", 900, 2000),
    ("c2", "s2", "inventory@v1", 950, 2100),
)

TIMELINE = (
    ("c1", "e1", 1, "message", '{"text":"hi"}', 1000),
    ("c1", "e1", 2, "message", '{"text":"hi!"}', 1001),
)

EXPECTED_REPORT = {
    "schema_version_before": 0,
    "schema_version_after": schema.SCHEMA_VERSION,
    "tables_created": ("scenario_runs",),
    "tables_rebuilt": ("turn_snapshots",),
    "columns_added": ("turns.runtime_key", "turns.inference_id", "conversations.profile_slug"),
    "columns_renamed": ("conversations.runtime_key -> current_runtime_key",),
    "indexes_added": tuple(schema.INDEXES),
    "backfilled": {
        "turns.runtime_key": 12,
        "turns.inference_id": 5,
        "turn_snapshots.runtime_key": 5,
        "turn_snapshots.inference_id": 4,
    },
    "unknown": {
        "turns.runtime_key": 7,
        "turns.inference_id": 14,
        "turn_snapshots.runtime_key": 3,
        "turn_snapshots.inference_id": 4,
    },
    "malformed": {"turns": 3, "turn_snapshots": 2},
    "updated_at_filled": 0,
    "snapshots_imported": 0,
    "triggers_added": tuple(TRIGGERS),
    "layout": "turnsim",
    "dry_run": False,
    "changed": True,
}


def snapshot_payload(turn_id: str, metadata: Any) -> str:
    """A serialized turn with ``metadata``; a string is taken as the raw payload text."""
    if isinstance(metadata, str):
        return metadata
    return Turn(id=turn_id, metadata=metadata).serialize()


def build_old_db(
    path: Path, *, turns_schema: str | None = None, timeline_schema: str | None = None
) -> None:
    """Write an old database at ``path`` (a schema passed as ``""`` is left out)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        turns_ddl = schema.OLD_TURNS_SCHEMA if turns_schema is None else turns_schema
        timeline_ddl = schema.OLD_TIMELINE_SCHEMA if timeline_schema is None else timeline_schema
        conn.execute("BEGIN")
        if turns_ddl:
            _script(conn, turns_ddl)
            for n, (turn_id, (conv, meta, _, _)) in enumerate(OLD_TURNS.items()):
                conn.execute(
                    "INSERT INTO turns VALUES (?, ?, ?, ?, ?, '{}', ?)",
                    (conv, f"s{conv[1]}", turn_id, 100 + n, meta, 500 + n),
                )
            for turn_id, phase, at, meta, _, _ in OLD_SNAPSHOTS:
                conv = OLD_TURNS[turn_id][0]
                conn.execute(
                    "INSERT INTO turn_snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    (conv, f"s{conv[1]}", turn_id, phase, at, snapshot_payload(turn_id, meta)),
                )
        if timeline_ddl:
            _script(conn, timeline_ddl)
            conn.executemany("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)", CONVERSATIONS)
            conn.executemany("INSERT INTO timeline_entities VALUES (?, ?, ?, ?, ?, ?)", TIMELINE)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _script(conn: sqlite3.Connection, ddl: str) -> None:
    """Run DDL statements one by one (executescript would commit our transaction)."""
    for statement in ddl.split(";"):
        if statement.strip():
            conn.execute(statement)


def dump(path: Path) -> dict[str, Any]:
    """Everything observable in a database: version, schema objects and all rows."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {"user_version": conn.execute("PRAGMA user_version").fetchone()[0]}
        master = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        out["master"] = master
        for kind, name, _, _ in master:
            if kind == "table":
                out[name] = conn.execute(f'SELECT * FROM "{name}" ORDER BY rowid').fetchall()
        return out
    finally:
        conn.close()


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def migrate_file(path: Path, *, dry_run: bool = False) -> migration.MigrationReport:
    conn = connect(path)
    try:
        report = migration.migrate(conn, dry_run=dry_run)
        assert not conn.in_transaction
        return report
    finally:
        conn.close()


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    build_old_db(path)
    return path


def expected_snapshots(conv_id: str | None = None) -> dict[tuple[str, str, int], tuple[str, str]]:
    return {
        (turn, phase, at): (runtime, inference)
        for turn, phase, at, _, runtime, inference in OLD_SNAPSHOTS
        if conv_id is None or OLD_TURNS[turn][0] == conv_id
    }


# ---------------------------------------------------------------------------------------


def test_old_schema_could_not_keep_two_snapshots_in_one_millisecond(old_db: Path) -> None:
    """The bug the rebuild removes: the old key made a same-phase, same-ms snapshot collide."""
    conn = connect(old_db)
    try:
        row = ("c1", "s1", "t01", FINAL, 1005, "second")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO turn_snapshots VALUES (?, ?, ?, ?, ?, ?)", row)
        conn.execute("INSERT OR REPLACE INTO turn_snapshots VALUES (?, ?, ?, ?, ?, ?)", row)
        payloads = conn.execute(
            "SELECT payload FROM turn_snapshots WHERE turn_id = 't01' AND phase = 'final'"
        ).fetchall()
        assert payloads == [("second",)]  # the first snapshot is gone
    finally:
        conn.close()


def test_migration_report_numbers(old_db: Path) -> None:
    report = migrate_file(old_db)
    assert report.to_json() == EXPECTED_REPORT
    assert query(old_db, "PRAGMA user_version") == [(schema.SCHEMA_VERSION,)]


def test_backfilled_values_per_turn_row(old_db: Path) -> None:
    migrate_file(old_db)
    rows = query(
        old_db,
        "SELECT turn_id, conv_id, turn_metadata_json, runtime_key, inference_id, "
        "turn_created_at_ms, updated_at_ms FROM turns",
    )
    got = {r[0]: r[1:] for r in rows}
    assert got == {
        turn: (conv, meta, runtime, inference, 100 + n, 500 + n)
        for n, (turn, (conv, meta, runtime, inference)) in enumerate(OLD_TURNS.items())
    }


def test_backfilled_values_per_snapshot_row(old_db: Path) -> None:
    migrate_file(old_db)
    rows = query(
        old_db,
        "SELECT snapshot_id, turn_id, phase, created_at_ms, runtime_key, inference_id, payload "
        "FROM turn_snapshots ORDER BY snapshot_id",
    )
    assert {(r[1], r[2], r[3]): (r[4], r[5]) for r in rows} == expected_snapshots()
    payloads = {(t, p, at): snapshot_payload(t, m) for t, p, at, m, _, _ in OLD_SNAPSHOTS}
    assert {(r[1], r[2], r[3]): r[6] for r in rows} == payloads  # payloads untouched
    # old rows get ids in time order, so "newest first" keeps meaning what it meant
    assert [r[3] for r in rows] == sorted(r[3] for r in rows)
    assert len({r[0] for r in rows}) == len(OLD_SNAPSHOTS)


def test_absent_runtime_is_never_taken_from_the_conversation_pointer(old_db: Path) -> None:
    migrate_file(old_db)
    pointer = query(old_db, "SELECT current_runtime_key FROM conversations WHERE conv_id = 'c1'")
    assert pointer == [("planner@v1",)]
    unknown = query(
        old_db,
        "SELECT turn_id FROM turns WHERE conv_id = 'c1' AND runtime_key = '' ORDER BY turn_id",
    )
    assert [r[0] for r in unknown] == ["t13", "t14", "t15", "t16", "t17"]
    assert query(old_db, "SELECT runtime_key FROM turn_snapshots WHERE turn_id = 't13'") == [("",)]


def test_conversation_column_becomes_current_runtime_key(old_db: Path) -> None:
    migrate_file(old_db)
    columns = [r[1] for r in query(old_db, "PRAGMA table_info(conversations)")]
    assert "runtime_key" not in columns
    assert set(columns) == {
        "conv_id",
        "session_id",
        "current_runtime_key",
        "profile_slug",
        "created_at_ms",
        "last_activity_ms",
    }
    rows = query(
        old_db,
        "SELECT conv_id, session_id, current_runtime_key, created_at_ms, last_activity_ms, "
        "profile_slug FROM conversations ORDER BY conv_id",
    )
    assert rows == [(*c, "") for c in CONVERSATIONS]
    # the timeline table is not ours to touch
    assert query(old_db, "SELECT * FROM timeline_entities ORDER BY rowid") == list(TIMELINE)


@pytest.mark.parametrize(
    ("name", "key_columns"),
    [
        (
            "turns_by_conv_runtime_updated",
            [("conv_id", 0), ("runtime_key", 0), ("updated_at_ms", 1)],
        ),
        (
            "turns_by_conv_inference_updated",
            [("conv_id", 0), ("inference_id", 0), ("updated_at_ms", 1)],
        ),
    ],
)
def test_domain_indexes_exist_with_exact_columns(
    old_db: Path, name: str, key_columns: list[tuple[str, int]]
) -> None:
    assert query(old_db, "SELECT name FROM sqlite_master WHERE name = ?", (name,)) == []
    migrate_file(old_db)
    assert query(old_db, "SELECT tbl_name FROM sqlite_master WHERE name = ?", (name,)) == [
        ("turns",)
    ]
    xinfo = query(old_db, f"PRAGMA index_xinfo({name})")
    # (seqno, cid, name, desc, coll, key): key columns only, in order, with direction
    assert [(r[2], r[3]) for r in xinfo if r[5] == 1] == key_columns
    column = key_columns[1][0]
    plan = query(
        old_db,
        f"EXPLAIN QUERY PLAN SELECT turn_id FROM turns WHERE conv_id = ? AND {column} = ? "
        "ORDER BY updated_at_ms DESC",
        ("c1", "x"),
    )
    assert any(name in r[-1] for r in plan), plan


def test_second_migration_changes_nothing(old_db: Path) -> None:
    first = migrate_file(old_db)
    after_first = dump(old_db)
    second = migrate_file(old_db)
    assert second.changed is False
    assert dump(old_db) == after_first
    assert second.to_json() == {
        **EXPECTED_REPORT,
        "schema_version_before": schema.SCHEMA_VERSION,
        "tables_created": (),
        "tables_rebuilt": (),
        "columns_added": (),
        "columns_renamed": (),
        "indexes_added": (),
        "backfilled": dict.fromkeys(first.backfilled, 0),
        "triggers_added": (),
        "changed": False,
    }


def test_dry_run_changes_nothing_and_reports_the_real_numbers(old_db: Path) -> None:
    before = dump(old_db)
    dry = migrate_file(old_db, dry_run=True)
    assert dump(old_db) == before
    assert dry.to_json() == {**EXPECTED_REPORT, "dry_run": True}
    assert migrate_file(old_db).to_json() == EXPECTED_REPORT
    assert dump(old_db) != before


def _db_with_blocking_column(tmp_path: Path) -> Path:
    """Old turns plus a conversation table with a NOT NULL column nobody can fill.

    The conversation table is migrated last, so the failure comes after ``turns`` got its
    columns and ``turn_snapshots`` was rebuilt: only one transaction can undo all of it.
    """
    path = tmp_path / "blocked.db"
    build_old_db(path, timeline_schema="")
    conn = connect(path)
    try:
        conn.execute(
            "CREATE TABLE conversations (conv_id TEXT PRIMARY KEY, runtime_key TEXT NOT NULL "
            "DEFAULT '', owner TEXT NOT NULL)"
        )
        conn.execute("INSERT INTO conversations VALUES ('c1', 'planner@v1', 'alice')")
    finally:
        conn.close()
    return path


def test_migration_is_one_transaction(tmp_path: Path) -> None:
    path = _db_with_blocking_column(tmp_path)
    before = dump(path)
    with pytest.raises(SchemaError, match="owner"):
        migrate_file(path)
    assert dump(path) == before
    assert before["user_version"] == 0


@pytest.mark.anyio
async def test_open_with_blocking_column_raises_and_changes_nothing(tmp_path: Path) -> None:
    path = _db_with_blocking_column(tmp_path)
    before = dump(path)
    with pytest.raises(SchemaError, match="owner"):
        await SQLiteTurnStore.open(path)
    assert dump(path) == before


def test_newer_schema_version_is_refused(old_db: Path) -> None:
    conn = connect(old_db)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    before = dump(old_db)
    with pytest.raises(SchemaError, match="newer"):
        migrate_file(old_db)
    assert dump(old_db) == before


def test_turns_only_database_gets_a_conversation_table(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    build_old_db(path, timeline_schema="")
    report = migrate_file(path)
    assert report.tables_created == ("conversations", "scenario_runs")
    assert report.columns_renamed == ()
    assert report.columns_added == ("turns.runtime_key", "turns.inference_id")
    assert report.backfilled == EXPECTED_REPORT["backfilled"]
    assert report.unknown == EXPECTED_REPORT["unknown"]
    assert query(path, "SELECT count(*) FROM conversations") == [(0,)]


def test_timeline_only_database_gets_turn_tables(tmp_path: Path) -> None:
    path = tmp_path / "timeline3.db"
    build_old_db(path, turns_schema="")
    report = migrate_file(path)
    assert report.tables_created == ("turns", "turn_snapshots", "scenario_runs")
    assert report.tables_rebuilt == ()
    assert report.columns_added == ("conversations.profile_slug",)
    assert report.columns_renamed == ("conversations.runtime_key -> current_runtime_key",)
    assert set(report.backfilled.values()) == {0}
    assert set(report.unknown.values()) == {0}
    assert report.malformed == {"turns": 0, "turn_snapshots": 0}
    assert migrate_file(path).changed is False


def test_snapshot_rebuild_keeps_columns_it_does_not_know(tmp_path: Path) -> None:
    """Additive means additive: rebuilding the snapshot table must not drop data."""
    path = tmp_path / "extra.db"
    ddl = schema.OLD_TURNS_SCHEMA.replace(
        "  payload TEXT NOT NULL,\n", "  payload TEXT NOT NULL,\n  note TEXT,\n"
    )
    assert ddl != schema.OLD_TURNS_SCHEMA
    conn = connect(path)
    try:
        _script(conn, ddl)
        conn.execute(
            "INSERT INTO turn_snapshots VALUES ('c1', 's1', 't1', 'final', 1, ?, 'keep me')",
            (Turn(id="t1", metadata={RT: "inventory@v1"}).serialize(),),
        )
        report = migration.migrate(conn)
        assert report.tables_rebuilt == ("turn_snapshots",)
        assert conn.execute("SELECT runtime_key FROM turn_snapshots").fetchall() == [
            ("inventory@v1",)
        ]
        assert "note" in schema.table_columns(conn, "turn_snapshots")
        assert conn.execute("SELECT note FROM turn_snapshots").fetchall() == [("keep me",)]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# through the store


@pytest.mark.anyio
async def test_store_migrates_on_open_and_writes_new_schema(old_db: Path) -> None:
    store = await SQLiteTurnStore.open(old_db)
    try:
        assert store.migration_report is not None
        assert store.migration_report.to_json() == EXPECTED_REPORT
        # old rows are readable, newest first, with their backfilled projection
        c1 = await store.list(TurnQuery(conv_id="c1", limit=100))
        projected = {(s.turn_id, s.phase, s.created_at_ms): (s.runtime_key, s.inference_id)
                     for s in c1}  # fmt: skip
        assert projected == expected_snapshots("c1")
        assert [s.created_at_ms for s in c1] == sorted((s.created_at_ms for s in c1), reverse=True)
        [t09] = await store.list(TurnQuery(runtime_key="rk@v1"))
        assert (t09.turn_id, t09.inference_id, t09.session_id) == ("t09", "12345", "s2")
        unknown = await store.list(TurnQuery(runtime_key="", limit=100))
        assert sorted(s.turn_id for s in unknown) == ["t13", "t16", "t17"]
        t01 = await store.get_turn("c1", "s1", "t01")
        assert (t01.runtime_key, t01.inference_id) == ("inventory@v1", "inf-01")
        assert (t01.created_at_ms, t01.updated_at_ms) == (100, 500)
        assert [t.turn_id for t in await store.list_turns("c1")] == [
            turn for turn, (conv, *_) in OLD_TURNS.items() if conv == "c1"
        ]

        # a new turn, and a second same-phase same-millisecond snapshot of an old one
        body = Turn(id="t20", metadata={RT: "planner@v1", INF: "inf-20"}).serialize()
        new = await store.save("c1", "s1", "t20", FINAL, 3000, body)
        assert (new.runtime_key, new.inference_id, new.created_turn) == (
            "planner@v1",
            "inf-20",
            True,
        )
        again = Turn(id="t01").serialize()
        await store.save("c1", "s1", "t01", FINAL, 1005, again, TurnSaveOptions())
        finals = await store.list(TurnQuery(turn_id="t01", phase=FINAL))
        assert [(s.created_at_ms, s.runtime_key, s.payload) for s in finals] == [
            (1005, "inventory@v1", again),
            (1005, "inventory@v1", snapshot_payload("t01", OLD_SNAPSHOTS[1][3])),
        ]
        # backfilled values are recorded values: write-once applies to them
        with pytest.raises(TurnRewriteError):
            await store.save("c1", "s1", "t01", FINAL, 3001, again, TurnSaveOptions("planner@v1"))

        conv = await store.conversations.get("c1")
        assert (conv.current_runtime_key, conv.profile_slug) == ("planner@v1", "")
        await store.conversations.set_current_runtime("c1", "s1", "", "gone", 3002)
        assert (await store.conversations.get("c1")).current_runtime_key == ""
    finally:
        await store.close()

    reopened = await SQLiteTurnStore.open(old_db)
    try:
        assert reopened.migration_report is None
        assert len(await reopened.list(TurnQuery(limit=100))) == len(OLD_SNAPSHOTS) + 2
        assert (await reopened.get_turn("c1", "s1", "t20")).runtime_key == "planner@v1"
    finally:
        await reopened.close()


@pytest.mark.anyio
@pytest.mark.parametrize("read_only", [False, True])
async def test_not_a_sqlite_file(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    before = path.read_bytes()
    with pytest.raises(NotSQLiteError):
        await SQLiteTurnStore.open(path, read_only=read_only)
    assert path.read_bytes() == before
    with pytest.raises(NotSQLiteError):
        await SQLiteTurnStore.open(tmp_path, read_only=read_only)  # a directory


@pytest.mark.anyio
async def test_missing_file_read_only(tmp_path: Path) -> None:
    with pytest.raises(NotSQLiteError):
        await SQLiteTurnStore.open(tmp_path / "missing.db", read_only=True)
    assert not os.path.exists(tmp_path / "missing.db")


@pytest.mark.anyio
async def test_read_only_open_of_an_old_database(old_db: Path) -> None:
    before = dump(old_db)
    with pytest.raises(SchemaError, match="turnsim db migrate"):
        await SQLiteTurnStore.open(old_db, read_only=True)
    assert dump(old_db) == before

    migrate_file(old_db)
    store = await SQLiteTurnStore.open(old_db, read_only=True)
    try:
        assert store.migration_report is None
        assert len(await store.list(TurnQuery(limit=100))) == len(OLD_SNAPSHOTS)
        with pytest.raises(StoreError):
            await store.save("c1", "s1", "t99", FINAL, 1, "{}", TurnSaveOptions("a@v1"))
    finally:
        await store.close()


def test_snapshot_rebuild_keeps_the_old_tables_indexes_and_triggers(tmp_path: Path) -> None:
    from persisters.migration import migrate
    from persisters.schema import OLD_TURNS_SCHEMA

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_TURNS_SCHEMA)
    conn.executescript(
        "CREATE INDEX ops_by_phase ON turn_snapshots (phase);"
        "CREATE TABLE audit (n INTEGER);"
        "CREATE TRIGGER snap_audit AFTER INSERT ON turn_snapshots BEGIN "
        "INSERT INTO audit VALUES (1); END;"
    )
    migrate(conn)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"ops_by_phase", "snap_audit"} <= names
    conn.close()


# ---------------------------------------------------------------------------------------
# updated_at_ms: filled when the migration adds it, repaired when it is 0

#: An early turns table, from before updated_at_ms existed.
EARLY_TURNS = """
CREATE TABLE turns (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  turn_created_at_ms INTEGER NOT NULL,
  turn_metadata_json TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (conv_id, session_id, turn_id)
)"""


def _early_db(path: Path) -> None:
    conn = connect(path)
    try:
        conn.execute(EARLY_TURNS)
        meta = json.dumps({RT: "inventory@v1"})
        rows = [("t3", 300), ("t1", 123), ("t0", 0), ("t2", 200)]  # inserted out of time order
        conn.executemany(
            "INSERT INTO turns VALUES ('c1', 's1', ?, ?, ?)", [(t, at, meta) for t, at in rows]
        )
    finally:
        conn.close()


def test_migration_fills_updated_at_in_one_counted_statement(tmp_path: Path) -> None:
    """The real store's repair: a positive value stays, else turn_created_at_ms, else now."""
    path = tmp_path / "early.db"
    _early_db(path)
    conn = connect(path)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        report = migration.migrate(conn, now_ms=9_000)
    finally:
        conn.close()
    assert report.updated_at_filled == 4
    assert report.to_json()["updated_at_filled"] == 4
    assert "turns.updated_at_ms" in report.columns_added
    fills = [s for s in statements if "SET updated_at_ms" in s]
    assert len(fills) == 1, fills
    assert query(path, "SELECT turn_id, updated_at_ms FROM turns ORDER BY turn_id") == [
        ("t0", 9_000),
        ("t1", 123),
        ("t2", 200),
        ("t3", 300),
    ]
    # the GP-26 index now orders the runtime's history by time, not by insertion
    history = query(
        path,
        "SELECT turn_id FROM turns WHERE conv_id = 'c1' AND runtime_key = 'inventory@v1' "
        "ORDER BY updated_at_ms DESC",
    )
    assert history == [("t0",), ("t3",), ("t2",), ("t1",)]
    assert migrate_file(path).changed is False


def test_a_current_database_with_updated_at_zero_is_repaired(tmp_path: Path) -> None:
    """A file migrated by a turnsim that left 0 (schema version current) is repaired too."""
    path = tmp_path / "zero.db"
    _early_db(path)
    conn = connect(path)
    try:
        migration.migrate(conn, now_ms=9_000)
        conn.execute("UPDATE turns SET updated_at_ms = 0 WHERE turn_id IN ('t1', 't2')")
        assert not schema.schema_is_current(conn)
        assert schema.schema_is_current(conn, repaired=False)
        report = migration.migrate(conn, now_ms=5)
        assert schema.schema_is_current(conn)
    finally:
        conn.close()
    assert (report.changed, report.updated_at_filled) == (True, 2)
    assert report.columns_added == () and report.indexes_added == ()
    assert query(path, "SELECT updated_at_ms FROM turns ORDER BY turn_id") == [
        (9_000,),
        (123,),
        (200,),
        (300,),
    ]


@pytest.mark.anyio
async def test_opening_the_store_fills_updated_at(tmp_path: Path) -> None:
    path = tmp_path / "early.db"
    _early_db(path)
    async with await SQLiteTurnStore.open(path) as store:
        assert store.migration_report is not None
        assert store.migration_report.updated_at_filled == 4
        record = await store.get_turn("c1", "s1", "t1")
        assert (record.created_at_ms, record.updated_at_ms) == (123, 123)
