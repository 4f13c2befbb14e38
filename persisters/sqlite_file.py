"""The one admission rule for a SQLite file a command is about to open.

Every command that opens a database file (``turnsim run --db``, ``serve``, ``db doctor``,
``db migrate``, the stores themselves) calls :func:`admit` first. It refuses, with one
line that names the file and says what to do, and before anything is written:

- a path that is not a regular file (a directory, a FIFO, a socket, a device): opening a
  FIFO would block forever;
- a file that cannot be read;
- a file that is not SQLite, or a damaged one: *any* ``sqlite3`` error while opening it,
  reading its schema or running ``PRAGMA quick_check`` / ``integrity_check``;
- a foreign database: neither empty nor of a layout turnsim knows (its own, current or
  old, or the real server's normalized or timeline layout), or one that another program
  has marked as its own (``PRAGMA application_id``);
- for a writer: a file (or directory) that is read-only, and a schema newer than this code.

Reading never changes the file: the connection is ``mode=ro`` unless a hot ``-journal``
shows an interrupted write, which only a connection that may write can roll back.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import attrs

from persisters.errors import NotSQLiteError, PermanentStoreError, SchemaError
from persisters.normalized_schema import NORMALIZED, TIMELINE, layout_of
from persisters.schema import SCHEMA_VERSION, TURNSIM, Layout

#: What a command is about to do with the file: ``write`` (run into it), ``migrate``,
#: ``read`` (serve it) or ``check`` (the doctor, which reports damage instead of refusing).
Purpose = Literal["write", "migrate", "read", "check"]
WRITERS = ("write", "migrate")

#: The tables of every layout turnsim knows, for the "foreign database" message.
KNOWN_TABLES: tuple[str, ...] = tuple(
    dict.fromkeys((*TURNSIM.tables, *NORMALIZED.tables, *TIMELINE.tables))
)

SQLITE_MAGIC = b"SQLite format 3\x00"


@attrs.frozen
class Admitted:
    """What :func:`admit` found: whether the file holds anything, and of which layout."""

    path: str
    new: bool  # missing or zero bytes: nothing to check, the writer creates the schema
    layout: Layout | None  # None when new or (for ``check`` only) foreign
    version: int  # PRAGMA user_version (0 when new)
    tables: frozenset[str] = frozenset()


def is_writable(p: Path) -> bool:
    """Whether ``p`` may be written: root passes ``os.access`` on any mode, so a file with
    no write bit at all (made read-only on purpose) counts as read-only too."""
    return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)


def require_regular_file(p: Path) -> None:
    """Raise :class:`NotSQLiteError` unless ``p`` is an existing, readable regular file.

    Uses ``stat`` only: nothing is opened (a FIFO would block the open).
    """
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise NotSQLiteError(f"{p}: no such file") from None
    except OSError as exc:
        raise NotSQLiteError(f"{p}: cannot be read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        raise NotSQLiteError(f"{p}: is a directory, not a SQLite database file")
    if not stat.S_ISREG(mode):
        raise NotSQLiteError(f"{p}: is a {_kind(mode)}, not a SQLite database file")
    if not os.access(p, os.R_OK):
        raise NotSQLiteError(f"{p}: permission denied (cannot read the file)")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def require_writable(p: Path, doing: str = "migrate", *, backup: bool = True) -> None:
    """Raise :class:`PermanentStoreError` unless ``p`` and its directory are writable.

    ``doing`` names the operation in the message (``"refusing to compact it"``); ``backup``
    says whether the message should mention a backup written beside the file.
    """
    if p.exists() and not is_writable(p):
        mode = stat.filemode(p.stat().st_mode)
        raise PermanentStoreError(
            f"{p}: file is read-only ({mode}); refusing to {doing} it. Make it writable "
            f"(chmod u+w) or {doing} a writable copy"
        )
    parent = p.resolve().parent
    if not parent.is_dir():
        raise PermanentStoreError(f"{p}: directory {parent} does not exist")
    if not is_writable(parent):
        needs = "its journal and the backup is written there" if backup else "its journal"
        raise PermanentStoreError(
            f"{p}: directory {parent} is not writable; SQLite needs it for {needs}. "
            f"{doing.capitalize()} a copy in a writable directory"
        )


def _connect(p: Path, *, may_roll_back: bool) -> sqlite3.Connection:
    """A connection that cannot change the file, except to roll back a hot journal."""
    if may_roll_back and Path(f"{p}-journal").exists() and is_writable(p):
        uri = f"file:{quote(os.path.abspath(p))}?mode=rw"
    else:
        uri = f"file:{quote(os.path.abspath(p))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _damaged(p: Path, exc: BaseException) -> NotSQLiteError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return NotSQLiteError(
        f"{p}: not a usable SQLite database, damaged ({detail}); see `turnsim db doctor {p}`, "
        "restore a backup or use a new file"
    )


def admit(
    path: str | os.PathLike[str], purpose: Purpose, *, verify: bool | None = None
) -> Admitted:
    """Refuse what ``purpose`` must not open (see the module docstring); else what was found.

    ``verify``: run ``PRAGMA integrity_check`` (a full read) instead of the default
    ``quick_check``; None decides by purpose (full for ``write``, quick for ``migrate`` and
    ``read``, none for ``check``, whose doctor runs and reports it). The schema is read in
    every case. Raises
    :class:`NotSQLiteError` (not a usable file, damaged), :class:`SchemaError` (foreign,
    newer) or :class:`PermanentStoreError` (read-only for a writer); never a ``sqlite3``
    error, and never after writing anything.
    """
    name = os.fspath(path)
    p = Path(name)
    writer = purpose in WRITERS
    if not p.exists() and not p.is_symlink() and purpose == "write":
        require_writable(p, "write into")
        return Admitted(name, True, None, 0)
    require_regular_file(p)
    if writer:
        require_writable(p, "migrate" if purpose == "migrate" else "write into")
    if p.stat().st_size == 0:
        return Admitted(name, True, None, 0)
    try:
        with open(p, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise NotSQLiteError(f"{p}: cannot be read ({exc.strerror})") from None
    if head != SQLITE_MAGIC:
        raise NotSQLiteError(f"{p}: not a usable SQLite database (no SQLite header)")
    check = {"write": "integrity_check", "migrate": "quick_check", "read": "quick_check"}
    pragma = check.get(purpose) if verify is None else ("integrity_check" if verify else None)
    try:
        conn = _connect(p, may_roll_back=writer)
        try:
            objects = conn.execute("SELECT type, name FROM sqlite_master").fetchall()
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
            problems = [r[0] for r in conn.execute(f"PRAGMA {pragma}")] if pragma else ["ok"]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _damaged(p, exc) from None
    if problems != ["ok"]:
        raise NotSQLiteError(
            f"{p}: damaged database (PRAGMA {pragma}: {' '.join(str(problems[0]).split())}); "
            f"see `turnsim db doctor {p}`, restore a backup or use a new file"
        )
    tables = frozenset(n for t, n in objects if t == "table" and not n.startswith("sqlite_"))
    if not objects and version == 0 and app_id == 0:
        return Admitted(name, True, None, 0)
    layout = layout_of(tables) if app_id == 0 else None
    if layout is None and purpose != "check":
        owner = f" (application_id {app_id})" if app_id else ""
        shown = ", ".join(sorted(tables)[:5]) or "no tables"
        raise SchemaError(
            f"{p}: a database of another program{owner} ({shown}), not turnsim's: it holds "
            f"none of the tables {', '.join(KNOWN_TABLES)}; refusing to {_verb(purpose)} it "
            "(is this the right file?)"
        )
    if writer and version > SCHEMA_VERSION:
        raise SchemaError(
            f"{p}: schema version {version} is newer than this turnsim understands "
            f"({SCHEMA_VERSION}); upgrade turnsim instead"
        )
    return Admitted(name, False, layout, version, tables)


def _verb(purpose: Purpose) -> str:
    return {"write": "write into", "migrate": "migrate", "read": "serve"}.get(purpose, "open")


def conversations_named(path: str | os.PathLike[str], prefix: str) -> list[str]:
    """The ids of the conversations starting with ``prefix`` in the (admitted) file, read
    without writing: a run refuses a file holding its scenario before migrating it."""
    p = Path(path)
    try:
        conn = _connect(p, may_roll_back=False)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            found: list[str] = []
            for table in ("conversations", "timeline_conversations"):
                if table in tables:
                    found += [
                        r[0]
                        for r in conn.execute(
                            f"SELECT conv_id FROM {table} WHERE substr(conv_id, 1, ?) = ? "
                            "ORDER BY conv_id LIMIT 3",
                            (len(prefix), prefix),
                        )
                    ]
            if "scenario_runs" in tables:  # claimed by a run that has not written yet
                found += [
                    f"claimed by run {r[0]}"
                    for r in conn.execute(
                        "SELECT run_id FROM scenario_runs WHERE scenario = ?", (prefix[:-1],)
                    )
                ]
            return found
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise _damaged(p, exc) from None
