"""``turnsim db migrate``: migrate a database file in place, and what it did.

:func:`migrate_file` refuses what it must not touch (a missing file, a directory, a file
that is not SQLite or holds no turnsim tables, a read-only file or directory) before
opening anything for writing, takes a backup with SQLite's backup API, and runs the one
migration there is, :func:`persisters.migration.migrate`, in one transaction.
:func:`migrate` is the whole command: that migration, optionally a compaction, and the
file's free space afterwards, as one :class:`Migration`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import attrs

from persisters import migration
from persisters.errors import SchemaError, TurnsimError
from persisters.migration import MigrationReport, has_unlogged_snapshots
from persisters.normalized_schema import NORMALIZED, TIMELINE
from persisters.schema import SCHEMA_VERSION, TURNSIM, Layout, schema_is_current, user_version
from persisters.sqlite_database import store_error
from persisters.sqlite_file import admit
from persisters.write_once import missing_triggers
from sim.ops.files import (
    Compaction,
    FileSpace,
    compact_file,
    file_space,
    open_read_write,
    take_backup,
)

#: The tables a migration applies to (turnsim's layout, the real server's turn and
#: timeline databases); a file with none of them is refused.
KNOWN_TABLES: tuple[str, ...] = tuple(
    dict.fromkeys((*TURNSIM.tables, *NORMALIZED.tables, *TIMELINE.tables))
)


def migrate_file(
    path: str | os.PathLike[str], *, dry_run: bool = False, backup: bool = True
) -> tuple[MigrationReport, Path | None]:
    """Migrate the database file at ``path`` in place; return the report and the backup.

    The file's tables say its layout (:func:`persisters.normalized_schema.layout_of`):
    turnsim's own, the real server's turn database (its snapshots are copied into the
    snapshot log) or its timeline database (``timeline_conversations`` only). Refuses
    (raising a :class:`sim.errors.TurnsimError` with a one-line message, before writing
    anything) a missing path, a directory, a file that is not SQLite or holds none of
    those tables, a read-only file, a file in a read-only directory, and a schema newer
    than this code. A file another process is writing (its write lock stays taken
    for longer than the busy timeout) fails with :class:`sim.errors.TransientStoreError`,
    also before anything is written.

    When the schema is already current nothing is written, no backup is taken, and the
    report has ``changed == False``. Otherwise, unless ``backup`` is false, a copy is taken
    first with SQLite's backup API (see :func:`sim.ops.files.backup_path_for`), then
    :func:`persisters.migration.migrate` runs in one transaction; on failure it rolls back
    and the file is as it was. With ``dry_run`` the migration runs inside a transaction
    that is rolled back: the report says what would change, the file's bytes stay the
    same, and no backup is taken. The file's journal mode is never changed.
    """
    p = Path(path)
    layout = admit(p, "migrate").layout
    if layout is None:  # an empty file
        raise SchemaError(
            f"{p}: holds none of the tables {', '.join(KNOWN_TABLES)}; a turnsim migration "
            "does not apply to it (is this the right file?)"
        )
    conn = open_read_write(p)
    try:
        try:
            version = user_version(conn)
            current = (
                schema_is_current(conn, layout=layout)
                and not ("turn_block_membership" in layout.tables and has_unlogged_snapshots(conn))
                and not (layout.name == TURNSIM.name and missing_triggers(conn))
            )
        except sqlite3.Error as exc:
            raise store_error(exc, f"{p}: cannot read the schema") from exc
        if version > SCHEMA_VERSION:  # refused before a backup is taken
            raise SchemaError(
                f"{p}: schema version {version} is newer than this turnsim understands "
                f"({SCHEMA_VERSION}); upgrade turnsim instead of migrating"
            )
        if dry_run or current:
            report = _migrate(conn, p, layout, dry_run=True)
            return attrs.evolve(report, dry_run=dry_run), None
        try:  # another writer at work: fail now, before a backup is taken
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise store_error(exc, f"{p}: cannot take the write lock; nothing was changed") from exc
        copy = take_backup(conn, p, version) if backup else None
        return _migrate(conn, p, layout, dry_run=False, copy=copy), copy
    finally:
        conn.close()


def _migrate(
    conn: sqlite3.Connection, p: Path, layout: Layout, *, dry_run: bool, copy: Path | None = None
) -> MigrationReport:
    kept = f"; the backup is at {copy}" if copy else ""
    try:
        return migration.migrate(conn, dry_run=dry_run, layout=layout)
    except SchemaError as exc:
        raise SchemaError(f"{p}: {exc}; nothing was changed{kept}") from exc
    except sqlite3.Error as exc:
        raise store_error(exc, f"{p}: migration failed and was rolled back{kept}") from exc


@attrs.frozen
class Migration:
    """What ``turnsim db migrate`` did to one file.

    ``space`` is the file's size and free pages afterwards (after the compaction when
    there was one). ``vacuum_error`` is the one-line reason a requested compaction failed
    (``""`` when it did not): the migration itself committed all the same.
    """

    path: str  # as given, so messages name the file the way the caller did
    report: MigrationReport
    backup: Path | None
    space: FileSpace
    compaction: Compaction | None = None
    vacuum_error: str = ""

    def to_json(self) -> dict[str, Any]:
        """``--json``'s document: ``path``, ``backup``, ``nothing_to_do``, the report's own
        fields, ``space``, then ``vacuum`` (the compaction, ``{"error": ...}``, or None)."""
        if self.vacuum_error:
            vacuum: dict[str, Any] | None = {"error": self.vacuum_error}
        else:
            vacuum = self.compaction.to_json() if self.compaction else None
        return {
            "path": self.path,
            "backup": os.fspath(self.backup) if self.backup else None,
            "nothing_to_do": not self.report.changed,
            **self.report.to_json(),
            "space": self.space.to_json(),
            "vacuum": vacuum,
        }


def migrate(
    path: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    backup: bool = True,
    vacuum: bool = False,
) -> Migration:
    """:func:`migrate_file`, then with ``vacuum`` :func:`sim.ops.files.compact_file`.

    Raises what :func:`migrate_file` raises, and what reading the file's space raises. A
    failed compaction does not raise: the migration has committed by then, so its report
    is returned with ``vacuum_error`` set. ``vacuum`` with ``dry_run`` is the caller's to
    refuse (one writes, the other writes nothing).
    """
    report, copy = migrate_file(path, dry_run=dry_run, backup=backup)
    compaction: Compaction | None = None
    failed = ""  # the migration committed; a failed VACUUM must not hide its report
    if vacuum:
        try:
            compaction = compact_file(path)
        except (TurnsimError, OSError) as exc:
            done = "migrated" if report.changed else "nothing to migrate"
            failed = " ".join(f"{done}, but not compacted: {exc}".split())
    space = compaction.after if compaction else file_space(path)
    return Migration(os.fspath(path), report, copy, space, compaction, failed)
