"""A TurnStore on a database server, whatever its dialect: pool, group commit, the rules.

:class:`ServerTurnStore` is the store the PostgreSQL and MySQL/MariaDB stores are; a
:class:`Dialect` (``persisters.postgres_store``, ``persisters.mysql_store``) supplies what
differs. Like the SQLite store, the drivers are synchronous and every call runs in an
anyio worker thread, so the store works on asyncio and trio alike.

* Connections come from a small :class:`~persisters.server_database.ConnectionPool`
  (opened lazily, a broken one is dropped and replaced). Reads take any connection;
  writes are ops of one
  :class:`~persisters.group_commit.GroupCommit` per store: the writes queued while a batch
  commits go in the next transaction, in arrival order, on one pooled connection.
* Write-once (rule 4) has no read before the write: the dialect's ``save`` writes the
  turn row only under the write-once condition (:data:`~persisters.server_sql.
  UPDATE_WRITE_ONCE`'s) and appends the snapshot (one statement on PostgreSQL); *nothing
  written* is a refusal, and only then is the row read, to say why. Two processes writing
  one database cannot slip a rewrite in between.
* A store may own a *scratch* namespace (``scratch=True``): created on open, dropped on
  close, as a run's temporary SQLite file is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from persisters.as_of import get_turn_as_of, list_turns_as_of
from persisters.errors import (
    SchemaError,
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
from persisters.server_database import Cursor, Dialect, ServerDatabase
from persisters.server_sql import (
    CONVERSATIONS,
    GET_CONVERSATION,
    GET_TURN,
    LIST_TURNS,
    SELECT_STORED,
    TOUCH,
    TURN_COUNTS,
    UPDATE_DECIDED,
    list_sql,
    scratch_name,
    turn_documents,
)
from persisters.store import (
    ConflictPolicy,
    latest_turn_query,
    refuse_rewrite,
    resolve_projection,
    validate_save_args,
)
from persisters.write_once import is_write_once_refusal, write_once_error


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
        """Rules 4 and 8 without a read before the write (the dialect's ``save``); only a
        save that wrote nothing reads the row, to say why it is refused."""
        saved = self._dialect.save(cur, params)
        if saved is None:
            carried = (params["runtime_key"], params["inference_id"])
            key = (params["conv_id"], params["session_id"], params["turn_id"])
            cur.execute(SELECT_STORED, params)
            row = cur.fetchone()
            # raises: the turn is new (and has no runtime) or a value differs
            refuse_rewrite(*key, None if row is None else (row[0], row[1]), carried)
            raise TransientStoreError(  # pragma: no cover - a concurrent insert in between
                f"save of {'/'.join(key)} matched no row and no rule refused it; retry"
            )
        return SaveResult(*saved)

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
            # the database's write-once trigger may refuse what the policy decided: only
            # this statement is undone, the batch's other saves stay
            cur.execute("SAVEPOINT turnsim_decided")
            try:
                cur.execute(UPDATE_DECIDED, params)
            except Exception as exc:
                if not is_write_once_refusal(exc):
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT turnsim_decided")
                decided = (params["runtime_key"], params["inference_id"])
                raise write_once_error(key, stored, decided) from None
            cur.execute("RELEASE SAVEPOINT turnsim_decided")
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


#: Attempts at creating a schema another process is writing in (its DDL can deadlock with
#: that process's first writes; the server then aborts one side, and it is retried).
SCHEMA_ATTEMPTS = 3


def _create_schema(db: ServerDatabase, dialect: Dialect) -> None:
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            db.run(dialect.create_schema, doing="creating the schema failed")
            return
        except TransientStoreError:
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class ServerTurnStore:
    """TurnStore on one namespace of a database server; open with :meth:`open`."""

    def __init__(
        self,
        db: ServerDatabase,
        *,
        on_conflict: ConflictPolicy = refuse_rewrite,
        scratch: bool = False,
        max_batch: int = 1024,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._db = db
        self._scratch = scratch
        self._on_close = on_close
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
        on_close: Callable[[], None] | None = None,
        create: bool = True,
    ) -> ServerTurnStore:
        """Open the store in ``namespace``, creating the namespace and schema unless
        ``read_only`` (then a namespace without the tables raises :class:`SchemaError`)
        or ``create`` is false (the caller knows the schema is there).

        ``scratch``: the namespace is the store's own, dropped by :meth:`close` (unless
        ``on_close`` is given: then :meth:`close` calls it instead, see
        :class:`ScratchPool`); messages do not name it.
        """
        db = ServerDatabase(dialect, namespace, read_only=read_only, scratch=scratch)

        def prepare() -> None:
            if not create:
                return
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
                    _create_schema(db, dialect)
            except BaseException:
                db.close()
                if scratch:
                    dialect.drop_namespace(namespace)
                raise

        await anyio.to_thread.run_sync(_wrapped(dialect, db.label, prepare))
        return cls(
            db, on_conflict=on_conflict, scratch=scratch, max_batch=max_batch, on_close=on_close
        )

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
        found = await self.list(latest_turn_query(conv_id, phase))
        return found[0] if found else None

    async def get_turn(
        self, conv_id: str, session_id: str, turn_id: str, *, as_of_ms: int | None = None
    ) -> TurnRecord | None:
        if as_of_ms is not None:
            return await get_turn_as_of(self, conv_id, session_id, turn_id, as_of_ms)
        key = {"conv_id": conv_id, "session_id": session_id, "turn_id": turn_id}
        rows = await anyio.to_thread.run_sync(self._db.run, _fetch_all, GET_TURN, key)
        return TurnRecord(*rows[0]) if rows else None

    async def list_turns(self, conv_id: str, *, as_of_ms: int | None = None) -> list[TurnRecord]:
        if as_of_ms is not None:
            return await list_turns_as_of(self, conv_id, as_of_ms)
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
            if self._on_close is not None:
                self._on_close()
            elif self._scratch:
                self._db.dialect.drop_namespace(self._db.namespace)

        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_wrapped(self._db.dialect, self.label, close_sync))


class ScratchPool:
    """Scratch namespaces for many short-lived stores of one server (a conformance run, a
    test suite): a closed store's namespace is emptied and handed to the next store
    instead of being dropped and made again (the DDL of a fresh MySQL database costs the
    server ~0.4 s; emptying it ~0.05 s). :meth:`close` drops every namespace it made.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._free: list[str] = []
        self._made: list[str] = []
        self._lock = threading.Lock()

    async def open(self, *, on_conflict: ConflictPolicy = refuse_rewrite) -> ServerTurnStore:
        """A store on an empty scratch namespace, given back to the pool when closed."""
        with self._lock:
            reused = self._free.pop() if self._free else None
        if reused is None:
            name = scratch_name()
            with self._lock:
                self._made.append(name)
        else:
            name = reused
            await anyio.to_thread.run_sync(self._empty, name)

        def give_back() -> None:
            with self._lock:
                self._free.append(name)

        return await ServerTurnStore.open(
            self._dialect,
            name,
            scratch=True,
            on_conflict=on_conflict,
            on_close=give_back,
            create=reused is None,  # a namespace handed back has its schema already
        )

    def _empty(self, name: str) -> None:
        conn = self._dialect.connect(name, read_only=False)
        try:
            with conn.cursor() as cur:
                self._dialect.empty(cur)
        finally:
            conn.close()

    def close(self) -> None:
        """Drop every namespace the pool made (blocking; stores must be closed first)."""
        with self._lock:
            made, self._made, self._free = self._made, [], []
        for name in made:
            self._dialect.drop_namespace(name)


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
