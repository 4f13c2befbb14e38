"""One SQLite database file as the store uses it: connection, settings, transactions.

:func:`connect` opens a connection in autocommit mode and checks the file is a database;
:func:`tune_for_writing` and :func:`hand_checkpoints_to_thread` set the pragmas a writing
store runs with. :class:`SQLiteDatabase` guards the one connection with a lock, runs reads
and group-commit transactions on it (from worker threads only), and owns the
:class:`Checkpointer` thread that checkpoints the WAL off the commit path. The knobs are
module constants so that ``bench/pragmas.py`` can measure them against SQLite's defaults.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from persisters.errors import (
    NotSQLiteError,
    PermanentStoreError,
    StoreError,
    TransientStoreError,
    TurnsimError,
)
from persisters.group_commit import PendingWrite

BUSY_TIMEOUT_MS = 5000
BEGIN_ATTEMPTS = 5
#: Page cache per connection (KiB). SQLite's 2 MiB default thrashes once the snapshot
#: indexes outgrow it and every save re-reads index pages; 16 MiB is most of the gain
#: for little resident memory (docs/performance.md).
CACHE_KIB = 16 * 1024
#: WAL pages before a commit checkpoints (SQLite's default is 1000). Fewer, larger
#: checkpoints write each hot index page back once instead of many times.
WAL_AUTOCHECKPOINT_PAGES = 10_000
#: The WAL file is truncated back to this size after a checkpoint.
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
#: A store that writes a WAL file checkpoints it from a background thread (PASSIVE: never
#: blocks the writer or readers), so the checkpoint's fsyncs leave the commit path; about
#: half a commit's cost on a slow disk (docs/performance.md). At most one per interval.
CHECKPOINT_INTERVAL_S = 0.05
#: With the background checkpointer, the writer checkpoints itself only past this size,
#: which bounds the WAL should the thread fall behind or fail.
WAL_SAFETY_PAGES = 4 * WAL_AUTOCHECKPOINT_PAGES


def store_error(exc: sqlite3.Error, doing: str) -> StoreError:
    """Map a sqlite3 error to the store's transient/permanent split."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return TransientStoreError(f"{doing}: database is busy ({text}); retry later")
    return PermanentStoreError(f"{doing}: {text}")


def connect(
    path: str | os.PathLike[str], *, read_only: bool = False, tune: bool = True
) -> sqlite3.Connection:
    """Open a SQLite connection in autocommit mode, checking that the file is a database.

    ``tune`` switches a writable file to WAL with our pragmas; pass False to decide first
    (a refused file must be left exactly as it was) and call :func:`tune_for_writing`.
    Raises :class:`NotSQLiteError` with a readable message for a missing file, a file that
    is not SQLite, or one that cannot be opened.
    """
    name = os.fspath(path)
    memory = name == ":memory:"
    if not memory:
        p = Path(name)
        if read_only and not p.exists():
            raise NotSQLiteError(f"{name}: no such file")
        if p.is_dir():
            raise NotSQLiteError(f"{name}: is a directory, not a SQLite database file")
    try:
        if read_only:
            uri = f"file:{quote(os.path.abspath(name))}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(name, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA schema_version").fetchone()  # fails here if not a database
        conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    except sqlite3.Error as exc:
        raise NotSQLiteError(f"{name}: not a usable SQLite database ({exc})") from None
    if tune and not memory and not read_only:
        tune_for_writing(conn)
    return conn


