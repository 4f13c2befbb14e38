"""One namespace of a database server as a store uses it: dialect, pool, transactions.

The server-side counterpart of :mod:`persisters.sqlite_database`. A :class:`Dialect` is
what one server's driver and SQL need beyond :mod:`persisters.server_sql`
(``persisters.postgres_store``, ``persisters.mysql_store`` implement it); a
:class:`ConnectionPool` hands out a few connections, one caller at a time; a
:class:`ServerDatabase` runs reads on pooled connections and group-commit transactions
(``commit_stream``) from worker threads only.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from persisters.errors import StoreError, TurnsimError
from persisters.group_commit import PendingWrite

#: Connections a store keeps open at most (one writes at a time; the rest read).
POOL_SIZE = 4
#: What a write to a store made read-only raises (the words scenarios match).
READ_ONLY = "attempt to write a readonly database"

Connection = Any
Cursor = Any


class Dialect(Protocol):
    """What one server's SQL and driver need beyond :mod:`persisters.server_sql`."""

    #: ``postgresql`` or ``mysql``: the DSN scheme and the store's kind.
    name: str

    def connect(self, namespace: str, *, read_only: bool) -> Connection:
        """A new autocommit connection working in ``namespace`` (read-only: every
        transaction of the session is read-only)."""
        ...

    def create_namespace(self, namespace: str) -> None:
        """Create the schema/database ``namespace`` if missing."""
        ...

    def drop_namespace(self, namespace: str) -> None:
        """Drop ``namespace`` and everything in it."""
        ...

    def create_schema(self, cur: Cursor) -> None:
        """Create every missing table, index and trigger (idempotent)."""
        ...

    def empty(self, cur: Cursor) -> None:
        """Remove every row of the store's tables (a scratch namespace being reused)."""
        ...

    def missing_tables(self, cur: Cursor) -> list[str]:
        """The store's tables that ``cur``'s namespace lacks."""
        ...

    def begin(self, conn: Connection, *, read_only: bool) -> None: ...

    def commit(self, conn: Connection) -> None: ...

    def rollback(self, conn: Connection) -> None: ...

    def insert_turn(self, cur: Cursor, params: dict[str, Any]) -> bool:
        """Insert the turn row unless the key exists; whether it inserted (one
        statement: a concurrent insert of the same key is a False, not an error)."""
        ...

    def save(self, cur: Cursor, params: dict[str, Any]) -> tuple[int, str, str, bool] | None:
        """Rules 4 and 8 and the snapshot, without a read before the write: create the
        turn row or update it under the write-once condition (:data:`~persisters.
        server_sql.UPDATE_WRITE_ONCE`'s), then append the snapshot with the values the row
        holds. Returns ``(snapshot_id, runtime_key, inference_id, created)``, or None
        when nothing was written (the turn is missing and the save carries no runtime,
        or a recorded value differs)."""
        ...

    def insert_snapshot(self, cur: Cursor, params: dict[str, Any]) -> int:
        """Run :data:`~persisters.server_sql.INSERT_SNAPSHOT`; the new ``snapshot_id``."""
        ...

    def upsert_conversation(self, cur: Cursor, row: dict[str, Any]) -> tuple[Any, ...]:
        """Create or update a conversation row (the newest call wins, activity never
        goes back); the row as stored, in ``CONVERSATION_COLUMNS`` order."""
        ...

    def error(self, exc: BaseException, doing: str) -> StoreError | None:
        """The store error a driver exception means (None: not the driver's)."""
        ...

    def is_broken(self, exc: BaseException) -> bool:
        """Whether the connection that raised ``exc`` must not be used again."""
        ...

    def describe(self, namespace: str) -> str:
        """Where the store is, for messages (never a password)."""
        ...


