"""SQLite TurnStore and ConversationIndex over the standard ``sqlite3`` module.

One :class:`~persisters.sqlite_database.SQLiteDatabase` owns one connection. Blocking
SQLite work runs in anyio worker threads, never on the event loop. Every write (snapshot
saves and conversation pointer updates alike) is an op of the store's
:class:`SQLiteWriteQueue`, committed by one :class:`~persisters.group_commit.GroupCommit`
writer per database: saves that arrive while a batch commits queue up and commit together
in the next transaction, in arrival order. ``save`` returns only after its own batch
committed; a failed batch fails exactly its own saves, and a refused save (rewrite, empty
runtime) fails alone without writing anything.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
import attrs

from persisters.as_of import get_turn_as_of, list_turns_as_of
from persisters.errors import (
    READ_ONLY_REFUSAL,
    PermanentStoreError,
)
from persisters.group_commit import GroupCommit, PendingWrite
from persisters.migration import MigrationReport
from persisters.model import (
    ConversationRecord,
    SaveResult,
    TurnQuery,
    TurnRecord,
    TurnSaveOptions,
    TurnSnapshot,
)
from persisters.scenario_claims import claim_scenario
from persisters.schema import TURNSIM
from persisters.sqlite_database import (
    Checkpointer,
    SQLiteDatabase,
    connect,
)
from persisters.sqlite_file import admit
from persisters.sqlite_open import bring_current, refuse_other_layout, tune
from persisters.store import (
    ConflictPolicy,
    latest_turn_query,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)
from persisters.write_once import is_write_once_refusal, write_once_error

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
    "runtime_key, inference_id, run_id) VALUES (:conv_id, :session_id, :turn_id, :phase, "
    ":created, :payload, :runtime_key, :inference_id, :run_id)"
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


@attrs.frozen
class ConversationTable:
    """Where a database keeps its conversation index, and the SQL that reads and writes it.

    ``table`` may be schema-qualified (``timeline.timeline_conversations`` for an attached
    timeline database); ``pointer`` is its pointer column (``current_runtime_key`` in
    turnsim's layout, ``runtime_key`` in the real one); ``profile`` is the profile column,
    or ``"''"`` for a read-only table that has none.
    """

    table: str = "conversations"
    pointer: str = "current_runtime_key"
    profile: str = "profile_slug"

    @property
    def columns(self) -> str:
        """The columns of a :class:`ConversationRecord`, in its field order."""
        return (
            f"conv_id, session_id, {self.pointer}, {self.profile}, created_at_ms, last_activity_ms"
        )

    @property
    def upsert_sql(self) -> str:
        """Create or update a row (the newest call wins, ``""`` included); returns it."""
        p = self.pointer
        return (
            f"INSERT INTO {self.table} (conv_id, session_id, {p}, {self.profile}, "
            "created_at_ms, last_activity_ms) VALUES (?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (conv_id) DO UPDATE SET session_id = excluded.session_id, {p} = "
            f"excluded.{p}, {self.profile} = excluded.{self.profile}, "
            "last_activity_ms = max(last_activity_ms, excluded.last_activity_ms) "
            f"RETURNING {self.columns}"
        )

    @property
    def touch_sql(self) -> str:
        return (
            f"UPDATE {self.table} SET last_activity_ms = max(last_activity_ms, ?) WHERE conv_id = ?"
        )

    @property
    def get_sql(self) -> str:
        return f"SELECT {self.columns} FROM {self.table} WHERE conv_id = ?"

    @property
    def list_sql(self) -> str:
        return f"SELECT {self.columns} FROM {self.table} ORDER BY conv_id"


#: turnsim's own conversation table.
CONVERSATIONS = ConversationTable()
#: Every conversation record, in conv_id order.
CONVERSATIONS_SQL = CONVERSATIONS.list_sql


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
    if query.as_of_ms is not None:
        where.append("created_at_ms <= ?")
        args.append(query.as_of_ms)
    sql = f"SELECT {_SNAPSHOT_COLUMNS} FROM turn_snapshots"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at_ms DESC, snapshot_id DESC LIMIT ?"
    args.append(query.limit)
    return sql, args


class SQLiteWriteQueue:
    """The writes of one database as ops of its :class:`GroupCommit` ``writer``.

    The SQLite store's :class:`~persisters.store.WriteQueue` (its ``group_commit``): the
    store's ``save`` and the index's pointer updates queue here too and wait for their own
    op, so every write of the database goes through one writer.
    """

    def __init__(
        self,
        writer: GroupCommit,
        *,
        on_conflict: ConflictPolicy,
        conversations: ConversationTable | None = CONVERSATIONS,
    ) -> None:
        self.writer = writer
        self._on_conflict = on_conflict
        self._conversations = conversations
        #: Set by :meth:`SQLiteTurnStore.make_read_only`: every write applied from then on
        #: (queued ones included) is refused with the stores' common words.
        self.read_only = False
        #: Written into every snapshot's ``run_id`` (set by ``claim_scenario``; '' = none).
        self.run_id = ""

    def _index(self) -> ConversationTable:
        if self._conversations is None:
            raise PermanentStoreError(
                "this database has no conversation index table (opened read-only without "
                "one): attempt to write a readonly database"
            )
        return self._conversations

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermanentStoreError(READ_ONLY_REFUSAL)

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
        """Validate and queue a save for the next batch; refusals of bad arguments raise now.

        The op's ``outcome()`` is the :class:`SaveResult` (or raises) once :meth:`flush`
        (or any later save) returned.
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
            "run_id": self.run_id,
        }
        return self.writer.enqueue(self._apply_save, params)

    def _apply_save(self, conn: sqlite3.Connection, params: dict[str, Any]) -> SaveResult:
        self._check_writable()
        key = (params["conv_id"], params["session_id"], params["turn_id"])
        row = conn.execute(_SELECT_TURN, key).fetchone()
        stored = None if row is None else (row[0], row[1])
        runtime_key, inference_id = self._on_conflict(
            *key, stored, (params["runtime_key"], params["inference_id"])
        )
        params["runtime_key"] = runtime_key
        params["inference_id"] = inference_id
        try:
            conn.execute(_INSERT_TURN if row is None else _UPDATE_TURN, params)
        except sqlite3.IntegrityError as exc:
            if stored is None or not is_write_once_refusal(exc):
                raise
            raise write_once_error(key, stored, (runtime_key, inference_id)) from exc
        snapshot_id = conn.execute(_INSERT_SNAPSHOT, params).lastrowid
        return SaveResult(int(snapshot_id or 0), runtime_key, inference_id, row is None)

    def enqueue_set_current_runtime(
        self, conv_id: str, session_id: str, runtime_key: str, profile_slug: str, at_ms: int
    ) -> PendingWrite:
        """Queue a pointer update for the next batch (see :meth:`GroupCommit.enqueue`)."""
        return self.writer.enqueue(
            self._apply_set, conv_id, session_id, runtime_key, profile_slug, at_ms, at_ms
        )

    def _apply_set(self, conn: sqlite3.Connection, *row: Any) -> ConversationRecord:
        self._check_writable()
        return ConversationRecord(*conn.execute(self._index().upsert_sql, row).fetchone())

    def enqueue_touch(self, conv_id: str, at_ms: int) -> PendingWrite:
        """Queue an activity update for the next batch."""
        return self.writer.enqueue(self._apply_touch, conv_id, at_ms)

    def _apply_touch(self, conn: sqlite3.Connection, conv_id: str, at_ms: int) -> None:
        self._check_writable()
        conn.execute(self._index().touch_sql, (at_ms, conv_id))

    async def flush(self) -> None:
        """Return once every op queued before this call has its outcome (see
        :meth:`GroupCommit.flush`); a failed batch fails its ops, not the flush."""
        await self.writer.flush()


