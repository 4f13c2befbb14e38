"""TurnStore on the real server's normalized layout: turns, blocks, membership, timeline.

:func:`open_normalized_store` opens (and, unless read-only, migrates) a turn database of
the real layout, with its conversation index in a timeline database (attached as
``timeline``) or, without one, in the same file. The store keeps every rule of the
contract (:mod:`persisters.store`): it is :class:`~persisters.sqlite_store.SQLiteTurnStore`
(one connection, group commit, turnsim's append-only snapshot log ``turn_snapshots`` for
reads) whose saves also write what the real store writes:

* the ``turns`` row (created by the first save; later saves keep its write-once runtime
  and inference id and update ``updated_at_ms``, metadata and data, as the real upsert
  does for those three);
* each block of the payload into ``blocks``, content-addressed and stored once however
  many snapshots hold it (``first_seen_at_ms`` the earliest);
* one ``turn_block_membership`` row per block, keyed as the real store keys a snapshot:
  by phase and millisecond. A second save of one phase in one millisecond replaces the
  first's membership rows there, as in the real store; the snapshot log keeps both.

See :mod:`persisters.normalized_schema` for what turnsim adds to the real tables and why.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread

from persisters.blocks import HASH_ALGORITHM, blocks_of_payload
from persisters.errors import NotSQLiteError
from persisters.group_commit import GroupCommit
from persisters.migration import MigrationReport
from persisters.model import SaveResult
from persisters.normalized_schema import NORMALIZED, NORMALIZED_TURNS, TIMELINE
from persisters.sqlite_database import Checkpointer, SQLiteDatabase, connect, tune_for_writing
from persisters.sqlite_file import admit
from persisters.sqlite_open import bring_current, refuse_other_layout, tune
from persisters.sqlite_store import ConversationTable, SQLiteTurnStore, SQLiteWriteQueue
from persisters.store import ConflictPolicy, refuse_rewrite

#: The schema name an attached timeline database gets.
TIMELINE_SCHEMA = "timeline"

_UPSERT_BLOCK = (
    "INSERT INTO blocks (block_id, content_hash, hash_algorithm, kind, role, payload_json, "
    "block_metadata_json, first_seen_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (block_id, content_hash) DO UPDATE SET "
    "first_seen_at_ms = excluded.first_seen_at_ms "
    # a block seen again later (the usual case) is left as it is: no page is written
    "WHERE excluded.first_seen_at_ms < blocks.first_seen_at_ms"
)
_CLEAR_MEMBERSHIP = (
    "DELETE FROM turn_block_membership WHERE conv_id = ? AND session_id = ? AND turn_id = ? "
    "AND phase = ? AND snapshot_created_at_ms = ?"
)
_INSERT_MEMBERSHIP = (
    "INSERT INTO turn_block_membership (conv_id, session_id, turn_id, phase, "
    "snapshot_created_at_ms, ordinal, block_id, content_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class NormalizedWriteQueue(SQLiteWriteQueue):
    """The SQLite store's writes, each save also writing its blocks and membership rows."""

    def _apply_save(self, conn: sqlite3.Connection, params: dict[str, Any]) -> SaveResult:
        result = super()._apply_save(conn, params)  # refusals raise here, before any write
        key = (params["conv_id"], params["session_id"], params["turn_id"])
        snapshot = (*key, params["phase"], params["created"])
        rows = blocks_of_payload(params["turn_id"], params["payload"])
        conn.executemany(
            _UPSERT_BLOCK,
            [
                (
                    b.block_id,
                    b.content_hash,
                    HASH_ALGORITHM,
                    b.kind,
                    b.role,
                    b.payload_json,
                    b.metadata_json,
                    params["created"],
                )
                for b in rows
            ],
        )
        conn.execute(_CLEAR_MEMBERSHIP, snapshot)
        conn.executemany(
            _INSERT_MEMBERSHIP, [(*snapshot, b.ordinal, b.block_id, b.content_hash) for b in rows]
        )
        return result


def _timeline_table(
    conn: sqlite3.Connection, schema: str, *, read_only: bool
) -> ConversationTable | None:
    """The :class:`ConversationTable` of ``schema``'s ``timeline_conversations``.

    None for a read-only database without the table; a read-only table without
    ``profile_slug`` (never migrated) reads ``''`` for it.
    """
    columns = {
        r[1]
        for r in conn.execute(f"PRAGMA {schema}.table_info('timeline_conversations')").fetchall()
    }
    if not columns:
        return None
    profile = "profile_slug" if "profile_slug" in columns or not read_only else "''"
    name = "timeline_conversations" if schema == "main" else f"{schema}.timeline_conversations"
    return ConversationTable(table=name, pointer="runtime_key", profile=profile)


