"""Database operations behind ``turnsim db``: migrate a file in place, and doctor it.

:func:`migrate_file` refuses what it must not touch (a missing file, a directory, a file
that is not SQLite or holds no turnsim tables, a read-only file or directory) before
opening anything for writing, takes a backup with SQLite's backup API, and runs the one
migration there is, :func:`persisters.schema.migrate`, in one transaction.

:func:`doctor` opens the file read-only and never writes. Every check records the exact
SQL it ran, so an operator can paste it into ``sqlite3`` and see the same rows.
Severities: ``error`` (the database is not fit to serve: exit 1), ``warning`` (worth a
look, not a failure), ``info`` (facts, e.g. honestly unknown historical rows, or a check
that could not run yet), ``ok``.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs

from persisters.errors import NotSQLiteError, PermanentStoreError, SchemaError
from persisters.schema import (
    ADDABLE_COLUMNS,
    INDEXES,
    PROJECTED_TABLES,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    MigrationReport,
    inference_sql,
    malformed_sql,
    migrate,
    runtime_sql,
    schema_is_current,
    table_columns,
    user_version,
    valid_sql,
)
from persisters.sqlite_store import BUSY_TIMEOUT_MS, connect, store_error

#: The tables a turnsim migration applies to; a file with none of them is refused.
TURNSIM_TABLES: tuple[str, ...] = tuple(ADDABLE_COLUMNS)
#: Timeline entity kinds that record a profile switch; their payload names the new
#: runtime under ``runtime_key``. The doctor accepts them as evidence for a pointer.
SWITCH_ENTITY_KINDS: tuple[str, ...] = ("profile_switch",)
#: Most rows of a check's result kept in a :class:`Check` (``row_count`` has them all).
MAX_RESULT_ROWS = 50

SEVERITIES: tuple[str, ...] = ("error", "warning", "info", "ok")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------
# Refusing early, with a message that says what to do.


def _require_database_file(p: Path) -> None:
    if not p.exists():
        raise NotSQLiteError(f"{p}: no such file")
    if p.is_dir():
        raise NotSQLiteError(f"{p}: is a directory, not a SQLite database file")
    if not p.is_file():
        raise NotSQLiteError(f"{p}: not a regular file, so not a SQLite database file")
    if not os.access(p, os.R_OK):
        raise NotSQLiteError(f"{p}: permission denied (cannot read the file)")


def _is_writable(p: Path) -> bool:
    # Root passes os.access on any mode; a file with no write bit at all was made read-only
    # on purpose, and a migration honours that too.
    return os.access(p, os.W_OK) and bool(p.stat().st_mode & 0o222)


def _require_writable(p: Path, doing: str = "migrate", *, backup: bool = True) -> None:
    if not _is_writable(p):
        mode = stat.filemode(p.stat().st_mode)
        raise PermanentStoreError(
            f"{p}: file is read-only ({mode}); refusing to {doing} it. Make it writable "
            f"(chmod u+w) or {doing} a writable copy"
        )
    parent = p.resolve().parent
    if not _is_writable(parent):
        needs = "its journal and the backup is written there" if backup else "its journal"
        raise PermanentStoreError(
            f"{p}: directory {parent} is not writable; SQLite needs it for {needs}. "
            f"{doing.capitalize()} a copy in a writable directory"
        )


def _table_names(p: Path) -> set[str]:
    """The file's table names (validates SQLite).

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


# ---------------------------------------------------------------------------------------
# migrate


