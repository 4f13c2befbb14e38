"""A database of the real server's layout, end to end: samples, migrate, doctor, serve.

The samples of ``turnsim db samples --layout normalized`` are what the real server wrote
before the cutover (turns + blocks + membership without the runtime columns, and a
timeline database); these tests follow the playbook's steps on them.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from persisters.normalized_schema import PRE_CUTOVER_TURNS_SCHEMA, REAL_TIMELINE_SCHEMA
from persisters.schema import table_columns, user_version
from sim.api.app import create_app
from sim.api.client import DebugClient
from sim.api.serve import open_served_store
from sim.cli.main import cli
from sim.ops.doctor import doctor
from sim.ops.migrate import migrate_file
from sim.ops.real_samples import make_real_samples, make_real_turns_db
from sim.ops.samples import make_old_turns_db
from tests.ops.ops_fixtures import SAMPLE_FILES, query


def _schema(sql: str) -> dict[str, set[str]]:
    """Table -> columns of a schema script, read back from SQLite itself."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(sql)
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: set(table_columns(conn, n)) for n in names}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("real")
    turns, timeline = make_real_samples(directory)
    return directory, turns, timeline


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory, pristine):
    directory = tmp_path_factory.mktemp("real-migrated")
    reports = {}
    for name in SAMPLE_FILES:
        shutil.copy(pristine[0] / name, directory / name)
        reports[name] = migrate_file(directory / name, backup=False)[0]
    return directory, reports


def test_the_samples_have_exactly_the_real_pre_cutover_schema(pristine, tmp_path) -> None:
    directory, turns, timeline = pristine
    for name, script in (
        ("turns.db", PRE_CUTOVER_TURNS_SCHEMA),
        ("timeline3.db", REAL_TIMELINE_SCHEMA),
    ):
        conn = sqlite3.connect(directory / name)
        try:
            assert user_version(conn) == 0
            names = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            assert {n: set(table_columns(conn, n)) for n in names} == _schema(script)
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        finally:
            conn.close()
    assert "runtime_key" not in _schema(PRE_CUTOVER_TURNS_SCHEMA)["turns"]
    assert "profile_slug" not in _schema(REAL_TIMELINE_SCHEMA)["timeline_conversations"]
    assert (turns.layout, timeline.layout) == ("normalized", "normalized")
    # the same history as turnsim's old samples: the same turns rows
    old = make_old_turns_db(tmp_path / "old.db")
    columns = "conv_id, session_id, turn_id, turn_created_at_ms, turn_metadata_json, turn_data_json"
    sql = f"SELECT {columns}, updated_at_ms FROM turns ORDER BY conv_id, session_id, turn_id"
    assert query(directory / "turns.db", sql) == query(tmp_path / "old.db", sql)
    assert old.turn_rows == turns.turn_rows and old.expected_turns == turns.expected_turns
    # blocks are stored once: far fewer than the memberships pointing at them
    blocks = query(directory / "turns.db", "SELECT count(*) FROM blocks")[0][0]
    members = query(directory / "turns.db", "SELECT count(*) FROM turn_block_membership")[0][0]
    assert 0 < blocks < members / 2


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = make_real_turns_db(tmp_path / "a.db", seed=3, conversations=4, turns=3)
    b = make_real_turns_db(tmp_path / "b.db", seed=3, conversations=4, turns=3)
    dump = "SELECT * FROM turn_block_membership ORDER BY 1, 2, 3, 4, 5, 6"
    assert query(tmp_path / "a.db", dump) == query(tmp_path / "b.db", dump)
    assert a.to_json() | {"path": ""} == b.to_json() | {"path": ""}


def test_migration_reports_what_the_samples_say(pristine, migrated) -> None:
    _, turns, _ = pristine
    _, reports = migrated
    report = reports["turns.db"]
    assert report.layout == "normalized"
    assert report.snapshots_imported == turns.snapshot_rows
    assert report.backfilled == turns.backfilled
    assert report.unknown == turns.unknown
    assert report.malformed == turns.malformed
    assert report.tables_created == ("turn_snapshots",)
    assert report.columns_added == ("turns.runtime_key", "turns.inference_id")
    timeline = reports["timeline3.db"]
    assert (timeline.layout, timeline.columns_added) == (
        "timeline",
        ("timeline_conversations.profile_slug",),
    )
    assert timeline.tables_created == ()  # no turn tables in a timeline database


