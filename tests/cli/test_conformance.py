"""`turnsim conformance SPEC`: the kit without pytest, one table row per rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from persisters.contract import CHECKS, RULES
from sim.cli.main import cli
from tests.servers import need

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = str(ROOT / "scenarios")
CHECK_RUNS = sum(max(1, len(c.cases)) for c in CHECKS)


def conformance(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli, ["conformance", *args, "--scenarios", SCENARIOS, "--no-progress"]
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgresql", "mysql"])
def test_every_built_in_store_holds_every_rule(kind: str) -> None:
    """The whole contract on each store; on a server one scenario and one seed, as the
    suite runs there in tests/cli/test_server_runs.py (a server store costs DDL)."""
    server = kind in ("postgresql", "mysql")
    spec = need(kind) if server else kind
    suite = str(ROOT / "scenarios" / "second_writer.yaml") if server else SCENARIOS
    seeds = "1" if server else "3"
    result = CliRunner().invoke(
        cli,
        ["conformance", spec, "--scenarios", suite, "--seeds", seeds, "--json", "--no-progress"]
        + (["--explore", str(ROOT / "scenarios" / "random_switches.yaml")] if server else []),
    )
    code, out, err = result.exit_code, result.stdout, result.stderr
    assert code == 0, out + err
    report = json.loads(out)
    assert report["passed"] is True
    assert [r["rule"] for r in report["rules"]][: len(RULES)] == list(RULES)
    assert all(r["holds"] for r in report["rules"])
    assert len(report["contract"]) == CHECK_RUNS
    assert len(report["scenarios"]) == (1 if server else len(list(Path(SCENARIOS).glob("*.yaml"))))
    assert report["exploration"]["runs"] == int(seeds)


def test_the_table_names_every_rule_and_its_verdict() -> None:
    code, out, _ = conformance("memory", "--seeds", "2")
    assert code == 0
    for rule in (*RULES, "runtime-bound", "scenarios"):
        line = next(x for x in out.splitlines() if x.startswith(rule + " "))
        assert line.endswith("holds"), line
    assert "every rule holds" in out


def test_a_broken_outside_store_is_shown_rule_by_rule() -> None:
    code, out, _ = conformance("tests.outside_store:forgetful_store", "--seeds", "3")
    assert code == 1
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert rows["write-once"].endswith("BROKEN")
    for rule in ("filters-ordering", "projection", "empty-runtime", "append-only"):
        assert rows[rule].endswith("holds"), rows[rule]
    assert "--store tests.outside_store:forgetful_store" in out  # replays name the store
    assert "some rules are broken" in out


def test_bad_input_exits_2() -> None:
    code, _, err = conformance("nonsense-store")
    assert code == 2
    assert "names no store" in err
    result = CliRunner().invoke(
        cli, ["conformance", "memory", "--scenarios", "/nowhere", "--no-progress"]
    )
    assert result.exit_code == 2
    assert "no scenario suite" in result.stderr
