"""The explore report as a web page (``sim.scenario.explore_html``, ``turnsim explore --html``),
over real explorations of the shipped random-switches scenario."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner, Result

from persisters.stores import StoreSpec
from sim.cli.main import cli
from sim.logs.plot import run_svg
from sim.scenario.batches import Source
from sim.scenario.executors import InProcess
from sim.scenario.exploration import Exploration
from sim.scenario.explore import Settings, explore, plan
from sim.scenario.explore_html import (
    RandomSwitch,
    build_views,
    random_switches,
    render_page,
    switch_delays,
)
from sim.scenario.parse import load_scenario, read_scenario_text
from sim.scenario.runner import run_scenario
from sim.scenario.shrink import pin_random_switches

ROOT = Path(__file__).resolve().parents[2]
RANDOM = ROOT / "scenarios" / "random_switches.yaml"
MEMORY = StoreSpec.parse("memory")
SEEDS = range(0, 8)


def turnsim(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def explore_args(html: Path, out: Path, *more: str) -> list[str]:
    """6 seeds of random-switches under upsert-overwrite, not shrunk, with ``--html``."""
    return [
        "explore",
        str(RANDOM),
        "--seeds",
        "6",
        "--variant",
        "upsert-overwrite",
        "--store",
        "memory",
        "--no-shrink",
        "--no-progress",
        "--no-failure-db",  # remembered seeds would run first in the second run
        "--out",
        str(out),
        "--html",
        str(html),
        *more,
    ]


def explored_with_outcomes(path: Path, seeds: range, out: Path, **settings: Any) -> Exploration:
    """``path`` explored in this process on the memory store, keeping each seed's outcome
    (what ``--html`` asks for)."""
    source = Source(str(path), read_scenario_text(path))
    targets = plan([source], tuple(settings.pop("variants", ())), seeds)
    chosen = Settings(store="memory", out_dir=str(out), outcomes=True, **settings)
    return explore(targets, chosen, InProcess()).explorations[0]


@pytest.fixture(scope="module")
def explored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 seeds of random-switches under upsert-overwrite (some pass, some fail), shrunk."""
    scenario = load_scenario(RANDOM)
    out = tmp_path_factory.mktemp("explore")
    found = explored_with_outcomes(
        RANDOM, SEEDS, out, variants=("upsert-overwrite",), shrink_runs=10
    )

    async def draw() -> Any:
        return await build_views([scenario], [found], draw_run=run_svg, store=MEMORY)

    return {"scenario": scenario, "found": found, "views": anyio.run(draw)}


def test_switch_delays_are_the_delays_shrinking_pins(explored: dict[str, Any]) -> None:
    scenario = explored["scenario"]
    result = anyio.run(lambda: run_scenario(scenario, seed=3, store=MEMORY))
    delays = switch_delays(result.events)
    pinned = pin_random_switches(scenario, result.events)
    random_steps = [s.index for s in scenario.steps if getattr(s.step, "at", None) == "random"]
    assert random_steps == [3, 5, 6]
    for located in pinned.steps:
        if located.index in random_steps:
            assert delays[located.index] == located.step.at
    assert set(delays) >= set(random_steps)


def test_the_exploration_keeps_every_seed_and_its_outcome(explored: dict[str, Any]) -> None:
    found = explored["found"]
    outcomes = found.outcomes
    assert [o.seed for o in outcomes] == list(SEEDS)
    assert {o.seed for o in outcomes if not o.passed} == {f.seed for f in found.failed}
    assert 0 < len(found.failed) < len(SEEDS)  # both colours in the strip


def test_random_switches_hold_each_seeds_delay_by_outcome(explored: dict[str, Any]) -> None:
    switches = random_switches(explored["scenario"], explored["found"].outcomes)
    assert [(s.index, s.within_ms) for s in switches] == [(3, 1000), (5, 1200), (6, 1500)]
    assert switches[0].describe == "step 3: switch c1 to planner within 1000 ms"
    assert switches[0].where.endswith("random_switches.yaml:24")
    failed = len(explored["found"].failed)
    for switch in switches:
        assert len(switch.passed) + len(switch.failed) + switch.unfired == len(SEEDS)
        assert len(switch.failed) <= failed
        assert all(0 <= d <= switch.within_ms for d in switch.passed + switch.failed)


