"""Hostile database files: clear errors or counted skips, never a crash, never silent
corruption.

Files that are not SQLite (text, images, random bytes, a forged header, truncations, a
directory) are refused by the store and by `turnsim run --db`, `db doctor` and `db migrate`
with one line naming the file, and are left byte for byte as they were. Tables with
unexpected extra or missing columns are used, repaired additively, or refused by name.
Metadata JSON that is invalid, not an object, huge, deeply nested or binary is counted as
malformed and left alone, never "fixed" from the conversation pointer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from persisters.errors import PermanentStoreError, SchemaError, StoreError
from persisters.migration import migrate
from persisters.model import TurnQuery, TurnSaveOptions
from persisters.schema import OLD_TIMELINE_SCHEMA, OLD_TURNS_SCHEMA
from persisters.sqlite_store import SQLiteTurnStore
from persisters.write_once import drop_triggers
from sim.cli.main import cli
from sim.ops.doctor import doctor

SCENARIO = """\
name: hostile-db
profiles: {p: {runtime_key: p@v1}}
conversations: {c1: {profile: p}}
steps: [{send: {conv: c1, turn: t1, prompt: hi}}]
"""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"


def good_database(path: Path) -> None:
    """A small database written by the store, checkpointed into one file (no WAL)."""

    async def write() -> None:
        store = await SQLiteTurnStore.open(path)
        try:
            for i in range(40):
                payload = json.dumps({"id": f"t{i}", "metadata": {"pad": "x" * 200}})
                opts = TurnSaveOptions(runtime_key="r@v1", inference_id=f"i{i}")
                await store.save("c", "s", f"t{i}", "final", i, payload, opts)
        finally:
            await store.close()

    anyio.run(write)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()


def content(path: Path) -> tuple[Any, ...]:
    """What a SQLite file holds (schema, rows, user_version, journal mode), not its bytes."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (
            conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            tuple(conn.iterdump()),
        )
    finally:
        conn.close()


def truncated(at: Callable[[int], int]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        good_database(path)
        os.truncate(path, at(path.stat().st_size))

    return make


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


NOT_DATABASES: dict[str, Callable[[Path], None]] = {
    "text": write_bytes(b"hello, I am a shopping list\n- milk\n"),
    "json": write_bytes(b'{"turns": []}\n'),
    "png": write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300)),
    "random": write_bytes(bytes((i * 131 + 7) % 256 for i in range(8192))),
    "forged-header": write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16),
    "truncated-header": truncated(lambda size: 50),
    "truncated-first-page": truncated(lambda size: 1024),
    "truncated-one-page": truncated(lambda size: 4096),
    "truncated-half": truncated(lambda size: size // 2),
}


@pytest.fixture(params=sorted(NOT_DATABASES))
def not_a_database(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    path = tmp_path / f"{request.param}.db"
    NOT_DATABASES[request.param](path)
    return path


def test_the_store_refuses_what_is_not_a_database(not_a_database: Path) -> None:
    before = digest(not_a_database)
    with pytest.raises(StoreError) as caught:
        anyio.run(lambda: SQLiteTurnStore.open(not_a_database))
    assert str(not_a_database) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert digest(not_a_database) == before
    assert not Path(f"{not_a_database}-wal").exists()


@pytest.mark.parametrize(
    "args",
    [["run", "{scenario}", "--db", "{db}"], ["db", "doctor", "{db}"], ["db", "migrate", "{db}"]],
    ids=["run", "doctor", "migrate"],
)
def test_the_cli_refuses_what_is_not_a_database(
    not_a_database: Path, tmp_path: Path, args: list[str]
) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    before = digest(not_a_database)
    argv = [a.format(scenario=scenario, db=not_a_database) for a in args]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(not_a_database) in lines[0], lines
    assert "Traceback" not in result.output
    assert digest(not_a_database) == before  # never "repaired", never overwritten
    assert not list(tmp_path.glob("*.bak-*"))


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(StoreError, match="directory"):
        anyio.run(lambda: SQLiteTurnStore.open(folder))
    for argv in (["db", "doctor", str(folder)], ["db", "migrate", str(folder)]):
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 2 and "directory" in result.stderr


def test_doctor_reports_a_truncated_tail_that_still_opens(tmp_path: Path) -> None:
    db = tmp_path / "tail.db"
    truncated(lambda size: size - 100)(db)
    report = doctor(db)
    assert not report.healthy
    assert report.check("integrity").severity == "error"


def test_run_refuses_a_database_that_fails_its_integrity_check(tmp_path: Path) -> None:
    db = tmp_path / "tail.db"
    truncated(lambda size: size - 100)(db)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(scenario), "--db", str(db)])
    assert result.exit_code == 2, result.output
    assert "damaged database" in result.output or "not a usable SQLite" in result.output


# -- unexpected columns -----------------------------------------------------------------


