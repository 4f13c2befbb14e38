"""Pictures of a run: the swimlane model (``sim.logs.swimlane``), the drawing
(``sim.logs.plot``) and ``turnsim logs --plot``, over logs written by real runs."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sim.cli.main import cli
from sim.colours import FAILURE, runtime_colours
from sim.logs.plot import MAX_LANES, PlotError, figure, run_svg, write_plot
from sim.logs.read import read_events
from sim.logs.swimlane import Bar, Lane, Swimlanes, Switch, all_swimlanes
from sim.logs.timeline import build_timelines
from tests.logs.log_fixtures import run_log

INVENTORY, PLANNER = "inventory@v1", "planner@v1"
BLUE, ORANGE = (runtime_colours([INVENTORY, PLANNER])[k] for k in (INVENTORY, PLANNER))


def turnsim(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def pictures_of(log: Path) -> list[Swimlanes]:
    return all_swimlanes(build_timelines(read_events(str(log))))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One log per case, written by the shipped scenarios."""
    folder = tmp_path_factory.mktemp("plot")
    return {
        "late": run_log(
            folder, "inflight_switch.yaml", "--variant", "late-snapshot-runtime", name="late"
        ),
        "good": run_log(folder, "inflight_switch.yaml", name="good"),
        "overwrite": run_log(
            # the memory store: on SQLite the write-once trigger refuses the overwrite
            folder,
            "second_writer.yaml",
            "--variant",
            "upsert-overwrite",
            "--store",
            "memory",
            name="overwrite",
        ),
        "refused": run_log(folder, "second_writer.yaml", name="refused"),
        "retry": run_log(folder, "transient_fault.yaml", name="retry"),
        "two": _two_runs(folder),
    }


def _two_runs(folder: Path) -> Path:
    log = folder / "two.jsonl"
    result = turnsim(
        "run",
        "scenarios/inflight_switch.yaml",
        "scenarios/concurrent_conversations.yaml",
        "--log-file",
        str(log),
    )
    assert result.exit_code == 0, result.output
    return log


# --- the model ----------------------------------------------------------------------------


def test_bars_are_inferences_coloured_by_the_runtime_bound_at_start(logs: dict[str, Path]) -> None:
    [run] = pictures_of(logs["late"])
    assert run.title == "inflight-switch [late-snapshot-runtime] seed 7: FAIL"
    [lane] = run.lanes
    assert lane.conv_id == "inflight-switch.c1"
    assert [(b.label, b.runtime, b.start_ms, b.end_ms, b.outcome, b.bad) for b in lane.bars] == [
        ("t1", INVENTORY, 0, 100, "completed", False),
        ("t2", PLANNER, 100, 550, "completed", True),  # its late snapshots carried inventory
        ("t3", INVENTORY, 550, 650, "completed", False),
    ]


def test_switches_are_ticks_and_the_one_during_t2_is_marked(logs: dict[str, Path]) -> None:
    [lane] = pictures_of(logs["late"])[0].lanes
    assert lane.switches == (
        Switch(100, INVENTORY, PLANNER, inflight=False),
        Switch(150, PLANNER, INVENTORY, inflight=True),
    )


def test_saves_are_ticks_and_failed_ones_crosses(logs: dict[str, Path]) -> None:
    [lane] = pictures_of(logs["late"])[0].lanes
    t2 = [s for s in lane.saves if 100 <= s.t_ms <= 550 and s.runtime == PLANNER]
    assert [(s.t_ms, s.phase, s.event) for s in t2] == [
        (100, "pre_inference", "snapshot.saved"),
        (550, "final", "turn.persisted"),
    ]
    assert not any(s.wrong for s in lane.saves)  # the store refused every wrong one...
    assert [(f.t_ms, f.phase, f.runtime, f.kind) for f in lane.failures] == [
        (300, "post_inference", INVENTORY, "failed"),  # ...so each is a cross
        (350, "post_tools", INVENTORY, "failed"),
        (550, "final", INVENTORY, "failed"),
    ]


def test_a_correct_run_has_no_cross_and_no_wrong_turn(logs: dict[str, Path]) -> None:
    [lane] = pictures_of(logs["good"])[0].lanes
    assert lane.failures == () and not any(b.bad for b in lane.bars)
    assert [s.phase for s in lane.saves if s.runtime == PLANNER] == [
        "pre_inference",
        "post_inference",
        "post_tools",
        "final",
        "final",
    ]


def test_a_stored_save_of_another_runtime_is_wrong(logs: dict[str, Path]) -> None:
    """upsert-overwrite: the second writer's resave of t1 under planner is stored."""
    [lane] = pictures_of(logs["overwrite"])[0].lanes
    wrong = [(s.runtime, s.event) for s in lane.saves if s.wrong]
    assert wrong == [(PLANNER, "turn.resaved")]
    assert [b.bad for b in lane.bars] == [True, False]