class SQLiteConversationIndex:
    """The conversation pointer table of a :class:`SQLiteDatabase`.

    ``conversations`` None: the database has no index table (a read-only timeline that is
    not there); every read then answers nothing.
    """

    def __init__(
        self,
        db: SQLiteDatabase,
        writes: SQLiteWriteQueue,
        conversations: ConversationTable | None = CONVERSATIONS,
    ) -> None:
        self._db = db
        self._writes = writes
        self._table = conversations

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
        table = self._table
        if table is None:
            return None

        def fetch(conn: sqlite3.Connection) -> ConversationRecord | None:
            row = conn.execute(table.get_sql, (conv_id,)).fetchone()
            return ConversationRecord(*row) if row else None

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def list(self) -> list[ConversationRecord]:
        table = self._table
        if table is None:
            return []

        def fetch(conn: sqlite3.Connection) -> list[ConversationRecord]:
            return [ConversationRecord(*r) for r in conn.execute(table.list_sql).fetchall()]

        return await anyio.to_thread.run_sync(self._db.read, fetch)


class SQLiteTurnStore:
    """TurnStore on a SQLite file (or ``:memory:``); open with :meth:`open`."""

    #: The class of :attr:`group_commit` (a store of another layout writes more per save).
    write_queue_class: type[SQLiteWriteQueue] = SQLiteWriteQueue

    def __init__(
        self,
        db: SQLiteDatabase,
        writer: GroupCommit,
        *,
        on_conflict: ConflictPolicy = refuse_rewrite,
        migration_report: MigrationReport | None = None,
        conversations: ConversationTable | None = CONVERSATIONS,
    ) -> None:
        self._db = db
        self.group_commit = self.write_queue_class(
            writer, on_conflict=on_conflict, conversations=conversations
        )
        self.conversations = SQLiteConversationIndex(db, self.group_commit, conversations)
        self.migration_report = migration_report

    @property
    def path(self) -> str:
        return self._db.name

    @property
    def writer(self) -> GroupCommit:
        """The database's one writer (its ``batches`` and ``ops`` count what it committed)."""
        return self.group_commit.writer

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
            if name != ":memory:":
                admit(name, "read" if read_only else "write", verify=check_integrity)
            conn = connect(name, read_only=read_only, tune=False)
            try:
                refuse_other_layout(conn, name, TURNSIM)
                report = bring_current(conn, name, TURNSIM, read_only=read_only)
                return conn, report, tune(conn, name, read_only=read_only)
            except BaseException:
                conn.close()
                raise

        conn, report, wal = await anyio.to_thread.run_sync(open_sync)
        checkpointer = Checkpointer(name) if wal else None
        db = SQLiteDatabase(conn, name, read_only, checkpointer=checkpointer)
        writer = GroupCommit(db.commit_stream, max_batch=max_batch, max_wait_ms=max_wait_ms)
        return cls(db, writer, on_conflict=on_conflict, migration_report=report)

    async def __aenter__(self) -> SQLiteTurnStore:
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
        found = await self.list(latest_turn_query(conv_id, phase))
        return found[0] if found else None

    async def get_turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> TurnRecord | None:
        if as_of_ms is not None:
            return await get_turn_as_of(self, conv_id, session_id, turn_id, as_of_ms)

        def fetch(conn: sqlite3.Connection) -> TurnRecord | None:
            row = conn.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns "
                "WHERE conv_id = ? AND session_id = ? AND turn_id = ?",
                (conv_id, session_id, turn_id),
            ).fetchone()
            return TurnRecord(*row) if row else None

        return await anyio.to_thread.run_sync(self._db.read, fetch)

    async def list_turns(self, conv_id: str, *, as_of_ms: int | None = None) -> list[TurnRecord]:
        if as_of_ms is not None:
            return await list_turns_as_of(self, conv_id, as_of_ms)

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

    async def claim_scenario(self, scenario: str, run_id: str) -> None:
        """Claim the file for one run of ``scenario``, atomically (one write transaction):
        refused (:class:`PermanentStoreError`) when another run claimed it, or the file
        already holds conversations of it (``<scenario>.*``). From now on every snapshot
        this store saves carries ``run_id``, so that ``turnsim db doctor`` can tell turns
        saved by two runs (``mixed_runs``)."""
        table = self.group_commit._conversations
        index = table.table if table is not None else None
        await self.writer.submit(claim_scenario, self.path, index, scenario, run_id)
        self.group_commit.run_id = run_id

    async def make_read_only(self) -> None:
        """Refuse every later write, as a file that turned read-only does (a fault to inject).

        Reads keep working; every write applied from now on, queued ones included, is
        refused alone with :data:`~persisters.errors.READ_ONLY_REFUSAL`, before it touches
        the file: the memory store's words and behaviour, so a run's log does not depend on
        the store. (A file that really is read-only fails whole commits with SQLite's own
        error instead; ``tests/runtime/test_faults.py`` covers that path.)
        """
        self.group_commit.read_only = True

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._db.close)
