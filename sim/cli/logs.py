"""``turnsim logs``: read, filter and explain a run's JSON-lines log.

A thin click layer: the options become a :class:`~sim.logs.select.LogFilter` and a view;
reading is :mod:`sim.logs.read`, the views' models :mod:`sim.logs.timeline` and
:mod:`sim.logs.summary`, their text :mod:`sim.logs.render`.

Exit codes: 0 (malformed lines are reported on stderr and skipped, the rest is still
shown), 2 for bad input (a missing file, contradictory options).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import IO

import click

from persisters.model import dumps
from sim.cli._common import emit_json, fail
from sim.events import CATALOGUE
from sim.logs.read import LogFileError, LogLine, Malformed, check_log_path, read_logs
from sim.logs.render import Screen, event_lines, print_summary, timeline_lines
from sim.logs.select import LogFilter, Selector
from sim.logs.summary import SummaryBuilder
from sim.logs.timeline import RunTimeline, TimelineBuilder

#: Malformed lines reported one by one on stderr; the rest are only counted.
MAX_REPORTED = 100


def _use_color(choice: str, stream: IO[str]) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


class _Reporter:
    """Reports malformed lines on stderr (the first MAX_REPORTED) and counts them all."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, bad: Malformed) -> None:
        self.count += 1
        if self.count <= MAX_REPORTED:
            click.echo(str(bad), err=True)

    def finish(self, events_read: int) -> None:
        if not self.count:
            return
        shown = f" (first {MAX_REPORTED} shown)" if self.count > MAX_REPORTED else ""
        hint = ""
        if not events_read:
            hint = "; no JSON event found: was it written with --log-format console?"
        plural = "s" if self.count != 1 else ""
        click.echo(
            f"turnsim logs: {self.count} malformed line{plural} skipped{shown}{hint}", err=True
        )


@click.command("logs", epilog="Docs: docs/logs.md (views, filters, recipes, the event catalogue).")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--conv", "convs", multiple=True, metavar="ID", help="Conversation id, glob, or short name."
)
@click.option(
    "--turn",
    "turns",
    multiple=True,
    metavar="TURN",
    help="Turn label (t2), turn or inference id or a 4+ character prefix.",
)
@click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    metavar="KEY",
    help="Runtime key, glob (planner@*) or slug (planner), in any runtime field.",
)
@click.option("--event", "events", multiple=True, metavar="GLOB", help="Event name glob.")
@click.option("--scenario", "scenarios", multiple=True, metavar="GLOB", help="Scenario name glob.")
@click.option(
    "--since", "since_ms", type=click.IntRange(min=0), metavar="MS", help="From virtual ms."
)
@click.option(
    "--until", "until_ms", type=click.IntRange(min=0), metavar="MS", help="Up to virtual ms."
)
@click.option(
    "--level", type=click.Choice(["debug", "info", "warning", "error"]), help="Lowest level."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Selected lines unchanged (or the view as JSON)."
)
@click.option("--timeline", is_flag=True, help="One readable timeline per conversation.")
@click.option("--summary", is_flag=True, help="Counts per event, runtime and conversation.")
@click.option(
    "--plot",
    "plot_path",
    metavar="OUT",
    help="Draw swimlanes (a lane per conversation) into OUT.svg, OUT.png or OUT.html.",
)
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour the output (auto: on a terminal, unless NO_COLOR is set).",
)
@click.option(
    "--width",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Wrap lines at N columns, continuation lines indented (0: never wrap; default: "
    "the timeline and summary at the terminal's width, nothing into a pipe or file).",
)
def logs(
    files: tuple[str, ...],
    convs: tuple[str, ...],
    turns: tuple[str, ...],
    runtimes: tuple[str, ...],
    events: tuple[str, ...],
    scenarios: tuple[str, ...],
    since_ms: int | None,
    until_ms: int | None,
    level: str | None,
    as_json: bool,
    timeline: bool,
    summary: bool,
    plot_path: str | None,
    color: str,
    width: int | None,
) -> None:
    """Read a log written by `turnsim run --log-file` ('-' for stdin; gzip is fine).

    Without a view option every selected event is printed as one readable line.
    Filters combine with AND; a filter given several times matches any of its values.
    The file is streamed: a log of millions of lines is never held in memory.
    """
    if sum(map(bool, (timeline, summary, plot_path))) > 1:
        fail("choose one of --timeline, --summary and --plot")
    if plot_path is not None:
        _check_plot_path(plot_path)
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        fail(f"--since {since_ms} is after --until {until_ms}; nothing could match")
    if files.count("-") > 1:
        fail("stdin ('-') can be read only once")
    for path in files:
        try:
            check_log_path(path)
        except LogFileError as exc:
            fail(str(exc))
    for pattern in events:
        if not any(fnmatchcase(name, pattern) for name in CATALOGUE):
            click.echo(
                f"turnsim logs: --event {pattern!r} matches no catalogue event "
                "(names are dotted, e.g. 'snapshot.*'; see docs/logs.md)",
                err=True,
            )
    spec = LogFilter(
        convs=convs,
        turns=turns,
        runtimes=runtimes,
        events=events,
        scenarios=scenarios,
        since_ms=since_ms,
        until_ms=until_ms,
        level=level,
    )
    reporter = _Reporter()
    out = sys.stdout
    # The line view is records, one per line: it wraps only when asked (--width N).
    wrap = _width(width, out) if timeline or summary else (width or None)
    screen = Screen(out, color=_use_color(color, out), width=wrap)
    try:
        if plot_path is not None:
            read = _run_plot(files, spec, reporter, plot_path, as_json)
        else:
            read = _run_view(files, spec, reporter, screen, as_json, timeline, summary)
    except LogFileError as exc:
        fail(str(exc))
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)
    reporter.finish(read)