def _prepare_timeline(path: str, *, read_only: bool) -> MigrationReport | None:
    """Migrate the timeline database at ``path`` (its conversation table only)."""
    conn = connect(path, read_only=read_only, tune=False)
    try:
        refuse_other_layout(conn, path, TIMELINE)
        if read_only:
            return None  # read as it is; a missing table or column is handled by the reads
        report = bring_current(conn, path, TIMELINE, read_only=False)
        tune_for_writing(conn)
        return report
    finally:
        conn.close()


def _attach(conn: sqlite3.Connection, path: str, *, read_only: bool) -> None:
    target = f"file:{quote(os.path.abspath(path))}?mode=ro" if read_only else path
    try:
        conn.execute(f"ATTACH DATABASE ? AS {TIMELINE_SCHEMA}", (target,))
    except sqlite3.Error as exc:
        raise NotSQLiteError(f"{path}: cannot attach the timeline database ({exc})") from None


class NormalizedTurnStore(SQLiteTurnStore):
    """TurnStore on the real server's normalized layout; open with :meth:`open`."""

    write_queue_class = NormalizedWriteQueue

    #: What opening migrated in the timeline database (None: nothing, or no such file).
    timeline_migration_report: MigrationReport | None = None
    #: The timeline database's path, or None when the index lives in the turn database.
    timeline_path: str | None = None

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        timeline_path: str | os.PathLike[str] | None = None,
        read_only: bool = False,
        on_conflict: ConflictPolicy = refuse_rewrite,
        max_batch: int = 1024,
        max_wait_ms: float = 0.0,
        check_integrity: bool = False,
    ) -> NormalizedTurnStore:
        """Open (and, unless ``read_only``, migrate) a turn database of the real layout.

        ``timeline_path`` is the timeline database holding ``timeline_conversations``
        (created, or given ``profile_slug``, unless read-only); without it the table lives
        in the turn database. A file of turnsim's own layout is refused
        (:class:`~persisters.errors.SchemaError`), as is, read-only, one that needs
        migrating. ``check_integrity`` as for :meth:`SQLiteTurnStore.open`.
        """
        name = os.fspath(path)
        timeline = os.fspath(timeline_path) if timeline_path is not None else None

        def open_sync() -> tuple[Any, ...]:
            timeline_report = None
            if timeline is not None:
                if read_only and not os.path.exists(timeline):
                    raise NotSQLiteError(f"{timeline}: no such file")
                admit(timeline, "read" if read_only else "write")
                timeline_report = _prepare_timeline(timeline, read_only=read_only)
            admit(name, "read" if read_only else "write", verify=check_integrity)
            conn = connect(name, read_only=read_only, tune=False)
            try:
                refuse_other_layout(conn, name, NORMALIZED)
                layout = NORMALIZED if timeline is None and not read_only else NORMALIZED_TURNS
                report = bring_current(conn, name, layout, read_only=read_only)
                wal = tune(conn, name, read_only=read_only)
                schema = "main"
                if timeline is not None:
                    _attach(conn, timeline, read_only=read_only)
                    schema = TIMELINE_SCHEMA
                # The real server's DSN enforces its foreign keys (membership -> turns,
                # blocks); so does this store's connection.
                conn.execute("PRAGMA foreign_keys = ON")
                table = _timeline_table(conn, schema, read_only=read_only)
                return conn, report, timeline_report, wal, table
            except BaseException:
                conn.close()
                raise

        conn, report, timeline_report, wal, table = await anyio.to_thread.run_sync(open_sync)
        checkpointer = Checkpointer(name) if wal else None
        db = SQLiteDatabase(conn, name, read_only, checkpointer=checkpointer)
        writer = GroupCommit(db.commit_stream, max_batch=max_batch, max_wait_ms=max_wait_ms)
        store = cls(
            db, writer, on_conflict=on_conflict, migration_report=report, conversations=table
        )
        store.timeline_migration_report = timeline_report
        store.timeline_path = timeline
        return store


async def open_normalized_store(
    path: str | os.PathLike[str],
    timeline_path: str | os.PathLike[str] | None = None,
    **options: Any,
) -> NormalizedTurnStore:
    """:meth:`NormalizedTurnStore.open`: the turn database at ``path``, the conversation
    index in ``timeline_path`` (or, None, in the same file). ``options`` as for it."""
    return await NormalizedTurnStore.open(path, timeline_path=timeline_path, **options)
