"""`--store SPEC` on run and explore: the one way to choose a store (persisters.stores)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from persisters.stores import KINDS, StoreSpec, StoreSpecError
from sim.cli.main import cli

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_kind_parses_and_anything_else_says_what_is_accepted() -> None:
    for kind in KINDS:
        assert StoreSpec.parse(f" {kind} ") == StoreSpec(kind)
    with pytest.raises(StoreSpecError, match="use one of: sqlite, memory"):
        StoreSpec.parse("postgres")


def test_the_suite_passes_on_the_memory_store() -> None:
    code, out, _ = invoke("run", str(SCENARIOS), "--store", "memory", "--json")
    assert code == 0, out
    assert '"passed":true' in out


def test_a_bug_variant_is_caught_on_the_memory_store() -> None:
    scenario = str(SCENARIOS / "inflight_switch.yaml")
    code, out, _ = invoke(
        "run", scenario, "--store", "memory", "--variant", "late-snapshot-runtime"
    )
    assert code == 1
    assert "runtime-bound-at-start" in out


@pytest.mark.parametrize("command", ["run", "explore"])
def test_an_unknown_store_is_refused_with_exit_2(command: str) -> None:
    code, _, err = invoke(command, str(SCENARIOS / "inflight_switch.yaml"), "--store", "pg")
    assert code == 2
    assert "--store 'pg' names no store; use one of: sqlite, memory" in err


def test_db_and_the_memory_store_are_refused_together(tmp_path: Path) -> None:
    db = tmp_path / "run.db"
    code, _, err = invoke("run", str(SCENARIOS), "--store", "memory", "--db", str(db))
    assert code == 2
    assert "--store memory keeps nothing" in err
    assert not db.exists()


def test_the_suite_passes_on_the_normalized_store_and_writes_the_real_tables(
    tmp_path: Path,
) -> None:
    db = tmp_path / "real.db"
    code, out, _ = invoke("run", str(SCENARIOS), "--store", "normalized", "--db", str(db))
    assert code == 0, out
    conn = sqlite3.connect(db)
    try:
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("turns", "blocks", "turn_block_membership", "turn_snapshots")
        }
        pointers = conn.execute("SELECT count(*) FROM timeline_conversations").fetchone()[0]
    finally:
        conn.close()
    assert all(counts.values()) and pointers
    # blocks are stored once however many snapshots hold them
    assert counts["blocks"] < counts["turn_block_membership"]


def test_a_bug_variant_is_caught_on_the_normalized_store() -> None:
    scenario = str(SCENARIOS / "inflight_switch.yaml")
    code, out, _ = invoke(
        "run", scenario, "--store", "normalized", "--variant", "late-snapshot-runtime"
    )
    assert code == 1
    assert "runtime-bound-at-start" in out


def test_a_file_of_one_layout_is_not_opened_as_the_other(tmp_path: Path) -> None:
    db = tmp_path / "real.db"
    scenario = str(SCENARIOS / "inventory_to_planner.yaml")
    assert invoke("run", scenario, "--store", "normalized", "--db", str(db))[0] == 0
    before = db.read_bytes()
    code, _, err = invoke("run", scenario, "--store", "sqlite", "--db", str(db))
    assert code == 2
    assert "normalized layout" in err and "--store normalized" in err
    assert db.read_bytes() == before


@pytest.mark.parametrize("variant", [None, "upsert-overwrite"])
def test_the_normalized_store_logs_what_the_sqlite_store_logs(
    tmp_path: Path, variant: str | None
) -> None:
    """Same seed, same history: the layout under the store changes no event."""
    logs = {}
    for store in ("sqlite", "normalized"):
        log = tmp_path / f"{store}.jsonl"
        args = ["run", str(SCENARIOS), "--store", store, "--log-file", str(log)]
        invoke(*args, *(("--variant", variant) if variant else ()))
        logs[store] = log.read_bytes()
    assert logs["sqlite"] and logs["sqlite"] == logs["normalized"]
