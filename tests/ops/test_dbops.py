"""migrate_file and doctor on real SQLite files: exact report numbers, refusals, read-only."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from persisters.errors import (
    NotSQLiteError,
    PermanentStoreError,
    SchemaError,
    TransientStoreError,
    TurnsimError,
)
from persisters.schema import INDEXES, SCHEMA_VERSION, table_columns, user_version
from sim.ops import dbops
from sim.ops.dbops import MAX_RESULT_ROWS, backup_path_for, doctor, migrate_file
from sim.ops.samples import SampleStats, TimelineStats, make_samples

ALL_CHECKS = (
    "integrity",
    "schema_version",
    "required_columns",
    "required_indexes",
    "column_vs_metadata",
    "phase_runtime_agreement",
    "orphan_snapshots",
    "conversation_pointer",
    "unknown_rows",
    "malformed_metadata",
    "free_pages",
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleStats, TimelineStats]:
    directory = tmp_path_factory.mktemp("pristine")
    turns, timeline = make_samples(directory)
    return directory, turns, timeline


@pytest.fixture
def samples(pristine, tmp_path: Path) -> tuple[Path, SampleStats, TimelineStats]:
    """A private copy of the old samples, for a test that writes."""
    directory, turns, timeline = pristine
    for name in ("turns.db", "timeline3.db"):
        shutil.copy(directory / name, tmp_path / name)
    return tmp_path, turns, timeline


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, pristine) -> Path:
    """Both samples migrated once, shared by read-only tests."""
    directory = tmp_path_factory.mktemp("migrated")
    for name in ("turns.db", "timeline3.db"):
        shutil.copy(pristine[0] / name, directory / name)
        migrate_file(directory / name, backup=False)
    return directory


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _severities(report) -> dict[str, str]:
    return {c.name: c.severity for c in report.checks}


# --- migrate --------------------------------------------------------------------------


def test_migrating_the_turn_store_reports_exactly_what_the_sample_holds(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    original = _query(path, "SELECT count(*) FROM turn_snapshots")
    report, backup = migrate_file(path)
    assert report.schema_version_before == 0
    assert report.schema_version_after == SCHEMA_VERSION
    assert report.tables_created == ("conversations",)
    assert report.tables_rebuilt == ("turn_snapshots",)
    assert report.columns_added == ("turns.runtime_key", "turns.inference_id")
    assert report.columns_renamed == ()
    assert report.indexes_added == tuple(INDEXES)
    assert report.backfilled == stats.backfilled
    assert report.unknown == stats.unknown
    assert report.malformed == stats.malformed
    assert report.changed and not report.dry_run
    # Every turns row carries exactly the value its own metadata names, or ''.
    rows = _query(path, "SELECT conv_id, session_id, turn_id, runtime_key, inference_id FROM turns")
    assert {r[:3]: r[3:] for r in rows} == stats.expected_turns
    assert _query(path, "SELECT count(*) FROM turn_snapshots") == original
    assert backup == directory / "turns.db.bak-v0"


def test_migrating_the_conversation_store_renames_the_pointer_and_keeps_it(samples) -> None:
    directory, _, timeline = samples
    path = directory / "timeline3.db"
    before = dict(_query(path, "SELECT conv_id, runtime_key FROM conversations"))
    report, _ = migrate_file(path)
    assert report.columns_renamed == ("conversations.runtime_key -> current_runtime_key",)
    assert report.columns_added == ("conversations.profile_slug",)
    assert report.tables_created == ("turns", "turn_snapshots")
    assert report.indexes_added == tuple(INDEXES)
    assert set(report.backfilled.values()) == {0} and set(report.unknown.values()) == {0}
    after = dict(_query(path, "SELECT conv_id, current_runtime_key FROM conversations"))
    assert after == before and len(after) == timeline.conversations
    conn = sqlite3.connect(path)
    assert "runtime_key" not in table_columns(conn, "conversations")
    conn.close()
    entities = _query(path, "SELECT count(*) FROM timeline_entities")[0][0]
    assert entities == timeline.entities


def test_running_again_reports_nothing_to_do_and_touches_nothing(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    migrate_file(path)
    digest, listing = _sha(path), sorted(os.listdir(directory))
    report, backup = migrate_file(path)
    assert not report.changed and backup is None and not report.dry_run
    assert report.schema_version_before == report.schema_version_after == SCHEMA_VERSION
    assert set(report.backfilled.values()) == {0}
    assert report.unknown == stats.unknown  # still told how many rows stay unknown
    assert _sha(path) == digest and sorted(os.listdir(directory)) == listing


def test_dry_run_reports_the_real_numbers_and_writes_nothing(samples) -> None:
    directory, stats, _ = samples
    path = directory / "turns.db"
    digest, listing = _sha(path), sorted(os.listdir(directory))
    report, backup = migrate_file(path, dry_run=True)
    assert report.dry_run and report.changed and backup is None
    assert report.backfilled == stats.backfilled and report.unknown == stats.unknown
    assert _sha(path) == digest and sorted(os.listdir(directory)) == listing
    real, _ = migrate_file(path)
    assert real.to_json() == report.to_json() | {"dry_run": False}


def test_backup_is_the_old_database_and_never_overwritten(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    old_dump = list(sqlite3.connect(path).iterdump())
    os.chmod(path, 0o640)
    (directory / "turns.db.bak-v0").write_text("an operator's earlier backup")
    _, backup = migrate_file(path)
    assert backup == directory / "turns.db.bak-v0.2"
    assert backup_path_for(path, 0) == directory / "turns.db.bak-v0.3"  # the next one
    assert (directory / "turns.db.bak-v0").read_text() == "an operator's earlier backup"
    conn = sqlite3.connect(backup)
    assert user_version(conn) == 0 and list(conn.iterdump()) == old_dump
    conn.close()
    assert (backup.stat().st_mode & 0o777) == 0o640
    assert not list(directory.glob("*.partial"))


def test_no_backup_when_asked(samples) -> None:
    directory, _, _ = samples
    _, backup = migrate_file(directory / "turns.db", backup=False)
    assert backup is None and not list(directory.glob("*.bak-*"))


def test_journal_mode_is_left_alone(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    mode = _query(path, "PRAGMA journal_mode")[0][0]
    migrate_file(path)
    assert _query(path, "PRAGMA journal_mode")[0][0] == mode == "delete"


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda d: d / "missing.db", NotSQLiteError, "no such file"),
        (lambda d: d, NotSQLiteError, "directory"),
        (
            lambda d: _write(d / "notes.txt", b"just some text, not a database\n" * 10),
            NotSQLiteError,
            "not a usable SQLite",
        ),
        (lambda d: _write(d / "empty.db", b""), SchemaError, "holds none of the tables"),
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


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_migrate_refuses_a_read_only_file_before_touching_it(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    os.chmod(path, 0o444)
    digest = _sha(path)
    try:
        with pytest.raises(PermanentStoreError, match="read-only"):
            migrate_file(path)
        with pytest.raises(PermanentStoreError, match="read-only"):
            migrate_file(path, dry_run=True)
    finally:
        os.chmod(path, 0o644)
    assert _sha(path) == digest and not list(directory.glob("*.bak-*"))


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
    digest = _sha(path)
    with pytest.raises(SchemaError, match="newer than this turnsim"):
        migrate_file(path)
    assert _sha(path) == digest and not list(directory.glob("*.bak-*"))


def test_a_refused_migration_rolls_back_and_keeps_the_backup(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    conn = sqlite3.connect(path)  # a column no new row could fill: migrate refuses
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


# --- doctor ---------------------------------------------------------------------------


def test_doctor_flags_the_old_turn_store(pristine) -> None:
    directory, stats, _ = pristine
    report = doctor(directory / "turns.db")
    assert report.exit_code == 1 and not report.healthy
    assert [c.name for c in report.checks] == list(ALL_CHECKS)
    assert [c.name for c in report.problems[:3]] == [
        "schema_version",
        "required_columns",
        "required_indexes",
    ]
    assert report.check("integrity").severity == "ok"
    missing = {(r[0], r[1]) for r in report.check("required_columns").result}
    assert missing == {
        ("turns", "runtime_key"),
        ("turns", "inference_id"),
        ("turn_snapshots", "snapshot_id"),
        ("turn_snapshots", "runtime_key"),
        ("turn_snapshots", "inference_id"),
        *(
            ("conversations", c)
            for c in (
                "conv_id",
                "session_id",
                "current_runtime_key",
                "profile_slug",
                "created_at_ms",
                "last_activity_ms",
            )
        ),
    }
    assert report.check("required_indexes").row_count == len(INDEXES)
    # What can run on the old schema runs, and agrees with the sample.
    assert report.check("orphan_snapshots").row_count == stats.orphan_snapshot_turns
    assert report.check("malformed_metadata").row_count == sum(stats.malformed.values())
    for name in ("column_vs_metadata", "phase_runtime_agreement", "unknown_rows"):
        check = report.check(name)
        assert not check.ran and check.severity == "info" and "migrate" in check.message


def test_doctor_flags_the_old_conversation_store(pristine) -> None:
    directory, _, _ = pristine
    report = doctor(directory / "timeline3.db")
    assert report.exit_code == 1
    columns = report.check("required_columns")
    assert columns.severity == "error"
    problems = {(r[0], r[1]): r[2] for r in columns.result}
    assert problems[("conversations", "current_runtime_key")] == "column missing"
    assert problems[("conversations", "runtime_key")].startswith("legacy")
    assert problems[("turns", "runtime_key")] == "table missing"
    assert "renames it current_runtime_key" in columns.message


def test_doctor_passes_the_migrated_turn_store_apart_from_honest_history(
    migrated, pristine
) -> None:
    _, stats, _ = pristine
    report = doctor(migrated / "turns.db")
    assert report.healthy and report.exit_code == 0
    assert _severities(report) == {
        "integrity": "ok",
        "schema_version": "ok",
        "required_columns": "ok",
        "required_indexes": "ok",
        "column_vs_metadata": "ok",
        "phase_runtime_agreement": "warning",
        "orphan_snapshots": "warning",
        "conversation_pointer": "ok",
        "unknown_rows": "info",
        "malformed_metadata": "info",
        "free_pages": "ok",  # under 1 MiB free: not worth a word
    }
    assert report.check("phase_runtime_agreement").row_count == stats.phase_disagreement_turns
    orphans = report.check("orphan_snapshots")
    assert orphans.row_count == stats.orphan_snapshot_turns
    assert sum(r[3] for r in orphans.result) == stats.orphan_snapshots
    unknown = {r[0]: r[1:] for r in report.check("unknown_rows").result}
    for table, rows in (("turns", stats.turn_rows), ("turn_snapshots", stats.snapshot_rows)):
        assert unknown[table] == (
            rows,
            stats.unknown[f"{table}.runtime_key"],
            stats.unknown[f"{table}.inference_id"],
        )
    assert "never fill it from the conversation pointer" in report.check("unknown_rows").message
    assert report.check("malformed_metadata").row_count == sum(stats.malformed.values())
    assert [c.name for c in report.findings] == [
        "phase_runtime_agreement",
        "orphan_snapshots",
        "unknown_rows",
        "malformed_metadata",
    ]


def test_doctor_passes_the_migrated_conversation_store(migrated, pristine) -> None:
    _, _, timeline = pristine
    report = doctor(migrated / "timeline3.db")
    assert report.healthy
    assert {n for n, s in _severities(report).items() if s != "ok"} == {"conversation_pointer"}
    pointer = report.check("conversation_pointer")
    assert pointer.severity == "info" and pointer.row_count == timeline.pointers_set
    assert {r[2] for r in pointer.result} == {"no turns in this file"}


def test_pointer_check_uses_switch_evidence_on_a_combined_store(migrated, pristine, tmp_path):
    _, _, timeline = pristine
    path = tmp_path / "combined.db"
    shutil.copy(migrated / "turns.db", path)
    conn = sqlite3.connect(path)
    conn.execute("ATTACH DATABASE ? AS tl", (os.fspath(migrated / "timeline3.db"),))
    conn.execute("INSERT INTO conversations SELECT * FROM tl.conversations")
    conn.execute("CREATE TABLE timeline_entities AS SELECT * FROM tl.timeline_entities")
    conn.commit()
    conn.close()
    report = doctor(path)
    pointer = report.check("conversation_pointer")
    expected = {c: v for c, v in timeline.pointer_verdicts.items() if v != "used by a turn"}
    assert {r[0]: r[2] for r in pointer.result} == expected
    assert pointer.severity == "warning" and report.healthy  # a warning, never an error
    unexplained = sum(v == "unexplained" for v in expected.values())
    assert pointer.message.startswith(f"{unexplained} conversations whose current_runtime_key")
    assert "switch after the last turn" in pointer.message
    assert pointer.result[0][2] == "unexplained"  # the ones to look at come first


def test_doctor_never_writes(migrated) -> None:
    path = migrated / "turns.db"
    digest, stamp, listing = _sha(path), path.stat().st_mtime_ns, sorted(os.listdir(migrated))
    doctor(path)
    assert (_sha(path), path.stat().st_mtime_ns) == (digest, stamp)
    assert sorted(os.listdir(migrated)) == listing


def test_every_check_sql_gives_the_same_rows_when_pasted(migrated) -> None:
    report = doctor(migrated / "turns.db")
    conn = sqlite3.connect(migrated / "turns.db")
    try:
        for check in report.checks:
            rows = conn.execute(check.sql).fetchall()
            assert rows[:MAX_RESULT_ROWS] == list(check.result), check.name
            assert len(rows) == check.row_count, check.name
    finally:
        conn.close()


def test_doctor_finds_a_column_that_disagrees_with_its_metadata(migrated, tmp_path) -> None:
    path = tmp_path / "turns.db"
    shutil.copy(migrated / "turns.db", path)
    conn = sqlite3.connect(path)
    forged = conn.execute(
        "SELECT conv_id, session_id, turn_id FROM turns WHERE runtime_key <> '' LIMIT 1"
    ).fetchone()
    emptied = conn.execute(
        "SELECT snapshot_id FROM turn_snapshots WHERE inference_id <> '' LIMIT 1"
    ).fetchone()
    conn.execute(
        "UPDATE turns SET runtime_key = 'forged@v9' WHERE conv_id = ? AND session_id = ? "
        "AND turn_id = ?",
        forged,
    )
    conn.execute("UPDATE turn_snapshots SET inference_id = '' WHERE snapshot_id = ?", emptied)
    conn.commit()
    conn.close()
    report = doctor(path)
    check = report.check("column_vs_metadata")
    assert check.severity == "error" and report.exit_code == 1
    assert check.row_count == 2
    snapshot = f"{'/'.join(_key(path, emptied[0]))} #{emptied[0]}"
    assert {r[1] for r in check.result} == {"/".join(forged), snapshot}
    assert "1 with the column empty" in check.message
    assert report.problems[0].name == "column_vs_metadata"


def _key(path: Path, snapshot_id: int) -> tuple[str, ...]:
    return _query(
        path,
        "SELECT conv_id, session_id, turn_id FROM turn_snapshots WHERE snapshot_id = ?",
        (snapshot_id,),
    )[0]


def test_doctor_finds_an_index_with_other_columns(migrated, tmp_path) -> None:
    path = tmp_path / "turns.db"
    shutil.copy(migrated / "turns.db", path)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX turns_by_conv_runtime_updated")
    conn.execute("CREATE INDEX turns_by_conv_runtime_updated ON turns (conv_id, runtime_key)")
    conn.execute("DROP INDEX turns_by_conv_created")
    conn.close()
    check = doctor(path).check("required_indexes")
    assert check.severity == "error"
    assert {r[0]: r[2] for r in check.result} == {
        "turns_by_conv_created": "missing",
        "turns_by_conv_runtime_updated": "turns (conv_id, runtime_key)",
    }


def test_doctor_warns_about_a_leftover_pointer_column(migrated, tmp_path) -> None:
    path = tmp_path / "timeline3.db"
    shutil.copy(migrated / "timeline3.db", path)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE conversations ADD COLUMN runtime_key TEXT NOT NULL DEFAULT ''")
    conn.close()
    report = doctor(path)
    assert report.check("required_columns").severity == "warning" and report.healthy


def test_doctor_reports_a_damaged_file_as_the_most_serious_problem(migrated, tmp_path) -> None:
    path = tmp_path / "turns.db"
    shutil.copy(migrated / "turns.db", path)
    conn = sqlite3.connect(path)
    conn.executescript(  # the index's entries no longer match its definition
        "PRAGMA writable_schema = ON;"
        "UPDATE sqlite_master SET sql = 'CREATE INDEX turns_by_conv_created ON turns "
        "(session_id, turn_created_at_ms)' WHERE name = 'turns_by_conv_created';"
        "PRAGMA writable_schema = OFF;"
    )
    conn.close()
    report = doctor(path)
    assert report.check("integrity").severity == "error"
    assert report.problems[0].name == "integrity" and report.exit_code == 1


def test_doctor_reports_a_newer_schema(migrated, tmp_path) -> None:
    path = tmp_path / "turns.db"
    shutil.copy(migrated / "turns.db", path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    check = doctor(path).check("schema_version")
    assert check.severity == "error" and "upgrade turnsim" in check.message


def test_doctor_on_a_foreign_sqlite_database_reports_missing_tables(tmp_path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE notes (body TEXT)").connection.close()
    report = doctor(path)
    assert report.exit_code == 1
    assert (
        "missing table(s) conversations, turn_snapshots, turns"
        in report.check("required_columns").message
    )


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.db", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "notes.txt", b"not a database at all\n" * 50), "not a usable SQLite"),
    ],
    ids=["missing", "directory", "not-sqlite"],
)
def test_doctor_refuses_what_is_not_a_usable_database(tmp_path: Path, make, words) -> None:
    target = make(tmp_path)
    with pytest.raises(NotSQLiteError, match=words) as caught:
        doctor(target)
    assert isinstance(caught.value, TurnsimError) and "\n" not in str(caught.value)
    assert not (tmp_path / "missing.db").exists()


def test_a_busy_database_is_refused_before_the_backup(samples, monkeypatch) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    monkeypatch.setattr(dbops, "BUSY_TIMEOUT_MS", 50)  # the wait, not the behaviour
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        digest = _sha(path)
        with pytest.raises(TransientStoreError, match=r"busy.*retry later"):
            migrate_file(path)
        assert _sha(path) == digest and not list(directory.glob("*.bak-*"))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert migrate_file(path)[0].changed  # and works once the writer is gone
