"""``turnsim db doctor DSN``: read-only checks of a server store, each with its SQL.

The same report as :func:`sim.ops.doctor.doctor` (a :class:`~sim.ops.doctor.DoctorReport`
of :class:`~sim.ops.doctor.Check`), for the namespace a PostgreSQL or MySQL DSN names.
Every statement is in that server's dialect and runs on a read-only session, so an
operator can paste it into ``psql`` or ``mysql`` and see the same rows. The checks that
read history are SQLite's (:mod:`sim.ops.checks`) with the dialect's aggregate; the ones
that read the file itself (integrity, schema version, free pages) have no server
equivalent, and the metadata ones need JSON functions PostgreSQL 15 cannot use safely on
text that may not be JSON: they are not run, and the report says so.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import attrs

from persisters.server_sql import index_ddl
from persisters.stores import StoreSpec, StoreSpecError
from sim.ops.checks import (
    CheckContext,
    _judge_orphans,
    _judge_phases,
    _judge_pointer,
    _judge_unknown,
    _literal,
    _orphans_sql,
    required_columns,
)
from sim.ops.doctor import MAX_RESULT_ROWS, Check, DoctorReport

#: Columns only turnsim's SQLite files have: a run's claim on its scenario and the run id
#: on each snapshot (schema 3; a server namespace is kept per run by ``--db NAME``).
SQLITE_ONLY_COLUMNS = frozenset(
    {("turn_snapshots", "run_id"), ("scenario_runs", "scenario"), ("scenario_runs", "run_id")}
)


def server_columns() -> tuple[tuple[str, str], ...]:
    """The (table, column) pairs a server store's namespace has."""
    return tuple(tc for tc in required_columns() if tc not in SQLITE_ONLY_COLUMNS)


#: Checks of a SQLite file that mean nothing on a server, and why.
NOT_ON_A_SERVER: dict[str, str] = {
    "integrity": "the server keeps its own files consistent",
    "schema_version": "the server store's schema is created whole on first open",
    "column_vs_metadata": (
        "the store writes the columns and the payload in one statement; a JSON check of "
        "arbitrary text is not portable"
    ),
    "malformed_metadata": "needs JSON validation of arbitrary text, not portable",
    "free_pages": "the server manages its own space",
}

Judge = Callable[[list[tuple[Any, ...]], CheckContext], tuple[str, str]]


@attrs.frozen
class ServerCheck:
    name: str
    sql: Callable[[str], str]  # dialect -> statement
    judge: Judge


def _current(dialect: str) -> str:
    return "current_schema()" if dialect == "postgresql" else "DATABASE()"


def _aggregate(dialect: str, expr: str, order: str) -> str:
    if dialect == "postgresql":
        return f"string_agg({expr}, ', ' ORDER BY {order})"
    return f"GROUP_CONCAT({expr} ORDER BY {order} SEPARATOR ', ')"


def _concat(dialect: str, *parts: str) -> str:
    return " || ".join(parts) if dialect == "postgresql" else f"CONCAT({', '.join(parts)})"


def _columns_sql(dialect: str) -> str:
    required = "\n    UNION ALL ".join(
        f"SELECT {_literal(t)} AS table_name, {_literal(c)} AS column_name"
        for t, c in server_columns()
    )
    return (
        f"WITH required AS (\n    {required})\n"
        "SELECT r.table_name, r.column_name\n"
        "FROM required r\n"
        "WHERE NOT EXISTS (SELECT 1 FROM information_schema.columns c\n"
        f"                  WHERE c.table_schema = {_current(dialect)}\n"
        "                    AND c.table_name = r.table_name\n"
        "                    AND c.column_name = r.column_name)\n"
        "ORDER BY r.table_name, r.column_name"
    )


