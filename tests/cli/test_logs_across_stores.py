"""Semantics do not depend on the store: a seed's log is the same bytes on every store.

`turnsim explore` runs on the memory store and `turnsim run` on a SQLite file, and a
failing seed's replay command must reproduce what explore saw. So for every shipped
scenario, on the default build and under every bug variant (whatever `turnsim variants`
lists, so a new variant is covered the day it is added), `turnsim run --log-file` writes
byte-identical logs on `--store sqlite` and `--store memory` (but for `upsert-overwrite`,
whose rewrite the SQLite file's write-once trigger refuses); the memory store's log is
also the same on trio.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from persisters.errors import TRIGGER_REFUSAL
from sim.cli.main import cli
from sim.logs.setup import configure_quiet
from sim.runtime.variants import VARIANTS

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def log_of(tmp_path: Path, store: str, *args: str) -> bytes:
    log = tmp_path / f"{store}-{len(list(tmp_path.iterdir()))}.jsonl"
    result = CliRunner().invoke(
        cli, ["run", str(SCENARIOS), "--store", store, "--log-file", str(log), *args]
    )
    configure_quiet()  # `turnsim run --log-file` leaves structlog on its (closed) file
    assert result.exit_code in (0, 1), result.output
    return log.read_bytes()


def first_difference(a: bytes, b: bytes) -> str:
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False)):
        if x != y:
            return f"line {i + 1}:\n  sqlite: {x.decode()}\n  memory: {y.decode()}"
    return f"lengths differ: {len(a.splitlines())} vs {len(b.splitlines())} lines"


@pytest.mark.parametrize("variant", ["none", *VARIANTS])
def test_every_scenario_logs_the_same_bytes_on_both_stores(tmp_path: Path, variant: str) -> None:
    args = ("--variant", variant)
    on_sqlite = log_of(tmp_path, "sqlite", *args)
    on_memory = log_of(tmp_path, "memory", *args)
    assert on_sqlite.count(b"\n") > 500  # the whole suite ran
    if variant == "upsert-overwrite":
        # By design the one exception: the memory store reproduces the real system's silent
        # overwrite, while the SQLite file's write-once trigger refuses it. The logs agree
        # up to the first save the trigger refused.
        assert on_memory != on_sqlite
        first = next(
            x
            for x, y in zip(on_sqlite.splitlines(), on_memory.splitlines(), strict=False)
            if x != y
        )
        assert TRIGGER_REFUSAL.encode() in first, first_difference(on_sqlite, on_memory)
        return
    assert on_memory == on_sqlite, first_difference(on_sqlite, on_memory)


def test_the_memory_store_logs_the_same_bytes_on_trio(tmp_path: Path) -> None:
    """Writes of one virtual instant reach the memory store in the order they were queued,
    whichever order the event loop would run concurrent tasks in."""
    args = ("--variant", "upsert-overwrite")
    on_trio = log_of(tmp_path, "memory", "--backend", "trio", *args)
    assert on_trio == log_of(tmp_path, "memory", *args)
