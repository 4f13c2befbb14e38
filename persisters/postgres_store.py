"""The PostgreSQL TurnStore: :class:`~persisters.server_store.ServerTurnStore` over psycopg 3.

A DSN names the server and database, as libpq reads it, plus one parameter of turnsim's
own, ``schema`` (default ``public``): the store's tables live in that schema, created on
first open. ``postgresql://127.0.0.1:5432/test?schema=run1``. psycopg is an optional
dependency (``pip install 'turnsim[postgres]'``); it is imported only when a store opens.

What PostgreSQL does here that the shared SQL does not say: a new turn is ``INSERT ... ON
CONFLICT DO NOTHING`` (a concurrent insert of the same key makes it insert nothing, not
fail), ids come back with ``RETURNING``, identifiers and ordering use the ``"C"``
collation (code point order, as Python sorts), and the schema is created under an
advisory lock so that two processes opening one schema at once do not collide.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from persisters.errors import PermanentStoreError, StoreError, TransientStoreError
from persisters.server_database import READ_ONLY
from persisters.server_sql import (
    CONVERSATION_COLUMNS,
    INSERT_SNAPSHOT,
    INSERT_TURN_VALUES,
    TABLES,
    UPDATE_WRITE_ONCE,
    check_namespace,
    index_ddl,
    scratch_name,
)
from persisters.server_store import ServerTurnStore
from persisters.store import ConflictPolicy, refuse_rewrite
from persisters.write_once import TURNS_REFUSAL

SCHEMES = ("postgresql", "postgres")
DEFAULT_SCHEMA = "public"

_ID = 'TEXT COLLATE "C" NOT NULL'
DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS turns (
  conv_id {_ID},
  session_id {_ID},
  turn_id {_ID},
  turn_created_at_ms BIGINT NOT NULL DEFAULT 0,
  turn_metadata_json TEXT NOT NULL DEFAULT '{{}}',
  turn_data_json TEXT NOT NULL DEFAULT '{{}}',
  updated_at_ms BIGINT NOT NULL DEFAULT 0,
  runtime_key {_ID} DEFAULT '',
  inference_id {_ID} DEFAULT '',
  turn_seq BIGINT GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (conv_id, session_id, turn_id)
)""",
    f"""CREATE TABLE IF NOT EXISTS turn_snapshots (
  snapshot_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conv_id {_ID},
  session_id {_ID},
  turn_id {_ID},
  phase {_ID},
  created_at_ms BIGINT NOT NULL,
  payload TEXT NOT NULL,
  runtime_key {_ID} DEFAULT '',
  inference_id {_ID} DEFAULT ''
)""",
    f"""CREATE TABLE IF NOT EXISTS conversations (
  conv_id {_ID} PRIMARY KEY,
  session_id {_ID} DEFAULT '',
  current_runtime_key {_ID} DEFAULT '',
  profile_slug {_ID} DEFAULT '',
  created_at_ms BIGINT NOT NULL DEFAULT 0,
  last_activity_ms BIGINT NOT NULL DEFAULT 0
)""",
    *index_ddl(),
    # Append-only in the database itself: no UPDATE or DELETE of a snapshot, by anyone.
    """CREATE OR REPLACE FUNCTION turn_snapshots_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'turn_snapshots is append-only: % refused', TG_OP
    USING ERRCODE = 'restrict_violation';
END $$""",
    """CREATE OR REPLACE TRIGGER turn_snapshots_append_only
BEFORE UPDATE OR DELETE ON turn_snapshots
FOR EACH ROW EXECUTE FUNCTION turn_snapshots_append_only()""",
    # Write-once turns (persisters.write_once): a recorded non-empty value never changes.
    f"""CREATE OR REPLACE FUNCTION turns_write_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF (OLD.runtime_key <> '' AND NEW.runtime_key IS DISTINCT FROM OLD.runtime_key)
     OR (OLD.inference_id <> '' AND NEW.inference_id IS DISTINCT FROM OLD.inference_id) THEN
    RAISE EXCEPTION '{TURNS_REFUSAL}' USING ERRCODE = 'restrict_violation';
  END IF;
  RETURN NEW;
END $$""",
    # created only when missing: CREATE OR REPLACE TRIGGER locks the table against writers
    # even when nothing changes, and another process may be writing already
    """DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_trigger
                 WHERE tgname = 'turns_write_once' AND tgrelid = 'turns'::regclass) THEN
    CREATE TRIGGER turns_write_once BEFORE UPDATE ON turns
    FOR EACH ROW EXECUTE FUNCTION turns_write_once();
  END IF;
END $$""",
)

