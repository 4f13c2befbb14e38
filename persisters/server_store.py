"""A TurnStore on a database server, whatever its dialect: pool, group commit, the rules.

:class:`ServerTurnStore` is the store the PostgreSQL and MySQL/MariaDB stores are; a
:class:`Dialect` (``persisters.postgres_store``, ``persisters.mysql_store``) supplies what
differs. Like the SQLite store, the drivers are synchronous and every call runs in an
anyio worker thread, so the store works on asyncio and trio alike.

* Connections come from a small :class:`ConnectionPool` (opened lazily, a broken one is
  dropped and replaced). Reads take any connection; writes are ops of one
  :class:`~persisters.group_commit.GroupCommit` per store: the writes queued while a batch
  commits go in the next transaction, in arrival order, on one pooled connection.
* Write-once (rule 4) is one conditional statement (:data:`~persisters.server_sql.
  UPDATE_WRITE_ONCE`) whose row count says whether the save was refused, and a new turn
  is one insert that cannot race (the dialect's ``insert_turn``): two processes writing
  the same database cannot slip a rewrite between a read and a write.
* A store may own a *scratch* namespace (``scratch=True``): created on open, dropped on
  close, as a run's temporary SQLite file is.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.to_thread

from persisters.errors import (
    SchemaError,
    StoreError,
    TransientStoreError,
    TurnsimError,
)
from persisters.group_commit import GroupCommit, PendingWrite
from persisters.model import (
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
)
from persisters.server_sql import (
    CONVERSATIONS,
    GET_CONVERSATION,
    GET_TURN,
    LIST_TURNS,
    SELECT_STORED,
    TOUCH,
    TURN_COUNTS,
    UPDATE_DECIDED,
    UPDATE_WRITE_ONCE,
    list_sql,
    turn_documents,
)
from persisters.store import (
    ConflictPolicy,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)

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
        conn = self.pool.acquire()
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


class ServerWriteQueue:
    """The writes of one server store as ops of its :class:`GroupCommit` ``writer``: the
    store's :class:`~persisters.store.WriteQueue` (its ``group_commit``)."""

    def __init__(
        self, db: ServerDatabase, writer: GroupCommit, *, on_conflict: ConflictPolicy
    ) -> None:
        self.writer = writer
        self._dialect = db.dialect
        self._on_conflict = on_conflict

    def enqueue_save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = TurnSaveOptions(),  # noqa: B008 (frozen value)
    ) -> PendingWrite:
        """Validate and queue a save for the next batch; refusals of bad arguments raise now."""
        validate_save_args(conv_id, session_id, turn_id, phase, created_at_ms)
        runtime_key, inference_id = resolve_projection(payload, options)
        metadata, data = turn_documents(payload)
        params = {
            "conv_id": conv_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "phase": phase,
            "created": created_at_ms,
            "payload": payload,
            "runtime_key": runtime_key,
            "inference_id": inference_id,
            "metadata": metadata,
            "data": data,
        }
        apply = self._write_once if self._on_conflict is refuse_rewrite else self._decided
        return self.writer.enqueue(apply, params)

    def _write_once(self, cur: Cursor, params: dict[str, Any]) -> SaveResult:
        """Rules 4 and 8 without a read before the write: a new turn needs a runtime and
        is one insert; an existing one is one conditional update."""
        carried = (params["runtime_key"], params["inference_id"])
        key = (params["conv_id"], params["session_id"], params["turn_id"])
        created = bool(carried[0]) and self._dialect.insert_turn(cur, params)
        if not created:
            cur.execute(UPDATE_WRITE_ONCE, params)
            if cur.rowcount != 1:
                cur.execute(SELECT_STORED, params)
                row = cur.fetchone()
                # raises: the turn is new (and has no runtime) or a value differs
                refuse_rewrite(*key, None if row is None else (row[0], row[1]), carried)
                raise TransientStoreError(  # pragma: no cover - only if a value was erased
                    f"save of {'/'.join(key)} matched no row and no rule refused it; retry"
                )
            cur.execute(SELECT_STORED, params)
            params["runtime_key"], params["inference_id"] = cur.fetchone()
        snapshot_id = self._dialect.insert_snapshot(cur, params)
        return SaveResult(snapshot_id, params["runtime_key"], params["inference_id"], created)

    def _decided(self, cur: Cursor, params: dict[str, Any]) -> SaveResult:
        """Any other conflict policy (the ``upsert-overwrite`` variant's): the row is
        locked, the policy decides in Python, the decision is written."""
        carried = (params["runtime_key"], params["inference_id"])
        key = (params["conv_id"], params["session_id"], params["turn_id"])
        cur.execute(SELECT_STORED, params)
        row = cur.fetchone()
        created = False
        if row is None:
            params["runtime_key"], params["inference_id"] = self._on_conflict(*key, None, carried)
            created = self._dialect.insert_turn(cur, params)
            if not created:  # inserted by another writer since: decide against its values
                cur.execute(SELECT_STORED, params)
                row = cur.fetchone()
        if not created:
            stored = (row[0], row[1])
            params["runtime_key"], params["inference_id"] = self._on_conflict(*key, stored, carried)
            cur.execute(UPDATE_DECIDED, params)
        snapshot_id = self._dialect.insert_snapshot(cur, params)
        return SaveResult(snapshot_id, params["runtime_key"], params["inference_id"], created)

    def enqueue_set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> PendingWrite:
        """Queue a pointer update for the next batch."""
        row = {
            "conv_id": conv_id,
            "session_id": session_id,
            "current_runtime_key": runtime_key,
            "profile_slug": profile_slug,
            "at_ms": at_ms,
        }
        return self.writer.enqueue(self._apply_set, row)

    def _apply_set(self, cur: Cursor, row: dict[str, Any]) -> ConversationRecord:
        return ConversationRecord(*self._dialect.upsert_conversation(cur, row))

    def enqueue_touch(self, conv_id: str, at_ms: int) -> PendingWrite:
        """Queue an activity update for the next batch."""
        return self.writer.enqueue(_apply_touch, {"conv_id": conv_id, "at_ms": at_ms})

    async def flush(self) -> None:
        """Return once every op queued before this call has its outcome."""
        await self.writer.flush()