def test_page_has_the_strip_the_timing_and_each_group_drawn(explored: dict[str, Any]) -> None:
    page = render_page(explored["views"], SEEDS, report_json="../out/report.json")
    found = explored["found"]
    assert page.startswith("<!doctype html>")
    assert f"{len(found.failed)} of {len(SEEDS)} runs failed" in page
    assert "When the random switches fired" in page
    assert "step 3: switch c1 to planner within 1000 ms" in page
    view = explored["views"][0]
    assert view.strip.startswith("<svg") and view.timing.startswith("<svg")
    assert [g.name for g in view.groups] == [g.first_violation for g in found.groups()]
    for group in view.groups:
        assert group.swimlanes.startswith("<svg") and group.draw_error == ""
        assert "name: random-switches" in group.scenario_text  # the shrunk scenario's YAML
        assert "shrunk to" in group.shrunk_note
        assert f"<code>{group.drawn_replay}</code>" in page
    # self-contained: no script, no stylesheet or image fetched from anywhere
    assert "<script" not in page and "<link" not in page and "src=" not in page
    assert page.count("<svg") == 2 + len(view.groups)


def test_page_of_a_passing_exploration(explored: dict[str, Any], tmp_path: Path) -> None:
    path = ROOT / "scenarios" / "inflight_switch.yaml"
    scenario = load_scenario(path)
    found = explored_with_outcomes(path, range(2), tmp_path)

    async def draw() -> Any:
        return await build_views([scenario], [found], draw_run=run_svg, store=MEMORY)

    views = anyio.run(draw)
    page = render_page(views, range(2))
    assert "every seed passed" in page and "None: every seed passed." in page
    assert "has no <code>at: random</code> switch" in page
    assert views[0].timing == "" and views[0].strip.startswith("<svg")


# --- turnsim explore --html -------------------------------------------------------------------


def test_cli_writes_the_page_beside_the_report(tmp_path: Path) -> None:
    html, out = tmp_path / "html", tmp_path / "out"
    args = explore_args(html, out)
    result = turnsim(*args, "--json")
    assert result.exit_code == 1, result.output  # some seeds fail
    doc = json.loads(result.output)
    assert doc["html"] == str(html / "index.html")
    page = (html / "index.html").read_text()
    assert "not shrunk: the first failing seed" in page
    assert 'href="../out/report.json"' in page
    again = turnsim(*args)
    assert f"web page: {html / 'index.html'}" in again.output
    assert (html / "index.html").read_text() == page  # the same exploration, the same page


def test_the_page_is_the_same_whatever_ran_the_seeds(tmp_path: Path) -> None:
    """Seed outcomes come back with the batches from the worker processes: two workers
    (several batches each) draw the same page as this process alone."""
    pages = []
    for jobs in ("1", "2"):
        html = tmp_path / f"html{jobs}"
        result = turnsim(*explore_args(html, tmp_path / "out", "--jobs", jobs, "--json"))
        assert result.exit_code == 1, result.output
        assert json.loads(result.output)["run"]["workers"] == int(jobs)
        pages.append((html / "index.html").read_text())
    assert "that drew" in pages[1]  # a failing window: the delays came back from workers
    assert pages[0] == pages[1]


def test_cli_refuses_html_without_matplotlib_before_exploring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = turnsim(
        "explore",
        str(RANDOM),
        "--seeds",
        "1",
        "--html",
        str(tmp_path / "h"),
        "--no-progress",
        "--no-failure-db",
    )
    assert result.exit_code == 2
    assert "pip install 'turnsim[plot]'" in result.output
    assert not (tmp_path / "h").exists()


def test_cli_refuses_html_onto_a_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    result = turnsim(
        "explore", str(RANDOM), "--seeds", "1", "--html", str(target), "--no-failure-db"
    )
    assert (
        result.exit_code == 2 and "not a folder" in result.output
    ) or "is a file" in result.output


def test_the_failing_window_is_the_widest_stretch_with_no_passing_seed() -> None:
    def window(passed: tuple[int, ...], failed: tuple[int, ...]) -> Any:
        return RandomSwitch(3, "f.yaml:1", "step 3", 1000, passed, failed, 0).failing_window

    assert window((5, 10, 400), (0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 500, 600)) == (11, 15, 5)
    assert window((5,), (0, 1, 7, 8)) == (0, 1, 2)  # a tie: the earliest
    assert window((5,), (5, 5)) is None  # a seed passed at the only failing delay
    assert window((1, 2), ()) is None
    assert window((), (9, 3, 3)) == (3, 9, 3)  # every seed failed: the whole range
