"""The SQLite schema: tables, indexes, the metadata projection in SQL, and introspection.

What a current database looks like (:data:`SCHEMA_VERSION`, the DDL, :data:`INDEXES`),
what an old one looked like (:data:`OLD_TURNS_SCHEMA`, :data:`OLD_TIMELINE_SCHEMA`), and
the projection of metadata JSON onto ``runtime_key`` / ``inference_id`` as SQL
expressions that mirror :mod:`persisters.model` exactly. :mod:`persisters.migration`
brings an old database here; :func:`schema_is_current` tells whether it must.
``PRAGMA user_version`` records the schema version.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

import attrs

from persisters.model import (
    INFERENCE_ID_KEYS,
    RUNTIME_KEYS,
    RUNTIME_OBJECT_DEPTH,
    RUNTIME_OBJECT_FIELDS,
    WHITESPACE,
)

#: user_version of a database this code writes. 0 is a database from before the cutover;
#: 3 added ``scenario_runs`` (a scenario's claim on a file) and ``turn_snapshots.run_id``.
SCHEMA_VERSION = 3

TURNS_DDL = """
CREATE TABLE turns (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  turn_created_at_ms INTEGER NOT NULL DEFAULT 0,
  turn_metadata_json TEXT NOT NULL DEFAULT '{}',
  turn_data_json TEXT NOT NULL DEFAULT '{}',
  updated_at_ms INTEGER NOT NULL DEFAULT 0,
  runtime_key TEXT NOT NULL DEFAULT '',
  inference_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (conv_id, session_id, turn_id)
)"""

SNAPSHOTS_DDL = """
CREATE TABLE {name} (
  snapshot_id INTEGER PRIMARY KEY,
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  payload TEXT NOT NULL,
  runtime_key TEXT NOT NULL DEFAULT '',
  inference_id TEXT NOT NULL DEFAULT '',
  run_id TEXT NOT NULL DEFAULT ''
)"""

#: One row per scenario run into the file: the claim that makes a second concurrent run
#: of the same scenario refuse (taken in one transaction with the check for its
#: conversations); ``run_id`` is what that run writes into every snapshot's ``run_id``.
SCENARIO_RUNS_DDL = """
CREATE TABLE scenario_runs (
  scenario TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  claimed_at_ms INTEGER NOT NULL DEFAULT 0
)"""

CONVERSATIONS_DDL = """
CREATE TABLE conversations (
  conv_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL DEFAULT '',
  current_runtime_key TEXT NOT NULL DEFAULT '',
  profile_slug TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL DEFAULT 0,
  last_activity_ms INTEGER NOT NULL DEFAULT 0
)"""

#: Columns a migration may add to an existing table, with their additive definitions.
ADDABLE_COLUMNS: dict[str, dict[str, str]] = {
    "turns": {
        "turn_created_at_ms": "INTEGER NOT NULL DEFAULT 0",
        "turn_metadata_json": "TEXT NOT NULL DEFAULT '{}'",
        "turn_data_json": "TEXT NOT NULL DEFAULT '{}'",
        "updated_at_ms": "INTEGER NOT NULL DEFAULT 0",
        "runtime_key": "TEXT NOT NULL DEFAULT ''",
        "inference_id": "TEXT NOT NULL DEFAULT ''",
    },
    "turn_snapshots": {
        "runtime_key": "TEXT NOT NULL DEFAULT ''",
        "inference_id": "TEXT NOT NULL DEFAULT ''",
        "run_id": "TEXT NOT NULL DEFAULT ''",
    },
    "conversations": {
        "session_id": "TEXT NOT NULL DEFAULT ''",
        "current_runtime_key": "TEXT NOT NULL DEFAULT ''",
        "profile_slug": "TEXT NOT NULL DEFAULT ''",
        "created_at_ms": "INTEGER NOT NULL DEFAULT 0",
        "last_activity_ms": "INTEGER NOT NULL DEFAULT 0",
    },
}

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "turns": ("conv_id", "session_id", "turn_id"),
    "turn_snapshots": ("conv_id", "session_id", "turn_id", "phase", "created_at_ms", "payload"),
    "conversations": ("conv_id",),
    "scenario_runs": ("scenario", "run_id"),
}

#: Index name -> definition. The first two are named by domain.md and must not change.
INDEXES: dict[str, str] = {
    "turns_by_conv_runtime_updated": "turns (conv_id, runtime_key, updated_at_ms DESC)",
    "turns_by_conv_inference_updated": "turns (conv_id, inference_id, updated_at_ms DESC)",
    "turns_by_conv_created": "turns (conv_id, turn_created_at_ms)",
    "turn_snapshots_by_turn": "turn_snapshots (conv_id, session_id, turn_id, snapshot_id)",
    "turn_snapshots_by_conv_created": (
        "turn_snapshots (conv_id, created_at_ms DESC, snapshot_id DESC)"
    ),
    "turn_snapshots_by_conv_runtime_created": (
        "turn_snapshots (conv_id, runtime_key, created_at_ms DESC, snapshot_id DESC)"
    ),
    "turn_snapshots_by_conv_inference_created": (
        "turn_snapshots (conv_id, inference_id, created_at_ms DESC, snapshot_id DESC)"
    ),
    "turn_snapshots_by_created": "turn_snapshots (created_at_ms DESC, snapshot_id DESC)",
}


@attrs.frozen
class Layout:
    """Which tables a database of one kind holds, and what each must have.

    ``ddl`` creates each table (in creation order); ``required`` are the columns a table
    must already have to be migrated, ``addable`` the ones a migration may add;
    ``indexes`` maps index name -> ``"table (columns)"``. The conversation index is the
    table ``conversations`` with the pointer column ``pointer``. Two layouts exist:
    :data:`TURNSIM` (this module) and the real server's normalized one
    (:data:`persisters.normalized_schema.NORMALIZED`).
    """

    name: str
    ddl: Mapping[str, str]
    required: Mapping[str, tuple[str, ...]]
    addable: Mapping[str, Mapping[str, str]]
    indexes: Mapping[str, str]
    conversations: str
    pointer: str

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.ddl)

    def only(self, *tables: str) -> Layout:
        """The same layout restricted to ``tables`` (and the indexes on them)."""
        return attrs.evolve(
            self,
            ddl={t: d for t, d in self.ddl.items() if t in tables},
            required={t: c for t, c in self.required.items() if t in tables},
            addable={t: c for t, c in self.addable.items() if t in tables},
            indexes={n: d for n, d in self.indexes.items() if d.split(" ", 1)[0] in tables},
        )


#: turnsim's own layout: turns, an append-only snapshot table, the conversation pointers.
TURNSIM = Layout(
    name="turnsim",
    ddl={
        "turns": TURNS_DDL,
        "turn_snapshots": SNAPSHOTS_DDL.format(name="turn_snapshots"),
        "conversations": CONVERSATIONS_DDL,
        "scenario_runs": SCENARIO_RUNS_DDL,
    },
    required=REQUIRED_COLUMNS,
    addable=ADDABLE_COLUMNS,
    indexes=INDEXES,
    conversations="conversations",
    pointer="current_runtime_key",
)

#: The ``turns``/``turn_snapshots`` schema before the cutover (a ``turns.db``-style store):
#: no ``runtime_key``/``inference_id`` columns, runtime only inside the metadata JSON, and
#: snapshots keyed on their timestamp (same-millisecond snapshots replaced each other).
OLD_TURNS_SCHEMA = """
CREATE TABLE turns (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  turn_created_at_ms INTEGER NOT NULL,
  turn_metadata_json TEXT NOT NULL DEFAULT '{}',
  turn_data_json TEXT NOT NULL DEFAULT '{}',
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (conv_id, session_id, turn_id)
);
CREATE TABLE turn_snapshots (
  conv_id TEXT NOT NULL,
  session_id TEXT NOT NULL,
  turn_id TEXT NOT NULL,
  phase TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  payload TEXT NOT NULL,
  PRIMARY KEY (conv_id, session_id, turn_id, phase, created_at_ms)
);
"""

#: The conversation/timeline schema before the cutover (a ``timeline3.db``-style store):
#: the conversation row's ``runtime_key`` meant "the latest runtime".
OLD_TIMELINE_SCHEMA = """
CREATE TABLE conversations (
  conv_id TEXT PRIMARY KEY,
  session_id TEXT NOT NULL DEFAULT '',
  runtime_key TEXT NOT NULL DEFAULT '',
  created_at_ms INTEGER NOT NULL DEFAULT 0,
  last_activity_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE timeline_entities (
  conv_id TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  kind TEXT NOT NULL,
  payload_json TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  PRIMARY KEY (conv_id, entity_id, version)
);
"""

# ---------------------------------------------------------------------------------------
# The projection of metadata JSON in SQL. Mirrors persisters.model.extract_* exactly.

#: model.WHITESPACE as an SQL string for trim(X, Y), which removes any of Y's characters
#: (UTF-8 aware) from both ends.
_WS = f"char({','.join(str(ord(c)) for c in WHITESPACE)})"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _path(prefix: str, key: str) -> str:
    return f'{prefix}."{key}"'


def _scalar_sql(doc: str, path: str) -> str:
    p = _lit(path)
    return (
        f"(CASE json_type({doc}, {p})"
        # SQLite cuts strings at NUL; a value holding one is unusable on both sides. The
        # JSON text escapes a NUL as \u0000; once escaped backslashes (\\) are taken
        # out, a \u0000 left is a NUL, not a backslash followed by "u0000".
        f" WHEN 'text' THEN CASE WHEN instr(replace({doc} -> {p}, '\\\\', ''), '\\u0000') "
        "THEN '' "
        f"ELSE trim(json_extract({doc}, {p}), {_WS}) END"
        f" WHEN 'integer' THEN ({doc} -> {p})"
        f" WHEN 'real' THEN ({doc} -> {p})"
        " WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
        " ELSE '' END)"
    )


def _runtime_fields_sql(doc: str, path: str, depth: int) -> str:
    """The first non-empty runtime object field of the object at ``path``."""
    fields = ", ".join(
        f"nullif({_runtime_value_sql(doc, _path(path, f), depth - 1)}, '')"
        for f in RUNTIME_OBJECT_FIELDS
    )
    return f"coalesce({fields}, '')"


def _runtime_value_sql(doc: str, path: str, depth: int = RUNTIME_OBJECT_DEPTH) -> str:
    # model._runtime_from_value: an object is read ``depth`` levels deep, no further
    if depth < 1:
        return _scalar_sql(doc, path)
    return (
        f"(CASE json_type({doc}, {_lit(path)}) "
        f"WHEN 'object' THEN {_runtime_fields_sql(doc, path, depth)}"
        f" ELSE {_scalar_sql(doc, path)} END)"
    )


def runtime_sql(doc: str, prefix: str = "$") -> str:
    """SQL expression: the runtime key projected from the metadata object at ``prefix``.

    Assumes ``doc`` is valid JSON whose ``prefix`` is an object; see :func:`valid_sql`.
    """
    parts = ", ".join(
        f"nullif({_runtime_value_sql(doc, _path(prefix, k))}, '')" for k in RUNTIME_KEYS
    )
    return f"coalesce({parts}, '')"


def inference_sql(doc: str, prefix: str = "$") -> str:
    """SQL expression: the inference id projected from the metadata object at ``prefix``."""
    parts = ", ".join(
        f"nullif({_scalar_sql(doc, _path(prefix, k))}, '')" for k in INFERENCE_ID_KEYS
    )
    return f"coalesce({parts}, '')"


def valid_sql(doc: str, prefix: str = "$") -> str:
    """SQL condition: ``doc`` is valid JSON with an object at ``prefix``."""
    return f"(CASE WHEN json_valid({doc}) THEN json_type({doc}, {_lit(prefix)}) END = 'object')"


def absent_sql(doc: str) -> str:
    """SQL condition: no metadata at all (NULL, empty or whitespace text)."""
    return f"(coalesce(trim({doc}, {_WS}), '') = '')"


#: (table, JSON document column, path of the metadata object inside it)
PROJECTED_TABLES: tuple[tuple[str, str, str], ...] = (
    ("turns", "turn_metadata_json", "$"),
    ("turn_snapshots", "payload", "$.metadata"),
)


def malformed_sql(doc: str, prefix: str = "$") -> str:
    """SQL condition: metadata is present but unusable (not JSON, or not an object).

    A document without metadata at all (empty text, or a payload object with no or a null
    ``metadata`` member) is *absent*, not malformed.
    """
    if prefix == "$":
        return f"(NOT {absent_sql(doc)} AND NOT coalesce({valid_sql(doc)}, 0))"
    return (
        f"(NOT {absent_sql(doc)} AND NOT coalesce(CASE WHEN json_valid({doc}) THEN "
        f"CASE WHEN json_type({doc}) = 'object' THEN coalesce(json_type({doc}, "
        f"{_lit(prefix)}), 'null') IN ('object', 'null') END END, 0))"
    )


def _typed_once_runtime_sql(doc: str, path: str, depth: int) -> str:
    """:func:`_runtime_value_sql`, asking ``json_type`` of each path once: the scalar
    CASE with the object case as its first branch."""
    scalar = _scalar_sql(doc, path)
    if depth < 1:
        return scalar
    head = f"(CASE json_type({doc}, {_lit(path)})"
    if not scalar.startswith(head):  # pragma: no cover - guards the splice below
        raise AssertionError(f"unexpected scalar projection: {scalar[:80]}")
    fields = ", ".join(
        f"nullif({_typed_once_runtime_sql(doc, _path(path, f), depth - 1)}, '')"
        for f in RUNTIME_OBJECT_FIELDS
    )
    return f"{head} WHEN 'object' THEN coalesce({fields}, ''){scalar[len(head) :]}"


#: The projected columns, in the order the report lists them.
PROJECTED_COLUMNS: tuple[str, ...] = ("runtime_key", "inference_id")


def copy_projection_sql(doc: str, prefix: str) -> tuple[str, str]:
    """SQL expressions: (runtime key, inference id) of ``doc``, as the migration copies it.

    Equal to ``CASE WHEN valid_sql(doc, prefix) THEN runtime_sql(doc, prefix) ELSE ''
    END`` (and likewise for :func:`inference_sql`) for every ``doc``, with fewer JSON
    function calls per row (the projection is most of the cost of copying a large table):

    * the guard is ``json_valid`` alone: in valid JSON whose ``prefix`` is not an object
      every path below ``prefix`` is missing, so both projections give ``''`` anyway;
    * each runtime alias, and each field of a runtime object, is typed once, where
      :func:`runtime_sql` asks ``json_type`` of the same path a second time for a scalar
      value.

    ``tests/persisters/test_migrate_speed.py`` checks the equality on generated documents.
    """
    parts = [
        f"nullif({_typed_once_runtime_sql(doc, _path(prefix, key), RUNTIME_OBJECT_DEPTH)}, '')"
        for key in RUNTIME_KEYS
    ]
    runtime = f"coalesce({', '.join(parts)}, '')"
    valid = f"json_valid({doc})"
    return (
        f"CASE WHEN {valid} THEN {runtime} ELSE '' END",
        f"CASE WHEN {valid} THEN {inference_sql(doc, prefix)} ELSE '' END",
    )


# ---------------------------------------------------------------------------------------
# Introspection: what a database file holds, compared with the above.


def table_columns(conn: sqlite3.Connection, table: str) -> dict[str, tuple[int, Any]]:
    """Column name -> (notnull, default) of a table; empty when the table is missing."""
    rows = conn.execute(f"PRAGMA table_info({_lit(table)})").fetchall()
    return {r[1]: (r[3], r[4]) for r in rows}


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def existing_indexes(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    return {r[0] for r in rows}


#: A turn the GP-26 indexes would order by 0 (see ``migration.FILL_UPDATED_AT_SQL``).
UNFILLED_UPDATED_AT_SQL = "SELECT 1 FROM turns WHERE coalesce(updated_at_ms, 0) <= 0 LIMIT 1"


def schema_is_current(
    conn: sqlite3.Connection, *, repaired: bool = True, layout: Layout = TURNSIM
) -> bool:
    """Whether a database of ``layout`` needs no migration (checked on every open).

    The schema: version, tables, columns, indexes. With ``repaired`` (a writer's open, and
    ``turnsim db migrate``) also no ``turns`` row whose ``updated_at_ms`` is not positive,
    which the migration fills; this reads the ``turns`` table once. A read-only open
    passes ``repaired=False``: such rows are the doctor's to report, not a reason to
    refuse serving.
    """
    if not _structure_is_current(conn, layout):
        return False
    if not repaired or "turns" not in layout.ddl:
        return True
    return conn.execute(UNFILLED_UPDATED_AT_SQL).fetchone() is None


def _structure_is_current(conn: sqlite3.Connection, layout: Layout) -> bool:
    if user_version(conn) != SCHEMA_VERSION:
        return False
    for table in layout.tables:
        cols = table_columns(conn, table)
        if not cols or not set(layout.addable.get(table, {})) <= set(cols):
            return False
        if table == "turn_snapshots" and "snapshot_id" not in cols:
            return False
        if not set(layout.required.get(table, ())) <= set(cols):
            return False
    return set(layout.indexes) <= existing_indexes(conn)
