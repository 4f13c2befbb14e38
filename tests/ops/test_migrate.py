"""migrate_file and migrate on real SQLite files: exact report numbers, refusals, locks."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from persisters.errors import (
    NotSQLiteError,
    PermanentStoreError,
    SchemaError,
    TransientStoreError,
)
from persisters.schema import INDEXES, SCHEMA_VERSION, table_columns
from sim.ops import files
from sim.ops import migrate as migrate_module
from sim.ops.files import file_space
from sim.ops.migrate import migrate, migrate_file
from sim.ops.samples import SampleStats, TimelineStats, make_samples
from tests.ops.ops_fixtures import copy_samples, query, sha, write_bytes


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleStats, TimelineStats]:
    directory = tmp_path_factory.mktemp("pristine")
    turns, timeline = make_samples(directory)
    return directory, turns, timeline


@pytest.fixture
def samples(pristine, tmp_path: Path) -> tuple[Path, SampleStats, TimelineStats]:
    """A private copy of the old samples, for a test that writes."""
    directory, turns, timeline = pristine
    copy_samples(directory, tmp_path)
    return tmp_path, turns, timeline


def test_migrating_the_turn_store_reports_exactly_what_the_sample_holds(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    original = query(path, "SELECT count(*) FROM turn_snapshots")
    report, backup = migrate_file(path)
    assert report.schema_version_before == 0
    assert report.schema_version_after == SCHEMA_VERSION
    assert report.tables_created == ("conversations", "scenario_runs")
    assert report.tables_rebuilt == ("turn_snapshots",)
    assert report.columns_added == ("turns.runtime_key", "turns.inference_id")
    assert report.columns_renamed == ()
    assert report.indexes_added == tuple(INDEXES)
    assert report.backfilled == stats.backfilled
    assert report.unknown == stats.unknown
    assert report.malformed == stats.malformed
    assert report.changed and not report.dry_run
    # Every turns row carries exactly the value its own metadata names, or ''.
    rows = query(path, "SELECT conv_id, session_id, turn_id, runtime_key, inference_id FROM turns")
    assert {r[:3]: r[3:] for r in rows} == stats.expected_turns
    assert query(path, "SELECT count(*) FROM turn_snapshots") == original
    assert backup == directory / "turns.db.bak-v0"


def test_migrating_the_conversation_store_renames_the_pointer_and_keeps_it(samples) -> None:
    directory, _, timeline = samples
    path = directory / "timeline3.db"
    before = dict(query(path, "SELECT conv_id, runtime_key FROM conversations"))
    report, _ = migrate_file(path)
    assert report.columns_renamed == ("conversations.runtime_key -> current_runtime_key",)
    assert report.columns_added == ("conversations.profile_slug",)
    assert report.tables_created == ("turns", "turn_snapshots", "scenario_runs")
    assert report.indexes_added == tuple(INDEXES)
    assert set(report.backfilled.values()) == {0} and set(report.unknown.values()) == {0}
    after = dict(query(path, "SELECT conv_id, current_runtime_key FROM conversations"))
    assert after == before and len(after) == timeline.conversations
    conn = sqlite3.connect(path)
    assert "runtime_key" not in table_columns(conn, "conversations")
    conn.close()
    entities = query(path, "SELECT count(*) FROM timeline_entities")[0][0]
    assert entities == timeline.entities


def test_running_again_reports_nothing_to_do_and_touches_nothing(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    migrate_file(path)
    digest, listing = sha(path), sorted(os.listdir(directory))
    report, backup = migrate_file(path)
    assert not report.changed and backup is None and not report.dry_run
    assert report.schema_version_before == report.schema_version_after == SCHEMA_VERSION
    assert set(report.backfilled.values()) == {0}
    assert report.unknown == stats.unknown  # still told how many rows stay unknown
    assert sha(path) == digest and sorted(os.listdir(directory)) == listing


def test_dry_run_reports_the_real_numbers_and_writes_nothing(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    digest, listing = sha(path), sorted(os.listdir(directory))
    report, backup = migrate_file(path, dry_run=True)
    assert report.dry_run and report.changed and backup is None
    assert report.backfilled == stats.backfilled and report.unknown == stats.unknown
    assert sha(path) == digest and sorted(os.listdir(directory)) == listing
    real, _ = migrate_file(path)
    assert real.to_json() == report.to_json() | {"dry_run": False}


def test_no_backup_when_asked(samples) -> None:
    directory, _, _ = samples
    _, backup = migrate_file(directory / "turns.db", backup=False)
    assert backup is None and not list(directory.glob("*.bak-*"))


def test_journal_mode_is_left_alone(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    mode = query(path, "PRAGMA journal_mode")[0][0]
    migrate_file(path)
    assert query(path, "PRAGMA journal_mode")[0][0] == mode == "delete"


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: d / "missing.db", NotSQLiteError, "no such file"),
        (lambda d: d, NotSQLiteError, "directory"),
        (
            lambda d: write_bytes(d / "notes.txt", b"just some text, not a database\n" * 10),
            NotSQLiteError,
            "not a usable SQLite",
        ),
        (lambda d: write_bytes(d / "empty.db", b""), SchemaError, "holds none of the tables"),
    ],
    ids=["missing", "directory", "not-sqlite", "no-turnsim-tables"],
)
def test_migrate_refuses_what_it_must_not_touch(tmp_path: Path, make, error, words) -> None:
    target = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error, match=words) as caught:
        migrate_file(target)
    assert "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == before  # nothing created, not even the file


def test_migrate_refuses_a_read_only_file_before_touching_it(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    os.chmod(path, 0o444)
    digest = sha(path)
    try:
        with pytest.raises(PermanentStoreError, match="read-only"):
            migrate_file(path)
        with pytest.raises(PermanentStoreError, match="read-only"):
            migrate_file(path, dry_run=True)
    finally:
        os.chmod(path, 0o644)
    assert sha(path) == digest and not list(directory.glob("*.bak-*"))


def test_migrate_refuses_a_file_in_a_read_only_directory(samples) -> None:
    directory, _, _ = samples
    os.chmod(directory, 0o555)
    try:
        with pytest.raises(PermanentStoreError, match=r"directory .* is not writable"):
            migrate_file(directory / "turns.db")
    finally:
        os.chmod(directory, 0o755)


def test_migrate_refuses_a_newer_schema_without_a_backup(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    digest = sha(path)
    with pytest.raises(SchemaError, match="newer than this turnsim"):
        migrate_file(path)
    assert sha(path) == digest and not list(directory.glob("*.bak-*"))


def test_a_refused_migration_rolls_back_and_keeps_the_backup(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    conn = sqlite3.connect(path)  # a column no new row could fill: migrate refuses
    conn.execute("DELETE FROM turns")  # (no old row left NULL in it: the file is sound)
    conn.commit()
    conn.execute("ALTER TABLE turns ADD COLUMN owner TEXT NOT NULL DEFAULT 'x'")
    conn.execute("CREATE TABLE t (a)")
    conn.close()
    conn = sqlite3.connect(path)
    conn.executescript(
        "PRAGMA writable_schema = ON;"
        "UPDATE sqlite_master SET sql = replace(sql, \"DEFAULT 'x'\", '') WHERE name = 'turns';"
        "PRAGMA writable_schema = OFF;"
    )
    conn.close()
    dump = list(sqlite3.connect(path).iterdump())
    with pytest.raises(SchemaError, match="owner") as caught:
        migrate_file(path)
    assert "nothing was changed" in str(caught.value) and "bak-v0" in str(caught.value)
    assert list(sqlite3.connect(path).iterdump()) == dump
    assert (directory / "turns.db.bak-v0").exists()


def test_a_busy_database_is_refused_before_the_backup(samples, monkeypatch) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    monkeypatch.setattr(files, "BUSY_TIMEOUT_MS", 50)  # the wait, not the behaviour
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        digest = sha(path)
        with pytest.raises(TransientStoreError, match=r"busy.*retry later"):
            migrate_file(path)
        assert sha(path) == digest and not list(directory.glob("*.bak-*"))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert migrate_file(path)[0].changed  # and works once the writer is gone


# --- migrate: the whole `db migrate` operation ------------------------------------------


def test_migrate_reports_the_migration_and_the_space_left(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    result = migrate(path, backup=False)
    assert result.path == os.fspath(path) and result.backup is None
    assert result.report.backfilled == stats.backfilled and result.compaction is None
    assert result.space == file_space(path) and result.space.free_bytes > 0
    out = result.to_json()
    assert list(out)[:3] == ["path", "backup", "nothing_to_do"]
    assert list(out)[-2:] == ["space", "vacuum"] and out["vacuum"] is None
    assert out["nothing_to_do"] is False and out["backfilled"] == stats.backfilled


def test_migrate_with_vacuum_compacts_even_when_there_is_nothing_to_migrate(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    migrate_file(path, backup=False)
    result = migrate(path, vacuum=True)
    assert not result.report.changed and result.backup is None and not result.vacuum_error
    assert result.compaction is not None and result.space == result.compaction.after
    assert result.space.free_bytes == 0 == file_space(path).free_bytes
    assert result.to_json()["vacuum"] == result.compaction.to_json()


def test_a_failed_vacuum_is_reported_not_raised(samples, monkeypatch) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"

    def no_disk(_: object) -> None:
        raise PermanentStoreError(f"{path}: VACUUM failed,\n  database or disk is full")

    monkeypatch.setattr(migrate_module, "compact_file", no_disk)
    result = migrate(path, backup=False, vacuum=True)
    assert result.report.changed and result.compaction is None  # the migration committed
    assert result.vacuum_error == (
        f"migrated, but not compacted: {path}: VACUUM failed, database or disk is full"
    )
    assert result.to_json()["vacuum"] == {"error": result.vacuum_error}
    assert result.space == file_space(path)
    assert migrate_file(path)[0].changed is False
