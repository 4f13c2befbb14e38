"""The exploration as a web page: ``turnsim explore --html DIR`` writes ``DIR/index.html``.

One self-contained page (pictures inline as SVG, no script, no outside request), a section
per explored scenario:

* the **seed strip**: a cell per seed, green when it passed, red when it failed (grey when
  the exploration was interrupted before it ran);
* **when the random switches fired against pass/fail**: for each ``at: random`` switch of
  the scenario, how many seeds passed and failed with the switch landing at each delay
  after its step (the window that triggers the bug stands out in red);
* each **failure group**: its seeds, first message and replay commands, the shrunk
  scenario's text (or, without shrinking, the first failing seed's) and the swimlanes of
  that failing run.

It reads what exploring already has: the :class:`~sim.scenario.exploration.Exploration`
objects (as ``report.json`` holds them) with their ``outcomes``: each seed's pass/fail and
switch delays, carried back from whichever process ran it when the exploration ran with
``Settings(outcomes=True)``, and ordered by seed, so the page is the same whatever
``--jobs`` or executor ran the seeds. The failing run of each group is run once more, in
this process, to draw it; the drawing itself is passed in (``draw_run``: events to inline
SVG, :func:`sim.logs.plot.run_svg`), so this module needs nothing from ``sim.logs``.
matplotlib draws the seed pictures; :func:`sim.logs.plot.require_matplotlib` is the check.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import jinja2

from persisters.stores import SQLITE, StoreSpec
from sim.colours import FAILURE, SUCCESS, UNKNOWN
from sim.scenario.actions import SwitchProfile
from sim.scenario.exploration import Exploration, Group, SeedOutcome, switch_delays
from sim.scenario.model import Scenario
from sim.scenario.parse import parse_scenario
from sim.scenario.result import replay_command
from sim.scenario.runner import run_scenario

#: Seeds per row of the seed strip.
STRIP_ROW = 100
#: Replay commands listed per failure group on the page (report.json lists every one).
SHOW_REPLAYS = 10

#: Draws a run's recorded events as inline SVG, titled by its scenario's name and seed
#: (:func:`sim.logs.plot.run_svg`).
DrawRun = Callable[..., str]

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("sim.scenario", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# --- pictures (matplotlib, drawn only here) --------------------------------------------------


def _svg(fig: Any) -> str:
    import matplotlib

    out = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "turnsim", "svg.fonttype": "path"}):
        fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    text = out.getvalue()
    return text[text.find("<svg") :]


def seed_strip_svg(found: Exploration) -> str:
    """A cell per seed in rows of :data:`STRIP_ROW`: green passed, red failed, grey not run."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    # the range, or for a re-run (no range) the failing seeds it replayed
    seeds = list(found.seeds) or sorted(set(found.replayed))
    failed = {f.seed for f in found.failed}
    # batches finish in any order: an interrupted exploration leaves holes anywhere
    ran = {o.seed for o in found.outcomes} if found.outcomes else set(seeds[: found.runs])
    rows = -(-len(seeds) // STRIP_ROW)
    width = min(len(seeds), STRIP_ROW)
    cells = [[3] * width for _ in range(rows)]  # 3: no cell (past the last seed)
    for i, seed in enumerate(seeds):
        state = 2 if seed not in ran else (1 if seed in failed else 0)
        cells[i // STRIP_ROW][i % STRIP_ROW] = state
    fig = Figure(figsize=(10, 0.45 + 0.16 * rows), layout="constrained")
    ax = fig.subplots()
    colours = ListedColormap([SUCCESS, FAILURE, UNKNOWN, "#ffffff"])
    ax.imshow(cells, cmap=colours, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(rows), [str(seeds[r * STRIP_ROW]) for r in range(rows)], fontsize=7)
    step = 10 if width >= 20 else 1
    ax.set_xticks(range(0, width, step), [f"+{x}" for x in range(0, width, step)], fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, width)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
    ax.grid(which="minor", color="#ffffff", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    return _svg(fig)


@attrs.frozen
class RandomSwitch:
    """One ``at: random`` switch of a scenario, and what happened at each delay."""

    index: int
    where: str
    describe: str
    within_ms: int
    passed: tuple[int, ...]  # delays of the passing seeds
    failed: tuple[int, ...]
    unfired: int  # seeds whose run ended before the switch fired

    @property
    def failing_window(self) -> tuple[int, int, int] | None:
        """The widest run of delays where every seed failed: ``(first ms, last ms, seeds)``.

        Seeds sorted by delay; the longest stretch with no passing seed in it (ties: the
        earliest). None when no seed failed.
        """
        passes = set(self.passed)
        fails: dict[int, int] = {}
        for delay in self.failed:
            fails[delay] = fails.get(delay, 0) + 1
        best: tuple[int, int, int] | None = None
        current: tuple[int, int, int] | None = None
        for delay in sorted(passes | set(fails)):
            if delay in passes:  # a seed passed here: no window spans this delay
                current = None
                continue
            first, count = (current[0], current[2]) if current else (delay, 0)
            current = (first, delay, count + fails[delay])
            if best is None or current[2] > best[2]:
                best = current
        return best


def random_switches(scenario: Scenario, outcomes: Sequence[SeedOutcome]) -> list[RandomSwitch]:
    """Every ``at: random`` switch of ``scenario`` with the delays its seeds drew."""
    found = []
    for located in scenario.steps:
        step = located.step
        if not (isinstance(step, SwitchProfile) and step.at == "random"):
            continue
        index = located.index
        passed = tuple(o.delays[index] for o in outcomes if o.passed and index in o.delays)
        failed = tuple(o.delays[index] for o in outcomes if not o.passed and index in o.delays)
        found.append(
            RandomSwitch(
                index=index,
                where=f"{located.where.path}:{located.where.line}",
                describe=f"step {index}: switch {step.conv} to {step.profile} within "
                f"{step.within_ms} ms",
                within_ms=step.within_ms,
                passed=passed,
                failed=failed,
                unfired=sum(1 for o in outcomes if index not in o.delays),
            )
        )
    return found


def timing_svg(switches: Sequence[RandomSwitch]) -> str:
    """Per random switch, seeds passed (green) and failed (red) by the switch's delay."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 0.6 + 1.5 * len(switches)), layout="constrained")
    axes = fig.subplots(len(switches), 1, squeeze=False)[:, 0]
    for ax, switch in zip(axes, switches, strict=True):
        bins = min(40, max(1, switch.within_ms // 10))
        edges = [switch.within_ms * i / bins for i in range(bins + 1)]
        ax.hist(
            [list(switch.passed), list(switch.failed)],
            bins=edges,
            stacked=True,
            color=[SUCCESS, FAILURE],
            label=["passed", "failed"],
        )
        ax.set_title(switch.describe, loc="left", fontsize=9)
        ax.set_xlim(0, switch.within_ms)
        ax.set_ylabel("seeds", fontsize=8)
        ax.tick_params(labelsize=7)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1].set_xlabel("ms from the step to the switch", fontsize=8)
    axes[0].legend(fontsize=7, frameon=False, loc="upper right")
    return _svg(fig)


# --- the report -------------------------------------------------------------------------------


@attrs.frozen
class GroupView:
    """One failure group as the page shows it."""

    name: str
    seeds: tuple[int, ...]
    first_message: str
    replays: tuple[str, ...]
    scenario_text: str  # the shrunk scenario's YAML, or '' without shrinking
    shrunk_note: str
    drawn_replay: str  # the command that replays the run drawn below
    swimlanes: str  # inline SVG, or '' when the run could not be drawn
    draw_error: str


@attrs.frozen
class ScenarioView:
    """One explored scenario as the page shows it."""

    found: Exploration
    strip: str
    switches: tuple[RandomSwitch, ...]
    timing: str
    groups: tuple[GroupView, ...]


async def _group_view(
    scenario: Scenario,
    found: Exploration,
    group: Group,
    draw_run: DrawRun,
    store: StoreSpec,
) -> GroupView:
    shrunk = group.example
    if shrunk is not None:
        target = parse_scenario(shrunk.text, shrunk.path)
        seed, text, replay = shrunk.seed, shrunk.text, shrunk.replay
        note = (
            f"shrunk to {shrunk.size} (was {shrunk.original_size}; {shrunk.runs} runs tried), "
            f"written to {shrunk.path}"
        )
    else:
        target, seed, text = scenario, group.first.seed, ""
        replay = replay_command(scenario.path, seed, found.variants)
        note = f"not shrunk: the first failing seed ({seed}) of {scenario.path}"
    try:
        result = await run_scenario(target, seed=seed, variants=found.variants, store=store)
        svg, error = draw_run(list(result.events), scenario=target.name, seed=seed), ""
    except Exception as exc:  # a run that cannot be drawn still leaves the rest of the page
        svg, error = "", f"{type(exc).__name__}: {exc}"
    return GroupView(
        name=group.first_violation,
        seeds=tuple(f.seed for f in group.seeds),
        first_message=" ".join(group.first.failures[0].message.split()),
        replays=tuple(f.replay for f in group.seeds[:SHOW_REPLAYS]),
        scenario_text=text,
        shrunk_note=note,
        drawn_replay=replay,
        swimlanes=svg,
        draw_error=error,
    )


async def build_views(
    scenarios: Sequence[Scenario],
    explorations: Sequence[Exploration],
    *,
    draw_run: DrawRun,
    store: StoreSpec = SQLITE,
) -> list[ScenarioView]:
    """What the page shows for each exploration (runs each failure group's run once).

    The switch timings come from each exploration's ``outcomes`` (empty unless it ran with
    ``Settings(outcomes=True)``: the page then shows no seed as having drawn a delay).
    """
    by_key = {(s.path, s.name): s for s in scenarios}
    views = []
    for found in explorations:
        scenario = by_key[(found.path, found.scenario)]
        switches = random_switches(scenario, found.outcomes)
        groups = [
            await _group_view(scenario, found, group, draw_run, store) for group in found.groups()
        ]
        views.append(
            ScenarioView(
                found=found,
                strip=seed_strip_svg(found) if found.runs else "",
                switches=tuple(switches),
                timing=timing_svg(switches) if switches and found.runs else "",
                groups=tuple(groups),
            )
        )
    return views


def render_page(views: Sequence[ScenarioView], seeds: range, *, report_json: str = "") -> str:
    """The page's HTML."""
    return _templates.get_template("explore.html").render(
        views=views,
        seeds=seeds,
        report_json=report_json,
        passed=all(v.found.passed for v in views),
        runs=sum(v.found.runs for v in views),
        failed_runs=sum(len(v.found.failed) for v in views),
        colours={"pass": SUCCESS, "fail": FAILURE, "unknown": UNKNOWN},
    )


def write_page(
    out_dir: str | os.PathLike[str],
    views: Sequence[ScenarioView],
    seeds: range,
    *,
    report_json: str = "",
) -> str:
    """Write ``out_dir/index.html``; return its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(os.fspath(out_dir), "index.html")
    Path(path).write_text(render_page(views, seeds, report_json=report_json), encoding="utf-8")
    return path


__all__ = [
    "GroupView",
    "RandomSwitch",
    "ScenarioView",
    "SeedOutcome",
    "build_views",
    "random_switches",
    "render_page",
    "seed_strip_svg",
    "switch_delays",
    "timing_svg",
    "write_page",
]
