"""Two runs of one scenario on one file: the claim is atomic, the second is refused
(exit 2) before it writes a turn, and `db doctor` finds turns saved by two runs
(`mixed_runs`). Schema 3 (scenario_runs, turn_snapshots.run_id) migrates from 0 and 2."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from persisters.errors import PermanentStoreError
from persisters.schema import SCHEMA_VERSION
from persisters.sqlite_store import SQLiteTurnStore
from sim.ops.doctor import doctor
from sim.ops.migrate import migrate_file

from .test_hostile_databases import good_database

SCENARIO = """\
name: claimed
profiles: {p: {runtime_key: p@v1, latency_ms: 50}}
conversations: {c1: {profile: p}, c2: {profile: p}}
steps:
  - repeat:
      times: 40
      steps:
        - {send: {conv: c1, turn: "t{i}", prompt: hi}}
        - {send: {conv: c2, turn: "u{i}", prompt: hi}}
"""


@pytest.mark.anyio
async def test_only_one_of_two_concurrent_claims_wins(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    first = await SQLiteTurnStore.open(path)
    second = await SQLiteTurnStore.open(path)
    outcomes: list[str] = []

    async def claim(store: SQLiteTurnStore, run_id: str) -> None:
        try:
            await store.claim_scenario("claimed", run_id)
            outcomes.append("won")
        except PermanentStoreError as exc:
            assert "already holds conversations of scenario 'claimed'" in str(exc)
            outcomes.append("refused")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(claim, first, "run-a")
            tg.start_soon(claim, second, "run-b")
        await claim(first, "run-c")  # and again later: still refused
    finally:
        await first.close()
        await second.close()
    assert sorted(outcomes) == ["refused", "refused", "won"]


def test_two_runs_of_one_scenario_at_once_one_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "claimed.yaml"
    scenario.write_text(SCENARIO)
    db = tmp_path / "shared.db"
    command = [sys.executable, "-m", "sim", "run", str(scenario), "--db", str(db)]
    procs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "already holds conversations of scenario 'claimed'" in refused
    assert len(refused.strip().splitlines()) == 1
    report = doctor(db)
    assert report.healthy, [c.message for c in report.problems]
    conn = sqlite3.connect(db)
    try:
        runs = conn.execute("SELECT count(DISTINCT run_id) FROM turn_snapshots").fetchone()[0]
        claims = conn.execute("SELECT count(*) FROM scenario_runs").fetchone()[0]
    finally:
        conn.close()
    assert (runs, claims) == (1, 1)


def test_doctor_finds_turns_saved_by_two_runs(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    good_database(path)
    assert doctor(path).check("mixed_runs").severity == "ok"
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, "
        "payload, runtime_key, inference_id, run_id) SELECT conv_id, session_id, turn_id, "
        "phase, created_at_ms + 1, payload, runtime_key, inference_id, 'run-b' "
        "FROM turn_snapshots WHERE turn_id = 't3'"
    )
    conn.execute(
        "INSERT INTO turn_snapshots (conv_id, session_id, turn_id, phase, created_at_ms, "
        "payload, runtime_key, inference_id, run_id) SELECT conv_id, session_id, turn_id, "
        "phase, created_at_ms + 2, payload, runtime_key, inference_id, 'run-a' "
        "FROM turn_snapshots WHERE turn_id = 't3' AND run_id = 'run-b'"
    )
    conn.commit()
    conn.close()
    check = doctor(path).check("mixed_runs")
    assert check.severity == "error" and check.row_count == 1
    assert check.result[0][:4] == ("c", "s", "t3", 2)


def schema_2_copy(path: Path) -> None:
    """A current database taken back to schema 2: no scenario_runs, no run_id."""
    good_database(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TABLE scenario_runs")
    conn.execute("ALTER TABLE turn_snapshots DROP COLUMN run_id")
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_a_schema_2_database_migrates_to_3_keeping_every_row(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    schema_2_copy(path)
    conn = sqlite3.connect(path)
    before = conn.execute("SELECT * FROM turn_snapshots ORDER BY snapshot_id").fetchall()
    conn.close()
    report, backup = migrate_file(path)
    assert (report.schema_version_before, report.schema_version_after) == (2, SCHEMA_VERSION)
    assert "scenario_runs" in report.tables_created
    assert "turn_snapshots.run_id" in report.columns_added
    assert backup is not None and backup.name.endswith(".bak-v2")
    conn = sqlite3.connect(path)
    after = conn.execute("SELECT * FROM turn_snapshots ORDER BY snapshot_id").fetchall()
    conn.close()
    assert after == [(*row, "") for row in before]
    assert doctor(path).healthy


def test_a_schema_2_database_opened_by_a_run_is_migrated_and_claimed(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    schema_2_copy(path)

    async def claim() -> None:
        store = await SQLiteTurnStore.open(path)
        try:
            await store.claim_scenario("fresh", "run-x")
        finally:
            await store.close()

    anyio.run(claim)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("SELECT run_id FROM scenario_runs").fetchall() == [("run-x",)]
    finally:
        conn.close()