def test_refused_and_retried_saves(logs: dict[str, Path]) -> None:
    [refused] = pictures_of(logs["refused"])[0].lanes
    assert [(f.kind, f.event) for f in refused.failures] == [("refused", "turn.resave_refused")]
    [retried] = pictures_of(logs["retry"])[0].lanes
    assert {f.kind for f in retried.failures} == {"retry"} and len(retried.failures) == 3


def test_a_run_per_panel_and_a_lane_per_conversation(logs: dict[str, Path]) -> None:
    runs = pictures_of(logs["two"])
    assert [(r.scenario, len(r.lanes)) for r in runs] == [
        ("inflight-switch", 1),
        ("concurrent-conversations", 3),
    ]


# --- the drawing --------------------------------------------------------------------------


def _fills(svg: str) -> set[str]:
    return set(re.findall(r"fill: ?(#[0-9a-f]{6})", svg))


def test_svg_colours_bars_by_runtime_and_marks_failures_red(logs: dict[str, Path]) -> None:
    svg = run_svg(read_events(str(logs["late"])))
    assert svg.startswith("<svg")
    ET.fromstring(svg)  # well-formed
    assert {BLUE, ORANGE} <= _fills(svg)
    assert f"stroke: {FAILURE}" in svg  # the crosses and the wrong turn's edge


def test_the_same_log_draws_the_same_bytes(logs: dict[str, Path], tmp_path: Path) -> None:
    for suffix in (".svg", ".png", ".html"):
        first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        write_plot(build_timelines(read_events(str(logs["two"]))), first, title="t")
        write_plot(build_timelines(read_events(str(logs["two"]))), second, title="t")
        assert first.read_bytes() == second.read_bytes(), suffix


def test_png_is_a_png(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    write_plot(build_timelines(read_events(str(logs["two"]))), out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1200 and 400 < height < 2000  # two panels, four lanes


def test_html_is_self_contained(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run.html"
    write_plot(build_timelines(read_events(str(logs["late"]))), out, title="<late>")
    page = out.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "<title>&lt;late&gt;</title>" in page
    assert "inflight-switch [late-snapshot-runtime] seed 7: FAIL" in page
    assert "<script" not in page and "src=" not in page and "<link" not in page


def test_too_many_lanes_are_refused_with_a_way_out() -> None:
    lane = Lane("c", "s", (Bar("t1", "x", INVENTORY, 0, 1, "completed", False),), (), (), ())
    lanes = [Swimlanes("s", 1, (), "pass", (lane,) * (MAX_LANES + 1))]
    with pytest.raises(PlotError, match=r"too many for one picture .* --scenario or --conv"):
        figure(lanes)
    with pytest.raises(PlotError, match="nothing to draw"):
        figure([])


# --- turnsim logs --plot ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".svg", ".png", ".html"])
def test_cli_writes_each_format(logs: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"run{suffix}"
    result = turnsim("logs", str(logs["late"]), "--plot", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out}: 1 run, 1 conversation, 3 turns\n"
    assert out.stat().st_size > 1000


def test_cli_plot_honours_filters_and_json(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "b.svg"
    result = turnsim("logs", str(logs["two"]), "--plot", str(out), "--conv", "*.b", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "plot": str(out),
        "runs": 1,
        "conversations": 1,
        "turns": 2,
    }


def test_cli_plot_reads_stdin(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "stdin.svg"
    result = CliRunner().invoke(
        cli, ["logs", "-", "--plot", str(out)], input=logs["late"].read_bytes()
    )
    assert result.exit_code == 0, result.output
    assert out.exists()


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("run.pdf", "cannot tell the picture's format from its name; end it in .svg, .png, .html"),
        ("missing/run.svg", "no folder"),
        (".", "cannot tell the picture's format"),
    ],
)
def test_cli_refuses_a_picture_it_cannot_write(
    logs: dict[str, Path], tmp_path: Path, out: str, message: str
) -> None:
    result = turnsim("logs", str(logs["late"]), "--plot", str(tmp_path / out))
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_cli_refuses_nothing_to_draw_and_two_views(logs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "none.svg"
    result = turnsim("logs", str(logs["late"]), "--plot", str(out), "--conv", "nope")
    assert result.exit_code == 2 and "nothing to draw" in result.output
    assert not out.exists()
    both = turnsim("logs", str(logs["late"]), "--plot", str(out), "--timeline")
    assert both.exit_code == 2 and "choose one of --timeline, --summary and --plot" in both.output


def test_cli_without_matplotlib_says_how_to_install_it(
    logs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = turnsim("logs", str(logs["late"]), "--plot", str(tmp_path / "x.svg"))
    assert result.exit_code == 2
    assert "pip install 'turnsim[plot]'" in result.output
