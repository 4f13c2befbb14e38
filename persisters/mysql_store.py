"""The MySQL/MariaDB TurnStore: :class:`~persisters.server_store.ServerTurnStore` over PyMySQL.

A DSN names the server and a database: ``mysql://root@127.0.0.1:3306/test`` (``mariadb://``
is the same). The store's tables live in that database (MySQL has no schemas inside a
database), created on first open. PyMySQL is an optional dependency (``pip install
'turnsim[mysql]'``); it is imported only when a store opens.

What MySQL does here that the shared SQL does not say: identifiers are ``VARCHAR(255)``
in ``utf8mb4_nopad_bin`` (exact comparison, ``'a'`` is not ``'a '`` nor ``'A'``, and code
point order, as Python sorts); payloads are ``LONGTEXT``; a new turn is a plain
``INSERT`` whose duplicate-key error means "exists" (MySQL rolls back only that
statement, not the transaction); ids come back as ``lastrowid``; sessions run READ
COMMITTED and report matched rows (``CLIENT.FOUND_ROWS``), so the write-once update's
row count means "the row matched".
"""

from __future__ import annotations

import getpass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from persisters.errors import PermanentStoreError, StoreError, TransientStoreError
from persisters.model import PRE_INFERENCE
from persisters.server_database import READ_ONLY
from persisters.server_sql import (
    CONVERSATION_COLUMNS,
    GET_CONVERSATION,
    INSERT_SNAPSHOT,
    INSERT_TURN_VALUES,
    SELECT_STORED,
    TABLES,
    UPDATE_WRITE_ONCE,
    check_namespace,
    index_ddl,
    scratch_name,
)
from persisters.server_store import ServerTurnStore
from persisters.store import ConflictPolicy, refuse_rewrite
from persisters.write_once import TURNS_REFUSAL

SCHEMES = ("mysql", "mariadb")
COLLATION = "utf8mb4_nopad_bin"

_ID = "VARCHAR(255) NOT NULL"


def _indexes(table: str) -> str:
    """The schema's indexes on ``table`` as clauses of its CREATE TABLE (one DDL statement
    per table: each DDL statement costs InnoDB a few fsyncs)."""
    clauses = []
    for statement in index_ddl():
        name, _, definition = statement.removeprefix("CREATE INDEX IF NOT EXISTS ").partition(
            " ON "
        )
        on, _, columns = definition.partition(" ")
        if on == table:
            clauses.append(f",\n  INDEX {name} {columns}")
    return "".join(clauses)


