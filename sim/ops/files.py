"""A database file as an operation sees it: refusals, backups, free space, compaction.

Every operation that touches a file starts here. :func:`require_database_file` and
:func:`require_writable` refuse, with one line that says what to do, what must not be
touched (a missing path, a directory, an unreadable or read-only file, a file in a
read-only directory) before anything is opened for writing; :func:`table_names` refuses a
file that is not SQLite. :func:`take_backup` copies a file with SQLite's backup API and
never overwrites an existing backup. :func:`file_space` and :func:`compact_file` report
and reclaim the free pages a migration leaves behind.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from persisters.errors import NotSQLiteError, PermanentStoreError
from persisters.schema import user_version
from persisters.sqlite_database import BUSY_TIMEOUT_MS, connect, store_error
from persisters.sqlite_file import require_regular_file, require_writable

#: Below this many free bytes a compaction is not suggested.
COMPACT_HINT_BYTES = 1 << 20

#: The database's size and its free pages' size, in bytes (also the doctor's check).
SPACE_SQL = (
    "SELECT page_size * page_count AS database_bytes, page_size * freelist_count AS free_bytes\n"
    "FROM pragma_page_size, pragma_page_count, pragma_freelist_count"
)


def mib(n: int) -> str:
    """Bytes as MiB for messages: ``'330.2 MiB'``."""
    return f"{n / (1 << 20):,.1f} MiB"


# ---------------------------------------------------------------------------------------
# Refusing early, with a message that says what to do.


def require_database_file(p: Path) -> None:
    """Raise :class:`NotSQLiteError` unless ``p`` is an existing, readable regular file
    (:func:`persisters.sqlite_file.require_regular_file`: a FIFO is never opened)."""
    require_regular_file(p)


def table_names(p: Path) -> set[str]:
    """The file's table names; :class:`NotSQLiteError` when it is not a usable database.

    Read-only, except when a hot ``-journal`` shows an interrupted write (a killed
    migration): SQLite rolls it back only on a connection that may write.
    """
    if Path(f"{p}-journal").exists() and os.access(p, os.W_OK):
        conn = sqlite3.connect(p, isolation_level=None)
    else:
        conn = connect(p, read_only=True)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.DatabaseError as exc:
        raise NotSQLiteError(f"{p}: not a usable SQLite database ({exc})") from None
    finally:
        conn.close()
    return {r[0] for r in rows}


def open_read_write(p: Path) -> sqlite3.Connection:
    """An autocommit connection that may write, with the store's busy timeout.

    The file's journal mode is left as it is (unlike ``sqlite_database.connect``).
    """
    # Not sqlite_database.connect(): it switches the file to WAL. A migration changes the
    # schema and the data and nothing else, and a dry run changes nothing at all.
    uri = f"file:{quote(os.path.abspath(p))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise NotSQLiteError(f"{p}: cannot open for writing ({exc})") from None
    return conn


# ---------------------------------------------------------------------------------------
# Backups


def backup_path_for(path: str | os.PathLike[str], schema_version: int) -> Path:
    """Where a migration puts the backup: ``FILE.bak-v<version>``.

    When that name is taken, ``FILE.bak-v<version>.2``, ``.3``, ...: an existing backup is
    never overwritten.
    """
    p = Path(path)
    base = p.with_name(f"{p.name}.bak-v{schema_version}")
    candidate, n = base, 1
    while candidate.exists() or candidate.is_symlink() or Path(f"{candidate}.partial").exists():
        n += 1
        candidate = base.with_name(f"{base.name}.{n}")
    return candidate


def take_backup(conn: sqlite3.Connection, p: Path, version: int) -> Path:
    """Copy the database behind ``conn`` (the file ``p``) to :func:`backup_path_for`.

    The copy has the original's permission bits and appears under its name only once it
    reads back as the original; on any failure nothing is left behind and
    :class:`PermanentStoreError` says that nothing was migrated.
    """
    dest = backup_path_for(p, version)
    partial = Path(f"{dest}.partial")
    try:
        target = sqlite3.connect(partial)
        try:
            conn.backup(target)
            if user_version(target) != version:
                raise sqlite3.DatabaseError("the copy does not read back as the original")
        finally:
            target.close()
        os.chmod(partial, stat.S_IMODE(p.stat().st_mode))  # no more readable than the original
        _place_without_overwriting(partial, dest)
    except (OSError, sqlite3.Error) as exc:
        partial.unlink(missing_ok=True)
        raise PermanentStoreError(
            f"{p}: backup to {dest} failed ({exc}); nothing was migrated"
        ) from exc
    return dest


def _place_without_overwriting(partial: Path, dest: Path) -> None:
    try:
        os.link(partial, dest)  # atomic, and fails rather than overwrite
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links
        if dest.exists():
            raise FileExistsError(f"{dest} appeared while backing up") from None
        os.rename(partial, dest)
        return
    partial.unlink()


# ---------------------------------------------------------------------------------------
# Free space and compaction


@attrs.frozen
class FileSpace:
    """How much of a database is pages in use and how much is free pages."""

    database_bytes: int  # page_count x page_size (the database as SQLite sees it)
    free_bytes: int  # freelist_count x page_size: reusable by later writes, not returned

    @property
    def free_share(self) -> float:
        """Free pages as a fraction of the database (0 for an empty one)."""
        return self.free_bytes / self.database_bytes if self.database_bytes else 0.0

    @property
    def worth_compacting(self) -> bool:
        """Free pages of at least 1 MiB and a tenth of the database."""
        return self.free_bytes >= max(COMPACT_HINT_BYTES, self.database_bytes // 10)

    def to_json(self) -> dict[str, int]:
        return {"database_bytes": self.database_bytes, "free_bytes": self.free_bytes}


def _space(conn: sqlite3.Connection) -> FileSpace:
    return FileSpace(*conn.execute(SPACE_SQL).fetchone())


def file_space(path: str | os.PathLike[str]) -> FileSpace:
    """The database's size and free pages, read-only (the file must be SQLite)."""
    p = Path(path)
    require_database_file(p)
    conn = connect(p, read_only=True)
    try:
        return _space(conn)
    except sqlite3.DatabaseError as exc:
        raise NotSQLiteError(f"{p}: not a usable SQLite database ({exc})") from None
    finally:
        conn.close()