def altered(tmp_path: Path, *sql: str) -> Path:
    db = tmp_path / "altered.db"
    good_database(db)
    conn = sqlite3.connect(db, isolation_level=None)
    drop_triggers(conn)  # hand damage: past the file's write-once triggers
    for statement in sql:
        conn.execute(statement)
    conn.close()
    return db


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def save_and_list(db: Path) -> list[Any]:
    store = await SQLiteTurnStore.open(db)
    try:
        opts = TurnSaveOptions(runtime_key="r@v1", inference_id="new")
        await store.save("c", "s", "new", "final", 99, "{}", opts)
        return await store.list(TurnQuery(conv_id="c", limit=1000))
    finally:
        await store.close()


@pytest.mark.parametrize(
    "column", ["note TEXT", "note TEXT NOT NULL DEFAULT 'kept'", "score INTEGER DEFAULT 7"]
)
def test_extra_columns_are_kept_and_left_alone(tmp_path: Path, column: str) -> None:
    db = altered(
        tmp_path,
        f"ALTER TABLE turns ADD COLUMN {column}",
        f"UPDATE turns SET {column.split()[0]} = 'mine' WHERE turn_id = 't3'",
    )
    snaps = anyio.run(save_and_list, db)
    assert len(snaps) == 41
    name = column.split()[0]
    assert rows(db, f"SELECT {name} FROM turns WHERE turn_id = 't3'") == [("mine",)]
    assert doctor(db).healthy


def test_an_extra_not_null_column_without_default_is_refused_by_name(tmp_path: Path) -> None:
    db = altered(
        tmp_path,
        "CREATE TABLE old_turns AS SELECT * FROM turns",
        "DROP TABLE turns",
        "CREATE TABLE turns (conv_id TEXT NOT NULL, session_id TEXT NOT NULL, turn_id TEXT NOT "
        "NULL, turn_created_at_ms INTEGER NOT NULL DEFAULT 0, turn_metadata_json TEXT NOT NULL "
        "DEFAULT '{}', turn_data_json TEXT NOT NULL DEFAULT '{}', updated_at_ms INTEGER NOT "
        "NULL DEFAULT 0, runtime_key TEXT NOT NULL DEFAULT '', inference_id TEXT NOT NULL "
        "DEFAULT '', owner TEXT NOT NULL, PRIMARY KEY (conv_id, session_id, turn_id))",
        "INSERT INTO turns SELECT *, 'someone' FROM old_turns",
        "DROP TABLE old_turns",
    )
    before = content(db)
    with pytest.raises(SchemaError, match="owner"):
        anyio.run(save_and_list, db)
    assert content(db)[::2] == before[::2]  # same rows and version (journal mode: see below)


def test_a_missing_projection_column_is_added_back_from_the_metadata(tmp_path: Path) -> None:
    db = altered(
        tmp_path,
        "DROP INDEX turn_snapshots_by_conv_runtime_created",
        "ALTER TABLE turn_snapshots DROP COLUMN runtime_key",
    )
    snaps = anyio.run(save_and_list, db)
    # the old rows' payloads name no runtime: honestly unknown, never invented
    assert {s.runtime_key for s in snaps if s.turn_id != "new"} == {""}
    assert [s.runtime_key for s in snaps if s.turn_id == "new"] == ["r@v1"]


@pytest.mark.parametrize(
    ("sql", "missing"),
    [
        (
            (
                "CREATE TABLE t2 AS SELECT session_id, turn_id, runtime_key FROM turns",
                "DROP TABLE turns",
                "ALTER TABLE t2 RENAME TO turns",
                "PRAGMA user_version = 0",
            ),
            "conv_id",
        ),
        (("DROP TABLE turns", "CREATE VIEW turns AS SELECT 1 AS conv_id"), "session_id"),
    ],
    ids=["no-conv_id", "turns-is-a-view"],
)
def test_a_missing_required_column_is_refused_by_name(
    tmp_path: Path, sql: tuple[str, ...], missing: str
) -> None:
    db = altered(tmp_path, *sql)
    before = content(db)
    with pytest.raises(SchemaError, match=missing):
        anyio.run(save_and_list, db)
    assert content(db)[::2] == before[::2]
    result = CliRunner().invoke(cli, ["db", "migrate", str(db)])
    assert result.exit_code == 2 and missing in result.stderr


def test_a_refused_open_leaves_the_file_byte_for_byte(tmp_path: Path) -> None:
    db = altered(tmp_path, "DROP TABLE turns", "CREATE VIEW turns AS SELECT 1 AS conv_id")
    before = digest(db)
    with pytest.raises(SchemaError):
        anyio.run(lambda: SQLiteTurnStore.open(db))
    assert digest(db) == before


def test_a_current_file_missing_a_required_column_is_refused_when_opened(tmp_path: Path) -> None:
    db = altered(tmp_path, "ALTER TABLE turn_snapshots DROP COLUMN payload")
    with pytest.raises(SchemaError, match="payload"):
        anyio.run(lambda: SQLiteTurnStore.open(db))


def test_a_missing_required_column_is_never_silent(tmp_path: Path) -> None:
    """Refused at open, by name; nothing is half-written."""
    db = altered(tmp_path, "ALTER TABLE turn_snapshots DROP COLUMN payload")
    with pytest.raises(SchemaError, match="payload"):
        anyio.run(save_and_list, db)
    assert rows(db, "SELECT count(*) FROM turns WHERE turn_id = 'new'") == [(0,)]


