"""``turnsim db migrate|doctor|samples`` through click, and the real executable for exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from persisters.errors import NotSQLiteError, PermanentStoreError
from persisters.schema import SCHEMA_VERSION
from sim.cli.main import cli
from sim.ops.doctor import doctor
from sim.ops.files import compact_file
from sim.ops.samples import make_samples

TURNSIM = Path(sys.executable).with_name("turnsim")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["db", *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("pristine")
    stats = make_samples(directory)
    return directory, *stats


@pytest.fixture
def samples(pristine, tmp_path: Path):
    directory, turns, timeline = pristine
    for name in ("turns.db", "timeline3.db"):
        shutil.copy(directory / name, tmp_path / name)
    return tmp_path, turns, timeline


def assert_one_line_error(result: Result, command: str, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"turnsim db {command}: error: ")
    assert words in lines[0]
    assert "Traceback" not in result.output


# --- samples --------------------------------------------------------------------------


def test_samples_writes_both_files_and_tells_the_expected_numbers(tmp_path: Path, pristine):
    _, turns, timeline = pristine
    result = run("samples", str(tmp_path / "new"), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {k: v for k, v in out["turns"].items() if k != "path"} == {
        k: v for k, v in turns.to_json().items() if k != "path"
    }
    assert out["timeline"]["pointer_verdict_counts"] == timeline.to_json()["pointer_verdict_counts"]
    assert (tmp_path / "new" / "turns.db").is_file() and (
        tmp_path / "new" / "timeline3.db"
    ).is_file()


def test_samples_human_output_and_refusal_to_overwrite(tmp_path: Path, pristine) -> None:
    _, turns, _ = pristine
    result = run("samples", str(tmp_path), "--seed", "4")
    assert result.exit_code == 0
    assert "a correct migration of it reports" in result.stdout
    assert f"turns.runtime_key           │ {turns.backfilled['turns.runtime_key']:>10}" in (
        result.stdout
    )
    again = run("samples", str(tmp_path))
    assert_one_line_error(again, "samples", "already exists")
    assert run("samples", str(tmp_path), "--force", "--seed", "5").exit_code == 0


# --- migrate --------------------------------------------------------------------------


def test_migrate_json_reports_the_sample_numbers_then_nothing_to_do(samples) -> None:
    directory, turns, _ = samples
    path = str(directory / "turns.db")
    result = run("migrate", path, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["backfilled"] == turns.backfilled
    assert out["unknown"] == turns.unknown
    assert out["malformed"] == turns.malformed
    assert (out["schema_version_before"], out["schema_version_after"]) == (0, SCHEMA_VERSION)
    assert out["columns_added"] == ["turns.runtime_key", "turns.inference_id"]
    assert out["backup"] == f"{path}.bak-v0" and os.path.exists(out["backup"])
    assert out["nothing_to_do"] is False
    again = json.loads(run("migrate", path, "--json").stdout)
    assert again["nothing_to_do"] is True and again["backup"] is None
    assert set(again["backfilled"].values()) == {0} and again["unknown"] == turns.unknown


def test_migrate_human_output(samples) -> None:
    directory, turns, _ = samples
    path = str(directory / "timeline3.db")
    dry = run("migrate", path, "--dry-run")
    assert dry.exit_code == 0
    assert "dry run, nothing was written" in dry.stdout
    result = run("migrate", path)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert f"{path}: migrated schema version 0 -> {SCHEMA_VERSION}." in text
    assert f"backup {path}.bak-v0" in text
    assert "columns renamed conversations.runtime_key -> current_runtime_key" in text
    assert "tables created turns, turn_snapshots" in text
    assert "Next: turnsim db doctor" in text
    assert (
        f"nothing to do, schema version {SCHEMA_VERSION} is current" in run("migrate", path).stdout
    )
    path = str(directory / "turns.db")
    result = run("migrate", path, "--no-backup")
    assert "none (--no-backup)" in result.stdout and not list(directory.glob("turns.db.bak*"))
    unknown = turns.unknown["turn_snapshots.runtime_key"]
    backfilled = turns.backfilled["turn_snapshots.runtime_key"]
    assert f"turn_snapshots.runtime_key  │ {backfilled:>10} │ {unknown:>17} │" in result.stdout


def table_rows(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4").fetchall()
            for table in ("turns", "turn_snapshots", "conversations")
        }
    finally:
        conn.close()


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


def freelist(path: Path) -> int:
    return pragma(path, "freelist_count")


def test_migrate_reports_free_pages_and_vacuum_returns_them(tmp_path: Path) -> None:
    """The rebuilt snapshot table leaves free pages: the report says how many and how to
    reclaim them; --vacuum (also on a current schema) reclaims them and keeps every row."""
    make_samples(tmp_path, conversations=100)  # > 1 MiB of free pages after migrating
    path = tmp_path / "turns.db"
    result = run("migrate", str(path), "--no-backup")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    free = freelist(path)
    assert free > 0
    assert f"{path} keeps " in text and f"turnsim db migrate {path} --vacuum" in text
    check = doctor(path).check("free_pages")
    assert check.severity == "info" and f"turnsim db migrate {path} --vacuum" in check.message
    out = json.loads(run("migrate", str(path), "--json").stdout)
    assert out["nothing_to_do"] is True and out["vacuum"] is None
    space = out["space"]
    assert tuple(check.result[0]) == (space["database_bytes"], space["free_bytes"])
    page_size = pragma(path, "page_size")
    assert out["space"]["free_bytes"] == free * page_size
    rows = table_rows(path)
    size = os.path.getsize(path)
    vacuumed = run("migrate", str(path), "--vacuum", "--json")
    assert vacuumed.exit_code == 0, vacuumed.output
    out = json.loads(vacuumed.stdout)
    assert out["vacuum"]["before"]["free_bytes"] == free * page_size
    assert out["vacuum"]["after"]["free_bytes"] == 0 == out["space"]["free_bytes"]
    assert freelist(path) == 0 and os.path.getsize(path) < size
    assert table_rows(path) == rows
    assert doctor(path).exit_code == 0
    assert doctor(path).check("free_pages").severity == "ok"
    human = run("migrate", str(path), "--vacuum")
    assert "compacted (VACUUM)" in human.stdout and "keeps" not in human.stdout


def test_a_small_amount_of_free_pages_is_not_worth_a_hint(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    result = run("migrate", str(path))
    assert freelist(path) > 0  # some, below 1 MiB
    assert "--vacuum" not in result.stdout


def test_vacuum_and_dry_run_together_are_refused(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    before = path.read_bytes()
    assert_one_line_error(run("migrate", str(path), "--dry-run", "--vacuum"), "migrate", "pick one")
    assert path.read_bytes() == before


def test_a_failed_vacuum_keeps_the_report_and_exits_2(samples, monkeypatch) -> None:
    """Another connection reads the file: VACUUM cannot finish, the file stays as it was,
    the report still prints (human and JSON) and the error says what happened."""
    monkeypatch.setattr("sim.ops.files.BUSY_TIMEOUT_MS", 50)  # give up on the lock quickly
    directory, _, _ = samples
    path = directory / "turns.db"
    assert run("migrate", str(path)).exit_code == 0
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM turn_snapshots").fetchone()  # holds a read lock
        before = path.read_bytes()
        result = run("migrate", str(path), "--vacuum")
        assert result.exit_code == 2
        assert f"nothing to do, schema version {SCHEMA_VERSION} is current" in result.stdout
        assert result.stderr.startswith(
            "turnsim db migrate: error: nothing to migrate, but not compacted: "
        )
        assert "VACUUM failed, nothing was changed" in result.stderr
        as_json = run("migrate", str(path), "--vacuum", "--json")
        assert as_json.exit_code == 2
        out = json.loads(as_json.stdout)
        assert out["nothing_to_do"] is True and "not compacted" in out["vacuum"]["error"]
        assert path.read_bytes() == before
    finally:
        reader.close()


def test_compacting_refuses_a_read_only_file_and_a_non_database(samples, tmp_path) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    run("migrate", str(path))
    os.chmod(path, 0o444)
    try:
        before = path.read_bytes()
        with pytest.raises(PermanentStoreError, match="refusing to compact it"):
            compact_file(path)
        assert path.read_bytes() == before
        assert_one_line_error(run("migrate", str(path), "--vacuum"), "migrate", "read-only")
    finally:
        os.chmod(path, 0o644)
    (tmp_path / "notes.txt").write_text("hello, not a database\n" * 40)
    with pytest.raises(NotSQLiteError, match="not a usable SQLite"):
        compact_file(tmp_path / "notes.txt")


# --- doctor ---------------------------------------------------------------------------


def test_doctor_prints_every_sql_it_ran_and_exits_by_health(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    before = run("doctor", str(path))
    assert before.exit_code == 1
    assert "problems found" in before.stdout
    findings = before.stdout.split("Findings, most serious first:")[1]
    assert findings.index("ERROR schema_version") < findings.index("WARN  orphan_snapshots")
    assert (
        "Not run until the schema is migrated: write_once_triggers, column_vs_metadata"
        in before.stdout
    )
    run("migrate", str(path))
    after = run("doctor", str(path))
    assert after.exit_code == 0
    report = doctor(path)
    for check in report.checks:
        assert check.sql + ";" in after.stdout, check.name  # pasteable as printed
        assert f"] {check.name}: " in after.stdout
    assert "PRAGMA integrity_check;\nok\n" in after.stdout
    assert "healthy (" in after.stdout and "exit 0" in after.stdout


def test_doctor_json_is_the_library_report(samples) -> None:
    directory, _, _ = samples
    path = str(directory / "timeline3.db")
    result = run("doctor", path, "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out == doctor(path).to_json()
    assert out["exit_code"] == 1 and out["findings"][0] == "schema_version"


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["migrate", "doctor"])
@pytest.mark.parametrize(
    ("target", "words"),
    [("missing.db", "no such file"), ("notes.txt", "not a usable SQLite"), (".", "directory")],
)
def test_refusals_are_one_line_and_exit_2(tmp_path: Path, command, target, words) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a database\n" * 40)
    path = str(tmp_path / target)
    result = run(command, path)
    assert_one_line_error(result, command, words)
    assert result.stdout == ""
    as_json = run(command, path, "--json")
    assert_one_line_error(as_json, command, words)
    assert words in json.loads(as_json.stdout)["error"]
    assert not (tmp_path / "missing.db").exists()


def test_migrate_refuses_a_read_only_file(samples) -> None:
    directory, _, _ = samples
    path = directory / "turns.db"
    os.chmod(path, 0o444)
    try:
        assert_one_line_error(run("migrate", str(path)), "migrate", "read-only")
        assert run("doctor", str(path)).exit_code == 1  # reading is fine
    finally:
        os.chmod(path, 0o644)


# --- the real executable --------------------------------------------------------------


def test_done_when_walkthrough_with_the_real_command(tmp_path: Path) -> None:
    """From nothing: samples, doctor flags them, migrate fixes them, doctor passes."""
    assert TURNSIM.exists(), f"{TURNSIM} missing: install the package (pip install -e .)"

    def turnsim(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(TURNSIM), "db", *args], capture_output=True, text=True, timeout=60
        )

    assert turnsim("samples", str(tmp_path)).returncode == 0
    path = str(tmp_path / "turns.db")  # timeline3.db takes the same path through CliRunner
    assert turnsim("doctor", path).returncode == 1
    migrated = turnsim("migrate", path)
    assert migrated.returncode == 0, migrated.stderr
    healthy = turnsim("doctor", path)
    assert healthy.returncode == 0, healthy.stdout
    (tmp_path / "notes.txt").write_text("not sqlite\n" * 40)
    bad = turnsim("doctor", str(tmp_path / "notes.txt"))
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