def backup_path_for(path: str | os.PathLike[str], schema_version: int) -> Path:
    """Where :func:`migrate_file` puts the backup: ``FILE.bak-v<version>``.

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


def _backup(conn: sqlite3.Connection, p: Path, version: int) -> Path:
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


def _open_read_write(p: Path) -> sqlite3.Connection:
    # Not sqlite_store.connect(): it switches the file to WAL. A migration changes the
    # schema and the data and nothing else, and a dry run changes nothing at all.
    uri = f"file:{quote(os.path.abspath(p))}?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    except sqlite3.Error as exc:
        raise NotSQLiteError(f"{p}: cannot open for writing ({exc})") from None
    return conn


def migrate_file(
    path: str | os.PathLike[str], *, dry_run: bool = False, backup: bool = True
) -> tuple[MigrationReport, Path | None]:
    """Migrate the database file at ``path`` in place; return the report and the backup.

    Refuses (raising a :class:`sim.errors.TurnsimError` with a one-line message, before
    writing anything) a missing path, a directory, a file that is not SQLite or holds none
    of the turnsim tables, a read-only file, a file in a read-only directory, and a schema
    newer than this code. A file another process is writing (its write lock stays taken
    for longer than the busy timeout) fails with :class:`sim.errors.TransientStoreError`,
    also before anything is written.

    When the schema is already current nothing is written, no backup is taken, and the
    report has ``changed == False``. Otherwise, unless ``backup`` is false, a copy is taken
    first with SQLite's backup API (see :func:`backup_path_for`), then
    :func:`persisters.schema.migrate` runs in one transaction; on failure it rolls back
    and the file is as it was. With ``dry_run`` the migration runs inside a transaction
    that is rolled back: the report says what would change, the file's bytes stay the
    same, and no backup is taken. The file's journal mode is never changed.
    """
    p = Path(path)
    _require_database_file(p)
    _require_writable(p)
    if not _table_names(p) & set(TURNSIM_TABLES):
        raise SchemaError(
            f"{p}: holds none of the tables {', '.join(TURNSIM_TABLES)}; a turnsim migration "
            "does not apply to it (is this the right file?)"
        )
    conn = _open_read_write(p)
    try:
        try:
            version = user_version(conn)
            current = schema_is_current(conn)
        except sqlite3.Error as exc:
            raise store_error(exc, f"{p}: cannot read the schema") from exc
        if version > SCHEMA_VERSION:  # refused before a backup is taken
            raise SchemaError(
                f"{p}: schema version {version} is newer than this turnsim understands "
                f"({SCHEMA_VERSION}); upgrade turnsim instead of migrating"
            )
        if dry_run or current:
            return attrs.evolve(_migrate(conn, p, dry_run=True), dry_run=dry_run), None
        try:  # another writer at work: fail now, before a backup is taken
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise store_error(exc, f"{p}: cannot take the write lock; nothing was changed") from exc
        copy = _backup(conn, p, version) if backup else None
        return _migrate(conn, p, dry_run=False, copy=copy), copy
    finally:
        conn.close()


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


#: Below this many free bytes a compaction is not suggested.
COMPACT_HINT_BYTES = 1 << 20


def file_space(path: str | os.PathLike[str]) -> FileSpace:
    """The database's size and free pages, read-only (the file must be SQLite)."""
    p = Path(path)
    _require_database_file(p)
    conn = connect(p, read_only=True)
    try:
        return _space(conn)
    except sqlite3.DatabaseError as exc:
        raise NotSQLiteError(f"{p}: not a usable SQLite database ({exc})") from None
    finally:
        conn.close()


#: The database's size and its free pages' size, in bytes (also the doctor's check).
SPACE_SQL = (
    "SELECT page_size * page_count AS database_bytes, page_size * freelist_count AS free_bytes\n"
    "FROM pragma_page_size, pragma_page_count, pragma_freelist_count"
)


