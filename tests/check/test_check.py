"""``turnsim check``: a log or a database checked offline, each bug caught with its evidence."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from persisters.write_once import drop_triggers
from sim.check.db_check import check_sqlite
from sim.check.log_check import check_log
from sim.cli.main import cli
from sim.logs.read import read_events
from sim.logs.setup import configure_quiet
from sim.runtime.variants import VARIANTS
from sim.scenario.content_invariants import NEEDS_PAYLOADS
from tests.scenario.test_invariants import CATCHERS

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def turnsim(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    configure_quiet()  # `turnsim run --log-file` leaves structlog on its (closed) file
    return result.exit_code, result.stdout, result.stderr


def logged_run(tmp_path: Path, scenario: str, *args: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / f"{scenario}.jsonl"
    code, out, err = turnsim("run", str(SCENARIOS / scenario), "--log-file", str(log), *args)
    assert code in (0, 1), out + err
    return log


def own_verdict(log: Path) -> list[tuple[str, int]]:
    """What the run itself found (its invariant.violated lines)."""
    return [
        (e["invariant"], e["at_seq"])
        for e in read_events(str(log))
        if e["event"] == "invariant.violated"
    ]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_log_check_catches_each_variant_as_its_run_did(tmp_path: Path, variant: str) -> None:
    """From the log alone, the same violations with the same seq numbers as the run, for
    every invariant a log can judge; the ones that read payloads (blocks), which a log does
    not hold, are named as not judged (NEEDS_PAYLOADS), and their findings left out."""
    scenario, invariant = CATCHERS[variant]
    log = logged_run(tmp_path, scenario, "--variant", variant)
    report = check_log(log)
    found = [
        (f.invariant, int(f.evidence[-1].split()[-1]) if f.evidence[-1].startswith("seq") else 0)
        for f in report.findings
    ]
    # what only the blocks show (a violation with no seq) is not in a log: a resumed run
    # appending to its checkpoint is never-rewritten in the blocks, distinct-turns in the log
    unseen = {n.invariant for n in report.not_judged if "in part" not in n.why}
    # and a snapshot stored after the final (a timer's late flush) holds other blocks than
    # the final: never-rewritten in the blocks, terminal-is-last in the log too
    if variant in ("resume-in-place", "timer-batched-snapshots"):
        unseen.add("never-rewritten")

    def seen(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        return sorted(p for p in pairs if p[0] not in unseen or p[1])

    assert seen(found) == seen(own_verdict(log))
    if invariant in unseen:
        assert invariant in set(NEEDS_PAYLOADS) | {"never-rewritten"}
    else:
        assert invariant in {f.invariant for f in report.findings}
    assert all(
        e.startswith("seq ") or e.startswith("final state")
        for f in report.findings
        for e in f.evidence
    )
    assert report.exit_code == (1 if report.findings else 0)
    assert {n.invariant for n in report.not_judged} == set(NEEDS_PAYLOADS)
    clean = check_log(logged_run(tmp_path / "clean", scenario))
    assert clean.ok and clean.findings == ()


def test_a_log_without_its_scenario_file_is_judged_in_part(tmp_path: Path) -> None:
    log = logged_run(tmp_path, "inflight_switch.yaml", "--variant", "late-snapshot-runtime")
    moved = tmp_path / "moved.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:
        if line["event"] == "scenario.started":
            line["path"] = "gone/inflight_switch.yaml"
    moved.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = check_log(moved)
    assert "runtime-bound-at-start" in {f.invariant for f in report.findings}
    assert [n.invariant for n in report.not_judged] == [*NEEDS_PAYLOADS, "nothing-lost"]


def test_a_log_with_no_history_is_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"event": "http.request", "level": "info"}\n')
    code, _, err = turnsim("check", str(empty))
    assert code == 2 and "no run history" in err
    code, _, err = turnsim("check", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "missing.jsonl" in err


def _run_db(tmp_path: Path, *args: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "run.db"
    code, out, err = turnsim(
        "run", str(SCENARIOS / "inventory_to_planner.yaml"), "--db", str(db), *args
    )
    assert code in (0, 1), out + err
    return db


def _damage(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    drop_triggers(conn)  # by hand, past the file's write-once triggers
    for statement in sql:
        conn.execute(statement)
    conn.close()


def _first_turn(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT conv_id, session_id, turn_id, runtime_key FROM turns "
            "ORDER BY turn_created_at_ms LIMIT 1"
        ).fetchone()
    finally:
        conn.close()


def test_a_clean_database_passes_and_names_what_it_cannot_judge(tmp_path: Path) -> None:
    report = check_sqlite(_run_db(tmp_path))
    assert report.ok and report.kind == "turnsim"
    assert {n.invariant for n in report.not_judged} == {
        "runtime-bound-at-start",
        "nothing-lost",
        "pointer-is-current",
        "history-continuity",
        "switch-takes-effect",
        "durable-before-advance",
        "no-zombie-inflight",
        "single-writer",
    }


def test_a_hand_damaged_database_is_caught_with_its_keys(tmp_path: Path) -> None:
    db = _run_db(tmp_path)
    conv, session, turn, runtime = _first_turn(db)
    assert runtime == "inventory@v1"
    # the pointer (planner@v1) written over the first turn's runtime, as the old code did
    _damage(db, f"UPDATE turns SET runtime_key = 'planner@v1' WHERE turn_id = '{turn}'")
    report = check_sqlite(db)
    by_rule = {f.invariant: f for f in report.findings}
    key = f"turns ({conv}, {session}, {turn})"
    assert set(by_rule) == {"columns-agree", "never-rewritten", "pointer-not-history"}
    assert by_rule["never-rewritten"].evidence[0] == key
    assert by_rule["never-rewritten"].evidence[1].startswith("turn_snapshots ")
    assert by_rule["pointer-not-history"].evidence == (key, f"conversation {conv}")
    code, out, _ = turnsim("check", str(db), "--json")
    assert code == 1 and not json.loads(out)["ok"]


def test_more_damage_each_rule_its_own_evidence(tmp_path: Path) -> None:
    db = _run_db(tmp_path)
    conv, session, turn, _ = _first_turn(db)
    _damage(
        db,
        f"UPDATE turn_snapshots SET runtime_key = 'other@v1' WHERE snapshot_id = "
        f"(SELECT max(snapshot_id) FROM turn_snapshots WHERE turn_id = '{turn}')",
        "INSERT INTO turns (conv_id, session_id, turn_id, turn_created_at_ms) "
        f"VALUES ('{conv}', '{session}', 'blank', 500)",
    )
    report = check_sqlite(db)
    rules = sorted({f.invariant for f in report.findings})
    assert rules == ["columns-agree", "no-empty-runtime", "phases-agree"]
    (phases,) = [f for f in report.findings if f.invariant == "phases-agree"]
    assert len(phases.evidence) == 2  # the first snapshot of each differing value
    assert "no-empty-runtime" not in {
        f.invariant for f in check_sqlite(db, new_since_ms=501).findings
    }


def test_the_real_layout_is_checked_too(tmp_path: Path) -> None:
    ok = _run_db(tmp_path / "a", "--store", "normalized")
    assert check_sqlite(ok).ok and check_sqlite(ok).kind == "normalized"
    # the real layout has no write-once triggers: the real system's bugs reach its rows
    bad = tmp_path / "b.db"
    code, _, _ = turnsim(
        "run",
        str(SCENARIOS / "inflight_switch.yaml"),
        "--store",
        "normalized",
        "--db",
        str(bad),
        "--variant",
        "late-snapshot-runtime+upsert-overwrite",
    )
    assert code == 1
    report = check_sqlite(bad)
    assert {"phases-agree", "columns-agree"} <= {f.invariant for f in report.findings}
    code, out, _ = turnsim("check", str(ok), str(bad))
    assert code == 1 and "VIOLATION phases-agree" in out and "evidence: turn_snapshots" in out


def test_a_database_copy_checked_next_to_its_log(tmp_path: Path) -> None:
    """One command, both kinds of evidence: exit 1 if either has a violation."""
    log = logged_run(tmp_path, "inventory_to_planner.yaml")
    db = _run_db(tmp_path)
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    assert turnsim("check", str(log), str(copy))[0] == 0
    _damage(copy, "UPDATE turns SET inference_id = 'forged'")
    code, out, _ = turnsim("check", str(log), str(copy), "--json")
    assert code == 1
    reports = json.loads(out)["reports"]
    assert [r["ok"] for r in reports] == [True, False]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_server_database_is_checked_by_its_dsn(kind: str) -> None:
    from persisters.stores import StoreSpec
    from tests.servers import drop_namespace, need, unique_name

    dsn, name = need(kind), unique_name()
    try:
        scenario = str(SCENARIOS / "inventory_to_planner.yaml")
        assert turnsim("run", scenario, "--store", dsn, "--db", name)[0] == 0
        kept = StoreSpec.parse(dsn).dsn_for(name)
        code, out, err = turnsim("check", kept, "--json")
        assert code == 0, out + err
        (report,) = json.loads(out)["reports"]
        assert report["kind"] == "turnsim" and "phases-agree" in report["judged"]
    finally:
        drop_namespace(kind, name)
