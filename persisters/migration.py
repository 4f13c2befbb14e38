"""The additive migration: an old database brought to the current schema.

The migration is one transaction, idempotent, and honest: it adds what is missing,
backfills ``runtime_key`` / ``inference_id`` from the metadata JSON where present and
leaves ``''`` (unknown) where not. It never fabricates a turn's runtime from the
conversation pointer. :class:`MigrationReport` says what it did (or, dry, would do).

It works on either layout (:class:`persisters.schema.Layout`): turnsim's own, or the real
server's normalized one, where it also copies the snapshots the real server wrote
(``turn_block_membership``) into turnsim's snapshot log (see
:mod:`persisters.normalized_schema`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from persisters.blocks import block_of_row, payload_of_blocks
from persisters.errors import SchemaError
from persisters.schema import (
    PROJECTED_COLUMNS,
    PROJECTED_TABLES,
    SCHEMA_VERSION,
    SNAPSHOTS_DDL,
    TURNSIM,
    Layout,
    copy_projection_sql,
    existing_indexes,
    malformed_sql,
    table_columns,
    user_version,
    valid_sql,
)
from persisters.write_once import (
    TRIGGERS,
    drop_triggers,
    existing_triggers,
    install_triggers,
)


@attrs.frozen
class MigrationReport:
    """What a migration did (or, with ``dry_run``, would do)."""

    schema_version_before: int
    schema_version_after: int
    tables_created: tuple[str, ...] = ()
    tables_rebuilt: tuple[str, ...] = ()
    columns_added: tuple[str, ...] = ()
    columns_renamed: tuple[str, ...] = ()
    indexes_added: tuple[str, ...] = ()
    backfilled: dict[str, int] = attrs.field(factory=dict)
    unknown: dict[str, int] = attrs.field(factory=dict)
    malformed: dict[str, int] = attrs.field(factory=dict)
    updated_at_filled: int = 0
    snapshots_imported: int = 0
    #: The write-once triggers (:mod:`persisters.write_once`) the migration installed.
    triggers_added: tuple[str, ...] = ()
    layout: str = TURNSIM.name
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        """Whether the migration changed (or would change) anything."""
        return bool(
            self.tables_created
            or self.tables_rebuilt
            or self.columns_added
            or self.columns_renamed
            or self.indexes_added
            or any(self.backfilled.values())
            or self.updated_at_filled
            or self.snapshots_imported
            or self.triggers_added
            or self.schema_version_before != self.schema_version_after
        )

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["changed"] = self.changed
        return out


def _check_required(table: str, cols: dict[str, tuple[int, Any]], layout: Layout) -> None:
    missing = [c for c in layout.required.get(table, ()) if c not in cols]
    if missing:
        raise SchemaError(
            f"table {table!r} lacks required column(s) {', '.join(missing)}; it was not "
            f"written by a turn store this tool knows (columns: {', '.join(cols)})"
        )
    known = set(layout.required.get(table, ())) | set(layout.addable.get(table, {}))
    known.add("snapshot_id")
    if table == "conversations":
        known.add("runtime_key")
    blocking = [
        c
        for c, (notnull, default) in cols.items()
        if c not in known and notnull and default is None
    ]
    if blocking:
        raise SchemaError(
            f"table {table!r} has unexpected NOT NULL column(s) without a default "
            f"({', '.join(blocking)}); new rows could not be written. Give them a DEFAULT "
            "or move the data out before migrating"
        )


#: Connection settings for the migration's bulk work, in force for its transaction only
#: and restored afterwards (none is stored in the file):
#:
#: * ``secure_delete``: ``FAST`` zeroes deleted content only where that costs no extra
#:   I/O. Under ``ON`` (the default of some builds, Debian's among them) dropping the old
#:   snapshot table overwrites every one of its pages with zeros, and so saves each one in
#:   the rollback journal first (about 2 s for 800 MB); yet nothing on those pages is
#:   deleted data: every row has just been copied into the new table.
#: * ``threads``: lets SQLite's sorter (``CREATE INDEX``, the ordered copy) use helper
#:   threads.
#: * ``cache_size``: SQLite's default, 2 MiB. A larger cache makes the index builds
#:   slower, not faster (measured: +0.6 s at 16 MiB, the store's own setting, +1.4 s at
#:   64 MiB, for a million rows).
MIGRATION_PRAGMAS: dict[str, str] = {
    "secure_delete": "FAST",
    "threads": "2",
    "cache_size": "-2000",
}


def _set_pragmas(conn: sqlite3.Connection, values: dict[str, Any]) -> dict[str, Any]:
    """Set connection pragmas; return what they were before."""
    before = {}
    for name, value in values.items():
        before[name] = conn.execute(f"PRAGMA {name}").fetchone()[0]
        conn.execute(f"PRAGMA {name} = {value}")
    return before


def _unknown_counts(
    conn: sqlite3.Connection, table: str, cols: dict[str, tuple[int, Any]]
) -> dict[str, int]:
    """Rows of ``table`` (with columns ``cols``) whose projection is unknown, per column.

    One scan (none for a missing table, which counts nothing); a missing column counts
    every row.
    """
    if not cols:
        return {f"{table}.{col}": 0 for col in PROJECTED_COLUMNS}
    present = [col for col in PROJECTED_COLUMNS if col in cols]
    sums = "".join(f", coalesce(sum({col} = ''), 0)" for col in present)
    total, *unknown = conn.execute(f"SELECT count(*){sums} FROM {table}").fetchone()
    found = dict(zip(present, unknown, strict=True))
    return {f"{table}.{col}": int(found.get(col, total)) for col in PROJECTED_COLUMNS}


def _final_counts(
    conn: sqlite3.Connection, table: str, doc: str, prefix: str, *, fresh: bool
) -> tuple[dict[str, int], int]:
    """Unknown rows per column and malformed rows of a migrated table, in one scan.

    ``fresh`` says the table had neither projected column before this migration, so each
    non-empty value in it was projected from valid metadata by this migration: a
    malformed row then has both columns empty, and only those rows need their metadata
    parsed. Otherwise every row is checked.
    """
    malformed = malformed_sql(doc, prefix)
    if fresh:
        malformed = f"runtime_key = '' AND inference_id = '' AND {malformed}"
    sums = "".join(f"coalesce(sum({col} = ''), 0), " for col in PROJECTED_COLUMNS)
    *unknown, bad = conn.execute(
        f"SELECT {sums}coalesce(sum(CASE WHEN {malformed} THEN 1 ELSE 0 END), 0) FROM {table}"
    ).fetchone()
    counts = dict(zip((f"{table}.{col}" for col in PROJECTED_COLUMNS), unknown, strict=True))
    return {key: int(n) for key, n in counts.items()}, int(bad)


def _backfill(conn: sqlite3.Connection, tables: Sequence[str], skip: Sequence[str] = ()) -> None:
    for table, doc, prefix in PROJECTED_TABLES:
        if table not in tables or table in skip:  # a rebuilt table was projected when copied
            continue
        runtime, inference = copy_projection_sql(doc, prefix)
        conn.execute(
            f"UPDATE {table} SET "
            f"runtime_key = CASE WHEN runtime_key = '' THEN {runtime} ELSE runtime_key END, "
            f"inference_id = CASE WHEN inference_id = '' THEN {inference} "
            "ELSE inference_id END "
            f"WHERE (runtime_key = '' OR inference_id = '') AND {valid_sql(doc, prefix)}"
        )


#: The real store's repair of ``turns.updated_at_ms``, run on every migration: a positive
#: value stays, else ``turn_created_at_ms`` where positive, else the migration's time. A
#: column the migration adds starts at 0 (its DEFAULT), so without this the GP-26 indexes
#: would order every migrated turn by 0.
FILL_UPDATED_AT_SQL = (
    "UPDATE turns SET updated_at_ms = CASE WHEN coalesce(turn_created_at_ms, 0) > 0 "
    "THEN turn_created_at_ms ELSE :now_ms END WHERE coalesce(updated_at_ms, 0) <= 0"
)


def fill_updated_at(conn: sqlite3.Connection, now_ms: int) -> int:
    """Run :data:`FILL_UPDATED_AT_SQL` (one statement); return the rows it changed."""
    return int(conn.execute(FILL_UPDATED_AT_SQL, {"now_ms": now_ms}).rowcount)


def _create_index(
    conn: sqlite3.Connection, name: str, indexes: Mapping[str, str], *, table: str | None = None
) -> None:
    """Create the index ``name`` of ``indexes``, on ``table`` instead of its own if given."""
    own, columns = indexes[name].split(" ", 1)
    conn.execute(f"CREATE INDEX {name} ON {table or own} {columns}")


#: Snapshots the real server wrote (``turn_block_membership``) that turnsim's snapshot
#: log does not hold yet, one row per snapshot, in the order they are copied.
_UNLOGGED_SQL = """
CREATE TEMP TABLE turnsim_unlogged AS
SELECT m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms
FROM turn_block_membership m
WHERE NOT EXISTS (
  SELECT 1 FROM turn_snapshots s
  WHERE s.conv_id = m.conv_id AND s.session_id = m.session_id AND s.turn_id = m.turn_id
    AND s.phase = m.phase AND s.created_at_ms = m.snapshot_created_at_ms)