#: Rule 4 for a save that carries a runtime: insert the turn, or update it under the
#: write-once condition; no row comes back when a recorded value differs. ``xmax = 0``
#: tells an inserted row from an updated one (PostgreSQL's own upsert idiom).
_UPSERT_TURN = (
    f"INSERT INTO turns AS t {INSERT_TURN_VALUES} "
    "ON CONFLICT (conv_id, session_id, turn_id) DO UPDATE SET "
    "runtime_key = CASE WHEN t.runtime_key = '' THEN EXCLUDED.runtime_key "
    "ELSE t.runtime_key END, "
    "inference_id = CASE WHEN t.inference_id = '' THEN EXCLUDED.inference_id "
    "ELSE t.inference_id END, "
    "updated_at_ms = GREATEST(t.updated_at_ms, EXCLUDED.updated_at_ms), "
    "turn_metadata_json = COALESCE(%(metadata)s, t.turn_metadata_json), "
    "turn_data_json = COALESCE(%(data)s, t.turn_data_json) "
    "WHERE (t.runtime_key = '' OR EXCLUDED.runtime_key = '' "
    "OR t.runtime_key = EXCLUDED.runtime_key) "
    "AND (t.inference_id = '' OR EXCLUDED.inference_id = '' "
    "OR t.inference_id = EXCLUDED.inference_id) "
    "RETURNING t.runtime_key, t.inference_id, (xmax = 0) AS created"
)
#: The snapshot, appended in the same statement with the values the turn row holds: no row
#: from the turn write (a refusal) appends nothing.
_APPEND = (
    "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, "
    "payload, runtime_key, inference_id) SELECT %(conv_id)s, %(session_id)s, %(turn_id)s, "
    "%(phase)s, %(created)s, %(payload)s, turn.runtime_key, turn.inference_id FROM turn "
    "RETURNING snapshot_id, runtime_key, inference_id, (SELECT created FROM turn)"
)
#: A whole save in one statement: with a runtime (a new or an existing turn) ...
_SAVE = f"WITH turn AS ({_UPSERT_TURN}) {_APPEND}"
#: ... and without one (an existing turn only).
_SAVE_EXISTING = (
    f"WITH turn AS ({UPDATE_WRITE_ONCE} RETURNING runtime_key, inference_id, false AS created) "
    f"{_APPEND}"
)

