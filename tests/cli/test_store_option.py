"""`--store SPEC` on run and explore: the one way to choose a store (persisters.stores)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from persisters.stores import KINDS, StoreSpec, StoreSpecError
from sim.cli.main import cli

#: What `turnsim run scenarios/` ends with when every shipped scenario passes.
_SHIPPED = Path(__file__).resolve().parents[2] / "scenarios"
SUITE_PASSED = f"{len(list(_SHIPPED.glob('*.yaml')))} passed, 0 failed"

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_form_parses_and_anything_else_says_what_is_accepted() -> None:
    for kind in ("sqlite", "memory", "normalized"):
        assert StoreSpec.parse(f" {kind} ") == StoreSpec(kind)
    for dsn, kind in (
        ("postgresql://127.0.0.1/test", "postgresql"),
        ("postgres://u@h:5433/db?schema=s", "postgresql"),
        ("mysql://root@127.0.0.1/test", "mysql"),
        ("mariadb://root@127.0.0.1/test", "mysql"),
    ):
        assert StoreSpec.parse(dsn) == StoreSpec(kind, dsn)
    assert StoreSpec.parse("tests.outside_store:journal_store").kind == "factory"
    assert len(KINDS) == 7  # every form is in the --store help
    with pytest.raises(
        StoreSpecError, match="use one of: sqlite, memory, normalized, postgresql://"
    ):
        StoreSpec.parse("postgres")
    with pytest.raises(StoreSpecError, match="unknown scheme 'oracle://'"):
        StoreSpec.parse("oracle://db/x")


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
    """Same seed, same history: the layout under the store changes no event. (Under
    upsert-overwrite the real layout, which has no write-once triggers, overwrites as the
    memory store does, where turnsim's SQLite layout refuses.)"""
    logs = {}
    other = "memory" if variant == "upsert-overwrite" else "sqlite"
    for store in (other, "normalized"):
        log = tmp_path / f"{store}.jsonl"
        args = ["run", str(SCENARIOS), "--store", store, "--log-file", str(log)]
        invoke(*args, *(("--variant", variant) if variant else ()))
        logs[store] = log.read_bytes()
    assert logs[other] and logs[other] == logs["normalized"]


def test_a_store_written_outside_the_package_runs_the_suite() -> None:
    """The installed `turnsim` command (not `python -m`) imports it from the current
    directory, as `--store module:factory` promises."""
    turnsim = Path(sys.executable).parent / "turnsim"
    result = subprocess.run(
        [str(turnsim), "run", "scenarios/", "--store", "tests.outside_store:journal_store"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert SUITE_PASSED in result.stdout
    variant = invoke(
        "run",
        str(SCENARIOS / "second_writer.yaml"),
        "--store",
        "tests.outside_store:journal_store",
        "--variant",
        "upsert-overwrite",
    )
    assert variant[0] == 1  # the policy reaches the user's store through its factory


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:factory", "cannot import module 'no_such_module_xyz'"),
        ("tests.outside_store:nothing", "has no 'nothing'"),
        ("tests.outside_store:READ_ONLY", "is not callable"),
        ("tests.outside_store:JournalIndex", "the factory raised TypeError"),
        ("tests.cli.test_store_option:not_a_store", "returned object, not a TurnStore"),
    ],
)
def test_a_bad_factory_is_refused_with_exit_2(spec: str, message: str) -> None:
    code, _, err = invoke("run", str(SCENARIOS / "inflight_switch.yaml"), "--store", spec)
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err


def test_a_factory_without_on_conflict_cannot_run_a_policy_variant(tmp_path: Path) -> None:
    code, _, err = invoke(
        "run",
        str(SCENARIOS / "second_writer.yaml"),
        "--store",
        "tests.cli.test_store_option:policy_free_factory",
        "--variant",
        "upsert-overwrite",
    )
    assert code == 2
    assert "takes no on_conflict" in err


def not_a_store(on_conflict: Any) -> Any:
    return object()


def policy_free_factory() -> Any:
    from tests.outside_store import journal_store

    return journal_store()


def test_db_with_a_factory_store_is_refused() -> None:
    code, _, err = invoke(
        "run", str(SCENARIOS), "--store", "tests.outside_store:journal_store", "--db", "x"
    )
    assert code == 2
    assert "keeps nothing of its own" in err