@attrs.frozen
class Compaction:
    """What ``VACUUM`` did to a file."""

    before: FileSpace
    after: FileSpace

    def to_json(self) -> dict[str, Any]:
        return {"before": self.before.to_json(), "after": self.after.to_json()}


def compact_file(path: str | os.PathLike[str]) -> Compaction:
    """Rewrite the database at ``path`` without its free pages (``VACUUM``).

    A migration rebuilds ``turn_snapshots``, so the old table's pages stay in the file as
    free pages (reused by later writes, never returned to the disk). ``VACUUM`` copies
    the database into a temporary file and back: it needs free disk of about the
    database's size, and the write lock for as long as it runs. Refuses what
    :func:`sim.ops.migrate.migrate_file` refuses for a path; fails with the reason (and
    nothing changed) when SQLite cannot finish, e.g. for lack of disk or while another
    process writes.
    """
    p = Path(path)
    require_database_file(p)
    require_writable(p, "compact", backup=False)
    table_names(p)  # validates SQLite (and rolls back a hot journal) before writing
    conn = open_read_write(p)
    try:
        try:
            before = _space(conn)
        except sqlite3.Error as exc:
            raise store_error(exc, f"{p}: cannot read the database's size") from exc
        try:
            conn.execute("VACUUM")
        except sqlite3.Error as exc:
            raise store_error(
                exc,
                f"{p}: VACUUM failed, nothing was changed (it needs free disk of about "
                f"{mib(before.database_bytes)} and no other writer)",
            ) from exc
        return Compaction(before, _space(conn))
    finally:
        conn.close()
