"""The pytest plugin in projects of its own (pytester): it collects scenarios where a
project keeps them, leaves every other YAML file alone, and reports failures for people
(a timeline) and for CI (junit properties)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import sim.logs.render
import sim.scenario.parse
import sim.scenario.runner
from sim.pytest_plugin import glob_regex, looks_like_scenario, parse_seeds

# pytester runs pytest in this process and forgets the modules a run imported; PyYAML's C
# loader cannot be imported twice, so everything the plugin loads is imported here first.
PRELOADED = (sim.logs.render, sim.scenario.parse, sim.scenario.runner)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
INFLIGHT = (ROOT / "scenarios" / "inflight_switch.yaml").read_text()
SMALL = """\
name: small
seed: 3
profiles:
  inventory: {runtime_key: inventory@v1}
conversations:
  c1: {profile: inventory}
steps:
  - send: {conv: c1, turn: t1, prompt: hi}
  - expect_turn: {conv: c1, turn: t1, runtime_key: inventory@v1}
"""
UNRELATED = """\
# a deployment descriptor that happens to live in scenarios/
apiVersion: v1
kind: Scenario
steps: [build, deploy]
spec: {replicas: 3
"""


def test_an_unrelated_scenarios_folder_is_left_alone(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/deploy": UNRELATED})
    pytester.makepyfile(test_app="def test_app():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "deploy.yaml" not in result.stdout.str()


def test_scenarios_are_found_in_nested_folders(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"tests/scenarios/smoke/small": SMALL})
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*small.yaml::small?asyncio? PASSED*", "*small?trio? PASSED*"])


def test_turnsim_paths_chooses_the_files(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nturnsim_paths = specs/*.yaml\n")
    pytester.makefile(".yaml", **{"specs/small": SMALL, "scenarios/other": SMALL})
    pytester.makefile(".yaml", **{"specs/broken": "name: broken\nsteps: [\n"})
    result = pytester.runpytest("--turnsim-backend", "asyncio", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)  # chosen: a broken file is an error
    result.stdout.fnmatch_lines(["*specs/broken.yaml:*invalid YAML*"])
    assert "other.yaml" not in result.stdout.str()


def test_p_no_turnsim_turns_the_plugin_off(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/small": SMALL})
    pytester.runpytest("-p", "no:turnsim").assert_outcomes()


def test_a_failure_shows_the_timeline_and_junit_properties(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/inflight_switch": INFLIGHT})
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest(
        "--turnsim-variant",
        "late-snapshot-runtime",
        "--turnsim-backend",
        "trio",
        f"--junitxml={junit}",
    )
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "timeline of the failing conversations:" in text
    assert "conversation inflight-switch.c1 · session s1" in text
    assert "⚡ IN" in text and "FLIGHT: turn t2" in text  # wrapped at the terminal's width
    assert '{"event"' not in text  # no raw JSON lines
    assert "replay: turnsim run scenarios/inflight_switch.yaml --seed 7" in text
    case = ET.parse(junit).getroot().find(".//testcase")
    assert case is not None
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props == {
        "turnsim_seed": "7",
        "turnsim_variant": "late-snapshot-runtime",
        "turnsim_backend": "trio",
        "turnsim_replay": "turnsim run scenarios/inflight_switch.yaml --seed 7 "
        "--variant late-snapshot-runtime",
    }


def test_seeds_explore_as_items(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", **{"scenarios/small": SMALL})
    result = pytester.runpytest("-v", "--turnsim-seeds", "4..6", "--turnsim-backend", "asyncio")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*small?asyncio-seed4?*", "*seed5*", "*small?asyncio-seed6?*"])
    bad = pytester.runpytest("--turnsim-seeds", "9..2")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR


def test_markers_and_xfail_come_from_the_file(pytester: pytest.Pytester) -> None:
    slow = SMALL.replace("seed: 3\n", "seed: 3\nmarkers: [slow]\n")
    doomed = INFLIGHT.replace("seed: 7\n", "seed: 7\nxfail: the late-bound hook\n")
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow\n")
    pytester.makefile(".yaml", **{"scenarios/slow": slow, "scenarios/doomed": doomed})
    deselected = pytester.runpytest("-m", "not slow", "--turnsim-backend", "asyncio")
    deselected.assert_outcomes(xpassed=1, deselected=1)  # no variant: the bug is absent
    caught = pytester.runpytest(
        "--turnsim-variant", "late-snapshot-runtime", "--turnsim-backend", "asyncio", "-rx"
    )
    caught.assert_outcomes(passed=1, xfailed=1)
    caught.stdout.fnmatch_lines(["*XFAIL*the late-bound hook*"])


def test_globs_and_sniffing() -> None:
    assert glob_regex("**/scenarios/**/*.yaml").fullmatch("scenarios/a.yaml")
    assert glob_regex("**/scenarios/**/*.yaml").fullmatch("x/y/scenarios/z/a.yaml")
    assert not glob_regex("**/scenarios/**/*.yaml").fullmatch("scenariosx/a.yaml")
    assert not glob_regex("specs/*.yaml").fullmatch("specs/deep/a.yaml")
    assert list(parse_seeds("3")) == [3] and list(parse_seeds("0..2")) == [0, 1, 2]
    assert looks_like_scenario(ROOT / "scenarios" / "inflight_switch.yaml")
    assert not looks_like_scenario(ROOT / "pyproject.toml")
