"""Every ```sql block of docs/migration-playbook.md runs against the migrated samples.

A block runs in ``turns.db`` unless its first line is ``-- run in <file>``, from the
directory that holds both samples (so ``ATTACH DATABASE 'timeline3.db'`` works), each on
a fresh copy. A block whose first line starts ``-- real layout`` runs in the samples of
the real server's layout (``turnsim db samples --layout normalized``), migrated the same
way. The prose's claims about the samples and the commands it shows are checked too, and
so are the numbers of the release-note snippet.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import click
import pytest

from persisters.schema import SCHEMA_VERSION
from persisters.write_once import drop_triggers
from sim.cli.db import db
from sim.ops.doctor import doctor
from sim.ops.migrate import migrate_file
from sim.ops.real_samples import make_real_samples
from sim.ops.samples import make_samples

DOCS = Path(__file__).resolve().parents[2] / "docs"
PLAYBOOK = (DOCS / "migration-playbook.md").read_text()
BLOCKS = re.findall(r"^```sql\n(.*?)^```", PLAYBOOK, flags=re.S | re.M)
UUID = re.compile(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'")


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("playbook")
    turns, timeline = make_samples(directory)
    make_real_samples(directory / "real")
    for name in ("turns.db", "timeline3.db"):
        migrate_file(directory / name, backup=False)
        migrate_file(directory / "real" / name, backup=False)
    return directory, turns, timeline


def run_block(block: str, migrated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run one block as an operator would; return the rows of its last statement."""
    real = block.startswith("-- real layout")
    source = migrated[0] / "real" if real else migrated[0]
    for name in ("turns.db", "timeline3.db"):
        shutil.copy(source / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    marker = re.match(r"-- (?:real layout, )?run in (\S+)", block)
    conn = sqlite3.connect(marker.group(1) if marker else "turns.db", isolation_level=None)
    rows: list[tuple[Any, ...]] = []
    try:
        statement = ""
        for line in block.splitlines(keepends=True):
            statement += line
            if sqlite3.complete_statement(statement):
                rows = conn.execute(statement).fetchall()
                statement = ""
        assert not statement.strip(" \n;"), f"incomplete statement: {statement!r}"
    finally:
        conn.close()
    return rows


def block_with(text: str) -> str:
    """The one block of sections 1-5 (turnsim's own layout) that contains ``text``."""
    found = [b for b in BLOCKS if text in b and not b.startswith("-- real layout")]
    assert len(found) == 1, f"{len(found)} sql blocks contain {text!r}"
    return found[0]


def test_the_playbook_has_its_sql() -> None:
    assert len(BLOCKS) >= 15  # an extraction that found nothing must not pass


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_sql_block_runs_on_the_migrated_samples(block, migrated, tmp_path, monkeypatch):
    run_block(block, migrated, tmp_path, monkeypatch)


def test_literal_ids_exist_in_the_samples(migrated) -> None:
    directory = migrated[0]
    ids = {m for b in BLOCKS for m in UUID.findall(b)}
    assert ids
    conn = sqlite3.connect(directory / "turns.db")
    conn.execute("ATTACH DATABASE ? AS timeline", (str(directory / "timeline3.db"),))
    try:
        for value in ids:
            found = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM turn_snapshots WHERE conv_id = ?1 OR turn_id = ?1)"
                " OR EXISTS (SELECT 1 FROM timeline.conversations WHERE conv_id = ?1)",
                (value,),
            ).fetchone()[0]
            assert found, value
    finally:
        conn.close()


def test_what_the_prose_says_about_the_sample_is_true(migrated, tmp_path, monkeypatch) -> None:
    def rows(text: str) -> list[tuple[Any, ...]]:
        return run_block(block_with(text), migrated, tmp_path, monkeypatch)

    _, turns, _ = migrated
    assert rows("PRAGMA user_version;") == [(SCHEMA_VERSION,)]
    history = rows("SELECT turn_id, session_id, turn_created_at_ms, runtime_key, inference_id")
    assert [r[3] for r in history] == [
        "inventory@v1",
        "inventory@v1",
        "research@v1",
        "",
        "research@v1",
        "research@v1",
    ]
    unknown_turn = history[3][0]
    assert unknown_turn.startswith("864bbf3a-")
    phases = rows("SELECT turn_id, phase, created_at_ms, runtime_key, inference_id")
    late = [(p, rk) for t, p, _, rk, _ in phases if t.startswith("f18e1a15-")]
    assert late[0] == ("pre_inference", "inventory@v1") and late[-1] == ("final", "inventory@v1")
    assert [rk for _, rk in late].count("research@v1") == 2
    plan = rows("EXPLAIN QUERY PLAN")
    assert any("USING INDEX turns_by_conv_runtime_updated" in r[-1] for r in plan)
    pointer = rows("SELECT conv_id, session_id, current_runtime_key, last_activity_ms")
    assert [r[2] for r in pointer] == ["research@v1"]
    switches = rows("AS from_runtime_key")
    started = next(r[2] for r in history if r[0] == unknown_turn)
    before = [r for r in switches if r[0] <= started]
    assert before[-1][2] == "planner@v1"  # what the unknown turn started on; not the pointer
    unknown = {
        r[0]: r[2:] for r in rows("coalesce(sum(runtime_key = ''), 0) AS unknown_runtime_key")
    }
    for table in ("turns", "turn_snapshots"):
        expected = (turns.unknown[f"{table}.runtime_key"], turns.unknown[f"{table}.inference_id"])
        assert unknown[table] == expected
    assert rows("new_turns_without_runtime") == [(0,)]
    metadata = rows("SELECT turn_id, turn_created_at_ms, turn_metadata_json")
    assert '"geppetto.runtime@v1":{"profile":""}' in metadata[0][2]
    assert rows("ATTACH DATABASE 'timeline3.db' AS timeline;")  # some pointers unexplained
    malformed = Counter(r[0] for r in rows("length(turn_metadata_json) AS length"))
    assert malformed == Counter({t: n for t, n in turns.malformed.items() if n})
    disagreeing = rows("AS at_start")
    assert len(disagreeing) == turns.phase_disagreement_turns
    # An inference that failed after a switch: its row names the runtime switched to.
    assert any(r[2] and r[3] and r[2] != r[3] for r in disagreeing)
    assert any(r[2] is None for r in disagreeing)  # an orphan