GROUP BY m.conv_id, m.session_id, m.turn_id, m.phase, m.snapshot_created_at_ms"""

#: Their blocks in order, with the turn row each belongs to (NULLs for a missing one).
_UNLOGGED_BLOCKS_SQL = """
SELECT k.conv_id, k.session_id, k.turn_id, k.phase, k.snapshot_created_at_ms,
       m.ordinal, m.block_id, b.kind, b.role, b.payload_json, b.block_metadata_json,
       t.turn_metadata_json, t.turn_data_json, t.runtime_key, t.inference_id
FROM temp.turnsim_unlogged k
JOIN turn_block_membership m
  ON m.conv_id = k.conv_id AND m.session_id = k.session_id AND m.turn_id = k.turn_id
 AND m.phase = k.phase AND m.snapshot_created_at_ms = k.snapshot_created_at_ms
LEFT JOIN blocks b ON b.block_id = m.block_id AND b.content_hash = m.content_hash
LEFT JOIN turns t
  ON t.conv_id = k.conv_id AND t.session_id = k.session_id AND t.turn_id = k.turn_id
ORDER BY k.snapshot_created_at_ms, k.conv_id, k.session_id, k.turn_id, k.phase, m.ordinal"""

#: Whether the real server wrote a snapshot the log lacks (turnsim db migrate copies it).
HAS_UNLOGGED_SQL = """
SELECT 1 FROM turn_block_membership m
WHERE NOT EXISTS (
  SELECT 1 FROM turn_snapshots s
  WHERE s.conv_id = m.conv_id AND s.session_id = m.session_id AND s.turn_id = m.turn_id
    AND s.phase = m.phase AND s.created_at_ms = m.snapshot_created_at_ms)
