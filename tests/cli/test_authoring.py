"""Authoring aids on the command line: `turnsim new`, `turnsim schema`, the docs link in
--help, shell completion, and `turnsim variants --check` (the suite's mutation score)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli.main import cli
from sim.runtime import variants as variants_module
from sim.scenario.schema import schema_text

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_new_writes_a_template_that_runs_and_passes(tmp_path: Path) -> None:
    folder = tmp_path / "scenarios"
    code, out, err = invoke("new", "restock", "--dir", str(folder))
    assert code == 0, err
    path = folder / "restock.yaml"
    text = path.read_text()
    assert "name: restock" in text and text.count("#") > 10  # commented
    code, out, err = invoke("run", str(path), "--json")
    assert code == 0, err
    assert json.loads(out)["summary"]["passed"] == 1


def test_new_names_the_schema_inside_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "scenario.schema.json").write_text(schema_text())
    code, out, _ = invoke("new", "a", "--dir", str(tmp_path / "scenarios" / "deep"), "--json")
    assert code == 0
    assert json.loads(out)["schema"] == "../../docs/scenario.schema.json"
    first = (tmp_path / "scenarios" / "deep" / "a.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../../docs/scenario.schema.json"


def test_new_refuses_to_overwrite_and_bad_names(tmp_path: Path) -> None:
    assert invoke("new", "x", "--dir", str(tmp_path))[0] == 0
    code, _, err = invoke("new", "x", "--dir", str(tmp_path))
    assert code == 2 and "exists" in err and "--force" in err
    assert invoke("new", "x", "--dir", str(tmp_path), "--force")[0] == 0
    for bad in ("../escape", "two words", "", ".hidden"):
        code, _, err = invoke("new", bad, "--dir", str(tmp_path))
        assert code == 2 and "not a scenario name" in err, bad


def test_schema_prints_the_published_document(tmp_path: Path) -> None:
    code, out, _ = invoke("schema")
    assert code == 0 and out == (ROOT / "docs" / "scenario.schema.json").read_text()
    assert invoke("schema", "-o", str(tmp_path / "s.json"))[0] == 0
    assert (tmp_path / "s.json").read_text() == out


def test_help_links_the_docs_and_completion() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    assert "docs/" in out and "_TURNSIM_COMPLETE=bash_source" in out
    assert "docs/scenarios.md" in invoke("run", "--help")[1]


def _complete(words: str) -> list[str]:
    env = dict(
        os.environ,
        _TURNSIM_COMPLETE="bash_complete",
        COMP_WORDS=words,
        COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    )
    done = subprocess.run(
        [sys.executable, "-m", "sim"], env=env, capture_output=True, text=True, timeout=60
    )
    return done.stdout.split()


def test_shell_completion_knows_commands_and_variants() -> None:
    assert "plain,logs" in _complete("turnsim lo")
    found = _complete("turnsim run x.yaml --variant late")
    assert "plain,late-snapshot-runtime" in found
    combined = _complete("turnsim run x.yaml --variant upsert-overwrite+po")
    assert "plain,upsert-overwrite+pointer-as-history" in combined
    script = subprocess.run(
        [sys.executable, "-m", "sim"],
        env=dict(os.environ, _TURNSIM_COMPLETE="bash_source"),
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "complete " in script and "_TURNSIM_COMPLETE" in script


# -- variants --check ------------------------------------------------------------------


def test_variants_check_scores_the_suite(tmp_path: Path) -> None:
    paths = [str(ROOT / "scenarios" / n) for n in ("inflight_switch.yaml", "second_writer.yaml")]
    code, out, _ = invoke("variants", "--check", *paths, "--no-progress", "--json")
    report = json.loads(out)
    assert report["variants"] == list(variants_module.VARIANTS)
    assert report["by_variant"]["late-snapshot-runtime"] == [paths[0]]
    assert report["by_variant"]["upsert-overwrite"] == [paths[1]]
    assert "swallow-snapshot-errors" in report["uncaught"]
    assert code == 1  # a variant no scenario catches
    inflight = report["scenarios"][0]
    assert "runtime-bound-at-start" in inflight["catches"]["late-snapshot-runtime"]
    code, out, _ = invoke("variants", "--check", *paths, "--no-progress")
    assert code == 1
    assert "caught by no scenario: " in out and "swallow-snapshot-errors" in out
    caught, total = len(report["variants"]) - len(report["uncaught"]), len(report["variants"])
    assert f"mutation score: {caught}/{total} variants caught (" in out
    assert "by 2 scenarios" in out


def test_variants_check_follows_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant registered by anyone (here: one that changes nothing) is checked too."""
    monkeypatch.setitem(variants_module.VARIANTS, "no-op", "a variant that changes nothing")
    monkeypatch.setitem(
        variants_module.BUILT_IN,
        "no-op",
        variants_module.Variant("no-op", "a variant that changes nothing", lambda parts: parts),
    )
    path = str(ROOT / "scenarios" / "inventory_to_planner.yaml")
    code, out, _ = invoke("variants", "--check", path, "--no-progress", "--json")
    report = json.loads(out)
    assert "no-op" in report["variants"] and "no-op" in report["uncaught"]
    assert code == 1


def test_variants_check_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    assert invoke("variants", "--check")[0] == 2
    assert invoke("variants", "scenarios/")[0] == 2
    failing = (ROOT / "scenarios" / "inflight_switch.yaml").read_text()
    failing = failing.replace(
        "runtime_key: planner@v1}\n  - expect", "runtime_key: nope@v1}\n  - expect"
    )
    (tmp_path / "f.yaml").write_text(
        failing.replace("runtime_key: planner@v1, phases", "runtime_key: nope@v1, phases")
    )
    code, out, _ = invoke("variants", "--check", str(tmp_path / "f.yaml"), "--no-progress")
    assert code == 1 and "fails without a variant" in out
