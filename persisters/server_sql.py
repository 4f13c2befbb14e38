"""What the PostgreSQL and MySQL/MariaDB stores share: the schema's shape and the SQL.

Both drivers (psycopg 3, PyMySQL) take ``%(name)s`` parameters, and every statement here
is written in the SQL both servers accept, so the write-once condition, the reads and the
conversation pointer are one text for both. What differs is a
:class:`~persisters.server_database.Dialect` (``persisters.postgres_store``,
``persisters.mysql_store``): column types, how a save is written without a race, how an id
comes back, how a namespace is made.

The tables and index names are SQLite's (:mod:`persisters.schema`), so ``turnsim db
doctor`` and the playbook's SQL read the same columns everywhere. Two additions: the
``turns`` table has a ``turn_seq`` column (insertion order, which SQLite keeps in its
``rowid``) and ``turn_snapshots`` is append-only in the database itself (a trigger
refuses UPDATE and DELETE), not only by the store's habit.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from persisters.errors import StoreError
from persisters.model import TurnQuery, dumps
from persisters.schema import INDEXES

#: A namespace (PostgreSQL schema, MySQL database) a user may name: plain identifiers,
#: so no name ever needs quoting rules of its own.
NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

TABLES: tuple[str, ...] = ("turns", "turn_snapshots", "conversations")

#: The columns :class:`~persisters.model.TurnSnapshot` is built from, in its field order.
SNAPSHOT_COLUMNS = (
    "conv_id, session_id, turn_id, phase, runtime_key, inference_id, created_at_ms, payload, "
    "snapshot_id"
)
TURN_COLUMNS = (
    "conv_id, session_id, turn_id, runtime_key, inference_id, turn_created_at_ms, updated_at_ms"
)
CONVERSATION_COLUMNS = (
    "conv_id, session_id, current_runtime_key, profile_slug, created_at_ms, last_activity_ms"
)

_KEY = "conv_id = %(conv_id)s AND session_id = %(session_id)s AND turn_id = %(turn_id)s"

#: The projection a turn already holds, read with a row lock (inside the write).
SELECT_STORED = f"SELECT runtime_key, inference_id FROM turns WHERE {_KEY} FOR UPDATE"

#: Rule 4 in one statement: a recorded non-empty value is kept, an empty one is filled,
#: and a save carrying another non-empty value matches no row (the caller reads the row
#: count: 0 is a refusal or a missing turn, never a partial write).
UPDATE_WRITE_ONCE = (
    "UPDATE turns SET "
    "runtime_key = CASE WHEN runtime_key = '' THEN %(runtime_key)s ELSE runtime_key END, "
    "inference_id = CASE WHEN inference_id = '' THEN %(inference_id)s ELSE inference_id END, "
    "updated_at_ms = GREATEST(updated_at_ms, %(created)s), "
    "turn_metadata_json = COALESCE(%(metadata)s, turn_metadata_json), "
    "turn_data_json = COALESCE(%(data)s, turn_data_json) "
    f"WHERE {_KEY} "
    "AND (runtime_key = '' OR %(runtime_key)s = '' OR runtime_key = %(runtime_key)s) "
    "AND (inference_id = '' OR %(inference_id)s = '' OR inference_id = %(inference_id)s)"
)

#: What a conflict policy other than write-once decided, written as it decided.
UPDATE_DECIDED = (
    "UPDATE turns SET runtime_key = %(runtime_key)s, inference_id = %(inference_id)s, "
    "updated_at_ms = GREATEST(updated_at_ms, %(created)s), "
    "turn_metadata_json = COALESCE(%(metadata)s, turn_metadata_json), "
    "turn_data_json = COALESCE(%(data)s, turn_data_json) "
    f"WHERE {_KEY}"
)

INSERT_TURN_VALUES = (
    "(conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, turn_data_json, "
    "updated_at_ms, runtime_key, inference_id) VALUES (%(conv_id)s, %(session_id)s, "
    "%(turn_id)s, %(created)s, COALESCE(%(metadata)s, '{}'), COALESCE(%(data)s, '{}'), "
    "%(created)s, %(runtime_key)s, %(inference_id)s)"
)

INSERT_SNAPSHOT = (
    "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, payload, "
    "runtime_key, inference_id) VALUES (%(conv_id)s, %(session_id)s, %(turn_id)s, %(phase)s, "
    "%(created)s, %(payload)s, %(runtime_key)s, %(inference_id)s)"
)

TOUCH = (
    "UPDATE conversations SET last_activity_ms = GREATEST(last_activity_ms, %(at_ms)s) "
    "WHERE conv_id = %(conv_id)s"
)
GET_CONVERSATION = f"SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE conv_id = %(conv_id)s"
CONVERSATIONS = f"SELECT {CONVERSATION_COLUMNS} FROM conversations ORDER BY conv_id"
GET_TURN = f"SELECT {TURN_COLUMNS} FROM turns WHERE {_KEY}"
LIST_TURNS = (
    f"SELECT {TURN_COLUMNS} FROM turns WHERE conv_id = %(conv_id)s "
    "ORDER BY turn_created_at_ms, turn_seq"
)
TURN_COUNTS = "SELECT conv_id, count(*) FROM turns GROUP BY conv_id"


def list_sql(query: TurnQuery) -> tuple[str, dict[str, Any]]:
    """The parameterized SQL that answers a :class:`TurnQuery` on a server store."""
    where: list[str] = []
    args: dict[str, Any] = {}
    for column in ("conv_id", "session_id", "turn_id", "phase", "runtime_key", "inference_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            args[column] = value
    if query.since_ms is not None:
        where.append("created_at_ms >= %(since_ms)s")
        args["since_ms"] = query.since_ms
    if query.as_of_ms is not None:
        where.append("created_at_ms <= %(as_of_ms)s")
        args["as_of_ms"] = query.as_of_ms
    sql = f"SELECT {SNAPSHOT_COLUMNS} FROM turn_snapshots"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at_ms DESC, snapshot_id DESC LIMIT %(limit)s"
    args["limit"] = query.limit
    return sql, args


def index_ddl(create: str = "CREATE INDEX IF NOT EXISTS") -> list[str]:
    """The schema's indexes (:data:`persisters.schema.INDEXES`, SQLite's names and
    columns); ``turns_by_conv_created`` also orders ties by ``turn_seq``."""
    out = []
    for name, definition in INDEXES.items():
        if name == "turns_by_conv_created":
            definition = "turns (conv_id, turn_created_at_ms, turn_seq)"
        out.append(f"{create} {name} ON {definition}")
    return out


def turn_documents(payload: str) -> tuple[str | None, str | None]:
    """The ``metadata`` and ``data`` objects of a serialized turn as JSON text (None when
    the payload does not hold that object): what the ``turns`` row keeps of its newest
    save, as SQLite's ``json_extract`` gives it."""
    try:
        decoded = json.loads(payload)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(decoded, dict):
        return None, None
    metadata, data = decoded.get("metadata"), decoded.get("data")
    return (
        dumps(metadata) if isinstance(metadata, dict) else None,
        dumps(data) if isinstance(data, dict) else None,
    )


def check_namespace(name: str, what: str) -> str:
    """``name`` if it is a plain identifier, else a :class:`StoreError` saying so."""
    if not NAMESPACE.match(name):
        raise StoreError(
            f"{what} {name!r} is not a plain name: use letters, digits and '_' (at most 63, "
            "not starting with a digit)"
        )
    return name


def scratch_name() -> str:
    """A fresh namespace name, for a store that drops its namespace when closed."""
    return f"turnsim_{os.urandom(8).hex()}"
