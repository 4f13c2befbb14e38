"""Write-once in the database itself: the SQLite triggers refuse rewriting history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from persisters.errors import TRIGGER_REFUSAL, TurnRewriteError
from persisters.memory_store import MemoryTurnStore
from persisters.migration import migrate
from persisters.model import FINAL, PRE_INFERENCE, TurnQuery, TurnSaveOptions
from persisters.sqlite_store import SQLiteTurnStore
from persisters.store import new_value_wins
from persisters.write_once import TRIGGERS, drop_triggers, missing_triggers
from sim.ops.doctor import doctor
from sim.ops.migrate import migrate_file

pytestmark = pytest.mark.anyio


async def _written(path: Path) -> Path:
    async with await SQLiteTurnStore.open(path) as store:
        rt = TurnSaveOptions("inventory@v1", "i1")
        await store.save("c1", "s1", "t1", PRE_INFERENCE, 10, '{"id": "t1"}', rt)
        await store.save("c1", "s1", "t2", FINAL, 20, '{"id": "t2"}', TurnSaveOptions("p@v1"))
    return path


async def test_a_new_database_has_the_triggers(tmp_path: Path) -> None:
    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path)
    assert missing_triggers(conn) == ()
    conn.close()
    assert doctor(path).check("write_once_triggers").severity == "ok"


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE turns SET runtime_key = 'forged@v9' WHERE turn_id = 't1'",
        "UPDATE turns SET inference_id = 'i9' WHERE turn_id = 't1'",
        "UPDATE turns SET runtime_key = '' WHERE turn_id = 't1'",
        "UPDATE turn_snapshots SET payload = '{}' WHERE turn_id = 't1'",
        "UPDATE turn_snapshots SET runtime_key = runtime_key",
        "DELETE FROM turn_snapshots WHERE turn_id = 't2'",
    ],
)
async def test_a_raw_sql_writer_cannot_rewrite_history(tmp_path: Path, sql: str) -> None:
    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path, isolation_level=None)
    before = conn.execute("SELECT * FROM turns ORDER BY turn_id").fetchall()
    with pytest.raises(sqlite3.IntegrityError, match="turnsim write-once"):
        conn.execute(sql)
    assert conn.execute("SELECT * FROM turns ORDER BY turn_id").fetchall() == before
    assert conn.execute("SELECT count(*) FROM turn_snapshots").fetchone() == (2,)
    drop_triggers(conn)  # without them the same statement goes through
    conn.execute(sql)
    conn.close()


async def test_filling_an_empty_value_and_other_columns_stay_allowed(tmp_path: Path) -> None:
    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("UPDATE turns SET inference_id = 'i2' WHERE turn_id = 't2'")  # was ''
    conn.execute("UPDATE turns SET updated_at_ms = 99, runtime_key = runtime_key")
    conn.execute(
        "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, "
        "payload) VALUES ('c1', 's1', 't3', 'final', 30, '{}')"
    )
    assert conn.execute("SELECT inference_id FROM turns WHERE turn_id = 't2'").fetchone() == ("i2",)
    conn.close()


async def test_the_store_maps_the_refusal_to_turn_rewrite_error(tmp_path: Path) -> None:
    """The ``upsert-overwrite`` policy lets the rewrite through; the file refuses it."""
    path = await _written(tmp_path / "a.db")
    async with await SQLiteTurnStore.open(path, on_conflict=new_value_wins) as store:
        with pytest.raises(TurnRewriteError) as caught:
            await store.save("c1", "s1", "t1", FINAL, 30, '{"id": "t1"}', TurnSaveOptions("p@v1"))
        error = caught.value
        assert error.by_trigger and TRIGGER_REFUSAL in str(error)
        assert (error.field, error.stored, error.attempted) == (
            "runtime_key",
            "inventory@v1",
            "p@v1",
        )
        assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "inventory@v1"
        assert len(await store.list(TurnQuery(turn_id="t1"))) == 1  # nothing appended
        # a save that changes nothing recorded still goes through under that policy
        await store.save("c1", "s1", "t1", FINAL, 40, '{"id": "t1"}', TurnSaveOptions())


async def test_the_memory_store_keeps_the_silent_overwrite_of_the_variant() -> None:
    """No Python guard: the memory store reproduces what the real system did."""
    store = MemoryTurnStore(on_conflict=new_value_wins)
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 10, "{}", TurnSaveOptions("a@v1"))
    await store.save("c1", "s1", "t1", FINAL, 20, "{}", TurnSaveOptions("b@v1"))
    assert (await store.get_turn("c1", "s1", "t1")).runtime_key == "b@v1"


async def test_migrate_installs_them_idempotently_and_reports_it(tmp_path: Path) -> None:
    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path, isolation_level=None)
    drop_triggers(conn)
    conn.close()
    assert doctor(path).check("write_once_triggers").severity == "warning"
    report, _ = migrate_file(path, backup=False)
    assert report.triggers_added == tuple(TRIGGERS) and report.changed
    assert doctor(path).check("write_once_triggers").severity == "ok"
    again, _ = migrate_file(path, backup=False)
    assert again.triggers_added == () and not again.changed


async def test_a_migration_that_backfills_works_under_the_triggers(tmp_path: Path) -> None:
    """The backfill writes ``turn_snapshots``: the migration lifts the triggers inside its
    transaction and puts them back."""
    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path, isolation_level=None)
    drop_triggers(conn)
    conn.execute("UPDATE turn_snapshots SET runtime_key = '' WHERE turn_id = 't1'")
    conn.execute(
        "UPDATE turn_snapshots SET payload = "
        '\'{"metadata": {"geppetto.runtime@v1": "inventory@v1"}}\' WHERE turn_id = \'t1\''
    )
    migrate(conn)  # installs the triggers
    conn.execute("PRAGMA user_version = 1")  # an older version: the backfill runs again
    report = migrate(conn)
    assert report.triggers_added == () and report.backfilled["turn_snapshots.runtime_key"] == 1
    assert missing_triggers(conn) == ()
    assert conn.execute(
        "SELECT runtime_key FROM turn_snapshots WHERE turn_id = 't1'"
    ).fetchone() == ("inventory@v1",)
    conn.close()


async def test_db_migrate_reports_the_triggers_it_added(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from sim.cli.main import cli

    path = await _written(tmp_path / "a.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER turnsim_snapshots_no_delete")
    conn.close()
    out = CliRunner().invoke(cli, ["db", "migrate", str(path), "--no-backup", "--json"]).stdout
    assert json.loads(out)["triggers_added"] == ["turnsim_snapshots_no_delete"]
    text = CliRunner().invoke(cli, ["db", "migrate", str(path), "--no-backup"]).stdout
    assert "nothing to do" in text
