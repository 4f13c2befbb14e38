"""A runtime nested one object deeper, ``{"profile": {"slug": ...}}``: read as the real
extraction read it at the cutover, by the migration's backfill and by a save alike
(``docs/migration-playbook.md``, "Nested runtime objects")."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from persisters import migration, schema
from persisters.model import FINAL, Turn, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from sim.ops.doctor import doctor

PLAYBOOK = Path(__file__).resolve().parents[2] / "docs" / "migration-playbook.md"
RT = "geppetto.runtime@v1"
INF = "geppetto.inference_id@v1"

#: turn id -> (metadata, the runtime the backfill and a save project from it)
ROWS = {
    "nested": ({RT: {"profile": {"slug": "planner"}}, INF: "i1"}, "planner"),
    "nested-key": ({RT: {"profile": {"runtime_key": "planner@v2"}}, INF: "i2"}, "planner@v2"),
    "nested-empty": (
        {RT: {"profile": {"slug": ""}}, "runtime": "legacy@v1", INF: "i3"},
        "legacy@v1",
    ),
    # deeper than one object inside the runtime object: not read, honestly unknown
    "too-deep": ({RT: {"profile": {"profile": {"slug": "deep"}}}, INF: "i4"}, ""),
}


def old_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.executescript(schema.OLD_TURNS_SCHEMA)
        for n, (turn_id, (metadata, _)) in enumerate(ROWS.items()):
            meta = json.dumps(metadata)
            conn.execute(
                "INSERT INTO turns VALUES ('c1', 's1', ?, ?, ?, '{}', ?)",
                (turn_id, 100 + n, meta, 100 + n),
            )
            payload = Turn(id=turn_id, metadata=metadata).serialize()
            conn.execute(
                "INSERT INTO turn_snapshots VALUES ('c1', 's1', ?, 'final', ?, ?)",
                (turn_id, 100 + n, payload),
            )
    finally:
        conn.close()


def test_the_migration_backfills_nested_runtimes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        report = migration.migrate(conn)
        turns = dict(conn.execute("SELECT turn_id, runtime_key FROM turns").fetchall())
        snapshots = dict(conn.execute("SELECT turn_id, runtime_key FROM turn_snapshots"))
    finally:
        conn.close()
    expected = {turn_id: runtime for turn_id, (_, runtime) in ROWS.items()}
    assert turns == expected
    assert snapshots == expected
    assert report.unknown["turns.runtime_key"] == 1  # too-deep
    # the columns agree with the metadata as the doctor projects it
    assert doctor(path).check("column_vs_metadata").severity == "ok"
    # the playbook's query (4.8) lists every nested runtime object, the unread one with ''
    blocks = re.findall(r"^```sql\n(.*?)^```", PLAYBOOK.read_text(), flags=re.S | re.M)
    (block,) = [b for b in blocks if "AS alias" in b]
    conn = sqlite3.connect(path)
    try:
        listed = {(r[1], r[2]) for r in conn.execute(block)}
    finally:
        conn.close()
    assert listed == {(turn_id, runtime) for turn_id, (_, runtime) in ROWS.items()}


@pytest.mark.anyio
async def test_a_save_projects_a_nested_runtime_from_its_metadata(tmp_path: Path) -> None:
    """A writer that passes no explicit runtime (the command-line persister passes only a
    plain string) gets the same column the backfill gives an old row."""
    async with await SQLiteTurnStore.open(tmp_path / "new.db") as store:
        for turn_id, (metadata, runtime) in ROWS.items():
            if not runtime:
                continue
            payload = Turn(id=turn_id, metadata=metadata).serialize()
            result = await store.save("c1", "s1", turn_id, FINAL, 5, payload, TurnSaveOptions())
            assert result.runtime_key == runtime