def _check_plot_path(path: str) -> None:
    """Refuse a picture that cannot be written before reading a line of the log."""
    from sim.logs.plot import PlotError, plot_format, require_matplotlib

    try:
        plot_format(path)
        require_matplotlib()
    except PlotError as exc:
        fail(f"--plot {path}: {exc}")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        fail(f"--plot {path}: no folder {folder!r} to write it in")
    if os.path.isdir(path):
        fail(f"--plot {path}: is a directory")


def _run_plot(
    files: tuple[str, ...], spec: LogFilter, reporter: _Reporter, path: str, as_json: bool
) -> int:
    """Draw every run of the logs (its selected events) into ``path``; return events read."""
    from sim.logs.plot import PlotError, write_plot

    select = None if spec.empty else Selector(spec)
    builder = TimelineBuilder()
    runs: list[RunTimeline] = []
    read = 0
    for line in read_logs(files, reporter, stdin=sys.stdin.buffer):
        read += 1
        runs.extend(builder.feed(line.event, select is None or select(line.event)))
    runs.extend(builder.close())
    try:
        names = ", ".join("<stdin>" if f == "-" else os.path.basename(f) for f in files)
        pictures = write_plot(runs, path, title=f"turnsim logs: {names}")
    except PlotError as exc:
        reporter.finish(read)
        fail(f"--plot {path}: {exc}")
    except OSError as exc:
        fail(f"--plot {path}: {exc.strerror or exc}")
    conversations = sum(len(p.lanes) for p in pictures)
    turns = sum(len(lane.bars) for p in pictures for lane in p.lanes)
    if as_json:
        emit_json(
            {"plot": path, "runs": len(pictures), "conversations": conversations, "turns": turns}
        )
    else:
        click.echo(
            f"wrote {path}: {len(pictures)} run{'s' if len(pictures) != 1 else ''}, "
            f"{conversations} conversation{'s' if conversations != 1 else ''}, {turns} turn"
            f"{'s' if turns != 1 else ''}"
        )
    return read


def _width(chosen: int | None, stream: IO[str]) -> int | None:
    """The wrapping width: as chosen (0: none), else the terminal's, else none."""
    if chosen is not None:
        return chosen or None
    if getattr(stream, "isatty", lambda: False)():
        return shutil.get_terminal_size().columns
    return None


def _quiet_stdout() -> None:
    """After a closed pipe (``| head``), send what Python flushes at exit to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


def _run_view(
    files: tuple[str, ...],
    spec: LogFilter,
    reporter: _Reporter,
    screen: Screen,
    as_json: bool,
    timeline: bool,
    summary: bool,
) -> int:
    """Stream the logs through the chosen view; return how many events were read."""
    select = None if spec.empty else Selector(spec)
    out = screen.out
    read = 0

    def lines() -> Iterator[LogLine]:
        nonlocal read
        for line in read_logs(files, reporter, stdin=sys.stdin.buffer):
            read += 1
            yield line

    if timeline:
        builder = TimelineBuilder()
        for line in lines():
            selected = select is None or select(line.event)
            for run in builder.feed(line.event, selected):
                _emit_run(run, screen, as_json)
        for run in builder.close():
            _emit_run(run, screen, as_json)
    elif summary:
        counter = SummaryBuilder(CATALOGUE)
        for line in lines():
            if select is None or select(line.event):
                counter.add(line.event)
        counter.summary.lines = read + reporter.count
        counter.summary.malformed = reporter.count
        if as_json:
            emit_json(counter.summary.to_json())
        else:
            print_summary(counter.summary, out, screen.color, screen.width)
    elif as_json:
        binary = sys.stdout.buffer
        write = binary.write
        for line in lines():
            if select is None or select(line.event):
                raw = line.raw
                write(raw if raw.endswith(b"\n") else raw + b"\n")
        binary.flush()
    else:
        write = screen.write
        selected_events = (x.event for x in lines() if select is None or select(x.event))
        for segments in event_lines(selected_events):
            write(segments)
    screen.flush()
    return read


def _emit_run(run: RunTimeline, screen: Screen, as_json: bool) -> None:
    if run.empty:
        return
    if as_json:
        screen.out.write(dumps(run.to_json()) + "\n")
        return
    write = screen.write
    for segments in timeline_lines(run):
        write(segments)
