"""One SQLite database as the store uses it: opening, settings, the checkpointer thread,
and transactions that fill each op's outcome."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persisters import sqlite_database
from persisters.errors import (
    InvalidSaveError,
    NotSQLiteError,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
)
from persisters.group_commit import PendingWrite
from persisters.sqlite_database import (
    Checkpointer,
    SQLiteDatabase,
    connect,
    hand_checkpoints_to_thread,
    store_error,
    tune_for_writing,
)


def test_busy_and_locked_are_transient_anything_else_permanent() -> None:
    for text in ("database is locked", "database table is busy"):
        assert isinstance(store_error(sqlite3.OperationalError(text), "x"), TransientStoreError)
    error = store_error(sqlite3.OperationalError("attempt to write a readonly database"), "x")
    assert isinstance(error, PermanentStoreError) and not isinstance(error, TransientStoreError)
    assert str(error) == "x: attempt to write a readonly database"


def test_connect_refuses_what_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(NotSQLiteError, match="is a directory"):
        connect(tmp_path)
    with pytest.raises(NotSQLiteError, match="no such file"):
        connect(tmp_path / "missing.db", read_only=True)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"not a database, just some text that is long enough" * 40)
    with pytest.raises(NotSQLiteError, match="not a usable SQLite database"):
        connect(text, tune=False)


def test_a_writing_connection_hands_checkpoints_to_the_thread(tmp_path: Path) -> None:
    conn = connect(tmp_path / "w.db", tune=False)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        tune_for_writing(conn)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert hand_checkpoints_to_thread(conn)
        pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == sqlite_database.WAL_SAFETY_PAGES
    finally:
        conn.close()
    memory = connect(":memory:")
    try:
        assert not hand_checkpoints_to_thread(memory)  # no WAL: the writer checkpoints
    finally:
        memory.close()


def test_the_checkpointer_checkpoints_when_asked_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = connect(path)
    checkpointer = Checkpointer(str(path))
    try:
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        checkpointer.request()
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.checkpoints >= 1 and checkpointer.error is None
    finally:
        checkpointer.stop()
        conn.close()
    checkpointer.request()  # after stop: ignored, no new thread
    assert checkpointer.checkpoints >= 1


def ops(*fns: Callable[[sqlite3.Connection], Any]) -> list[PendingWrite]:
    return [PendingWrite(fn, ()) for fn in fns]


def stream(batch: list[PendingWrite]) -> Callable[[], PendingWrite | None]:
    """A ``take`` that hands over ``batch`` and then runs dry."""
    pending = iter(batch)
    return lambda: next(pending, None)


def test_a_transaction_fills_each_ops_outcome(tmp_path: Path) -> None:
    db = SQLiteDatabase(connect(tmp_path / "t.db"), str(tmp_path / "t.db"), False)
    try:
        db.conn.execute("CREATE TABLE t (x)")

        def insert(conn: sqlite3.Connection) -> int:
            return int(conn.execute("INSERT INTO t VALUES (1)").lastrowid or 0)

        def refuse(conn: sqlite3.Connection) -> None:
            raise InvalidSaveError("refused before writing")

        batch = ops(insert, refuse, insert)
        assert db.commit_stream(stream(batch)) == batch
        assert all(op.done for op in batch)
        assert [batch[0].outcome(), batch[2].outcome()] == [1, 2]
        with pytest.raises(InvalidSaveError):
            batch[1].outcome()
        assert db.read(lambda conn: conn.execute("SELECT count(*) FROM t").fetchone()[0]) == 2

        db.conn.execute("PRAGMA query_only = ON")  # every write now fails: the batch fails
        failed = ops(insert, insert)
        db.commit_stream(stream(failed))
        for op in failed:
            with pytest.raises(PermanentStoreError, match=r"t\.db: commit of 2 save\(s\) failed"):
                op.outcome()
    finally:
        db.close()
    with pytest.raises(StoreError, match="store is closed"):
        db.read(lambda conn: None)
    closed = ops(lambda conn: None)
    db.commit_stream(stream(closed))
    with pytest.raises(StoreError, match="store is closed"):
        closed[0].outcome()