def test_what_the_real_layout_section_says_is_true(migrated, tmp_path, monkeypatch) -> None:
    def rows(text: str) -> list[tuple[Any, ...]]:
        found = [b for b in BLOCKS if text in b and b.startswith("-- real layout")]
        assert len(found) == 1, text
        return run_block(found[0], migrated, tmp_path, monkeypatch)

    columns = rows("WHERE name IN ('runtime_key', 'inference_id', 'updated_at_ms')")
    assert {r[0]: r[2] for r in columns} == {
        "runtime_key": 1,
        "inference_id": 1,
        "updated_at_ms": 1,
    }
    assert rows("AS unfilled") == [(0,)]
    history = rows("SELECT turn_id, session_id, turn_created_at_ms, runtime_key, inference_id")
    assert [r[3] for r in history] == [
        "inventory@v1",
        "inventory@v1",
        "research@v1",
        "",
        "research@v1",
        "research@v1",
    ]
    snapshots = rows("count(*) AS blocks\nFROM turn_block_membership m")
    late = {r[3] for r in snapshots if r[0].startswith("f18e1a15-")}
    assert late == {"inventory@v1"}  # one runtime per turn row: the switch does not show
    [(logged, real)] = rows("AS real_snapshots")
    assert logged == real > 0
    [(blocks, contents, memberships)] = rows("count(DISTINCT content_hash) AS contents")
    assert contents < blocks < memberships
    assert [r[2] for r in rows("FROM timeline_conversations\nWHERE conv_id")] == ["research@v1"]
    assert rows("FROM timeline.timeline_conversations c")  # some pointers name no turn's


def test_the_re_backfill_procedure_does_what_the_playbook_says(migrated, tmp_path, monkeypatch):
    source = migrated[0]
    for name in ("turns.db", "timeline3.db"):
        shutil.copy(source / name, tmp_path / name)
    conn = sqlite3.connect(tmp_path / "turns.db")  # rows copied in without a backfill
    drop_triggers(conn)  # hand damage: past the file's write-once triggers
    conn.execute("UPDATE turns SET runtime_key = '' WHERE runtime_key <> '' AND rowid % 5 = 0")
    blanked = conn.execute("SELECT changes()").fetchone()[0]
    conn.commit()
    conn.close()
    assert blanked and doctor(tmp_path / "turns.db").check("column_vs_metadata").row_count
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect("turns.db")
    conn.executescript(block_with("PRAGMA user_version = 1;"))
    conn.close()
    report, _ = migrate_file(tmp_path / "turns.db")
    assert report.schema_version_before == 1
    assert report.backfilled["turns.runtime_key"] == blanked
    assert report.unknown == migrated[1].unknown
    assert doctor(tmp_path / "turns.db").check("column_vs_metadata").severity == "ok"


def test_commands_in_the_playbook_exist() -> None:
    used = re.findall(r"turnsim db (\w+)((?:[ \t]+[^\s`#]+)*)", PLAYBOOK)
    assert {name for name, _ in used} >= {"samples", "doctor", "migrate"}
    for name, rest in used:
        command = db.commands.get(name)
        assert isinstance(command, click.Command), name
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(--[\w-]+)", rest):
            assert option in known, f"turnsim db {name} has no {option}"
    for option in re.findall(r"`(--[\w-]+)`", PLAYBOOK):
        assert any(
            option in (*p.opts, *p.secondary_opts) for c in db.commands.values() for p in c.params
        ), option


def test_release_note_numbers_are_the_samples(migrated) -> None:
    text = " ".join((DOCS / "release-notes-snippet.md").read_text().split())
    _, turns, timeline = migrated
    b, u, m = turns.backfilled, turns.unknown, turns.malformed
    for claim in (
        f"(seed {turns.seed}: a `turns.db` with {turns.turn_rows} turns rows and "
        f"{turns.snapshot_rows} snapshots, a `timeline3.db` with {timeline.conversations} "
        "conversations)",
        f"{b['turns.runtime_key']} turns rows and {b['turn_snapshots.runtime_key']} snapshots "
        f"backfilled with a runtime ({b['turns.inference_id']} and "
        f"{b['turn_snapshots.inference_id']} with an inference id)",
        f"{u['turns.runtime_key']} turns rows and {u['turn_snapshots.runtime_key']} snapshots "
        "honestly left unknown",
        f"{m['turns']} and {m['turn_snapshots']} rows with malformed metadata",
    ):
        assert claim in text, claim