def _space(conn: sqlite3.Connection) -> FileSpace:
    return FileSpace(*conn.execute(SPACE_SQL).fetchone())


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
    :func:`migrate_file` refuses for a path; fails with the reason (and nothing changed)
    when SQLite cannot finish, e.g. for lack of disk or while another process writes.
    """
    p = Path(path)
    _require_database_file(p)
    _require_writable(p, "compact", backup=False)
    _table_names(p)  # validates SQLite (and rolls back a hot journal) before writing
    conn = _open_read_write(p)
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


def mib(n: int) -> str:
    """Bytes as MiB for messages: ``'330.2 MiB'``."""
    return f"{n / (1 << 20):,.1f} MiB"


def _migrate(
    conn: sqlite3.Connection, p: Path, *, dry_run: bool, copy: Path | None = None
) -> MigrationReport:
    kept = f"; the backup is at {copy}" if copy else ""
    try:
        return migrate(conn, dry_run=dry_run)
    except SchemaError as exc:
        raise SchemaError(f"{p}: {exc}; nothing was changed{kept}") from exc
    except sqlite3.Error as exc:
        raise store_error(exc, f"{p}: migration failed and was rolled back{kept}") from exc


# ---------------------------------------------------------------------------------------
# doctor


@attrs.frozen
class Check:
    """One doctor check: what ran, what it returned, and what that means.

    ``sql`` is exactly the statement that ran (or, when ``ran`` is false, would run once
    the schema allows). ``result`` holds the first :data:`MAX_RESULT_ROWS` rows it
    returned, ``columns`` their names, ``row_count`` how many it returned in all.
    """

    name: str
    severity: str = attrs.field(validator=attrs.validators.in_(SEVERITIES))
    sql: str
    columns: tuple[str, ...]
    result: tuple[tuple[Any, ...], ...]
    row_count: int
    message: str
    ran: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "severity": self.severity,
            "ran": self.ran,
            "sql": self.sql,
            "columns": list(self.columns),
            "rows": [list(r) for r in self.result],
            "row_count": self.row_count,
            "truncated": self.row_count > len(self.result),
            "message": self.message,
        }


@attrs.frozen
class DoctorReport:
    """Every check :func:`doctor` ran on one file, in the order they ran."""

    path: str
    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        """No check found an error (warnings and info do not make a database unhealthy)."""
        return not any(c.severity == "error" for c in self.checks)

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 errors found (2, unusable file, is raised, never reported)."""
        return 0 if self.healthy else 1

    @property
    def findings(self) -> tuple[Check, ...]:
        """Every check that is not ``ok``, most serious first (then in check order)."""
        rank = {s: i for i, s in enumerate(SEVERITIES)}
        notable = [c for c in self.checks if c.severity != "ok"]
        return tuple(sorted(notable, key=lambda c: rank[c.severity]))

    @property
    def problems(self) -> tuple[Check, ...]:
        """Errors then warnings."""
        return tuple(c for c in self.findings if c.severity in ("error", "warning"))

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError when there is none)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        counts = Counter(c.severity for c in self.checks)
        return {
            "path": self.path,
            "healthy": self.healthy,
            "exit_code": self.exit_code,
            "counts": {s: counts.get(s, 0) for s in SEVERITIES},
            "findings": [c.name for c in self.findings],
            "checks": [c.to_json() for c in self.checks],
        }


@attrs.frozen
class _Context:
    conn: sqlite3.Connection
    path: str
    columns: dict[str, frozenset[str]]

    def has(self, need: str) -> bool:
        table, _, column = need.partition(".")
        return column in self.columns.get(table, frozenset())


_Judge = Callable[[list[tuple[Any, ...]], _Context], tuple[str, str]]


@attrs.frozen
class _Spec:
    name: str
    needs: tuple[str, ...]
    sql: Callable[[_Context], str]
    judge: _Judge


