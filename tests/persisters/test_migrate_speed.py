"""The migration's faster paths give exactly what the straightforward ones give.

``persisters.migration.migrate`` copies with a projection that makes fewer JSON calls than
``runtime_sql``/``inference_sql``, counts the report's numbers in one scan per table, and
sets connection pragmas for its transaction. Each shortcut is checked here against the
plain definition it replaces.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persisters import migration, schema
from persisters.errors import SchemaError
from persisters.model import INFERENCE_ID_KEYS, RUNTIME_KEYS, RUNTIME_OBJECT_FIELDS, WHITESPACE
from sim.ops.samples import make_old_turns_db

# ---------------------------------------------------------------------------------------
# the copy's projection equals CASE WHEN valid_sql THEN runtime_sql / inference_sql


@pytest.fixture(scope="module")
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


def _both(prefix: str) -> str:
    valid = schema.valid_sql(":doc", prefix)
    fast_runtime, fast_inference = schema.copy_projection_sql(":doc", prefix)
    return (
        f"SELECT CASE WHEN {valid} THEN {schema.runtime_sql(':doc', prefix)} ELSE '' END, "
        f"CASE WHEN {valid} THEN {schema.inference_sql(':doc', prefix)} ELSE '' END, "
        f"{fast_runtime}, {fast_inference}"
    )


BOTH = {prefix: _both(prefix) for prefix in ("$", "$.metadata")}


def assert_same(conn: sqlite3.Connection, doc: str, prefix: str) -> None:
    plain_runtime, plain_inference, runtime, inference = conn.execute(
        BOTH[prefix], {"doc": doc}
    ).fetchone()
    assert (runtime, inference) == (plain_runtime, plain_inference), doc


KEYS = st.sampled_from(
    [*RUNTIME_KEYS, *INFERENCE_ID_KEYS, *RUNTIME_OBJECT_FIELDS, "metadata", "noise", ""]
)
# NUL, escapes and whitespace included: only SQL is compared with SQL here.
TEXT = st.one_of(
    st.text(max_size=8),
    st.text(st.sampled_from(WHITESPACE), max_size=3),
    st.sampled_from(["inventory@v1", " planner@v1\n", "a\x00b", "\\u0000", "x\\y", '"q"']),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-4000, 4000).map(lambda n: n / 4), TEXT
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(KEYS, inner), max_size=4),
    max_leaves=12,
)


def encode(value: Any) -> str:
    """JSON text of ``value``; a list of pairs becomes an object, duplicate keys kept."""
    if isinstance(value, list) and all(isinstance(v, tuple) for v in value) and value:
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value)


PAIRS = st.lists(st.tuples(KEYS, VALUES), max_size=7)


@settings(max_examples=300, deadline=None)
@given(pairs=PAIRS, spaced=st.booleans())
def test_copy_projection_equals_the_plain_one(
    conn: sqlite3.Connection, pairs: list[tuple[str, Any]], spaced: bool
) -> None:
    metadata = "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in pairs) + "}"
    if spaced:
        metadata = metadata.replace(",", " ,\n ").replace(":", " : ")
    assert_same(conn, metadata, "$")
    assert_same(
        conn, f'{{"id":"t","blocks":[],"metadata":{metadata},"data":{metadata}}}', "$.metadata"
    )


@settings(max_examples=150, deadline=None)
@given(value=VALUES)
def test_copy_projection_equals_the_plain_one_for_any_metadata_shape(
    conn: sqlite3.Connection, value: Any
) -> None:
    assert_same(conn, encode(value), "$")
    assert_same(conn, f'{{"id":"t","metadata":{encode(value)}}}', "$.metadata")
    assert_same(conn, f"[{encode(value)}]", "$.metadata")


# Runtime objects inside runtime objects, to and past the depth the projection reads.
RUNTIME_OBJECTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(
        st.tuples(st.sampled_from([*RUNTIME_OBJECT_FIELDS, "noise"]), inner),
        min_size=1,
        max_size=4,
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(RUNTIME_KEYS), RUNTIME_OBJECTS), min_size=1))
def test_copy_projection_equals_the_plain_one_for_nested_runtime_objects(
    conn: sqlite3.Connection, pairs: list[tuple[str, Any]]
) -> None:
    metadata = "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in pairs) + "}"
    assert_same(conn, metadata, "$")
    assert_same(conn, f'{{"metadata":{metadata}}}', "$.metadata")


@pytest.mark.parametrize(
    "doc",
    ["", "  ", "not json", "{", "[]", "null", "42", '"text"', "{}", '{"metadata": null}'],
)
@pytest.mark.parametrize("prefix", ["$", "$.metadata"])
def test_copy_projection_of_unusable_documents(
    conn: sqlite3.Connection, doc: str, prefix: str
) -> None:
    assert_same(conn, doc, prefix)


# ---------------------------------------------------------------------------------------
# the report's numbers equal plain count(*) queries


def plain_counts(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, int]]:
    """(unknown per column, malformed per table) by one count(*) per number."""
    unknown, malformed = {}, {}
    for table, doc, prefix in schema.PROJECTED_TABLES:
        cols = schema.table_columns(conn, table)
        for col in schema.PROJECTED_COLUMNS:
            where = f" WHERE {col} = ''" if col in cols else ""
            query = f"SELECT count(*) FROM {table}{where}"
            unknown[f"{table}.{col}"] = conn.execute(query).fetchone()[0] if cols else 0
        if cols:
            query = f"SELECT count(*) FROM {table} WHERE {schema.malformed_sql(doc, prefix)}"
            malformed[table] = conn.execute(query).fetchone()[0]
    return unknown, malformed


def check_report(path: Path) -> migration.MigrationReport:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        before, _ = plain_counts(conn)
        report = migration.migrate(conn)
        after, malformed = plain_counts(conn)
    finally:
        conn.close()
    assert report.unknown == after
    assert report.malformed == malformed
    assert report.backfilled == {k: before[k] - after[k] for k in before}
    assert list(report.backfilled) == list(before)  # the order the report has always had
    return report


def test_report_numbers_of_an_old_sample(tmp_path: Path) -> None:
    stats = make_old_turns_db(tmp_path / "old.db", conversations=40, turns=8)
    report = check_report(tmp_path / "old.db")
    assert report.malformed == stats.malformed and report.unknown == stats.unknown
    assert report.backfilled == stats.backfilled


@pytest.mark.parametrize("snapshot_id", [False, True])
def test_report_numbers_when_the_old_tables_already_had_values(
    tmp_path: Path, snapshot_id: bool
) -> None:
    """Values already present are not all from valid metadata: every row is checked."""
    path = tmp_path / "partial.db"
    make_old_turns_db(path, conversations=30, turns=6)
    conn = sqlite3.connect(path, isolation_level=None)
    for table in ("turns", "turn_snapshots"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN runtime_key TEXT NOT NULL DEFAULT ''")
    # a value on a malformed row, and on a row whose metadata names another runtime
    conn.execute("UPDATE turns SET runtime_key = 'kept@v1' WHERE rowid % 3 = 0")
    conn.execute("UPDATE turn_snapshots SET runtime_key = 'kept@v1' WHERE rowid % 3 = 0")
    if snapshot_id:  # already append-only: no rebuild, the columns are added instead
        conn.execute(
            "CREATE TABLE s2 (snapshot_id INTEGER PRIMARY KEY, conv_id TEXT NOT NULL, "
            "session_id TEXT NOT NULL, turn_id TEXT NOT NULL, phase TEXT NOT NULL, "
            "created_at_ms INTEGER NOT NULL, payload TEXT NOT NULL, "
            "runtime_key TEXT NOT NULL DEFAULT '')"
        )
        conn.execute(
            "INSERT INTO s2 (conv_id, session_id, turn_id, phase, created_at_ms, payload, "
            "runtime_key) SELECT conv_id, session_id, turn_id, phase, created_at_ms, "
            "payload, runtime_key FROM turn_snapshots"
        )
        conn.execute("DROP TABLE turn_snapshots")
        conn.execute("ALTER TABLE s2 RENAME TO turn_snapshots")
    conn.close()
    report = check_report(path)
    assert bool(report.tables_rebuilt) is not snapshot_id
    assert report.malformed["turns"] > 0 and report.malformed["turn_snapshots"] > 0


def test_snapshot_ids_follow_time_then_conversation_session_turn_phase(tmp_path: Path) -> None:
    path = tmp_path / "ties.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema.OLD_TURNS_SCHEMA)
    rows = [
        ("c2", "s", "t1", "pre_inference", 5),
        ("c1", "s", "t1", "pre_inference", 5),
        ("c1", "s", "t1", "final", 5),
        ("c1", "s", "t0", "final", 9),
        ("c1", "s", "t0", "pre_inference", 1),
    ]
    conn.executemany("INSERT INTO turn_snapshots VALUES (?, ?, ?, ?, ?, '{}')", rows)
    migration.migrate(conn)
    got = conn.execute(
        "SELECT conv_id, session_id, turn_id, phase, created_at_ms FROM turn_snapshots "
        "ORDER BY snapshot_id"
    ).fetchall()
    conn.close()
    assert got == sorted(rows, key=lambda r: (r[4], r[0], r[1], r[2], r[3]))


# ---------------------------------------------------------------------------------------
# connection settings


def pragmas(conn: sqlite3.Connection) -> dict[str, Any]:
    return {
        name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in migration.MIGRATION_PRAGMAS
    }


def test_migration_pragmas_are_restored(tmp_path: Path) -> None:
    make_old_turns_db(tmp_path / "old.db", conversations=5, turns=3)
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    conn.execute("PRAGMA cache_size = -4096")
    before = pragmas(conn)
    migration.migrate(conn)
    assert pragmas(conn) == before
    conn.close()


def test_migration_pragmas_are_restored_after_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "blocking.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE turns (conv_id TEXT, session_id TEXT, turn_id TEXT, x NOT NULL)")
    before = pragmas(conn)
    with pytest.raises(SchemaError):
        migration.migrate(conn)
    assert pragmas(conn) == before and not conn.in_transaction
    conn.close()