def test_doctor_before_and_after(pristine, migrated) -> None:
    before = doctor(pristine[0] / "turns.db")
    assert before.layout == "normalized" and before.exit_code == 1
    assert [c.name for c in before.problems[:3]] == [
        "schema_version",
        "required_columns",
        "required_indexes",
    ]
    missing = {(r[0], r[1]) for r in before.check("required_columns").result}
    assert ("turns", "runtime_key") in missing and ("turn_snapshots", "snapshot_id") in missing
    after = doctor(migrated[0] / "turns.db")
    assert after.healthy
    severities = {c.name: c.severity for c in after.checks}
    assert severities == {
        "integrity": "ok",
        "schema_version": "ok",
        "required_columns": "ok",
        "required_indexes": "ok",
        "turns_updated_at": "ok",
        "column_vs_metadata": "ok",
        "snapshots_logged": "ok",
        "phase_runtime_agreement": "ok",  # one runtime per turn row: phases cannot disagree
        "orphan_snapshots": "ok",
        "unknown_rows": "info",
        "malformed_metadata": "info",
        "mixed_runs": "ok",
        "stored_types": "ok",
        "free_pages": "ok",
    }
    timeline = doctor(migrated[0] / "timeline3.db")
    assert timeline.layout == "timeline" and timeline.healthy
    assert [c.name for c in timeline.checks] == [
        "integrity",
        "schema_version",
        "required_columns",
        "required_indexes",
        "conversation_pointer",
        "free_pages",
    ]
    assert timeline.check("conversation_pointer").row_count == pristine[2].pointers_set


def test_snapshots_the_real_server_writes_later_are_flagged_and_copied(migrated, tmp_path):
    path = tmp_path / "turns.db"
    shutil.copy(migrated[0] / "turns.db", path)
    conn = sqlite3.connect(path)
    forgotten = conn.execute(
        "DELETE FROM turn_snapshots WHERE snapshot_id IN "
        "(SELECT snapshot_id FROM turn_snapshots ORDER BY snapshot_id DESC LIMIT 2)"
    ).rowcount
    conn.commit()
    conn.close()
    check = doctor(path).check("snapshots_logged")
    assert (check.severity, check.row_count) == ("warning", forgotten)
    report, backup = migrate_file(path)
    assert (report.snapshots_imported, report.changed) == (forgotten, True)
    assert backup is not None
    assert doctor(path).check("snapshots_logged").severity == "ok"
    assert migrate_file(path)[0].changed is False


@pytest.mark.anyio
async def test_serve_shows_the_snapshot_history(pristine, migrated) -> None:
    directory = migrated[0]
    _, turns, timeline = pristine
    store = await open_served_store(directory / "turns.db", directory / "timeline3.db")
    app = create_app(store)
    client = DebugClient(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    )
    try:
        async with client.http:
            conversations = (await client.conversations()).items
            assert len(conversations) == timeline.conversations
            conv = next(c for c in conversations if c.current_runtime_key)
            listed = (await client.turns(conv_id=conv.conv_id, limit=1000)).items
            assert listed
            assert {i.phase for i in listed} <= {
                "pre_inference",
                "post_inference",
                "post_tools",
                "final",
            }
            item = listed[-1]
            detail = await client.turn(conv.conv_id, item.session_id, item.turn_id)
            assert detail.items and all(p.runtime_key == item.runtime_key for p in detail.items)
            assert json.loads(detail.items[0].payload)["blocks"]
            newest = (await client.turns(limit=1000)).items
            assert len(newest) == min(1000, turns.snapshot_rows)
            assert [i.created_at_ms for i in newest] == sorted(
                (i.created_at_ms for i in newest), reverse=True
            )
    finally:
        await store.close()


def test_the_cli_writes_real_layout_samples(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "db",
            "samples",
            str(tmp_path),
            "--layout",
            "normalized",
            "--conversations",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["turns"]["layout"] == out["timeline"]["layout"] == "normalized"
    assert query(tmp_path / "turns.db", "SELECT count(*) FROM turn_block_membership")[0][0] > 0
    again = CliRunner().invoke(cli, ["db", "migrate", str(tmp_path / "turns.db"), "--json"])
    assert again.exit_code == 0, again.output
    migrated = json.loads(again.stdout)
    assert migrated["layout"] == "normalized"
    assert migrated["snapshots_imported"] == out["turns"]["snapshot_rows"]