_TABLE = f"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION}"
DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS turns (
  conv_id {_ID},
  session_id {_ID},
  turn_id {_ID},
  turn_created_at_ms BIGINT NOT NULL DEFAULT 0,
  turn_metadata_json LONGTEXT NOT NULL DEFAULT '{{}}',
  turn_data_json LONGTEXT NOT NULL DEFAULT '{{}}',
  updated_at_ms BIGINT NOT NULL DEFAULT 0,
  runtime_key {_ID} DEFAULT '',
  inference_id {_ID} DEFAULT '',
  turn_seq BIGINT NOT NULL AUTO_INCREMENT UNIQUE,
  PRIMARY KEY (conv_id, session_id, turn_id){_indexes("turns")}
) {_TABLE}""",
    f"""CREATE TABLE IF NOT EXISTS turn_snapshots (
  snapshot_id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  conv_id {_ID},
  session_id {_ID},
  turn_id {_ID},
  phase {_ID},
  created_at_ms BIGINT NOT NULL,
  payload LONGTEXT NOT NULL,
  runtime_key {_ID} DEFAULT '',
  inference_id {_ID} DEFAULT ''{_indexes("turn_snapshots")}
) {_TABLE}""",
    f"""CREATE TABLE IF NOT EXISTS conversations (
  conv_id {_ID} PRIMARY KEY,
  session_id {_ID} DEFAULT '',
  current_runtime_key {_ID} DEFAULT '',
  profile_slug {_ID} DEFAULT '',
  created_at_ms BIGINT NOT NULL DEFAULT 0,
  last_activity_ms BIGINT NOT NULL DEFAULT 0
) {_TABLE}""",
    # Append-only in the database itself: no UPDATE or DELETE of a snapshot, by anyone.
    *(
        f"CREATE TRIGGER IF NOT EXISTS turn_snapshots_no_{op.lower()} BEFORE {op} ON "
        "turn_snapshots FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = "
        f"'turn_snapshots is append-only: {op} refused'"
        for op in ("UPDATE", "DELETE")
    ),
    # Write-once turns (persisters.write_once): a recorded non-empty value never changes.
    "CREATE TRIGGER IF NOT EXISTS turns_write_once BEFORE UPDATE ON turns FOR EACH ROW "
    "IF (OLD.runtime_key <> '' AND NOT (NEW.runtime_key <=> OLD.runtime_key)) "
    "OR (OLD.inference_id <> '' AND NOT (NEW.inference_id <=> OLD.inference_id)) THEN "
    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{TURNS_REFUSAL}'; END IF",
)

_UPSERT_CONVERSATION = (
    f"INSERT INTO conversations ({CONVERSATION_COLUMNS}) VALUES (%(conv_id)s, %(session_id)s, "
    "%(current_runtime_key)s, %(profile_slug)s, %(at_ms)s, %(at_ms)s) "
    "ON DUPLICATE KEY UPDATE session_id = VALUES(session_id), "
    "current_runtime_key = VALUES(current_runtime_key), "
    "profile_slug = VALUES(profile_slug), "
    "last_activity_ms = GREATEST(last_activity_ms, VALUES(last_activity_ms))"
)

#: Server error codes a retry may get past: lock wait timeout, deadlock.
_RETRYABLE = frozenset({1205, 1213})
#: Client error codes of a lost connection (it must be replaced).
_LOST = frozenset({2003, 2006, 2013, 2014, 2055})
_READ_ONLY_TRANSACTION = 1792
_DUPLICATE_KEY = 1062


def _driver() -> Any:
    try:
        import pymysql
    except ImportError:
        raise StoreError("a mysql:// store needs PyMySQL: pip install 'turnsim[mysql]'") from None
    return pymysql


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MySQLDialect:
    """MySQL / MariaDB for :class:`~persisters.server_store.ServerTurnStore`."""

    name = "mysql"

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        if parts.scheme not in SCHEMES:
            raise StoreError(f"not a MySQL DSN (mysql://user@host/database): {parts.scheme}://")
        database = unquote(parts.path.lstrip("/"))
        if not database:
            raise StoreError(
                f"mysql DSN names no database: {self._shown(parts)}; add one, e.g. "
                "mysql://root@127.0.0.1:3306/test"
            )
        self.database = check_namespace(database, "database")
        self.options: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 3306,
            "user": unquote(parts.username) if parts.username else getpass.getuser(),
            "password": unquote(parts.password) if parts.password else "",
            "charset": "utf8mb4",
            "autocommit": True,
        }
        for key, value in parse_qsl(parts.query):
            if key in ("unix_socket", "connect_timeout", "read_timeout", "write_timeout"):
                self.options[key] = int(value) if key.endswith("timeout") else value
            else:
                raise StoreError(
                    f"mysql DSN parameter {key!r} is not understood; known: unix_socket, "
                    "connect_timeout, read_timeout, write_timeout"
                )
        self.display = self._shown(parts)

    @staticmethod
    def _shown(parts: Any) -> str:
        port = f":{parts.port}" if parts.port else ""
        return f"mysql://{parts.hostname or 'localhost'}{port}"

    def describe(self, namespace: str) -> str:
        return f"{self.display}/{namespace}"

    def _connect(self, database: str | None) -> Any:
        pymysql = _driver()
        return pymysql.connect(
            **self.options,
            database=database,
            client_flag=pymysql.constants.CLIENT.FOUND_ROWS,
        )

    def connect(self, namespace: str, *, read_only: bool) -> Any:
        conn = self._connect(namespace)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET NAMES utf8mb4 COLLATE {COLLATION}")
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
                if read_only:
                    cur.execute("SET SESSION TRANSACTION READ ONLY")
        except BaseException:
            conn.close()
            raise
        return conn

    def _admin(self, sql: str) -> None:
        conn = self._connect(None)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_namespace(self, namespace: str) -> None:
        self._admin(
            f"CREATE DATABASE IF NOT EXISTS {_quote(namespace)} "
            f"CHARACTER SET utf8mb4 COLLATE {COLLATION}"
        )

    def drop_namespace(self, namespace: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {_quote(namespace)}")

    def create_schema(self, cur: Any) -> None:
        # one process at a time creates a database's tables, indexes and triggers
        cur.execute("SELECT GET_LOCK(CONCAT('turnsim:', DATABASE()), 60)")
        try:
            for statement in DDL:
                cur.execute(statement)
        finally:
            cur.execute("SELECT RELEASE_LOCK(CONCAT('turnsim:', DATABASE()))")

    def empty(self, cur: Any) -> None:
        # DELETE where the database lets it (cheap), TRUNCATE for the snapshots: it fires
        # no row trigger, so the append-only guard stays for everyone else
        cur.execute("DELETE FROM turns")
        cur.execute("DELETE FROM conversations")
        cur.execute("TRUNCATE TABLE turn_snapshots")

    def missing_tables(self, cur: Any) -> list[str]:
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        )
        present = {r[0] for r in cur.fetchall()}
        return [t for t in TABLES if t not in present]

    def begin(self, conn: Any, *, read_only: bool) -> None:
        with conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")

    def commit(self, conn: Any) -> None:
        conn.commit()

    def rollback(self, conn: Any) -> None:
        conn.rollback()

    def insert_turn(self, cur: Any, params: dict[str, Any]) -> bool:
        pymysql = _driver()
        try:
            cur.execute(f"INSERT INTO turns {INSERT_TURN_VALUES}", params)
        except pymysql.err.IntegrityError as exc:
            if exc.args[0] == _DUPLICATE_KEY:
                return False  # the turn exists: the statement alone was rolled back
            raise
        return True

    def save(self, cur: Any, params: dict[str, Any]) -> tuple[int, str, str, bool] | None:
        written = self._write_turn(cur, params)
        if written is None:
            return None
        created = written == "created"
        if not created and not (params["runtime_key"] and params["inference_id"]):
            # an empty value was kept or filled from the row: read what it holds now
            cur.execute(SELECT_STORED, params)
            params["runtime_key"], params["inference_id"] = cur.fetchone()
        # else: the row matched the write-once condition, so each stored value was empty
        # or equal to the carried one: the carried values are what it holds now
        snapshot_id = self.insert_snapshot(cur, params)
        return snapshot_id, params["runtime_key"], params["inference_id"], created

    def _write_turn(self, cur: Any, params: dict[str, Any]) -> str | None:
        """``"created"``, ``"updated"`` or None (nothing written)."""
        # MySQL's upsert cannot refuse, so: the conditional UPDATE (its matched-row
        # count), and the INSERT only for a turn it did not find. A pre_inference save
        # usually starts a turn: the INSERT goes first there, saving a statement.
        if (
            params["runtime_key"]
            and params["phase"] == PRE_INFERENCE
            and self.insert_turn(cur, params)
        ):
            return "created"
        cur.execute(UPDATE_WRITE_ONCE, params)
        if cur.rowcount == 1:
            return "updated"
        if not params["runtime_key"] or params["phase"] == PRE_INFERENCE:
            return None
        if self.insert_turn(cur, params):
            return "created"
        cur.execute(UPDATE_WRITE_ONCE, params)  # inserted by another writer meanwhile
        return "updated" if cur.rowcount == 1 else None

    def insert_snapshot(self, cur: Any, params: dict[str, Any]) -> int:
        cur.execute(INSERT_SNAPSHOT, params)
        return int(cur.lastrowid)

    def upsert_conversation(self, cur: Any, row: dict[str, Any]) -> tuple[Any, ...]:
        cur.execute(_UPSERT_CONVERSATION, row)
        cur.execute(GET_CONVERSATION, row)  # the row this transaction holds locked
        return tuple(cur.fetchone())

    def error(self, exc: BaseException, doing: str) -> StoreError | None:
        pymysql = _driver()
        if not isinstance(exc, pymysql.err.MySQLError):
            return None
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        text = " ".join(str(exc.args[1] if len(exc.args) > 1 else exc).split())
        if code == _READ_ONLY_TRANSACTION:
            return PermanentStoreError(f"{doing}: {READ_ONLY} ({text.rstrip('.')})")
        if code in _RETRYABLE or code in _LOST or isinstance(exc, pymysql.err.InterfaceError):
            return TransientStoreError(f"{doing}: {text} ({code}); retry later")
        return PermanentStoreError(f"{doing}: {text} ({code})")

    def is_broken(self, exc: BaseException) -> bool:
        pymysql = _driver()
        code = exc.args[0] if getattr(exc, "args", None) else 0
        return isinstance(exc, pymysql.err.InterfaceError) or code in _LOST


class MySQLTurnStore(ServerTurnStore):
    """TurnStore in one MySQL/MariaDB database."""

    @classmethod
    async def open_dsn(
        cls,
        dsn: str,
        *,
        database: str | None = None,
        scratch: bool = False,
        read_only: bool = False,
        on_conflict: ConflictPolicy = refuse_rewrite,
        max_batch: int = 1024,
    ) -> MySQLTurnStore:
        """Open the store in the DSN's database (or ``database``); with ``scratch`` a
        fresh database of its own, dropped on close."""
        dialect = MySQLDialect(dsn)
        if scratch:
            namespace = database or scratch_name()
        else:
            namespace = check_namespace(database, "database") if database else dialect.database
        store = await cls.open(
            dialect,
            namespace,
            read_only=read_only,
            scratch=scratch,
            on_conflict=on_conflict,
            max_batch=max_batch,
        )
        assert isinstance(store, MySQLTurnStore)
        return store
