"""Pictures of a run: swimlanes drawn with matplotlib (the ``plot`` extra).

One panel per run, one lane per conversation: turns are bars coloured by the runtime bound
when their inference started (:mod:`sim.colours`, as on the web pages), profile switches
are ticks across the lane (a triangle marks one made while an inference ran), every stored
save is a tick under the bars in the colour of the runtime it stored (a red ring when that
is not its turn's runtime), and refused or failed saves are red crosses (retried ones
orange). A bar with a red edge is a turn the log's checkers found wrong.

What a caller may rely on:

* :func:`write_plot` writes ``.svg``, ``.png`` or ``.html`` (a self-contained page with the
  SVG inline: no script, no outside request), chosen by the file's suffix;
  :func:`run_svg` gives the SVG text of one run's events (the explore report embeds it).
* The same log gives the same bytes: no date or random id is written, and the fonts are
  matplotlib's own (the same on every machine).
* matplotlib is imported only when drawing; :func:`require_matplotlib` says how to install
  it when it is missing.
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sim.colours import FAILURE, runtime_colours
from sim.logs.swimlane import Swimlanes, all_swimlanes
from sim.logs.timeline import RunTimeline, build_timelines

#: The formats :func:`write_plot` writes, by suffix.
FORMATS = (".svg", ".png", ".html")
_RETRY = "#ff7f0e"
_INK = "#1d232a"
_LANE_HEIGHT_IN = 0.62
_PANEL_EXTRA_IN = 1.0
#: Most lanes (conversations, over all runs) one picture holds: past it lanes are too thin
#: to read and the image too tall for viewers; a filter picks the ones to see.
MAX_LANES = 150


class PlotError(Exception):
    """A picture cannot be drawn: unknown format, matplotlib missing, nothing to draw."""


def require_matplotlib() -> None:
    """Raise :class:`PlotError` saying how to install matplotlib when it is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(
            "pictures need matplotlib, which is not installed: pip install 'turnsim[plot]'"
        ) from None


