"""One admission rule for every command that opens a SQLite file (persisters.sqlite_file).

Classes of files, each refused before anything is written, by every command (`run --db`,
`serve --db`, `db migrate`, and `db doctor` where it is a refusal rather than a finding):
damaged (any sqlite3 error while opening or checking: page headers overwritten anywhere),
foreign (another program's database), not a regular file (FIFO, directory), read-only
for a writer. A refused `run` has written nothing, not even a migration.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from persisters.errors import NotSQLiteError, PermanentStoreError, SchemaError
from persisters.schema import OLD_TIMELINE_SCHEMA, OLD_TURNS_SCHEMA
from persisters.sqlite_file import admit
from persisters.sqlite_store import SQLiteTurnStore
from sim.cli.main import cli

from .test_hostile_databases import SCENARIO, good_database

COMMANDS = {
    "run": ["run", "{scenario}", "--db", "{db}"],
    "serve": ["serve", "--db", "{db}", "--port", "0"],
    "migrate": ["db", "migrate", "{db}"],
}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(tmp_path: Path, args: list[str], db: Path) -> tuple[int, list[str], str]:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    argv = [a.format(scenario=scenario, db=db) for a in args]
    result = CliRunner().invoke(cli, argv)
    assert "Traceback" not in result.output, result.output
    assert not isinstance(result.exception, sqlite3.Error), result.exception
    return result.exit_code, result.stderr.strip().splitlines(), result.output


def page_count(path: Path) -> int:
    return path.stat().st_size // 4096


def damaged_copies(tmp_path: Path) -> list[Path]:
    """The good database with the b-tree page header of one page overwritten, for every
    page but the first (whose damage the header check already refuses), in two ways."""
    good = tmp_path / "good.db"
    good_database(good)
    data = good.read_bytes()
    made = []
    for page in range(1, page_count(good)):
        for name, junk in (("type", b"\x99"), ("header", b"\xff" * 12)):
            copy = bytearray(data)
            copy[page * 4096 : page * 4096 + len(junk)] = junk
            path = tmp_path / f"damaged-p{page}-{name}.db"
            path.write_bytes(bytes(copy))
            made.append(path)
    return made


def test_integrity_check_itself_raising_is_a_refusal(tmp_path: Path) -> None:
    """The probe's case: PRAGMA integrity_check raises (a page's type byte destroyed)."""
    copies = damaged_copies(tmp_path)
    raising = []
    for path in copies:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError:
            raising.append(path)
        finally:
            conn.close()
    assert raising, "no copy makes integrity_check raise: the test lost its point"
    for path in copies:
        before = digest(path)
        with pytest.raises(NotSQLiteError) as caught:
            admit(path, "write")
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)
        assert digest(path) == before


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_damaged_file_in_one_line(tmp_path: Path, command: str) -> None:
    for path in damaged_copies(tmp_path)[:6]:
        before = digest(path)
        code, lines, output = invoke(tmp_path, COMMANDS[command], path)
        assert code == 2, output
        assert len(lines) == 1 and str(path) in lines[0], lines
        assert digest(path) == before
        assert not Path(f"{path}-wal").exists()
    assert not list(tmp_path.glob("*.bak-*"))


def test_doctor_survives_every_damaged_file(tmp_path: Path) -> None:
    for path in damaged_copies(tmp_path):
        before = digest(path)
        code, _, output = invoke(tmp_path, ["db", "doctor", "{db}"], path)
        assert code in (1, 2), output  # a finding or a refusal, never a crash
        assert digest(path) == before


def foreign_databases(tmp_path: Path) -> list[Path]:
    made = []
    for name, sql in {
        "notes": "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('milk');",
        "view-only": "CREATE VIEW v AS SELECT 1;",
        "sequence": "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);"
        "INSERT INTO t DEFAULT VALUES;",
        "app-id": "PRAGMA application_id = 1196444237; CREATE TABLE turns (conv_id, turn_id);",
        "version-only": "PRAGMA user_version = 7;",
    }.items():
        path = tmp_path / f"foreign-{name}.db"
        conn = sqlite3.connect(path)
        conn.executescript(sql)
        conn.close()
        made.append(path)
    return made


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_foreign_database(tmp_path: Path, command: str) -> None:
    for path in foreign_databases(tmp_path):
        before = digest(path)
        code, lines, output = invoke(tmp_path, COMMANDS[command], path)
        assert code == 2, output
        assert len(lines) == 1 and "another program" in lines[0], lines
        assert digest(path) == before, "written into"
        assert not Path(f"{path}-wal").exists()


def test_turnsim_and_real_layouts_old_and_new_are_admitted(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    conn.executescript(OLD_TURNS_SCHEMA + OLD_TIMELINE_SCHEMA)
    conn.close()
    current = tmp_path / "current.db"
    good_database(current)
    empty = tmp_path / "empty.db"
    empty.touch()
    for path in (old, current):
        assert admit(path, "write").layout is not None
    assert admit(empty, "write").new
    assert admit(tmp_path / "missing.db", "write").new


@pytest.mark.parametrize("command", [*sorted(COMMANDS), "doctor"])
def test_a_fifo_is_refused_without_opening_it(tmp_path: Path, command: str) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    args = COMMANDS.get(command, ["db", "doctor", "{db}"])
    started = time.monotonic()
    code, lines, output = invoke(tmp_path, args, fifo)
    assert code == 2 and "FIFO" in lines[0], output
    assert time.monotonic() - started < 5


def test_serve_on_a_fifo_exits_promptly_as_a_process(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    done = subprocess.run(
        [sys.executable, "-m", "sim", "serve", "--db", str(fifo), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2 and "FIFO" in done.stderr


def read_only_copy(tmp_path: Path) -> Path:
    path = tmp_path / "ro.db"
    good_database(path)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    return path


def test_run_refuses_a_read_only_database_up_front(tmp_path: Path) -> None:
    path = read_only_copy(tmp_path)
    code, lines, output = invoke(tmp_path, COMMANDS["run"], path)
    assert code == 2, output
    assert len(lines) == 1 and "read-only" in lines[0], lines
    with pytest.raises(PermanentStoreError, match="read-only"):
        anyio.run(lambda: SQLiteTurnStore.open(path))


def test_a_refused_run_has_not_migrated_the_file(tmp_path: Path) -> None:
    """The scenario is already in the file, which is of an old schema: refused, unmigrated."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(OLD_TURNS_SCHEMA + OLD_TIMELINE_SCHEMA)
    conn.execute("INSERT INTO conversations (conv_id) VALUES ('hostile-db.c1')")
    conn.commit()
    conn.close()
    before = digest(path)
    code, lines, output = invoke(tmp_path, COMMANDS["run"], path)
    assert code == 2 and "already holds conversations" in lines[0], output
    assert digest(path) == before
    assert not Path(f"{path}-wal").exists() and not list(tmp_path.glob("*.bak-*"))


def test_a_newer_schema_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    good_database(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with pytest.raises(SchemaError, match="newer"):
        admit(copy, "write")
    assert digest(copy) == digest(path)
