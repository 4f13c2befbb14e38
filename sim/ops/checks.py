"""The doctor's checks: for each, the columns it needs, its SQL, and how its rows are judged.

A check is a :class:`CheckSpec` in :data:`CHECKS`. Its SQL is built from the file's
columns (:class:`CheckContext`) and is exactly what an operator can paste into
``sqlite3``; its judge turns the rows into a severity (one of :data:`SEVERITIES`) and a
message that says what to do. :func:`sim.ops.doctor.doctor` runs them in order.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from persisters.schema import (
    PROJECTED_TABLES,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    TURNSIM,
    Layout,
    inference_sql,
    malformed_sql,
    runtime_sql,
    valid_sql,
)
from sim.ops.files import SPACE_SQL, FileSpace, mib

#: Timeline entity kinds that record a profile switch; their payload names the new
#: runtime under ``runtime_key``. The doctor accepts them as evidence for a pointer.
SWITCH_ENTITY_KINDS: tuple[str, ...] = ("profile_switch",)
#: Most serious first; a check's severity is one of these.
SEVERITIES: tuple[str, ...] = ("error", "warning", "info", "ok")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@attrs.frozen
class CheckContext:
    """What a check may know about the file: its connection, its path as given, the
    columns of each of its tables, and the layout it is of (turnsim's own by default)."""

    conn: sqlite3.Connection
    path: str
    columns: dict[str, frozenset[str]]
    layout: Layout = TURNSIM

    def has(self, need: str) -> bool:
        """Whether the file has ``need``, a ``"table.column"``."""
        table, _, column = need.partition(".")
        return column in self.columns.get(table, frozenset())


#: (rows, context) -> (severity, message).
Judge = Callable[[list[tuple[Any, ...]], CheckContext], tuple[str, str]]


@attrs.frozen
class CheckSpec:
    """One check: ``needs`` lists the ``"table.column"`` its SQL reads (it does not run
    without them), ``sql`` builds the statement, ``judge`` reads its rows."""

    name: str
    needs: tuple[str, ...]
    sql: Callable[[CheckContext], str]
    judge: Judge


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- integrity -------------------------------------------------------------------------


def _judge_integrity(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if rows == [("ok",)]:
        return "ok", "the database file is consistent"
    return "error", (
        f"SQLite reports {_plural(len(rows), 'problem')} in the file itself; fix this first: "
        "restore a backup (a migration leaves FILE.bak-v<N>) or recover with sqlite3's .recover"
    )


# --- schema version --------------------------------------------------------------------


def _judge_version(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def required_columns(layout: Layout = TURNSIM) -> tuple[tuple[str, str], ...]:
    """(table, column) pairs a current database of ``layout`` has, in table order."""
    out: list[tuple[str, str]] = []
    for table in layout.tables:
        extra = ("snapshot_id",) if table == "turn_snapshots" else ()
        addable = layout.addable.get(table, {})
        for column in (*layout.required.get(table, ()), *extra, *addable):
            if (table, column) not in out:
                out.append((table, column))
    return tuple(out)


def _columns_sql(ctx: CheckContext) -> str:
    values = ",\n    ".join(
        f"({_literal(t)}, {_literal(c)})" for t, c in required_columns(ctx.layout)
    )
    legacy = (
        "\nUNION ALL\n"
        "SELECT 'conversations', p.name, 'legacy pointer column (not history)'\n"
        "FROM pragma_table_info('conversations') p WHERE p.name = 'runtime_key'"
    )
    return (
        "WITH required(table_name, column_name) AS (VALUES\n"
        f"    {values})\n"
        "SELECT r.table_name, r.column_name,\n"
        "       CASE WHEN NOT EXISTS (SELECT 1 FROM sqlite_master m\n"
        "                             WHERE m.type = 'table' AND m.name = r.table_name)\n"
        "            THEN 'table missing' ELSE 'column missing' END AS problem\n"
        "FROM required r\n"
        "WHERE NOT EXISTS (SELECT 1 FROM pragma_table_info(r.table_name) p\n"
        "                  WHERE p.name = r.column_name)"
        # only turnsim's layout renamed its pointer column; the real one keeps runtime_key
        f"{legacy if ctx.layout.conversations == 'conversations' else ''}"
    )


def _judge_columns(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    total = len(required_columns(ctx.layout))
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


def required_indexes(layout: Layout = TURNSIM) -> tuple[tuple[str, str, str], ...]:
    """(index, table, "col, col DESC") for every index a current database has."""
    out = []
    for name, definition in layout.indexes.items():
        match = _INDEX_DEF.match(definition)
        if match is None:  # pragma: no cover - INDEXES is a constant of this package
            raise ValueError(f"cannot parse index definition {definition!r}")
        columns = ", ".join(" ".join(c.split()) for c in match.group(2).split(","))
        out.append((name, match.group(1), columns))
    return tuple(out)


def _indexes_sql(ctx: CheckContext) -> str:
    values = ",\n    ".join(
        f"({_literal(n)}, {_literal(t)}, {_literal(c)})" for n, t, c in required_indexes(ctx.layout)
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


def _judge_indexes(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", f"all {len(ctx.layout.indexes)} indexes are present with the expected columns"
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


# --- turns.updated_at_ms ---------------------------------------------------------------


def _updated_at_sql(ctx: CheckContext) -> str:
    return (
        "SELECT conv_id, session_id, turn_id, turn_created_at_ms, updated_at_ms\n"
        "FROM turns\n"
        "WHERE coalesce(updated_at_ms, 0) <= 0\n"
        "ORDER BY conv_id, session_id, turn_id"
    )


def _judge_updated_at(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", "every turn has a positive updated_at_ms"
    return "error", (
        f"{_plural(len(rows), 'turn')} with updated_at_ms = 0: the indexes "
        "turns_by_conv_runtime_updated / turns_by_conv_inference_updated order them by 0, so "
        "a runtime's history lists them out of time order (a migration that added the column "
        f"and never filled it). Run `turnsim db migrate {ctx.path}`: it sets "
        "turn_created_at_ms where positive, else the time of the migration"
    )


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


def _metadata_sql(ctx: CheckContext) -> str:
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


def _judge_metadata(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def _phases_sql(ctx: CheckContext) -> str:
    return (
        "SELECT conv_id, session_id, turn_id,\n"
        "       group_concat(phase || '=' || runtime_key, ', ') AS phases\n"
        "FROM (SELECT * FROM turn_snapshots ORDER BY snapshot_id)\n"
        "GROUP BY conv_id, session_id, turn_id\n"
        "HAVING count(DISTINCT nullif(runtime_key, '')) > 1\n"
        "ORDER BY conv_id, session_id, turn_id"
    )


def _judge_phases(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def _orphans_sql(ctx: CheckContext) -> str:
    return (
        "SELECT s.conv_id, s.session_id, s.turn_id, count(*) AS snapshots\n"
        "FROM turn_snapshots s\n"
        "WHERE NOT EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = s.conv_id\n"
        "                  AND t.session_id = s.session_id AND t.turn_id = s.turn_id)\n"
        "GROUP BY s.conv_id, s.session_id, s.turn_id\n"
        "ORDER BY s.conv_id, s.session_id, s.turn_id"
    )


def _judge_orphans(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    if not rows:
        return "ok", "every snapshot belongs to a row of turns"
    snapshots = sum(int(r[3]) for r in rows)
    return "warning", (
        f"{_plural(snapshots, 'snapshot')} of {_plural(len(rows), 'turn')} without a turns "
        "row (old turn rows purged without their snapshots, or a save that failed half-way): "
        "those turns are missing from per-turn listings; their runtime is only in the snapshots"
    )


# --- conversation pointer --------------------------------------------------------------


def _has_switch_evidence(ctx: CheckContext) -> bool:
    return all(ctx.has(f"timeline_entities.{c}") for c in ("conv_id", "kind", "payload_json"))


def _pointer_sql(ctx: CheckContext) -> str:
    table, pointer = ctx.layout.conversations, ctx.layout.pointer
    # The real layout calls the pointer runtime_key; the check shows it under its name.
    named = "" if pointer == "current_runtime_key" else " AS current_runtime_key"
    if "turns" not in ctx.layout.tables:  # a timeline database: its turns live elsewhere
        return (
            f"SELECT conv_id, {pointer}{named}, 'no turns in this file' AS verdict,\n"
            "       NULL AS turn_runtime_keys\n"
            f"FROM {table}\n"
            f"WHERE {pointer} <> ''\n"
            "ORDER BY conv_id"
        )
    evidence = ""
    if _has_switch_evidence(ctx):
        kinds = ", ".join(_literal(k) for k in SWITCH_ENTITY_KINDS)
        evidence = (
            "      WHEN EXISTS (SELECT 1 FROM timeline_entities e\n"
            f"                   WHERE e.conv_id = c.conv_id AND e.kind IN ({kinds})\n"
            "                     AND CASE WHEN json_valid(e.payload_json)\n"
            "                         THEN json_extract(e.payload_json, '$.runtime_key') END\n"
            f"                         = c.{pointer})\n"
            "        THEN 'explained by a recorded switch'\n"
        )
    return (
        "WITH verdicts AS (\n"
        f"  SELECT c.conv_id, c.{pointer}{named},\n"
        "    CASE\n"
        "      WHEN NOT EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id)\n"
        "        THEN 'no turns in this file'\n"
        "      WHEN EXISTS (SELECT 1 FROM turns t WHERE t.conv_id = c.conv_id\n"
        f"                   AND t.runtime_key = c.{pointer})\n"
        "        THEN 'used by a turn'\n"
        f"{evidence}"
        "      ELSE 'unexplained'\n"
        "    END AS verdict,\n"
        "    (SELECT group_concat(DISTINCT t.runtime_key) FROM turns t\n"
        "     WHERE t.conv_id = c.conv_id AND t.runtime_key <> '') AS turn_runtime_keys\n"
        f"  FROM {table} c\n"
        f"  WHERE c.{pointer} <> '')\n"
        "SELECT conv_id, current_runtime_key, verdict, turn_runtime_keys\n"
        "FROM verdicts\n"
        "WHERE verdict <> 'used by a turn'\n"
        "ORDER BY verdict = 'unexplained' DESC, verdict, conv_id"
    )


def _judge_pointer(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def _unknown_sql(ctx: CheckContext) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(table)} AS table_name, count(*) AS rows,\n"
        "       coalesce(sum(runtime_key = ''), 0) AS unknown_runtime_key,\n"
        "       coalesce(sum(inference_id = ''), 0) AS unknown_inference_id\n"
        f"FROM {table}"
        for table, _, _ in PROJECTED_TABLES
    )


def _judge_unknown(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def _malformed_sql(ctx: CheckContext) -> str:
    return "\nUNION ALL\n".join(
        f"SELECT {_literal(table)} AS table_name, conv_id, session_id, turn_id,\n"
        f"       {_MALFORMED_IDENTITY.get(table, 'NULL AS phase, NULL AS created_at_ms')},\n"
        f"       length({doc}) AS length, substr({doc}, 1, 40) AS document_start\n"
        f"FROM {table}\n"
        f"WHERE {malformed_sql(doc, prefix)}"
        for table, doc, prefix in PROJECTED_TABLES
    )


def _judge_malformed(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
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


def _judge_space(rows: list[tuple[Any, ...]], ctx: CheckContext) -> tuple[str, str]:
    space = FileSpace(*rows[0])
    free = f"{mib(space.free_bytes)} of free pages in {mib(space.database_bytes)}"
    if not space.worth_compacting:
        return "ok", free
    return "info", (
        f"{free} ({space.free_share:.0%}; e.g. the old pages of a table "
        "a migration rebuilt, or deleted rows). Later writes reuse them; "
        f"`turnsim db migrate {ctx.path} --vacuum` returns them to the disk"
    )


def pointer_check(layout: Layout) -> CheckSpec:
    """The ``conversation_pointer`` check of ``layout`` (its table, its pointer column)."""
    table, pointer = layout.conversations, layout.pointer
    turns = ("turns.conv_id", "turns.runtime_key") if "turns" in layout.tables else ()
    needs = (f"{table}.conv_id", f"{table}.{pointer}", *turns)
    return CheckSpec("conversation_pointer", needs, _pointer_sql, _judge_pointer)


#: The checks of turnsim's layout, most serious first; findings keep this order within a
#: severity. :func:`checks_for` gives another layout's.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("integrity", (), lambda ctx: "PRAGMA integrity_check", _judge_integrity),
    CheckSpec("schema_version", (), lambda ctx: "PRAGMA user_version", _judge_version),
    CheckSpec("required_columns", (), _columns_sql, _judge_columns),
    CheckSpec("required_indexes", (), _indexes_sql, _judge_indexes),
    CheckSpec(
        "turns_updated_at",
        tuple(
            f"turns.{c}"
            for c in ("conv_id", "session_id", "turn_id", "turn_created_at_ms", "updated_at_ms")
        ),
        _updated_at_sql,
        _judge_updated_at,
    ),
    CheckSpec("column_vs_metadata", _metadata_needs(), _metadata_sql, _judge_metadata),
    CheckSpec(
        "phase_runtime_agreement",
        tuple(
            f"turn_snapshots.{c}"
            for c in ("conv_id", "session_id", "turn_id", "phase", "runtime_key", "snapshot_id")
        ),
        _phases_sql,
        _judge_phases,
    ),
    CheckSpec(
        "orphan_snapshots",
        tuple(f"{t}.{c}" for t in ("turns", "turn_snapshots") for c in REQUIRED_COLUMNS["turns"]),
        _orphans_sql,
        _judge_orphans,
    ),
    pointer_check(TURNSIM),
    CheckSpec(
        "unknown_rows",
        tuple(f"{t}.{c}" for t, _, _ in PROJECTED_TABLES for c in ("runtime_key", "inference_id")),
        _unknown_sql,
        _judge_unknown,
    ),
    CheckSpec("malformed_metadata", _malformed_needs(), _malformed_sql, _judge_malformed),
    CheckSpec("free_pages", (), lambda ctx: SPACE_SQL, _judge_space),
)