class ConnectionPool:
    """At most ``size`` open connections, handed out one caller at a time (thread-safe).

    ``acquire`` blocks (call it from a worker thread) until a connection is free; one is
    opened when none is idle and fewer than ``size`` exist. ``release(conn, broken=True)``
    closes it instead, so the next caller gets a fresh one.
    """

    def __init__(self, connect: Callable[[], Connection], size: int = POOL_SIZE) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self.closed = False

    def acquire(self) -> Connection:
        self._slots.acquire()
        try:
            if self.closed:
                raise StoreError("store is closed")
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
                with self._lock:
                    self._open.add(id(conn))
                return conn
        except BaseException:
            self._slots.release()
            raise

    def release(self, conn: Connection, *, broken: bool = False) -> None:
        try:
            if broken or self.closed:
                self._discard(conn)
            else:
                self._idle.put(conn)
        finally:
            self._slots.release()

    def _discard(self, conn: Connection) -> None:
        with self._lock:
            self._open.discard(id(conn))
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            conn.close()

    def close(self) -> None:
        """Close every idle connection; one in use is closed when released."""
        self.closed = True
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return


class ServerDatabase:
    """One namespace on one server: the pool, reads, and group-commit transactions."""

    def __init__(
        self, dialect: Dialect, namespace: str, *, read_only: bool, scratch: bool = False
    ) -> None:
        self.dialect = dialect
        self.namespace = namespace
        # A scratch namespace's random name must not reach a run's (deterministic) log.
        self.label = dialect.describe("(scratch)" if scratch else namespace)
        self.read_only = read_only
        #: Set by ``make_read_only``: write transactions start READ ONLY from then on.
        self.refuse_writes = False
        self.pool = ConnectionPool(lambda: dialect.connect(namespace, read_only=read_only))

    def _store_error(self, exc: BaseException, doing: str) -> StoreError | None:
        return self.dialect.error(exc, f"{self.label}: {doing}")

    def run(self, fn: Callable[..., Any], *args: Any, doing: str = "read failed") -> Any:
        """``fn(cursor, *args)`` on a pooled autocommit connection (from a worker thread)."""
        if self.pool.closed:
            raise StoreError(f"{self.label}: store is closed")
        try:
            conn = self.pool.acquire()
        except TurnsimError:
            raise
        except Exception as exc:  # the server cannot be reached: the caller gets ours
            error = self._store_error(exc, "connecting failed")
            if error is None:
                raise
            raise error from exc
        broken = False
        try:
            with conn.cursor() as cur:
                return fn(cur, *args)
        except Exception as exc:
            broken = self.dialect.is_broken(exc)
            error = self._store_error(exc, doing)
            if error is None:
                raise
            raise error from exc
        finally:
            self.pool.release(conn, broken=broken)

    def commit_stream(self, take: Callable[[], PendingWrite | None]) -> list[PendingWrite]:
        """Apply ops in one transaction as ``take()`` hands them over, then commit.

        The same contract as :meth:`persisters.sqlite_database.SQLiteDatabase.
        commit_stream`: a refused op fails alone (it wrote nothing); a failed transaction
        fails every op taken, including whatever was still queued when it failed.
        """
        batch: list[PendingWrite] = []

        def drain() -> None:
            while (op := take()) is not None:
                batch.append(op)

        conn = None
        broken = False
        try:
            if self.pool.closed:
                raise StoreError(f"{self.label}: store is closed")
            conn = self.pool.acquire()
            self.dialect.begin(conn, read_only=self.refuse_writes or self.read_only)
            try:
                with conn.cursor() as cur:
                    while (op := take()) is not None:
                        batch.append(op)
                        try:
                            op.result = op.fn(cur, *op.args)
                        except TurnsimError as exc:  # refused before it wrote anything
                            op.error = exc
                self.dialect.commit(conn)
            except BaseException:
                try:
                    self.dialect.rollback(conn)
                except Exception:  # the first error is the one to report
                    broken = True
                raise
        except StoreError as exc:
            drain()
            for op in batch:
                op.error = exc
        except Exception as exc:
            broken = broken or self.dialect.is_broken(exc)
            drain()
            failure = self._store_error(exc, f"commit of {len(batch)} save(s) failed")
            if failure is None:
                raise
            for op in batch:
                op.error = failure
        finally:
            if conn is not None:
                self.pool.release(conn, broken=broken)
            for op in batch:
                op.done = True
        return batch

    def close(self) -> None:
        self.pool.close()
