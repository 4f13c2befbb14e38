"""Opening a SQLite file as a store: refuse another layout's file, bring the schema
current (migrating a writer's file, refusing a reader's), tune a writer's connection.

Shared by the turnsim-layout store (:mod:`persisters.sqlite_store`) and the real
server's normalized layout (:mod:`persisters.normalized_store`), and by the scenario runner's
up-front refusal.
"""

from __future__ import annotations

import sqlite3

from persisters.errors import SchemaError
from persisters.migration import MigrationReport, migrate
from persisters.normalized_schema import layout_of
from persisters.schema import Layout, schema_is_current, user_version
from persisters.sqlite_database import hand_checkpoints_to_thread, store_error, tune_for_writing


def refuse_other_layout(conn: sqlite3.Connection, name: str, layout: Layout) -> None:
    """Refuse (SchemaError) a file of another layout than ``layout`` before touching it."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    refuse_tables_of_other_layout(tables, name, layout)


def refuse_tables_of_other_layout(
    tables: set[str] | frozenset[str], name: str, layout: Layout
) -> None:
    """:func:`refuse_other_layout` given the file's table names."""
    found = layout_of(tables)
    # The real layout keeps its conversation index in a timeline database of its own.
    kin = {"normalized": {"normalized", "timeline"}, "timeline": {"normalized", "timeline"}}
    if found is None or found.name in kin.get(layout.name, {layout.name}):
        return
    store = {"turnsim": "--store sqlite", "normalized": "--store normalized"}
    raise SchemaError(
        f"{name}: holds a database of the {found.name} layout, not the {layout.name} one; "
        f"open it as such ({store.get(found.name, found.name)}) so that it is not given "
        "tables of another layout"
    )


def bring_current(
    conn: sqlite3.Connection, name: str, layout: Layout, *, read_only: bool
) -> MigrationReport | None:
    """Migrate ``conn`` to ``layout`` unless it is current; None when nothing was needed.

    A read-only connection is never migrated: one that needs it raises SchemaError
    pointing at ``turnsim db migrate``.
    """
    if schema_is_current(conn, repaired=not read_only, layout=layout):
        return None
    if read_only:
        raise SchemaError(
            f"{name}: schema version {user_version(conn)} needs migrating before "
            f"it can be served; run `turnsim db migrate {name}` first"
        )
    try:
        return migrate(conn, layout=layout)
    except sqlite3.Error as exc:
        raise store_error(exc, f"{name}: migration failed") from exc


#: How long a read-only store's read waits for a lock another process holds (a VACUUM, a
#: migration in rollback-journal mode) before it fails as transient: the debug API answers
#: 503 promptly instead of waiting the writers' busy timeout (5 s) per read.
READ_BUSY_TIMEOUT_MS = 1000


def tune(conn: sqlite3.Connection, name: str, *, read_only: bool) -> bool:
    """Set a writer's pragmas once the file is accepted; whether a Checkpointer is wanted.
    A read-only connection gets the short :data:`READ_BUSY_TIMEOUT_MS`."""
    if read_only:
        conn.execute(f"PRAGMA busy_timeout = {READ_BUSY_TIMEOUT_MS}")
    if read_only or name == ":memory:":
        return False
    tune_for_writing(conn)
    return hand_checkpoints_to_thread(conn)