LIMIT 1"""


def has_unlogged_snapshots(conn: sqlite3.Connection) -> bool:
    """Whether ``turn_block_membership`` holds a snapshot the snapshot log lacks."""
    return conn.execute(HAS_UNLOGGED_SQL).fetchone() is not None


_LOG_SNAPSHOT_SQL = (
    "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, payload, "
    "runtime_key, inference_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def import_unlogged_snapshots(conn: sqlite3.Connection) -> int:
    """Copy the snapshots of ``turn_block_membership`` the snapshot log lacks into it.

    Each gets the payload rebuilt from its blocks (:func:`persisters.blocks.
    payload_of_blocks`, with the turn row's metadata and data) and the turn row's
    ``runtime_key`` / ``inference_id``: the real layout records them per turn only, so
    that is what the real server's own reads report for the snapshot too (``''`` for a
    snapshot whose turn row is gone). They are copied in time order (ties by key), so
    their ``snapshot_id`` orders them as their timestamps do. Returns how many.
    """
    conn.execute("DROP TABLE IF EXISTS temp.turnsim_unlogged")
    conn.execute(_UNLOGGED_SQL)

    def snapshots() -> Iterator[tuple[Any, ...]]:
        current: tuple[Any, ...] | None = None
        blocks: list[dict[str, Any]] = []
        turn_row: tuple[Any, ...] = ()

        def logged() -> tuple[Any, ...]:
            assert current is not None
            metadata, data, runtime, inference = turn_row
            payload = payload_of_blocks(current[2], blocks, metadata, data)
            return (*current, payload, runtime or "", inference or "")

        # Reading membership while the caller writes the log: this query never reads it.
        for row in conn.execute(_UNLOGGED_BLOCKS_SQL):
            key, (ordinal, block_id, *block) = row[:5], row[5:11]
            if key != current:
                if current is not None:
                    yield logged()
                current, blocks, turn_row = key, [], row[11:]
            blocks.append(block_of_row(key[2], ordinal, block_id, *block))
        if current is not None:
            yield logged()

    imported = 0
    batch: list[tuple[Any, ...]] = []
    for snapshot in snapshots():
        batch.append(snapshot)
        imported += 1
        if len(batch) == 1000:
            conn.executemany(_LOG_SNAPSHOT_SQL, batch)
            batch.clear()
    conn.executemany(_LOG_SNAPSHOT_SQL, batch)
    conn.execute("DROP TABLE temp.turnsim_unlogged")
    return imported


def _rebuild_snapshots(
    conn: sqlite3.Connection, cols: dict[str, tuple[int, Any]], indexes: Sequence[str]
) -> int:
    """Old snapshot tables keyed on (…, phase, created_at_ms) become append-only.

    Rows are copied in time order (ties broken by conversation, session, turn and phase),
    so the new ``snapshot_id`` orders old snapshots as their timestamps do. ``indexes``
    (names from :data:`INDEXES`) are built on the copy before the old table is dropped:
    pages the drop frees and a later write reuses must be saved in the rollback journal
    first, new pages at the end of the file need not. Returns the number of rows copied.
    """
    conn.execute(SNAPSHOTS_DDL.format(name="turn_snapshots_migrating"))
    carry: list[str] = []
    # The projection is computed while copying: one pass over the rows, not two.
    projected = []
    exprs = copy_projection_sql("payload", "$.metadata")
    for col, expr in zip(PROJECTED_COLUMNS, exprs, strict=True):
        if col in cols:  # a value the old table already has is kept
            expr = f"CASE WHEN {col} <> '' THEN {col} ELSE {expr} END"
        projected.append((col, expr))
    # Columns this tool does not know are kept, with their type and default (rule 6).
    for _, name, decl, notnull, default, _pk in conn.execute(
        "PRAGMA table_info('turn_snapshots')"
    ).fetchall():
        if (
            name in TURNSIM.required["turn_snapshots"]
            or name in TURNSIM.addable["turn_snapshots"]
            or name == "snapshot_id"
        ):
            continue
        extra = f'"{name}" {decl or ""}'
        if default is not None:
            extra += f" {'NOT NULL ' if notnull else ''}DEFAULT {default}"
        conn.execute(f"ALTER TABLE turn_snapshots_migrating ADD COLUMN {extra}")
        carry.append(f'"{name}"')
    names = ", ".join([*TURNSIM.required["turn_snapshots"], *carry])
    targets = ", ".join(col for col, _ in projected)
    values = ", ".join(expr for _, expr in projected)
    copied = conn.execute(
        f"INSERT INTO turn_snapshots_migrating ({names}, {targets}) "
        f"SELECT {names}, {values} FROM turn_snapshots "
        "ORDER BY created_at_ms, conv_id, session_id, turn_id, phase"
    ).rowcount
    for name in indexes:
        _create_index(conn, name, TURNSIM.indexes, table="turn_snapshots_migrating")
    # DROP TABLE takes the table's own indexes and triggers with it: keep their definitions.
    keep = [
        row[0]
        for row in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'turn_snapshots' "
            "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    ]
    conn.execute("DROP TABLE turn_snapshots")
    conn.execute("ALTER TABLE turn_snapshots_migrating RENAME TO turn_snapshots")
    for sql in keep:
        try:
            conn.execute(sql)
        except sqlite3.Error as exc:
            raise SchemaError(
                f"could not recreate an index or trigger of the old turn_snapshots table "
                f"({exc}): {sql}; drop it before migrating if it is no longer needed"
            ) from None
    return copied


def migrate(
    conn: sqlite3.Connection,
    *,
    dry_run: bool = False,
    now_ms: int | None = None,
    layout: Layout = TURNSIM,
) -> MigrationReport:
    """Bring a database to :data:`SCHEMA_VERSION` in one transaction and report what changed.

    ``layout`` says which tables the file is to have (turnsim's own by default; see
    :func:`persisters.normalized_schema.layout_of` for a file's). ``conn`` must be in
    autocommit mode (``isolation_level=None``). With ``dry_run`` the
    transaction is rolled back and the report tells what would have changed. The
    connection settings in :data:`MIGRATION_PRAGMAS` are in force for the transaction and
    restored afterwards, also when it fails. ``now_ms`` is what :data:`FILL_UPDATED_AT_SQL`
    writes into a turn that has neither a positive ``updated_at_ms`` nor a positive
    ``turn_created_at_ms`` (default: the wall clock, as the real store does).
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    saved = _set_pragmas(conn, MIGRATION_PRAGMAS)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            report = _migrate_in_transaction(conn, dry_run, now_ms, layout)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("ROLLBACK" if dry_run else "COMMIT")
    finally:
        _set_pragmas(conn, saved)
    return report


def _migrate_in_transaction(
    conn: sqlite3.Connection, dry_run: bool, now_ms: int, layout: Layout
) -> MigrationReport:
    """The migration's steps, ordered to keep its I/O down.

    1. Per table: create it if missing, else check it and add or rename columns. An old
       snapshot table that needs rebuilding is only noted here.
    2. Backfill the tables that are not rebuilt, fill ``turns.updated_at_ms`` where it is
       not positive (before its indexes exist), copy the real server's snapshots into the
       snapshot log (normalized layout), then create the missing indexes.
    3. Rebuild the old snapshot table: copy it with the projection, build its indexes on
       the copy, drop the old table. Nothing after the drop writes, so no page it frees
       is reused (a reused page would first have to be saved in the rollback journal).
    4. Count what the report needs: at most one scan per table.
    """
    before = user_version(conn)
    if before > SCHEMA_VERSION:
        raise SchemaError(
            f"database schema version {before} is newer than this turnsim understands "
            f"({SCHEMA_VERSION}); upgrade turnsim instead of migrating"
        )
    # The write-once triggers would refuse the backfill and the rebuild's DROP: they are
    # dropped here and reinstalled below, inside this one transaction (nobody sees the gap).
    own_layout = layout.name == TURNSIM.name
    had_triggers = existing_triggers(conn) if own_layout else set()
    if own_layout:
        drop_triggers(conn)
    created: list[str] = []
    rebuilt: list[str] = []
    added: list[str] = []
    renamed: list[str] = []
    # A rebuilt table's own indexes are recreated under their names: the set is the same.
    new_indexes = [name for name in layout.indexes if name not in existing_indexes(conn)]
    projected = {table for table, _, _ in PROJECTED_TABLES} & set(layout.tables)
    unknown_before: dict[str, int] = {}
    fresh: set[str] = set()  # projected tables that had neither projected column
    old_snapshots: dict[str, tuple[int, Any]] | None = None  # columns, if rebuilt
    for table in layout.tables:
        cols = table_columns(conn, table)
        rebuild = table == "turn_snapshots" and bool(cols) and "snapshot_id" not in cols
        if table in projected:
            if not set(PROJECTED_COLUMNS) & set(cols):
                fresh.add(table)
            if not (rebuild and table in fresh):  # else the copy counts the rows
                unknown_before.update(_unknown_counts(conn, table, cols))
        if not cols:
            conn.execute(layout.ddl[table])
            created.append(table)
            continue
        _check_required(table, cols, layout)
        if rebuild:
            old_snapshots = cols
            rebuilt.append(table)
            continue
        if table == "conversations" and "current_runtime_key" not in cols and "runtime_key" in cols:
            conn.execute(
                "ALTER TABLE conversations RENAME COLUMN runtime_key TO current_runtime_key"
            )
            renamed.append("conversations.runtime_key -> current_runtime_key")
            cols = table_columns(conn, table)
        for col, definition in layout.addable.get(table, {}).items():
            if col not in cols:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {col} {definition}")
                added.append(f"{table}.{col}")

    if before < SCHEMA_VERSION or added or rebuilt:
        _backfill(conn, layout.tables, skip=rebuilt)
    filled = fill_updated_at(conn, now_ms) if "turns" in layout.ddl else 0
    imports = {"turn_block_membership", "turn_snapshots"} <= set(layout.ddl)
    imported = 0

    def import_snapshots() -> int:
        count = import_unlogged_snapshots(conn)
        for col in PROJECTED_COLUMNS:  # a copied row had no value before this migration
            key = f"turn_snapshots.{col}"
            unknown_before[key] = unknown_before.get(key, 0) + count
        return count

    if imports and not rebuilt:
        imported = import_snapshots()
    on_rebuilt = [n for n in new_indexes if layout.indexes[n].split(" ", 1)[0] in rebuilt]
    for name in new_indexes:
        if name not in on_rebuilt:
            _create_index(conn, name, layout.indexes)
    if old_snapshots is not None:
        copied = _rebuild_snapshots(conn, old_snapshots, on_rebuilt)
        if "turn_snapshots" in fresh:  # no projected column before: every row was unknown
            unknown_before.update({f"turn_snapshots.{c}": copied for c in PROJECTED_COLUMNS})
        if imports:  # after the rebuild: the log's ids then follow the old rows'
            imported = import_snapshots()

    unknown_after: dict[str, int] = {}
    malformed: dict[str, int] = {}
    for table, doc, prefix in PROJECTED_TABLES:
        if table in projected:
            unknown, malformed[table] = _final_counts(
                conn, table, doc, prefix, fresh=table in fresh
            )
            unknown_after.update(unknown)
    triggers_added: tuple[str, ...] = ()
    if own_layout:
        install_triggers(conn)
        triggers_added = tuple(name for name in TRIGGERS if name not in had_triggers)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return MigrationReport(
        schema_version_before=before,
        schema_version_after=SCHEMA_VERSION,
        tables_created=tuple(created),
        tables_rebuilt=tuple(rebuilt),
        columns_added=tuple(added),
        columns_renamed=tuple(renamed),
        indexes_added=tuple(new_indexes),
        backfilled={k: unknown_before[k] - unknown_after[k] for k in unknown_before},
        unknown=unknown_after,
        malformed=malformed,
        updated_at_filled=filled,
        snapshots_imported=imported,
        triggers_added=triggers_added,
        layout=layout.name,
        dry_run=dry_run,
    )