def _jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _run(spec: _Spec, ctx: _Context) -> Check:
    sql = spec.sql(ctx)
    missing = [n for n in spec.needs if not ctx.has(n)]
    if missing:
        return Check(
            spec.name,
            "info",
            sql,
            (),
            (),
            0,
            f"not run: needs {', '.join(missing)}; run `turnsim db migrate {ctx.path}` first",
            ran=False,
        )
    try:
        cursor = ctx.conn.execute(sql)
        columns = tuple(d[0] for d in cursor.description or ())
        rows = [tuple(_jsonable(v) for v in row) for row in cursor]
    except sqlite3.Error as exc:
        return Check(spec.name, "error", sql, (), (), 0, f"the check's SQL failed: {exc}")
    severity, message = spec.judge(rows, ctx)
    return Check(
        spec.name, severity, sql, columns, tuple(rows[:MAX_RESULT_ROWS]), len(rows), message
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- integrity -------------------------------------------------------------------------


def _judge_integrity(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if rows == [("ok",)]:
        return "ok", "the database file is consistent"
    return "error", (
        f"SQLite reports {_plural(len(rows), 'problem')} in the file itself; fix this first: "
        "restore a backup (a migration leaves FILE.bak-v<N>) or recover with sqlite3's .recover"
    )


# --- schema version --------------------------------------------------------------------


def _judge_version(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    version = int(rows[0][0])
    if version == SCHEMA_VERSION:
        return "ok", f"schema version {version} (current)"
    if version > SCHEMA_VERSION:
        return "error", (
            f"schema version {version} is newer than this turnsim understands "
            f"({SCHEMA_VERSION}); upgrade turnsim"
        )
    return "error", (
        f"schema version {version}, this turnsim needs {SCHEMA_VERSION}: "
        f"run `turnsim db migrate {ctx.path}`"
    )


# --- required columns ------------------------------------------------------------------


def required_columns() -> tuple[tuple[str, str], ...]:
    """(table, column) pairs a current database has, in table order."""
    out: list[tuple[str, str]] = []
    for table, addable in ADDABLE_COLUMNS.items():
        extra = ("snapshot_id",) if table == "turn_snapshots" else ()
        for column in (*REQUIRED_COLUMNS.get(table, ()), *extra, *addable):
            if (table, column) not in out:
                out.append((table, column))
    return tuple(out)


def _columns_sql(ctx: _Context) -> str:
    values = ",\n    ".join(f"({_literal(t)}, {_literal(c)})" for t, c in required_columns())
    return (
        "WITH required(table_name, column_name) AS (VALUES\n"
        f"    {values})\n"
        "SELECT r.table_name, r.column_name,\n"
        "       CASE WHEN NOT EXISTS (SELECT 1 FROM sqlite_master m\n"
        "                             WHERE m.type = 'table' AND m.name = r.table_name)\n"
        "            THEN 'table missing' ELSE 'column missing' END AS problem\n"
        "FROM required r\n"
        "WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info(r.table_name) p\n"
        "                  WHERE p.name = r.column_name)\n"
        "UNION ALL\n"
        "SELECT 'conversations', p.name, 'legacy pointer column (not history)'\n"
        "FROM pragma_table_info('conversations') p WHERE p.name = 'runtime_key'"
    )


def _judge_columns(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    total = len(required_columns())
    if not rows:
        return "ok", f"all {total} required columns are present"
    tables = sorted({r[0] for r in rows if r[2] == "table missing"})
    columns = [f"{r[0]}.{r[1]}" for r in rows if r[2] == "column missing"]
    legacy = any(r[2].startswith("legacy") for r in rows)
    if not tables and not columns:
        return "warning", (
            "conversations still has the old runtime_key column beside current_runtime_key; "
            "it is a pointer, not history, and nothing reads it"
        )
    parts = []
    if tables:
        parts.append(f"missing table(s) {', '.join(tables)}")
    if columns:
        parts.append(f"missing column(s) {', '.join(columns)}")
    if legacy:
        parts.append("old conversations.runtime_key (migrate renames it current_runtime_key)")
    return "error", f"{'; '.join(parts)}: run `turnsim db migrate {ctx.path}`"


# --- required indexes ------------------------------------------------------------------

_INDEX_DEF = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$", re.S)


def required_indexes() -> tuple[tuple[str, str, str], ...]:
    """(index, table, "col, col DESC") for every index a current database has."""
    out = []
    for name, definition in INDEXES.items():
        match = _INDEX_DEF.match(definition)
        if match is None:  # pragma: no cover - INDEXES is a constant of this package
            raise ValueError(f"cannot parse index definition {definition!r}")
        columns = ", ".join(" ".join(c.split()) for c in match.group(2).split(","))
        out.append((name, match.group(1), columns))
    return tuple(out)


def _indexes_sql(ctx: _Context) -> str:
    values = ",\n    ".join(
        f"({_literal(n)}, {_literal(t)}, {_literal(c)})" for n, t, c in required_indexes()
    )
    return (
        "WITH required(index_name, table_name, columns) AS (VALUES\n"
        f"    {values}),\n"
        "actual AS (\n"
        "  SELECT m.name AS index_name, m.tbl_name AS table_name,\n"
        "         (SELECT group_concat(x.name\n"
        "                              || CASE WHEN x.\"desc\" THEN ' DESC' ELSE '' END, ', ')\n"
        '          FROM (SELECT name, "desc" FROM pragma_index_xinfo(m.name)\n'
        "                WHERE key = 1 ORDER BY seqno) AS x) AS columns\n"
        "  FROM sqlite_master m WHERE m.type = 'index')\n"
        "SELECT r.index_name, r.table_name || ' (' || r.columns || ')' AS expected,\n"
        "       coalesce(a.table_name || ' (' || a.columns || ')', 'missing') AS found\n"
        "FROM required r LEFT JOIN actual a ON a.index_name = r.index_name\n"
        "WHERE a.index_name IS NULL OR a.table_name IS NOT r.table_name\n"
        "   OR a.columns IS NOT r.columns\n"
        "ORDER BY r.index_name"
    )


def _judge_indexes(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not rows:
        return "ok", f"all {len(INDEXES)} indexes are present with the expected columns"
    missing = [r[0] for r in rows if r[2] == "missing"]
    different = [r[0] for r in rows if r[2] != "missing"]
    parts = []
    if missing:
        parts.append(f"missing: {', '.join(missing)} (run `turnsim db migrate {ctx.path}`)")
    if different:
        parts.append(
            f"different columns: {', '.join(different)} (DROP INDEX it, then run "
            f"`turnsim db migrate {ctx.path}`)"
        )
    return "error", "; ".join(parts)


# --- column vs own metadata ------------------------------------------------------------

#: How a row of a projected table is named in doctor output.
_ROW_IDENTITY: dict[str, tuple[str, tuple[str, ...]]] = {
    "turns": ("conv_id || '/' || session_id || '/' || turn_id", ("conv_id", "turn_id")),
    "turn_snapshots": (
        "conv_id || '/' || session_id || '/' || turn_id || ' #' || snapshot_id",
        ("conv_id", "turn_id", "snapshot_id"),
    ),
}


def _identity(table: str) -> tuple[str, tuple[str, ...]]:
    return _ROW_IDENTITY.get(table, ("rowid", ()))


def _metadata_needs() -> tuple[str, ...]:
    needs = []
    for table, doc, _ in PROJECTED_TABLES:
        _, identity = _identity(table)
        for column in (*identity, doc, "runtime_key", "inference_id"):
            needs.append(f"{table}.{column}")
    return tuple(needs)


def _metadata_sql(ctx: _Context) -> str:
    selects = []
    for table, doc, prefix in PROJECTED_TABLES:
        valid = valid_sql(doc, prefix)
        selects.append(
            f"  SELECT {_literal(table)} AS table_name, {_identity(table)[0]} AS row_id,\n"
            "         runtime_key, inference_id,\n"
            f"         CASE WHEN {valid} THEN {runtime_sql(doc, prefix)} ELSE '' END\n"
            "           AS metadata_runtime_key,\n"
            f"         CASE WHEN {valid} THEN {inference_sql(doc, prefix)} ELSE '' END\n"
            "           AS metadata_inference_id\n"
            f"  FROM {table}"
        )
    union = "\n  UNION ALL\n".join(selects)
    return (
        f"WITH projected AS (\n{union})\n"
        "SELECT table_name, row_id, runtime_key, metadata_runtime_key,\n"
        "       inference_id, metadata_inference_id\n"
        "FROM projected\n"
        "WHERE (metadata_runtime_key <> '' AND runtime_key <> metadata_runtime_key)\n"
        "   OR (metadata_inference_id <> '' AND inference_id <> metadata_inference_id)\n"
        "ORDER BY table_name, row_id"
    )


def _judge_metadata(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not rows:
        return "ok", "every non-empty runtime_key / inference_id matches the row's own metadata"
    empty = sum(1 for r in rows if (r[3] and not r[2]) or (r[5] and not r[4]))
    return "error", (
        f"{_plural(len(rows), 'row')} whose runtime_key / inference_id column differs from "
        f"their own metadata ({empty} with the column empty: an unfinished backfill; "
        f"{len(rows) - empty} with another value: a writer that bypassed the store). The "
        "columns are a projection of the metadata; see the playbook's troubleshooting, and "
        "never overwrite a recorded non-empty value"
    )


# --- phases of one turn ----------------------------------------------------------------


def _phases_sql(ctx: _Context) -> str:
    return (
        "SELECT conv_id, session_id, turn_id,\n"
        "       group_concat(phase || '=' || runtime_key, ', ') AS phases\n"
        "FROM (SELECT * FROM turn_snapshots ORDER BY snapshot_id)\n"
        "GROUP BY conv_id, session_id, turn_id\n"
        "HAVING count(DISTINCT nullif(runtime_key, '')) > 1\n"
        "ORDER BY conv_id, session_id, turn_id"
    )


def _judge_phases(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not rows:
        return "ok", "the snapshots of every turn agree on its runtime"
    return "warning", (
        f"{_plural(len(rows), 'turn')} whose snapshots disagree on the runtime: the mark of "
        "the old late-bound snapshot hook (a profile switch during the inference), or of "
        "several inferences merged under the old default turn id 'turn'. They are history "
        "and stay as recorded; a pre_inference snapshot names the runtime its inference "
        "started on. A turn written after the cutover must never show up here"
    )


# --- orphan snapshots ------------------------------------------------------------------


def _orphans_sql(ctx: _Context) -> str:
    return (
        "SELECT s.conv_id, s.session_id, s.turn_id, count(*) AS snapshots\n"
        "FROM turn_snapshots s\n"
        "WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = s.conv_id\n"
        "                  AND t.session_id = s.session_id AND t.turn_id = s.turn_id)\n"
        "GROUP BY s.conv_id, s.session_id, s.turn_id\n"
        "ORDER BY s.conv_id, s.session_id, s.turn_id"
    )


def _judge_orphans(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not rows:
        return "ok", "every snapshot belongs to a row of turns"
    snapshots = sum(int(r[3]) for r in rows)
    return "warning", (
        f"{_plural(snapshots, 'snapshot')} of {_plural(len(rows), 'turn')} without a turns "
        "row (old turn rows purged without their snapshots, or a save that failed half-way): "
        "those turns are missing from per-turn listings; their runtime is only in the snapshots"
    )


# --- conversation pointer --------------------------------------------------------------


def _has_switch_evidence(ctx: _Context) -> bool:
    return all(ctx.has(f"timeline_entities.{c}") for c in ("conv_id", "kind", "payload_json"))


def _pointer_sql(ctx: _Context) -> str:
    evidence = ""
    if _has_switch_evidence(ctx):
        kinds = ", ".join(_literal(k) for k in SWITCH_ENTITY_KINDS)
        evidence = (
            "      WHEN EXISTS (SELECT 1 FROM timeline_entities e\n"
            f"                   WHERE e.conv_id = c.conv_id AND e.kind IN ({kinds})\n"
            "                     AND CASE WHEN json_valid(e.payload_json)\n"
            "                         THEN json_extract(e.payload_json, '$.runtime_key') END\n"
            "                         = c.current_runtime_key)\n"
            "        THEN 'explained by a recorded switch'\n"
        )
    return (
        "WITH verdicts AS (\n"
        "  SELECT c.conv_id, c.current_runtime_key,\n"
        "    CASE\n"
        "      WHEN NOT EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id)\n"
        "        THEN 'no turns in this file'\n"
        "      WHEN EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id\n"
        "                   AND t.runtime_key = c.current_runtime_key)\n"
        "        THEN 'used by a turn'\n"
        f"{evidence}"
        "      ELSE 'unexplained'\n"
        "    END AS verdict,\n"
        "    (SELECT group_concat(DISTINCT t.runtime_key) FROM turns t\n"
        "     WHERE t.conv_id = c.conv_id AND t.runtime_key <> '') AS turn_runtime_keys\n"
        "  FROM conversations c\n"
        "  WHERE c.current_runtime_key <> '')\n"
        "SELECT conv_id, current_runtime_key, verdict, turn_runtime_keys\n"
        "FROM verdicts\n"
        "WHERE verdict <> 'used by a turn'\n"
        "ORDER BY verdict = 'unexplained' DESC, verdict, conv_id"
    )


def _judge_pointer(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    counts = Counter(r[2] for r in rows)
    unexplained = counts["unexplained"]
    explained = counts["explained by a recorded switch"]
    no_turns = counts["no turns in this file"]
    notes = []
    if explained:
        notes.append(f"{explained} explained by a recorded profile switch")
    if no_turns:
        notes.append(
            f"{_plural(no_turns, 'conversation')} without turns in this file (the turns may "
            "live in a separate turn store: see the playbook's ATTACH query)"
        )
    if unexplained:
        evidence = "" if _has_switch_evidence(ctx) else " (this file records no switches)"
        message = (
            f"{_plural(unexplained, 'conversation')} whose current_runtime_key names a runtime "
            f"none of its turns used and no recorded switch explains{evidence}. Usually "
            "harmless: a profile switch after the last turn. The pointer is the current "
            "runtime, not history: never copy it into turns"
        )
        return "warning", "; ".join([message, *notes])
    if no_turns:
        return "info", "; ".join(notes)
    if explained:
        return "ok", f"every pointer is used by a turn or {notes[0]}"
    return "ok", "no conversation points at a runtime its turns never used"


# --- unknown rows ----------------------------------------------------------------------


def _unknown_sql(ctx: _Context) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(table)} AS table_name, count(*) AS rows,\n"
        "       coalesce(sum(runtime_key = ''), 0) AS unknown_runtime_key,\n"
        "       coalesce(sum(inference_id = ''), 0) AS unknown_inference_id\n"
        f"FROM {table}"
        for table, _, _ in PROJECTED_TABLES
    )


def _judge_unknown(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not any(r[2] or r[3] for r in rows):
        return "ok", "no row has an unknown runtime_key or inference_id"
    parts = [f"{r[0]}: {r[2]} of {r[1]} runtime_key, {r[3]} inference_id" for r in rows]
    return "info", (
        f"rows with an unknown ('') value ({'; '.join(parts)}): historical rows whose "
        "metadata never named one, or is malformed. That is honest; keep '' and never fill "
        "it from the conversation pointer (playbook: troubleshooting)"
    )


# --- malformed metadata ----------------------------------------------------------------

_MALFORMED_IDENTITY = {
    "turns": "NULL AS phase, turn_created_at_ms AS created_at_ms",
    "turn_snapshots": "phase, created_at_ms",
}


def _malformed_needs() -> tuple[str, ...]:
    needs = []
    for table, doc, _ in PROJECTED_TABLES:
        needs += [f"{table}.{c}" for c in ("conv_id", "session_id", "turn_id", doc)]
    return tuple(needs)


def _malformed_sql(ctx: _Context) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(table)} AS table_name, conv_id, session_id, turn_id,\n"
        f"       {_MALFORMED_IDENTITY.get(table, 'NULL AS phase, NULL AS created_at_ms')},\n"
        f"       length({doc}) AS length, substr({doc}, 1, 40) AS document_start\n"
        f"FROM {table}\n"
        f"WHERE {malformed_sql(doc, prefix)}"
        for table, doc, prefix in PROJECTED_TABLES
    )


def _judge_malformed(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    if not rows:
        return "ok", "no row has metadata that is present but unusable"
    by_table = Counter(r[0] for r in rows)
    parts = ", ".join(f"{t} {n}" for t, n in sorted(by_table.items()))
    return "info", (
        f"{_plural(len(rows), 'row')} whose metadata is present but unusable ({parts}; not "
        "JSON, e.g. a truncated write, or not an object): nothing could be read from them; "
        "the query lists them for manual recovery"
    )


# --- free pages ------------------------------------------------------------------------


def _judge_space(rows: list[tuple[Any, ...]], ctx: _Context) -> tuple[str, str]:
    space = FileSpace(*rows[0])
    free = f"{mib(space.free_bytes)} of free pages in {mib(space.database_bytes)}"
    if not space.worth_compacting:
        return "ok", free
    return "info", (
        f"{free} ({space.free_share:.0%}; e.g. the old pages of a table "
        "a migration rebuilt, or deleted rows). Later writes reuse them; "
        f"`turnsim db migrate {ctx.path} --vacuum` returns them to the disk"
    )


#: The checks, most serious first; findings keep this order within a severity.
CHECKS: tuple[_Spec, ...] = (
    _Spec("integrity", (), lambda ctx: "PRAGMA integrity_check", _judge_integrity),
    _Spec("schema_version", (), lambda ctx: "PRAGMA user_version", _judge_version),
    _Spec("required_columns", (), _columns_sql, _judge_columns),
    _Spec("required_indexes", (), _indexes_sql, _judge_indexes),
    _Spec("column_vs_metadata", _metadata_needs(), _metadata_sql, _judge_metadata),
    _Spec(
        "phase_runtime_agreement",
        tuple(
            f"turn_snapshots.{c}"
            for c in ("conv_id", "session_id", "turn_id", "phase", "runtime_key", "snapshot_id")
        ),
        _phases_sql,
        _judge_phases,
    ),
    _Spec(
        "orphan_snapshots",
        tuple(f"{t}.{c}" for t in ("turns", "turn_snapshots") for c in REQUIRED_COLUMNS["turns"]),
        _orphans_sql,
        _judge_orphans,
    ),
    _Spec(
        "conversation_pointer",
        (
            "conversations.conv_id",
            "conversations.current_runtime_key",
            "turns.conv_id",
            "turns.runtime_key",
        ),
        _pointer_sql,
        _judge_pointer,
    ),
    _Spec(
        "unknown_rows",
        tuple(f"{t}.{c}" for t, _, _ in PROJECTED_TABLES for c in ("runtime_key", "inference_id")),
        _unknown_sql,
        _judge_unknown,
    ),
    _Spec("malformed_metadata", _malformed_needs(), _malformed_sql, _judge_malformed),
    _Spec("free_pages", (), lambda ctx: SPACE_SQL, _judge_space),
)


def doctor(path: str | os.PathLike[str]) -> DoctorReport:
    """Run every check in :data:`CHECKS` on the file at ``path``, read-only.

    Never writes to the file (it is opened with ``mode=ro``). Raises
    :class:`sim.errors.NotSQLiteError` when the file is missing, a directory, unreadable or
    not a usable SQLite database; anything else, even a database without turnsim tables
    or with a failing check, is reported in the :class:`DoctorReport`. A check whose
    columns are missing does not run (``ran`` false, severity ``info``); the missing
    columns themselves are the ``required_columns`` error.
    """
    p = Path(path)
    _require_database_file(p)
    conn = connect(p, read_only=True)
    try:
        try:
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            columns = {n: frozenset(table_columns(conn, n)) for n in names}
        except sqlite3.DatabaseError as exc:
            raise NotSQLiteError(f"{p}: not a usable SQLite database ({exc})") from None
        ctx = _Context(conn, os.fspath(p), columns)
        checks = tuple(_run(spec, ctx) for spec in CHECKS)
    finally:
        conn.close()
    return DoctorReport(os.fspath(p), checks)
