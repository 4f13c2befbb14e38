"""SQLite TurnStore and ConversationIndex over the standard ``sqlite3`` module.

One :class:`SQLiteDatabase` owns one connection. Blocking SQLite work runs in anyio
worker threads, never on the event loop. Every write (snapshot saves and conversation
pointer updates alike) goes through one :class:`GroupCommit` writer per database: saves
that arrive while a batch commits queue up and commit together in the next transaction,
in arrival order. ``save`` returns only after its own batch committed; a failed batch
fails exactly its own saves, and a refused save (rewrite, empty runtime) fails alone
without writing anything.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import sniffio

from persisters.errors import (
    NotSQLiteError,
    PermanentStoreError,
    SchemaError,
    StoreError,
    TransientStoreError,
    TurnsimError,
)
from persisters.model import (
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
)
from persisters.schema import MigrationReport, migrate, schema_is_current, user_version
from persisters.store import (
    ConflictPolicy,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)

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


class _Op:
    """One queued write; ``event`` is set when it is done or its waiter must lead."""

    __slots__ = ("args", "done", "error", "event", "fn", "result", "taken")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.taken = False
        self.event: anyio.Event | None = None

    def outcome(self) -> Any:
        """The op's result, or raise its error (call once ``done``)."""
        if self.error is not None:
            raise self.error
        return self.result


def _noop(conn: sqlite3.Connection) -> None:
    return None


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

    def commit_batch(self, batch: Sequence[_Op]) -> None:
        """Apply ``batch`` in order in one transaction; fill each op's result or error."""
        ops = iter(batch)
        self.commit_stream(lambda: next(ops, None))

    def commit_stream(self, take: Callable[[], _Op | None]) -> list[_Op]:
        """Apply ops in one transaction as ``take()`` hands them over, until it returns None.

        Ops are applied as they come, so a writer that keeps queueing while this runs (in a
        worker thread) has its saves executed while it produces more; the commit comes
        when ``take`` runs dry. Fills each op's result or error and returns the ops taken:
        a refused op fails alone; a failed transaction fails every op taken, including
        whatever was still queued when it failed.
        """
        batch: list[_Op] = []

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


def _new_event() -> anyio.Event:
    """``anyio.Event()``, minus the backend lookup ``Event.__new__`` does on every call.

    The running backend's concrete class is looked up once per backend (asyncio and trio
    may both run in one process); that lookup was ~5 % of a save under concurrency.
    """
    backend = sniffio.current_async_library()
    cls = _EVENT_CLASSES.get(backend)
    if cls is None:
        cls = _EVENT_CLASSES[backend] = type(anyio.Event())
    return cls()


_EVENT_CLASSES: dict[str, type[anyio.Event]] = {}


