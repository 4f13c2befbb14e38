"""`turnsim db doctor module:factory`: the history checks on a store of your own, through
the TurnStore Protocol, judged as SQLite's are."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from persisters.contract.base import payload
from persisters.model import FINAL, PRE_INFERENCE, TurnSaveOptions
from persisters.store import new_value_wins
from sim.cli.main import cli
from sim.ops.store_doctor import doctor_store
from tests.outside_store import JournalStore


@pytest.mark.anyio
async def test_a_rewritten_turn_and_a_stray_pointer_are_found() -> None:
    store = JournalStore(new_value_wins)  # the old upsert: a rewrite gets through
    await store.save("c1", "s1", "t1", PRE_INFERENCE, 1, payload("t1"), TurnSaveOptions("a@v1"))
    await store.save("c1", "s1", "t1", FINAL, 2, payload("t1"), TurnSaveOptions("b@v1"))
    await store.conversations.set_current_runtime("c1", "s1", "z@v1", "z", 3)
    report = await doctor_store(store, "mine")
    phases = report.check("phase_runtime_agreement")
    assert phases.severity == "warning"
    assert phases.result == (("c1", "s1", "t1", "pre_inference=a@v1, final=b@v1"),)
    assert report.check("conversation_pointer").severity == "warning"
    assert report.check("orphan_snapshots").severity == "ok"
    assert report.healthy  # warnings only
    assert "store.list(" in phases.sql  # says which Protocol calls it made


def test_the_command_checks_a_factory_and_refuses_a_bad_one() -> None:
    result = CliRunner().invoke(
        cli, ["db", "doctor", "tests.outside_store:journal_store", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [c["name"] for c in report["checks"]] == [
        "phase_runtime_agreement",
        "orphan_snapshots",
        "conversation_pointer",
        "unknown_rows",
    ]
    bad = CliRunner().invoke(cli, ["db", "doctor", "tests.outside_store:nothing"])
    assert bad.exit_code == 2
    assert "has no 'nothing'" in bad.stderr
