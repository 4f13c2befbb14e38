"""doctor on real SQLite files: the whole report on old and migrated databases, read-only."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from persisters.errors import NotSQLiteError, TurnsimError
from persisters.schema import INDEXES
from sim.ops.doctor import MAX_RESULT_ROWS, doctor
from sim.ops.migrate import migrate_file
from sim.ops.samples import SampleStats, TimelineStats, make_samples
from tests.ops.ops_fixtures import SAMPLE_FILES, sha, write_bytes

ALL_CHECKS = (
    "integrity",
    "schema_version",
    "required_columns",
    "required_indexes",
    "write_once_triggers",
    "turns_updated_at",
    "column_vs_metadata",
    "phase_runtime_agreement",
    "orphan_snapshots",
    "conversation_pointer",
    "unknown_rows",
    "malformed_metadata",
    "mixed_runs",
    "stored_types",
    "free_pages",
)


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


def _severities(report) -> dict[str, str]:
    return {c.name: c.severity for c in report.checks}


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
        ("turn_snapshots", "run_id"),
        ("scenario_runs", "scenario"),
        ("scenario_runs", "run_id"),
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
        "write_once_triggers": "ok",
        "turns_updated_at": "ok",
        "column_vs_metadata": "ok",
        "phase_runtime_agreement": "warning",
        "orphan_snapshots": "warning",
        "conversation_pointer": "ok",
        "unknown_rows": "info",
        "malformed_metadata": "info",
        "mixed_runs": "ok",
        "stored_types": "ok",
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


def test_doctor_never_writes(migrated) -> None:
    path = migrated / "turns.db"
    digest, stamp, listing = sha(path), path.stat().st_mtime_ns, sorted(os.listdir(migrated))
    doctor(path)
    assert (sha(path), path.stat().st_mtime_ns) == (digest, stamp)
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


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: d / "missing.db", "no such file"),
        (lambda d: d, "is a directory"),
        (
            lambda d: write_bytes(d / "notes.txt", b"not a database at all\n" * 50),
            "not a usable SQLite",
        ),
    ],
    ids=["missing", "directory", "not-sqlite"],
)
def test_doctor_refuses_what_is_not_a_usable_database(tmp_path: Path, make, words) -> None:
    target = make(tmp_path)
    with pytest.raises(NotSQLiteError, match=words) as caught:
        doctor(target)
    assert isinstance(caught.value, TurnsimError) and "\n" not in str(caught.value)
    assert not (tmp_path / "missing.db").exists()
