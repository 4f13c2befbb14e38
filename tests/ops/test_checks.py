"""The doctor's checks one by one: each finds what it is for in a file made to have it."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from persisters.schema import SCHEMA_VERSION
from persisters.write_once import drop_triggers
from sim.ops.doctor import doctor
from sim.ops.migrate import migrate_file
from sim.ops.samples import SampleStats, TimelineStats, make_samples
from tests.ops.ops_fixtures import SAMPLE_FILES, query


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SampleStats, TimelineStats]:
    directory = tmp_path_factory.mktemp("pristine")
    turns, timeline = make_samples(directory)
    return directory, turns, timeline


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, pristine) -> Path:
    """Both samples migrated once, shared by read-only tests."""
    directory = tmp_path_factory.mktemp("migrated")
    for name in SAMPLE_FILES:
        shutil.copy(pristine[0] / name, directory / name)
        migrate_file(directory / name, backup=False)
    return directory


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
    drop_triggers(conn)  # hand damage: past the file's write-once triggers
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
    return query(
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
        "missing table(s) conversations, scenario_runs, turn_snapshots, turns"
        in report.check("required_columns").message
    )


def test_doctor_flags_turns_whose_updated_at_is_zero(migrated, tmp_path) -> None:
    """Rows the GP-26 indexes would order by 0: a migration that never filled the column."""
    path = tmp_path / "turns.db"
    shutil.copy(migrated / "turns.db", path)
    assert doctor(path).check("turns_updated_at").severity == "ok"
    conn = sqlite3.connect(path)
    zeroed = conn.execute(
        "UPDATE turns SET updated_at_ms = 0 WHERE rowid IN (SELECT rowid FROM turns LIMIT 3)"
    ).rowcount
    conn.commit()
    conn.close()
    assert zeroed == 3
    report = doctor(path)
    check = report.check("turns_updated_at")
    assert (check.severity, check.row_count) == ("error", 3)
    assert not report.healthy
    assert "updated_at_ms = 0" in check.message and "turnsim db migrate" in check.message
    assert query(path, check.sql) == [tuple(r) for r in check.result]