def plot_format(path: str | os.PathLike[str]) -> str:
    """The format ``path`` asks for (``.svg``, ``.png`` or ``.html``), or :class:`PlotError`."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise PlotError(
            f"cannot tell the picture's format from its name; end it in {', '.join(FORMATS)}"
        )
    return suffix


def _short_conv(conv_id: str, scenario: str) -> str:
    """``inflight-switch.c1`` shows as ``c1`` under the panel titled inflight-switch."""
    prefix = f"{scenario}."
    return conv_id[len(prefix) :] if scenario and conv_id.startswith(prefix) else conv_id


def _draw_panel(ax: Any, run: Swimlanes, colours: dict[str, str]) -> None:
    from matplotlib.patches import Rectangle

    lanes = run.lanes
    span = max(run.end_ms, 1)
    min_width = span / 250  # an instant still shows
    for row, lane in enumerate(lanes):
        y = len(lanes) - 1 - row  # the first conversation on top
        ax.axhspan(y - 0.5, y + 0.5, color="#f3f5f7" if row % 2 else "#ffffff", zorder=0)
        for bar in lane.bars:
            width = max(bar.end_ms - bar.start_ms, min_width)
            failed = bar.outcome in ("failed", "cancelled", "refused")
            ax.add_patch(
                Rectangle(
                    (bar.start_ms, y - 0.22),
                    width,
                    0.44,
                    facecolor=colours[bar.runtime],
                    edgecolor=FAILURE if bar.bad else _INK,
                    linewidth=2.2 if bar.bad else 0.6,
                    hatch="///" if failed else None,
                    zorder=2,
                )
            )
            if width > span / 30:
                ax.text(
                    bar.start_ms + width / 2,
                    y,
                    bar.label,
                    ha="center",
                    va="center",
                    fontsize=7.5,
                    color="#000000",
                    zorder=3,
                    clip_on=True,
                )
        for switch in lane.switches:
            ax.vlines(switch.t_ms, y - 0.42, y + 0.42, color=_INK, linewidth=1.6, zorder=4)
            if switch.inflight:
                ax.plot(
                    [switch.t_ms],
                    [y + 0.42],
                    marker="v",
                    markersize=7,
                    color=colours[switch.runtime],
                    markeredgecolor=_INK,
                    zorder=5,
                )
        for save in lane.saves:
            ax.plot(
                [save.t_ms],
                [y - 0.36],
                marker="|",
                markersize=9,
                markeredgewidth=2,
                color=colours[save.runtime],
                zorder=4,
            )
            if save.wrong:
                ax.plot(
                    [save.t_ms],
                    [y - 0.36],
                    marker="o",
                    markersize=9,
                    fillstyle="none",
                    color=FAILURE,
                    zorder=4,
                )
        for failure in lane.failures:
            retry = failure.kind == "retry"
            ax.plot(
                [failure.t_ms],
                [y - 0.36],
                marker="x",
                markersize=6 if retry else 8,
                markeredgewidth=2,
                color=_RETRY if retry else FAILURE,
                zorder=5,
            )
    ax.set_ylim(-0.6, len(lanes) - 0.4)
    ax.set_yticks(
        range(len(lanes)), [_short_conv(lane.conv_id, run.scenario) for lane in reversed(lanes)]
    )
    ax.set_xlim(-span * 0.01, span * 1.02)
    ax.set_title(
        run.title, loc="left", fontsize=10, color=FAILURE if run.result == "fail" else _INK
    )
    ax.set_xlabel("virtual time (ms)", fontsize=8)
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _legend_handles(colours: dict[str, str]) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [
        Patch(facecolor=colour, edgecolor=_INK, linewidth=0.6, label=runtime or "(unknown)")
        for runtime, colour in colours.items()
    ]

    def marker(colour: str, shape: str, label: str, **style: Any) -> Any:
        return Line2D([], [], color=colour, marker=shape, linestyle="", label=label, **style)

    handles += [
        marker(_INK, "|", "switch", markersize=12),
        marker(_INK, "v", "switch during an inference"),
        marker(_INK, "|", "save", markeredgewidth=2),
        marker(FAILURE, "o", "save of another runtime", fillstyle="none"),
        marker(FAILURE, "x", "refused / failed save", markeredgewidth=2),
        marker(_RETRY, "x", "retried save", markeredgewidth=2),
        Patch(facecolor="#ffffff", edgecolor=FAILURE, linewidth=2, label="turn found wrong"),
        Patch(facecolor="#ffffff", edgecolor=_INK, hatch="///", label="failed / cancelled"),
    ]
    return handles


def figure(runs: Sequence[Swimlanes]) -> Any:
    """A matplotlib Figure of ``runs``, one panel each (not attached to pyplot)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    if not runs:
        raise PlotError("nothing to draw: no conversation in the selected events")
    lanes = sum(len(run.lanes) for run in runs)
    if lanes > MAX_LANES:
        raise PlotError(
            f"{lanes} conversations in {len(runs)} run(s) are too many for one picture (at most "
            f"{MAX_LANES}): choose some with --scenario or --conv"
        )
    colours = runtime_colours(r for run in runs for r in run.runtimes)
    heights = [max(len(run.lanes), 1) * _LANE_HEIGHT_IN + _PANEL_EXTRA_IN for run in runs]
    legend_in = 0.45 + 0.22 * -(-(len(colours) + 8) // 4)
    fig = Figure(figsize=(10, sum(heights) + legend_in), layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, run in zip(axes, runs, strict=True):
        _draw_panel(ax, run, colours)
    fig.legend(
        handles=_legend_handles(colours),
        loc="outside lower center",
        ncols=4,
        fontsize=8,
        frameon=False,
    )
    return fig


def _render(fig: Any, fmt: str) -> bytes:
    import matplotlib

    out = io.BytesIO()
    # A fixed salt and no date: the same picture is the same bytes.
    with matplotlib.rc_context({"svg.hashsalt": "turnsim", "svg.fonttype": "path"}):
        if fmt == "png":
            fig.savefig(out, format="png", dpi=120, metadata={"Software": None})
        else:
            fig.savefig(out, format="svg", metadata={"Date": None, "Creator": None})
    return out.getvalue()


def svg_of(runs: Sequence[Swimlanes]) -> str:
    """The SVG text of ``runs`` (a document with its XML header)."""
    return _render(figure(runs), "svg").decode("utf-8")


def _inline(svg: str) -> str:
    """An SVG document as an element to put inside HTML (no XML prolog or doctype)."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def run_svg(events: Iterable[dict[str, Any]], *, scenario: str = "", seed: object = None) -> str:
    """The swimlanes of the runs in ``events`` as inline SVG.

    ``scenario`` and ``seed`` title a run whose events do not name them (a run's recorded
    events, unlike its log lines, carry neither).
    """
    runs = build_timelines(events)
    for run in runs:
        run.scenario = run.scenario or scenario
        run.seed = seed if run.seed is None else run.seed
    return _inline(svg_of(all_swimlanes(runs)))


def html_page(runs: Sequence[Swimlanes], title: str) -> str:
    """A self-contained page: the picture inline, and a line per run."""
    rows = "\n".join(
        f"<li>{html.escape(run.title)}: {len(run.lanes)} conversation"
        f"{'' if len(run.lanes) == 1 else 's'}, {sum(len(lane.bars) for lane in run.lanes)} "
        "turns</li>"
        for run in runs
    )
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d232a}"
        "svg{max-width:100%;height:auto}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<ul>\n{rows}\n</ul>\n"
        f"{_inline(svg_of(runs))}\n</body>\n</html>\n"
    )


def write_plot(
    runs: Iterable[RunTimeline], path: str | os.PathLike[str], *, title: str = ""
) -> list[Swimlanes]:
    """Draw ``runs`` into ``path`` (``.svg``, ``.png`` or ``.html``); return what was drawn.

    Raises :class:`PlotError` for an unknown suffix, a missing matplotlib or nothing to draw,
    before anything is written.
    """
    fmt = plot_format(path)
    require_matplotlib()
    pictures = all_swimlanes(runs)
    if not pictures:
        raise PlotError("nothing to draw: no conversation in the selected events")
    if fmt == ".html":
        data = html_page(pictures, title or f"turnsim: {Path(path).name}").encode("utf-8")
    else:
        data = _render(figure(pictures), fmt.lstrip("."))
    Path(path).write_bytes(data)
    return pictures
