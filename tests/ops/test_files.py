"""sim.ops.files: backups, free space and compaction of real SQLite files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from persisters.errors import NotSQLiteError, PermanentStoreError
from persisters.schema import user_version
from sim.ops.files import backup_path_for, compact_file, file_space
from sim.ops.migrate import migrate_file
from sim.ops.samples import make_samples
from tests.ops.ops_fixtures import query, sha


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """Fresh old samples in a directory of their own."""
    make_samples(tmp_path)
    return tmp_path


def test_backup_is_the_old_database_and_never_overwritten(samples) -> None:
    directory = samples
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


def test_a_backup_name_with_a_leftover_partial_copy_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "turns.db"
    (tmp_path / "turns.db.bak-v1.partial").write_text("a backup that was interrupted")
    assert backup_path_for(path, 1) == tmp_path / "turns.db.bak-v1.2"


def test_file_space_is_what_sqlite_counts_and_writes_nothing(samples) -> None:
    path = samples / "turns.db"
    migrate_file(path, backup=False)  # the rebuilt snapshot table leaves free pages
    digest = sha(path)
    space = file_space(path)
    page_size = query(path, "PRAGMA page_size")[0][0]
    assert space.database_bytes == query(path, "PRAGMA page_count")[0][0] * page_size
    assert space.free_bytes == query(path, "PRAGMA freelist_count")[0][0] * page_size > 0
    assert 0 < space.free_share < 1 and not space.worth_compacting  # under 1 MiB free
    assert sha(path) == digest


def test_compacting_returns_the_free_pages_and_keeps_every_row(samples) -> None:
    path = samples / "turns.db"
    migrate_file(path, backup=False)
    rows = query(path, "SELECT * FROM turn_snapshots ORDER BY snapshot_id")
    before = file_space(path)
    compaction = compact_file(path)
    assert compaction.before == before and compaction.after == file_space(path)
    assert compaction.after.free_bytes == 0
    assert compaction.after.database_bytes < before.database_bytes
    assert query(path, "SELECT * FROM turn_snapshots ORDER BY snapshot_id") == rows
    assert query(path, "PRAGMA journal_mode")[0][0] == "delete"  # left as it was


def test_compacting_refuses_a_file_in_a_read_only_directory(samples) -> None:
    path = samples / "turns.db"
    digest = sha(path)
    os.chmod(samples, 0o555)
    try:
        with pytest.raises(PermanentStoreError, match=r"not writable.*for its journal\."):
            compact_file(path)
    finally:
        os.chmod(samples, 0o755)
    assert sha(path) == digest


@pytest.mark.parametrize("target", ["missing.db", "."])
def test_file_space_refuses_what_is_not_a_database_file(tmp_path: Path, target: str) -> None:
    with pytest.raises(NotSQLiteError):
        file_space(tmp_path / target)
    assert not (tmp_path / "missing.db").exists()