class GroupCommit:
    """Batches concurrent writes into one transaction (leader/follower group commit).

    The first writer to find no commit running becomes the leader: it commits the queued
    ops (its own included, at most ``max_batch`` per transaction, oldest first) in a worker
    thread until its own op is done, then hands leadership to the oldest op still waiting.
    The worker applies ops as it takes them and commits when the queue runs dry, so saves
    queued while it works join the open transaction: their statements run while the event
    loop produces more (SQLite releases the GIL). Each waiter waits on its own event.
    No background task is needed, so the store works inside or outside any task group.

    ``enqueue`` + ``flush`` is the same machinery for a driver that decides when to
    commit (the simulation kernel queues a whole virtual instant's saves, then flushes).
    """

    def __init__(
        self, db: SQLiteDatabase, *, max_batch: int = 1024, max_wait_ms: float = 0.0
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._db = db
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._queue: deque[_Op] = deque()
        # The leader's worker thread takes ops while this thread may still queue (append
        # is atomic) or withdraw them (remove is not): taking and withdrawing hold the lock.
        self._queue_lock = threading.Lock()
        self._taken = 0  # ops taken into the transaction now being applied
        self._leading = False
        self.batches = 0
        self.ops = 0

    def enqueue(self, fn: Callable[..., Any], *args: Any) -> _Op:
        """Queue ``fn(conn, *args)`` without waiting; it commits with the next batch."""
        op = _Op(fn, args)
        self._queue.append(op)
        return op

    async def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Queue ``fn(conn, *args)`` and return its result once its batch committed."""
        return await self.wait(self.enqueue(fn, *args))

    async def flush(self) -> None:
        """Return once everything queued before this call has committed (or failed)."""
        # Each op carries its own outcome; a failed batch must not fail the flusher too.
        with contextlib.suppress(StoreError):
            await self.submit(_noop)

    async def wait(self, op: _Op) -> Any:
        """Wait for a queued op (leading batches when no one else is)."""
        try:
            if self._leading:
                op.event = _new_event()
                await op.event.wait()  # done, or handed the leadership
            if not op.done:
                await self._lead(op)
        except BaseException:
            with self._queue_lock:
                if not op.taken:
                    self._queue.remove(op)
            if op.event is not None and op.event.is_set() and not op.done:
                self._handoff()  # we were made leader but will not lead
            raise
        return op.outcome()

    async def _lead(self, own: _Op) -> None:
        self._leading = True
        try:
            while not own.done:
                if self._max_wait_s and len(self._queue) < self._max_batch:
                    await anyio.sleep(self._max_wait_s)
                self._taken = 0
                batch = await anyio.to_thread.run_sync(self._db.commit_stream, self._take)
                self.batches += 1
                self.ops += len(batch)
                for op in batch:
                    if op.event is not None:
                        op.event.set()
        finally:
            self._handoff()

    def _take(self) -> _Op | None:
        """The next queued op for the transaction being applied (called in its thread);
        None once the queue is empty or the batch holds ``max_batch`` ops."""
        with self._queue_lock:
            if not self._queue or self._taken >= self._max_batch:
                return None
            op = self._queue.popleft()
            op.taken = True
            self._taken += 1
            return op

    def _handoff(self) -> None:
        """Wake the oldest queued op that has a waiter to lead; else nobody leads."""
        for op in self._queue:
            if op.event is not None and not op.event.is_set():
                self._leading = True
                op.event.set()
                return
        self._leading = False


_SELECT_TURN = (
    "SELECT runtime_key, inference_id FROM turns "
    "WHERE conv_id = ? AND session_id = ? AND turn_id = ?"
)
_META = (
    "(CASE WHEN json_valid(:payload) THEN (CASE WHEN json_type(:payload, '$.{0}') = 'object' "
    "THEN json_extract(:payload, '$.{0}') END) END)"
)
_INSERT_TURN = (
    "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, "
    "turn_data_json, updated_at_ms, runtime_key, inference_id) VALUES (:conv_id, :session_id, "
    f":turn_id, :created, coalesce({_META.format('metadata')}, '{{}}'), "
    f"coalesce({_META.format('data')}, '{{}}'), :created, :runtime_key, :inference_id)"
)
_UPDATE_TURN = (
    "UPDATE turns SET runtime_key = :runtime_key, inference_id = :inference_id, "
    "updated_at_ms = max(updated_at_ms, :created), "
    f"turn_metadata_json = coalesce({_META.format('metadata')}, turn_metadata_json), "
    f"turn_data_json = coalesce({_META.format('data')}, turn_data_json) "
    "WHERE conv_id = :conv_id AND session_id = :session_id AND turn_id = :turn_id"
)
_INSERT_SNAPSHOT = (
    "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, payload, "
    "runtime_key, inference_id) VALUES (:conv_id, :session_id, :turn_id, :phase, :created, "
    ":payload, :runtime_key, :inference_id)"
)
#: Turns per conversation, from the ``turns_by_conv_created`` covering index (no sort).
TURN_COUNTS_SQL = "SELECT conv_id, count(*) FROM turns GROUP BY conv_id"
_SNAPSHOT_COLUMNS = (
    "conv_id, session_id, turn_id, phase, runtime_key, inference_id, created_at_ms, payload, "
    "snapshot_id"
)
_TURN_COLUMNS = (
    "conv_id, session_id, turn_id, runtime_key, inference_id, turn_created_at_ms, updated_at_ms"
)
_CONVERSATION_COLUMNS = (
    "conv_id, session_id, current_runtime_key, profile_slug, created_at_ms, last_activity_ms"
)
#: Every conversation record, in conv_id order.
CONVERSATIONS_SQL = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations ORDER BY conv_id"


def _text(payload: Any) -> str:
    """A stored payload as text (a BLOB or number may have been written by another tool)."""
    if isinstance(payload, str):
        return payload
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)


def _snapshot(row: tuple[Any, ...]) -> TurnSnapshot:
    return TurnSnapshot(*row[:7], _text(row[7]), row[8])


def _snapshot_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row if type(row[7]) is str else (*row[:7], _text(row[7]), row[8])


def list_sql(query: TurnQuery) -> tuple[str, list[Any]]:
    """The parameterized SQL that answers a :class:`TurnQuery` (shown by the CLI)."""
    where: list[str] = []
    args: list[Any] = []
    for column in ("conv_id", "session_id", "turn_id", "phase", "runtime_key", "inference_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if query.since_ms is not None:
        where.append("created_at_ms >= ?")
        args.append(query.since_ms)
    sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM turn_snapshots"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at_ms DESC, snapshot_id DESC LIMIT ?"
    args.append(query.limit)
    return sql, args


class SQLiteConversationIndex:
    """The conversation pointer table of a :class:`SQLiteDatabase`."""

    def __init__(self, db: SQLiteDatabase, writer: GroupCommit) -> None:
        self._db = db
        self._writer = writer

    @property
    def writer(self) -> GroupCommit:
        return self._writer

    @staticmethod
    def _apply_set(conn: sqlite3.Connection, *row: Any) -> ConversationRecord:
        out = conn.execute(
            f"INSERT INTO conversations ({_CONVERSATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (conv_id) DO UPDATE SET session_id = excluded.session_id, "
            "current_runtime_key = excluded.current_runtime_key, "
            "profile_slug = excluded.profile_slug, "
            "last_activity_ms = max(last_activity_ms, excluded.last_activity_ms) "
            f"RETURNING {_CONVERSATION_COLUMNS}",
            row,
        ).fetchone()
        return ConversationRecord(*out)

    def enqueue_set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> _Op:
        """Queue a pointer update for the next batch (see :meth:`GroupCommit.enqueue`)."""
        return self._writer.enqueue(
            self._apply_set, conv_id, session_id, runtime_key, profile_slug, at_ms, at_ms
        )

    async def set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> ConversationRecord:
        return await self._writer.wait(
            self.enqueue_set_current_runtime(conv_id, session_id, runtime_key, profile_slug, at_ms)
        )

    @staticmethod
    def _apply_touch(conn: sqlite3.Connection, conv_id: str, at_ms: int) -> None:
        conn.execute(
            "UPDATE conversations SET last_activity_ms = max(last_activity_ms, ?) "
            "WHERE conv_id = ?",
            (at_ms, conv_id),
        )

    def enqueue_touch(self, conv_id: str, at_ms: int) -> _Op:
        return self._writer.enqueue(self._apply_touch, conv_id, at_ms)

    async def touch(self, conv_id: str, at_ms: int) -> None:
        await self._writer.wait(self.enqueue_touch(conv_id, at_ms))

    async def get(self, conv_id: str) -> ConversationRecord | None:
        def fetch(conn: sqlite3.Connection) -> ConversationRecord | None:
            row = conn.execute(
                f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE conv_id = ?",
                (conv_id,),
            ).fetchone()
            return ConversationRecord(*row) if row else None

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def list(self) -> list[ConversationRecord]:
        def fetch(conn: sqlite3.Connection) -> list[ConversationRecord]:
            rows = conn.execute(CONVERSATIONS_SQL).fetchall()
            return [ConversationRecord(*r) for r in rows]

        return await anyio.to_thread.run_sync(self._db.read, fetch)


class SQLiteTurnStore:
    """TurnStore on a SQLite file (or ``:memory:``); open with :meth:`open`."""

    def __init__(
        self,
        db: SQLiteDatabase,
        writer: GroupCommit,
        *,
        on_conflict: ConflictPolicy = refuse_rewrite,
        migration_report: MigrationReport | None = None,
    ) -> None:
        self._db = db
        self._writer = writer
        self._on_conflict = on_conflict
        self.conversations = SQLiteConversationIndex(db, writer)
        self.migration_report = migration_report

    @property
    def path(self) -> str:
        return self._db.name

    @property
    def writer(self) -> GroupCommit:
        return self._writer

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        on_conflict: ConflictPolicy = refuse_rewrite,
        max_batch: int = 1024,
        max_wait_ms: float = 0.0,
        check_integrity: bool = False,
    ) -> SQLiteTurnStore:
        """Open (and, unless ``read_only``, migrate) a database.

        A read-only open never migrates: a database that needs it raises
        :class:`SchemaError` pointing at ``turnsim db migrate``. ``check_integrity`` runs
        ``PRAGMA integrity_check`` first (a full read: for opening an existing file to write
        into) and refuses a damaged file with :class:`NotSQLiteError`.
        """
        name = os.fspath(path)

        def open_sync() -> tuple[sqlite3.Connection, MigrationReport | None, bool]:
            conn = connect(name, read_only=read_only, tune=False)
            try:
                if check_integrity:
                    problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
                    if problems != ["ok"]:
                        raise NotSQLiteError(
                            f"{name}: damaged database (PRAGMA integrity_check: {problems[0]}); "
                            f"see `turnsim db doctor {name}`, restore a backup or use a new file"
                        )
                if schema_is_current(conn):
                    report = None
                elif read_only:
                    raise SchemaError(
                        f"{name}: schema version {user_version(conn)} needs migrating before "
                        f"it can be served; run `turnsim db migrate {name}` first"
                    )
                else:
                    try:
                        report = migrate(conn)
                    except sqlite3.Error as exc:
                        raise store_error(exc, f"{name}: migration failed") from exc
                wal = False
                if not read_only and name != ":memory:":
                    tune_for_writing(conn)  # only once the file is accepted
                    wal = conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                    if wal:  # the checkpointer thread checkpoints; this bounds the WAL
                        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES}")
                return conn, report, wal
            except BaseException:
                conn.close()
                raise

        conn, report, wal = await anyio.to_thread.run_sync(open_sync)
        checkpointer = Checkpointer(name) if wal else None
        db = SQLiteDatabase(conn, name, read_only, checkpointer=checkpointer)
        writer = GroupCommit(db, max_batch=max_batch, max_wait_ms=max_wait_ms)
        return cls(db, writer, on_conflict=on_conflict, migration_report=report)

    async def __aenter__(self) -> SQLiteTurnStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _apply_save(self, conn: sqlite3.Connection, params: dict[str, Any]) -> SaveResult:
        key = (params["conv_id"], params["session_id"], params["turn_id"])
        row = conn.execute(_SELECT_TURN, key).fetchone()
        stored = None if row is None else (row[0], row[1])
        runtime_key, inference_id = self._on_conflict(
            *key, stored, (params["runtime_key"], params["inference_id"])
        )
        params["runtime_key"] = runtime_key
        params["inference_id"] = inference_id
        conn.execute(_INSERT_TURN if row is None else _UPDATE_TURN, params)
        snapshot_id = conn.execute(_INSERT_SNAPSHOT, params).lastrowid
        return SaveResult(int(snapshot_id or 0), runtime_key, inference_id, row is None)

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
        op = self.enqueue_save(conv_id, session_id, turn_id, phase, created_at_ms, payload, options)
        return await self._writer.wait(op)

    def enqueue_save(
        self,
        conv_id: str,
        session_id: str,
        turn_id: str,
        phase: str,
        created_at_ms: int,
        payload: str,
        options: TurnSaveOptions = TurnSaveOptions(),  # noqa: B008 (frozen value)
    ) -> _Op:
        """Validate and queue a save for the next batch; refusals of bad arguments raise now.

        The op's ``outcome()`` is the :class:`SaveResult` (or raises) once
        ``writer.flush()`` (or any later save) returned.
        """
        validate_save_args(conv_id, session_id, turn_id, phase, created_at_ms)
        runtime_key, inference_id = resolve_projection(payload, options)
        params = {
            "conv_id": conv_id,
            "session_id": session_id,
            "turn_id": turn_id,
            "phase": phase,
            "created": created_at_ms,
            "payload": payload,
            "runtime_key": runtime_key,
            "inference_id": inference_id,
        }
        return self._writer.enqueue(self._apply_save, params)

    async def list(self, query: TurnQuery) -> list[TurnSnapshot]:
        sql, args = list_sql(query)

        def fetch(conn: sqlite3.Connection) -> list[TurnSnapshot]:
            return [_snapshot(row) for row in conn.execute(sql, args)]

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def list_rows(self, query: TurnQuery) -> list[tuple[Any, ...]]:
        """What :meth:`list` returns, as plain tuples in :class:`TurnSnapshot` field order.

        For readers that render rows straight away (the debug API): the same single
        worker-thread hop without building 50 objects per page.
        """
        sql, args = list_sql(query)

        def fetch(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [_snapshot_row(row) for row in conn.execute(sql, args)]

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def load_latest_turn(self, conv_id: str, phase: str) -> TurnSnapshot | None:
        found = await self.list(TurnQuery(conv_id=conv_id, phase=phase, limit=1))
        return found[0] if found else None

    async def get_turn(self, conv_id: str, session_id: str, turn_id: str) -> TurnRecord | None:
        def fetch(conn: sqlite3.Connection) -> TurnRecord | None:
            row = conn.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns "
                "WHERE conv_id = ? AND session_id = ? AND turn_id = ?",
                (conv_id, session_id, turn_id),
            ).fetchone()
            return TurnRecord(*row) if row else None

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def list_turns(self, conv_id: str) -> list[TurnRecord]:
        def fetch(conn: sqlite3.Connection) -> list[TurnRecord]:
            rows = conn.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns WHERE conv_id = ? "
                "ORDER BY turn_created_at_ms, rowid",
                (conv_id,),
            ).fetchall()
            return [TurnRecord(*r) for r in rows]

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def turn_counts(self) -> dict[str, int]:
        """Number of turns per conversation (conversations with no turn are absent).

        One grouped scan of the ``turns`` primary key, for readers that list every
        conversation with its turn count (the debug API) instead of one read per
        conversation.
        """

        def fetch(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute(TURN_COUNTS_SQL))

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read-only SQL statement (parameterized) and return its rows."""
        return await anyio.to_thread.run_sync(
            self._db.read, lambda conn: conn.execute(sql, params).fetchall()
        )

    async def make_read_only(self) -> None:
        """Refuse every later write, as a file that turned read-only does (a fault to inject).

        Reads keep working; writes fail with SQLite's "attempt to write a readonly database".
        """

        def flip(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA query_only = ON")

        await anyio.to_thread.run_sync(self._db.read, flip)

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._db.close)


async def open_store(
    target: str | os.PathLike[str] | None = None, **kwargs: Any
) -> SQLiteTurnStore | Any:
    """A store by name: ``None``/``"memory"`` for :class:`MemoryTurnStore`, else a SQLite path."""
    from persisters.memory_store import MemoryTurnStore

    if target is None or os.fspath(target) == "memory":
        allowed = {k: v for k, v in kwargs.items() if k == "on_conflict"}
        return MemoryTurnStore(**allowed)
    return await SQLiteTurnStore.open(target, **kwargs)