_UPSERT_CONVERSATION = (
    f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (%(conv_id)s, %(session_id)s, "
    "%(current_runtime_key)s, %(profile_slug)s, %(at_ms)s, %(at_ms)s) "
    "ON CONFLICT (conv_id) DO UPDATE SET session_id = EXCLUDED.session_id, "
    "current_runtime_key = EXCLUDED.current_runtime_key, "
    "profile_slug = EXCLUDED.profile_slug, "
    "last_activity_ms = GREATEST(conversations.last_activity_ms, EXCLUDED.last_activity_ms) "
    f"RETURNING {CONVERSATION_COLUMNS}"
)


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "a postgresql:// store needs psycopg 3: pip install 'turnsim[postgres]'"
        ) from None
    return psycopg


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class PostgresDialect:
    """PostgreSQL for :class:`~persisters.server_store.ServerTurnStore`."""

    name = "postgresql"

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        if parts.scheme not in SCHEMES:
            raise StoreError(f"not a PostgreSQL DSN (postgresql://...): {self._redact(dsn)}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k == "schema"}
        self.schema = check_namespace(own.get("schema") or DEFAULT_SCHEMA, "schema")
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        self.conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        self.display = f"postgresql://{host}{port}{parts.path or '/'}"

    @staticmethod
    def _redact(dsn: str) -> str:
        parts = urlsplit(dsn)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def describe(self, namespace: str) -> str:
        return f"{self.display} schema {namespace}"

    def connect(self, namespace: str, *, read_only: bool) -> Any:
        psycopg = _driver()
        conn = psycopg.connect(self.conninfo, autocommit=True)
        try:
            conn.execute(f"SET search_path TO {_quote(namespace)}")
            if read_only:
                conn.execute("SET default_transaction_read_only = on")
        except BaseException:
            conn.close()
            raise
        return conn

    def _admin(self, sql: str) -> None:
        with _driver().connect(self.conninfo, autocommit=True) as conn:
            conn.execute(sql)

    def create_namespace(self, namespace: str) -> None:
        psycopg = _driver()
        # created by another process at the same moment: there it is
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            self._admin(f"CREATE SCHEMA IF NOT EXISTS {_quote(namespace)}")

    def drop_namespace(self, namespace: str) -> None:
        self._admin(f"DROP SCHEMA IF EXISTS {_quote(namespace)} CASCADE")

    def create_schema(self, cur: Any) -> None:
        cur.execute("BEGIN")
        try:
            # one process at a time creates a schema's tables (CREATE ... IF NOT EXISTS
            # is not safe against a concurrent create of the same name)
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema()))")
            for statement in DDL:
                cur.execute(statement)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def empty(self, cur: Any) -> None:
        # DELETE where the database lets it (cheap), TRUNCATE for the snapshots: it fires
        # no row trigger, so the append-only guard stays for everyone else
        cur.execute("DELETE FROM turns")
        cur.execute("DELETE FROM conversations")
        cur.execute("TRUNCATE turn_snapshots RESTART IDENTITY")

    def missing_tables(self, cur: Any) -> list[str]:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        present = {r[0] for r in cur.fetchall()}
        return [t for t in TABLES if t not in present]

    def begin(self, conn: Any, *, read_only: bool) -> None:
        conn.execute("BEGIN READ ONLY" if read_only else "BEGIN")

    def commit(self, conn: Any) -> None:
        conn.execute("COMMIT")

    def rollback(self, conn: Any) -> None:
        conn.execute("ROLLBACK")

    def insert_turn(self, cur: Any, params: dict[str, Any]) -> bool:
        cur.execute(
            f"INSERT INTO turns {INSERT_TURN_VALUES} "
            "ON CONFLICT (conv_id, session_id, turn_id) DO NOTHING",
            params,
        )
        return bool(cur.rowcount == 1)

    def save(self, cur: Any, params: dict[str, Any]) -> tuple[int, str, str, bool] | None:
        # one statement, one round trip: the turn row and its snapshot, or nothing
        cur.execute(_SAVE if params["runtime_key"] else _SAVE_EXISTING, params)
        row = cur.fetchone()
        return None if row is None else (int(row[0]), row[1], row[2], bool(row[3]))

    def insert_snapshot(self, cur: Any, params: dict[str, Any]) -> int:
        cur.execute(f"{INSERT_SNAPSHOT} RETURNING snapshot_id", params)
        return int(cur.fetchone()[0])

    def upsert_conversation(self, cur: Any, row: dict[str, Any]) -> tuple[Any, ...]:
        cur.execute(_UPSERT_CONVERSATION, row)
        return tuple(cur.fetchone())

    def error(self, exc: BaseException, doing: str) -> StoreError | None:
        psycopg = _driver()
        if not isinstance(exc, psycopg.Error):
            return None
        text = " ".join(str(exc).split())
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return PermanentStoreError(f"{doing}: {READ_ONLY} ({text})")
        transient = (
            psycopg.OperationalError,
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.LockNotAvailable,
        )
        if isinstance(exc, transient) and not isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return TransientStoreError(f"{doing}: {text}; retry later")
        return PermanentStoreError(f"{doing}: {text}")

    def is_broken(self, exc: BaseException) -> bool:
        psycopg = _driver()
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not (
            isinstance(exc, psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected)
        )


class PostgresTurnStore(ServerTurnStore):
    """TurnStore in one schema of a PostgreSQL database."""

    @classmethod
    async def open_dsn(
        cls,
        dsn: str,
        *,
        schema: str | None = None,
        scratch: bool = False,
        read_only: bool = False,
        on_conflict: ConflictPolicy = refuse_rewrite,
        max_batch: int = 1024,
    ) -> PostgresTurnStore:
        """Open the store the DSN names (``schema`` overrides its ``?schema=``); with
        ``scratch`` a fresh schema of its own, dropped on close."""
        dialect = PostgresDialect(dsn)
        if scratch:
            namespace = schema or scratch_name()
        else:
            namespace = check_namespace(schema, "schema") if schema else dialect.schema
        store = await cls.open(
            dialect,
            namespace,
            read_only=read_only,
            scratch=scratch,
            on_conflict=on_conflict,
            max_batch=max_batch,
        )
        assert isinstance(store, PostgresTurnStore)
        return store