def _judge_columns(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", f"all {len(server_columns())} required columns are present"
    missing = ", ".join(f"{r[0]}.{r[1]}" for r in rows)
    return "error", (
        f"missing column(s) {missing}: not a turnsim store, or one from another version; "
        "open it once for writing (turnsim run --store DSN --db NAME) to create what is missing"
    )


def _index_names() -> list[str]:
    return [s.removeprefix("CREATE INDEX IF NOT EXISTS ").split(" ")[0] for s in index_ddl()]


def _indexes_sql(dialect: str) -> str:
    required = "\n    UNION ALL ".join(
        f"SELECT {_literal(n)} AS index_name" for n in _index_names()
    )
    if dialect == "postgresql":
        actual = "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    else:
        actual = (
            "SELECT index_name FROM information_schema.statistics WHERE table_schema = DATABASE()"
        )
    return (
        f"WITH required AS (\n    {required})\n"
        "SELECT r.index_name FROM required r\n"
        f"WHERE r.index_name NOT IN ({actual})\n"
        "ORDER BY r.index_name"
    )


def _judge_indexes(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", f"all {len(_index_names())} indexes are present"
    return "error", (
        f"missing index(es) {', '.join(r[0] for r in rows)}: reads by conversation and runtime "
        "scan the table; open the store once for writing to create them"
    )


def _triggers_sql(dialect: str) -> str:
    return (
        "SELECT event_manipulation, trigger_name FROM information_schema.triggers\n"
        f"WHERE trigger_schema = {_current(dialect)} AND event_object_table = 'turn_snapshots'\n"
        "ORDER BY event_manipulation, trigger_name"
    )


def _judge_triggers(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    events = {str(r[0]).upper() for r in rows}
    missing = [e for e in ("UPDATE", "DELETE") if e not in events]
    if not missing:
        return "ok", "turn_snapshots refuses UPDATE and DELETE (append-only in the database)"
    return "warning", (
        f"nothing in the database refuses {' or '.join(missing)} of turn_snapshots: snapshots "
        "are append-only only by the writers' habit; open the store once for writing to add it"
    )


def _turn_triggers_sql(dialect: str) -> str:
    return (
        "SELECT trigger_name FROM information_schema.triggers\n"
        f"WHERE trigger_schema = {_current(dialect)} AND event_object_table = 'turns'\n"
        "  AND event_manipulation = 'UPDATE' AND trigger_name = 'turns_write_once'"
    )


def _judge_turn_triggers(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if rows:
        return "ok", "turns refuses an UPDATE that changes a recorded runtime_key/inference_id"
    return "warning", (
        "nothing in the database refuses rewriting a turn's recorded runtime_key or "
        "inference_id; open the store once for writing to add the write-once trigger"
    )


def _phases_sql(dialect: str) -> str:
    phases = _aggregate(dialect, _concat(dialect, "phase", "'='", "runtime_key"), "snapshot_id")
    return (
        f"SELECT conv_id, session_id, turn_id,\n       {phases} AS phases\n"
        "FROM turn_snapshots\n"
        "GROUP BY conv_id, session_id, turn_id\n"
        "HAVING count(DISTINCT nullif(runtime_key, '')) > 1\n"
        "ORDER BY conv_id, session_id, turn_id"
    )


def _pointer_sql(dialect: str) -> str:
    keys = _aggregate(dialect, "DISTINCT t.runtime_key", "t.runtime_key")
    return (
        "WITH verdicts AS (\n"
        "  SELECT c.conv_id, c.current_runtime_key,\n"
        "    CASE\n"
        "      WHEN NOT EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id)\n"
        "        THEN 'no turns in this file'\n"
        "      WHEN EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id\n"
        "                   AND t.runtime_key = c.current_runtime_key)\n"
        "        THEN 'used by a turn'\n"
        "      ELSE 'unexplained'\n"
        "    END AS verdict,\n"
        f"    (SELECT {keys} FROM turns t\n"
        "     WHERE t.conv_id = c.conv_id AND t.runtime_key <> '') AS turn_runtime_keys\n"
        "  FROM conversations c\n"
        "  WHERE c.current_runtime_key <> '')\n"
        "SELECT conv_id, current_runtime_key, verdict, turn_runtime_keys\n"
        "FROM verdicts\n"
        "WHERE verdict <> 'used by a turn'\n"
        "ORDER BY CASE WHEN verdict = 'unexplained' THEN 0 ELSE 1 END, verdict, conv_id"
    )


def _unknown_sql(dialect: str) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(table)} AS table_name, count(*) AS row_count,\n"
        "       coalesce(sum(CASE WHEN runtime_key = '' THEN 1 ELSE 0 END), 0)"
        " AS unknown_runtime_key,\n"
        "       coalesce(sum(CASE WHEN inference_id = '' THEN 1 ELSE 0 END), 0)"
        " AS unknown_inference_id\n"
        f"FROM {table}"
        for table in ("turns", "turn_snapshots")
    )


#: A check context without a file: the server checks' judges read only ``path`` from it.
_NO_FILE = CheckContext(None, "", {})  # type: ignore[arg-type]

#: The checks, in the order they run (names as in :data:`sim.ops.checks.CHECKS`).
SERVER_CHECKS: tuple[ServerCheck, ...] = (
    ServerCheck("required_columns", _columns_sql, _judge_columns),
    ServerCheck("required_indexes", _indexes_sql, _judge_indexes),
    ServerCheck("append_only_snapshots", _triggers_sql, _judge_triggers),
    ServerCheck("write_once_turns", _turn_triggers_sql, _judge_turn_triggers),
    ServerCheck("phase_runtime_agreement", _phases_sql, _judge_phases),
    ServerCheck("orphan_snapshots", lambda dialect: _orphans_sql(_NO_FILE), _judge_orphans),
    ServerCheck("conversation_pointer", _pointer_sql, _judge_pointer),
    ServerCheck("unknown_rows", _unknown_sql, _judge_unknown),
)

#: What each check needs to run: the tables it reads.
_NEEDS: dict[str, tuple[str, ...]] = {
    "phase_runtime_agreement": ("turn_snapshots",),
    "orphan_snapshots": ("turns", "turn_snapshots"),
    "conversation_pointer": ("turns", "conversations"),
    "unknown_rows": ("turns", "turn_snapshots"),
    "append_only_snapshots": ("turn_snapshots",),
    "write_once_turns": ("turns",),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    if isinstance(value, decimal.Decimal):  # sums come back as decimals
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def doctor_server(spec_text: str) -> DoctorReport:
    """Run :data:`SERVER_CHECKS` on the namespace a server DSN names, read-only.

    Raises :class:`~persisters.errors.StoreError` when the server cannot be reached; a
    namespace without turnsim tables is reported (``required_columns``), not raised.
    """
    spec = StoreSpec.parse(spec_text)
    if not spec.is_server:
        raise StoreSpecError(f"{spec_text!r} is not a server DSN")
    dialect, namespace = spec.server()
    ctx = CheckContext(None, spec.label, {})  # type: ignore[arg-type]
    label = dialect.describe(namespace)
    try:
        conn = dialect.connect(namespace, read_only=True)
    except Exception as exc:
        error = dialect.error(exc, f"{label}: cannot connect")
        raise (error or exc) from None
    checks: list[Check] = []
    try:
        with conn.cursor() as cur:
            missing = set(dialect.missing_tables(cur))
            for spec_check in SERVER_CHECKS:
                sql = spec_check.sql(dialect.name)
                lacking = [t for t in _NEEDS.get(spec_check.name, ()) if t in missing]
                if lacking:
                    checks.append(
                        Check(
                            spec_check.name,
                            "info",
                            sql,
                            (),
                            (),
                            0,
                            f"not run: table(s) {', '.join(lacking)} missing",
                            ran=False,
                        )
                    )
                    continue
                try:
                    cur.execute(sql)
                    columns = tuple(d[0] for d in cur.description or ())
                    rows = [tuple(_jsonable(v) for v in r) for r in cur.fetchall()]
                except Exception as exc:
                    error = dialect.error(exc, "the check's SQL failed")
                    if error is None:
                        raise
                    checks.append(Check(spec_check.name, "error", sql, (), (), 0, str(error)))
                    continue
                severity, message = spec_check.judge(rows, ctx)
                checks.append(
                    Check(
                        spec_check.name,
                        severity,
                        sql,
                        columns,
                        tuple(rows[:MAX_RESULT_ROWS]),
                        len(rows),
                        message,
                    )
                )
    finally:
        conn.close()
    return DoctorReport(label, tuple(checks))