# -- hostile metadata -------------------------------------------------------------------

HUGE = json.dumps({"geppetto.runtime@v1": "huge@v1", "pad": "x" * (4 * 1024 * 1024)})
#: metadata text -> (malformed?, the runtime a migration may take from it)
METADATA: dict[str, tuple[bool, str]] = {
    '{"geppetto.runtime@v1": "ok@v1", "geppetto.inference_id@v1": "i-ok"}': (False, "ok@v1"),
    "{not json": (True, ""),
    '{"geppetto.runtime@v1": "cut@v1", "pad": "tru': (True, ""),
    "[1, 2, 3]": (True, ""),
    '"just a string"': (True, ""),
    "42": (True, ""),
    "null": (True, ""),
    "": (False, ""),
    "   ": (False, ""),
    HUGE: (False, "huge@v1"),
    "[" * 3000 + "]" * 3000: (True, ""),
    '{"geppetto.runtime@v1": {"key": ["x"]}, "runtime": "alias@v1"}': (False, "alias@v1"),
    '{"geppetto.runtime@v1": {"slug": "obj@v1"}}': (False, "obj@v1"),
    '{"geppetto.runtime@v1": 7}': (False, "7"),
}


def old_database_with_metadata(path: Path) -> dict[str, str]:
    """An old database, one turn per metadata text; the conversation pointer says
    planner@v1, which no turn may inherit. Returns turn id -> metadata."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_TURNS_SCHEMA + OLD_TIMELINE_SCHEMA)
    conn.execute("INSERT INTO conversations VALUES ('c', 's', 'planner@v1', 0, 0)")
    by_turn = {}
    for i, meta in enumerate(METADATA):
        turn = f"t{i}"
        by_turn[turn] = meta
        conn.execute("INSERT INTO turns VALUES ('c', 's', ?, ?, ?, '{}', ?)", (turn, i, meta, i))
        conn.execute(
            "INSERT INTO turn_snapshots VALUES ('c', 's', ?, 'final', ?, ?)", (turn, i, meta)
        )
    conn.close()
    return by_turn


def test_hostile_metadata_is_counted_not_invented(tmp_path: Path) -> None:
    db = tmp_path / "meta.db"
    by_turn = old_database_with_metadata(db)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        report = migrate(conn)
    finally:
        conn.close()
    expected_malformed = sum(bad for bad, _ in METADATA.values())
    # the snapshots' payloads here are the same texts: each counts once per table
    assert report.malformed == {"turns": expected_malformed, "turn_snapshots": expected_malformed}
    stored = dict(rows(db, "SELECT turn_id, runtime_key FROM turns"))
    for turn, meta in by_turn.items():
        assert stored[turn] == METADATA[meta][1], (turn, meta[:40])
    assert "planner@v1" not in stored.values()  # never fabricated from the pointer
    # the metadata itself is left exactly as it was
    assert dict(rows(db, "SELECT turn_id, turn_metadata_json FROM turns")) == by_turn
    report = doctor(db)
    assert report.healthy
    assert report.check("malformed_metadata").severity in ("info", "warning")


def test_hostile_payloads_are_returned_as_stored(tmp_path: Path) -> None:
    db = tmp_path / "payloads.db"
    by_turn = old_database_with_metadata(db)

    async def read() -> dict[str, str]:
        store = await SQLiteTurnStore.open(db)
        try:
            snaps = await store.list(TurnQuery(conv_id="c", limit=1000))
            return {s.turn_id: s.payload for s in snaps}
        finally:
            await store.close()

    assert anyio.run(read) == by_turn
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    result = CliRunner().invoke(cli, ["run", str(scenario), "--db", str(db)])
    assert result.exit_code == 0, result.output  # other conversations are no obstacle


def test_undecodable_text_is_a_clear_error(tmp_path: Path) -> None:
    db = altered(tmp_path, "UPDATE turn_snapshots SET payload = CAST(x'7b22ff22fe7d' AS TEXT)")
    with pytest.raises(PermanentStoreError, match="decode"):
        anyio.run(save_and_list, db)
    assert doctor(db).check("malformed_metadata").severity == "error"


def test_a_blob_payload_comes_back_as_text(tmp_path: Path) -> None:
    db = altered(tmp_path, "UPDATE turn_snapshots SET payload = x'fffe00' WHERE turn_id = 't1'")
    snaps = anyio.run(save_and_list, db)
    assert all(isinstance(s.payload, str) for s in snaps)


def test_a_shared_database_copy_is_not_touched_by_a_refused_open(tmp_path: Path) -> None:
    """A refused open leaves no -wal/-shm or backup litter next to the file either."""
    db = tmp_path / "x.db"
    NOT_DATABASES["forged-header"](db)
    shutil.copy(db, tmp_path / "copy.db")
    with pytest.raises(StoreError):
        anyio.run(lambda: SQLiteTurnStore.open(db))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db", "x.db"]