def tune_for_writing(conn: sqlite3.Connection) -> None:
    """WAL, synchronous NORMAL and bounded WAL growth, for a file this process writes."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
    except sqlite3.OperationalError:
        pass  # a read-only file keeps its journal mode; writes will report it


def hand_checkpoints_to_thread(conn: sqlite3.Connection) -> bool:
    """Whether the file is in WAL mode; if so, the writer checkpoints only past
    :data:`WAL_SAFETY_PAGES`, leaving routine checkpoints to a :class:`Checkpointer`."""
    wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    if wal:
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES}")
    return wal


class Checkpointer:
    """Checkpoints a WAL database from its own thread and connection when asked.

    ``request`` is cheap and never blocks; the thread starts on the first request and runs
    ``PRAGMA wal_checkpoint(PASSIVE)`` at most every :data:`CHECKPOINT_INTERVAL_S`. A
    failure stops the thread and stays in ``error`` (the writer's own checkpoint at
    :data:`WAL_SAFETY_PAGES` still bounds the WAL). ``stop`` joins the thread.
    """

    def __init__(self, path: str) -> None:
        self._path = os.path.abspath(path)
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: sqlite3.Error | None = None
        self.checkpoints = 0

    def request(self) -> None:
        if self._stop.is_set() or self.error is not None:
            return
        if self._thread is None:
            # A daemon only so that a store nobody closed cannot hang the interpreter's
            # exit; close() stops and joins it.
            self._thread = threading.Thread(
                target=self._run, name="turnsim-wal-checkpoint", daemon=True
            )
            self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = NORMAL")
            while True:
                self._wanted.wait()
                if self._stop.is_set():
                    return
                self._wanted.clear()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
                if self._stop.wait(CHECKPOINT_INTERVAL_S):
                    return
        except sqlite3.Error as exc:
            self.error = exc
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()


class SQLiteDatabase:
    """One connection, guarded by a lock, used from worker threads only."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        name: str,
        read_only: bool,
        *,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self.conn = conn
        self.checkpointer = checkpointer
        self.name = name
        # Messages name the file, not its directory: a temporary run's path must not
        # reach a deterministic log.
        self.label = Path(name).name
        self.read_only = read_only
        self.lock = threading.Lock()
        self.closed = False

    def _check_open(self) -> None:
        if self.closed:
            raise StoreError(f"{self.label}: store is closed")

    def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(conn, *args)`` under the lock (call from a worker thread)."""
        with self.lock:
            self._check_open()
            try:
                return fn(self.conn, *args)
            except sqlite3.Error as exc:
                raise store_error(exc, f"{self.label}: read failed") from exc

    def commit_stream(self, take: Callable[[], PendingWrite | None]) -> list[PendingWrite]:
        """Apply ops in one transaction as ``take()`` hands them over, until it returns None.

        Ops are applied as they come, so a writer that keeps queueing while this runs (in a
        worker thread) has its saves executed while it produces more; the commit comes
        when ``take`` runs dry. Fills each op's result or error and returns the ops taken:
        a refused op fails alone; a failed transaction fails every op taken, including
        whatever was still queued when it failed.
        """
        batch: list[PendingWrite] = []

        def drain() -> None:
            while (op := take()) is not None:
                batch.append(op)

        with self.lock:
            try:
                self._check_open()
                self._begin()
                try:
                    while (op := take()) is not None:
                        batch.append(op)
                        try:
                            op.result = op.fn(self.conn, *op.args)
                        except TurnsimError as exc:  # refused before it wrote anything
                            op.error = exc
                    self.conn.execute("COMMIT")
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
                self._after_commit()
            except sqlite3.Error as exc:
                drain()
                failure = store_error(exc, f"{self.label}: commit of {len(batch)} save(s) failed")
                for op in batch:
                    op.error = failure
            except StoreError as exc:
                drain()
                for op in batch:
                    op.error = exc
            finally:
                for op in batch:
                    op.done = True
        return batch

    def _after_commit(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.request()

    def _begin(self) -> None:
        for attempt in range(BEGIN_ATTEMPTS):
            try:
                self.conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if attempt == BEGIN_ATTEMPTS - 1:
                    raise

    def close(self) -> None:
        with self.lock:
            if not self.closed:
                self.closed = True
                if self.checkpointer is not None:
                    self.checkpointer.stop()  # before the last connection closes the WAL
                self.conn.close()