def _apply_touch(cur: Cursor, row: dict[str, Any]) -> None:
    cur.execute(TOUCH, row)


def _fetch_all(cur: Cursor, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    cur.execute(sql, params)
    return [tuple(r) for r in cur.fetchall()]


class ServerConversationIndex:
    """The ``conversations`` table of a server store."""

    def __init__(self, db: ServerDatabase, writes: ServerWriteQueue) -> None:
        self._db = db
        self._writes = writes

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        op = self._writes.enqueue_set_current_runtime(
            conv_id, session_id, runtime_key, profile_slug, at_ms
        )
        return await self._writes.writer.wait(op)

    async def touch(self, conv_id: str, at_ms: int) -> None:
        await self._writes.writer.wait(self._writes.enqueue_touch(conv_id, at_ms))

    async def get(self, conv_id: str) -> ConversationRecord | None:
        rows = await anyio.to_thread.run_sync(
            self._db.run, _fetch_all, GET_CONVERSATION, {"conv_id": conv_id}
        )
        return ConversationRecord(*rows[0]) if rows else None

    async def list(self) -> list[ConversationRecord]:
        rows = await anyio.to_thread.run_sync(self._db.run, _fetch_all, CONVERSATIONS, {})
        return [ConversationRecord(*r) for r in rows]


class ServerTurnStore:
    """TurnStore on one namespace of a database server; open with :meth:`open`."""

    def __init__(
        self,
        db: ServerDatabase,
        *,
        on_conflict: ConflictPolicy = refuse_rewrite,
        scratch: bool = False,
        max_batch: int = 1024,
    ) -> None:
        self._db = db
        self._scratch = scratch
        writer = GroupCommit(db.commit_stream, max_batch=max_batch)
        self.group_commit = ServerWriteQueue(db, writer, on_conflict=on_conflict)
        self.conversations = ServerConversationIndex(db, self.group_commit)
        self._closed = False

    @property
    def kind(self) -> str:
        """``postgresql`` or ``mysql``."""
        return self._db.dialect.name

    @property
    def namespace(self) -> str:
        """The schema (PostgreSQL) or database (MySQL) the store's tables live in."""
        return self._db.namespace

    @property
    def label(self) -> str:
        return self._db.label

    @property
    def writer(self) -> GroupCommit:
        """The store's one writer (its ``batches`` and ``ops`` count what it committed)."""
        return self.group_commit.writer

    @classmethod
    async def open(
        cls,
        dialect: Dialect,
        namespace: str,
        *,
        read_only: bool = False,
        scratch: bool = False,
        on_conflict: ConflictPolicy = refuse_rewrite,
        max_batch: int = 1024,
    ) -> ServerTurnStore:
        """Open the store in ``namespace``, creating the namespace and schema unless
        ``read_only`` (then a namespace without the tables raises :class:`SchemaError`).

        ``scratch``: the namespace is the store's own, dropped by :meth:`close`.
        """
        db = ServerDatabase(dialect, namespace, read_only=read_only, scratch=scratch)

        def prepare() -> None:
            if not read_only:
                dialect.create_namespace(namespace)
            try:
                if read_only:
                    missing = db.run(dialect.missing_tables, doing="reading the schema failed")
                    if missing:
                        raise SchemaError(
                            f"{db.label}: no turnsim tables ({', '.join(missing)} missing); "
                            "write a run there first (turnsim run --store DSN --db NAME)"
                        )
                else:
                    db.run(dialect.create_schema, doing="creating the schema failed")
            except BaseException:
                db.close()
                if scratch:
                    dialect.drop_namespace(namespace)
                raise

        await anyio.to_thread.run_sync(_wrapped(dialect, db.label, prepare))
        return cls(db, on_conflict=on_conflict, scratch=scratch, max_batch=max_batch)

    async def __aenter__(self) -> ServerTurnStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = TurnSaveOptions(),  # noqa: B008 (frozen value)
    ) -> SaveResult:
        op = self.group_commit.enqueue_save(
            conv_id, session_id, turn_id, phase, created_at_ms, payload, options
        )
        return await self.group_commit.writer.wait(op)

    async def list_rows(self, query: TurnQuery) -> list[tuple[Any, ...]]:
        sql, args = list_sql(query)
        return await anyio.to_thread.run_sync(self._db.run, _fetch_all, sql, args)

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        return [TurnSnapshot(*row) for row in await self.list_rows(query)]

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        found = await self.list(TurnQuery(conv_id=conv_id, phase=phase, limit=1))
        return found[0] if found else None

    async def get_turn(self, conv_id: str, session_id: str, turn_id: str) -> TurnRecord | None:
        key = {"conv_id": conv_id, "session_id": session_id, "turn_id": turn_id}
        rows = await anyio.to_thread.run_sync(self._db.run, _fetch_all, GET_TURN, key)
        return TurnRecord(*rows[0]) if rows else None

    async def list_turns(self, conv_id: str) -> list[TurnRecord]:
        rows = await anyio.to_thread.run_sync(
            self._db.run, _fetch_all, LIST_TURNS, {"conv_id": conv_id}
        )
        return [TurnRecord(*r) for r in rows]

    async def turn_counts(self) -> dict[str, int]:
        rows = await anyio.to_thread.run_sync(self._db.run, _fetch_all, TURN_COUNTS, {})
        return {conv_id: int(n) for conv_id, n in rows}

    async def execute(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Run one SQL statement (``%(name)s`` parameters) and return its rows."""
        return await anyio.to_thread.run_sync(self._db.run, _fetch_all, sql, params or {})

    async def make_read_only(self) -> None:
        """Refuse every later write: write transactions start READ ONLY, so the server
        itself refuses them (a fault to inject). Reads keep working."""
        self._db.refuse_writes = True

    async def close(self) -> None:
        """Close the pool (and drop a scratch namespace). Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True

        def close_sync() -> None:
            self._db.close()
            if self._scratch:
                self._db.dialect.drop_namespace(self._db.namespace)

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_wrapped(self._db.dialect, self.label, close_sync))


def _wrapped(dialect: Dialect, label: str, fn: Callable[[], None]) -> Callable[[], None]:
    """``fn`` with driver errors turned into store errors."""

    def run() -> None:
        try:
            fn()
        except TurnsimError:
            raise
        except Exception as exc:
            error = dialect.error(exc, label)
            if error is None:
                raise
            raise error from exc

    return run
