"""``turnsim explore``: run scenarios under many seeds on every core (or a Dask cluster),
group failures, shrink them; ``turnsim explore merge`` combines shards' reports.

Exit codes as everywhere: 0 every seed passed, 1 a seed failed, 2 bad input; 130 when
Ctrl-C stopped it (the report still covers what ran).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from sim.cli._common import BACKENDS, emit_json, fail, parse_store, store_option
from sim.printable import printable
from sim.scenario.parse import MAX_INT

#: Below this many runs, explore without --jobs stays in this process.
SMALL = 100


class _ExploreGroup(click.Group):
    """``explore PATHS...`` runs the default (hidden) command; ``explore merge`` merges."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


class _DefaultCommand(click.Command):
    """Shows its usage as the group's own (``turnsim explore [OPTIONS] [PATHS]...``)."""

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
        formatter.write_usage(path, " ".join(self.collect_usage_pieces(ctx)))


@click.group(cls=_ExploreGroup)
def explore() -> None:
    """Run scenarios under many seeds, on every core or a cluster; merge shards."""


@explore.command("run", cls=_DefaultCommand, hidden=True)
@click.argument("paths", nargs=-1)
@click.option(
    "--seeds",
    "count",
    type=click.IntRange(1, 10_000_000),
    default=100,
    show_default=True,
    help="How many seeds to run each scenario under.",
)
@click.option(
    "--start",
    type=click.IntRange(0, MAX_INT),
    default=0,
    show_default=True,
    help="The first seed (seeds START .. START+SEEDS-1).",
)
@click.option(
    "--variant",
    default=None,
    help="Re-introduce bug variants, e.g. late-snapshot-runtime (combine with '+').",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 1024),
    default=None,
    help="Worker processes [default: the number of cores; this process alone for fewer "
    f"than {SMALL} runs]; 1 runs in this process.",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    default=None,
    help="Run on the workers of this Dask scheduler (needs turnsim[cluster]).",
)
@click.option(
    "--shard",
    metavar="K/N",
    default=None,
    help="Explore only block K of N of the seeds (merge the reports with `explore merge`).",
)
@click.option(
    "--rerun",
    "rerun_report",
    metavar="REPORT",
    type=click.Path(exists=True),
    default=None,
    help="Re-run only the failing seeds of an earlier report.json (or its folder).",
)
@click.option(
    "--failure-db",
    "failure_db",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder remembering failing seeds, replayed first next time [default: .turnsim/failures].",
)
@click.option(
    "--no-failure-db",
    is_flag=True,
    help="Neither replay nor remember failing seeds.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="explore-report",
    show_default=True,
    help="Folder for report.json and the falsifying examples.",
)
@click.option("--shrink/--no-shrink", default=True, show_default=True, help="Shrink failures.")
@click.option(
    "--shrink-runs",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Most runs spent shrinking one failure.",
)
@click.option(
    "--show",
    type=click.IntRange(0, 10_000_000),
    default=10,
    show_default=True,
    help="Failing seeds listed per group (0: all; the report lists every one).",
)
@click.option(
    "--html",
    "html_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write a web page of the report (seed strip, switch timing, failing runs "
    "drawn) to DIR/index.html; needs matplotlib (turnsim[plot]).",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="asyncio", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@store_option("memory")
def run(
    paths: tuple[str, ...],
    count: int,
    start: int,
    variant: str | None,
    jobs: int | None,
    scheduler: str | None,
    shard: str | None,
    rerun_report: str | None,
    failure_db: str | None,
    no_failure_db: bool,
    out_dir: str,
    shrink: bool,
    shrink_runs: int,
    show: int,
    html_dir: str | None,
    backend: str,
    as_json: bool,
    progress: bool,
    store_spec: str,
) -> None:
    """Run each scenario under many seeds and check every invariant.

    Each seed perturbs the schedule within the scenario's constraints: latency jitter per
    phase (profile jitter_ms), the order of simultaneously ready actors, and the timing of
    switches marked `at: random`. Seeds run in batches on --jobs worker processes (or the
    workers of a Dask --scheduler) on the in-memory store; a failing seed is re-checked on
    a SQLite file, so its `turnsim run FILE --seed N` command replays it exactly.

    Failing seeds are grouped, one group per distinct failure: the same first violation,
    shrunk to the same smallest scenario (the falsifying example, written next to the
    report). Failing seeds are remembered (--failure-db) and run first next time;
    --rerun REPORT runs only an earlier report's failures. --shard K/N explores one block
    of the seeds; `turnsim explore merge REPORT...` combines the shards' reports.
    """
    from sim.runtime.variants import UnknownVariantError, parse_variants
    from sim.scenario.exploration import Shard
    from sim.scenario.explore import Settings, plan, plan_rerun
    from sim.scenario.failure_db import DEFAULT_PATH, FailureDatabase

    store = parse_store(store_spec)
    if html_dir is not None:
        _check_html_dir(html_dir)
    seeds = range(0)  # a re-run has no range: the page then names the report's seeds
    database = None if no_failure_db else FailureDatabase(failure_db or DEFAULT_PATH)
    if rerun_report is not None:
        if paths or variant or shard:
            fail(
                "--rerun takes the scenarios, variants and seeds from the report: drop the "
                "scenario paths, --variant and --shard"
            )
        report = Path(rerun_report)
        report = report / "report.json" if report.is_dir() else report
        try:
            targets = plan_rerun(json.loads(report.read_text(encoding="utf-8")), str(report))
        except (OSError, ValueError) as exc:  # unreadable, not JSON, not a report, a
            fail(f"--rerun {report}: {exc}")  # scenario file gone or broken (ScenarioError)
        header = f"turnsim explore: re-running the failing seeds of {report}"
        if not targets:
            click.echo(f"{header}: it has none; nothing to run")
            sys.exit(0)
    else:
        if not paths:
            fail("give scenario files or folders to explore (or --rerun REPORT)")
        try:
            variants = parse_variants(variant)
        except UnknownVariantError as exc:
            fail(str(exc))
        if start + count - 1 > MAX_INT:
            # a shrunk scenario records its seed in the file, where seeds stop at 2**53
            fail(f"--start {start} with --seeds {count} runs past the largest seed ({MAX_INT})")
        try:
            parts = Shard.parse(shard) if shard is not None else None
        except ValueError as exc:
            fail(str(exc))
        seeds = range(start, start + count)
        targets = plan(_sources(paths), variants, seeds, shard=parts, database=database)
        header = (
            f"turnsim explore: {len(targets)} scenario(s) x {len(seeds)} seeds "
            f"({seeds.start}..{seeds.stop - 1})"
            + (f", shard {parts} ({len(targets[0].seeds)} seeds)" if parts else "")
            + (f", variant {'+'.join(variants)}" if variants else "")
        )
    if scheduler and jobs is not None:
        fail("--jobs and --scheduler exclude each other (the cluster's workers are the jobs)")
    settings = Settings(
        store=store.target or store.kind,
        backend=backend,
        shrink=shrink,
        shrink_runs=shrink_runs,
        out_dir=out_dir,
        outcomes=html_dir is not None,
    )
    _explore_and_report(
        targets,
        settings,
        jobs,
        scheduler,
        database,
        header,
        show,
        as_json,
        progress,
        html=(html_dir, seeds) if html_dir is not None else None,
    )


def _sources(paths: tuple[str, ...]) -> list[Any]:
    """Every scenario file under ``paths``, read and parsed; bad input exits 2."""
    from sim.scenario.batches import Source
    from sim.scenario.parse import ScenarioError, discover, read_scenario_text

    try:
        files = discover(list(paths))
        if not files:
            fail(f"no scenario files (*.yaml) under {', '.join(paths)}")
        sources = [Source(str(f), read_scenario_text(f)) for f in files]
        for source in sources:
            source.scenario()  # validates, with file:line:column
        return sources
    except ScenarioError as exc:
        fail(str(exc))


def _explore_and_report(
    targets: list[Any],
    settings: Any,
    jobs: int | None,
    scheduler: str | None,
    database: Any,
    header: str,
    show: int,
    as_json: bool,
    progress: bool,
    *,
    html: tuple[str, range] | None = None,
) -> None:
    from sim.logs.setup import configure_logging
    from sim.scenario.cluster import ClusterError
    from sim.scenario.executors import cores
    from sim.scenario.explore import describe, explore, open_executor, write_examples, write_report

    configure_logging(fmt="console", level="error")  # the report says what failed
    if jobs is None:
        planned = sum(t.exploration().planned for t in targets)
        jobs = cores() if planned >= SMALL else 1  # starting workers costs ~0.5-1 s
    try:
        executor = open_executor(jobs, scheduler)
    except (ImportError, ClusterError) as exc:
        fail(str(exc))
    started = time.perf_counter()
    with _stop_on_sigint() as stopping, _progress(progress) as listener:
        try:
            outcome = explore(
                targets,
                settings,
                executor,
                listener=listener,
                database=database,
                should_stop=stopping,
            )
        finally:
            executor.close()
    wall_s = time.perf_counter() - started
    found = outcome.explorations
    rate = runs_per_s(found, outcome.explore_s)
    write_examples(found)
    run_info = {
        "store": settings.store,
        "backend": settings.backend,
        "executor": executor.describe(),
        "workers": executor.workers,
        "failure_db": str(database.root) if database is not None else None,
        "wall_s": round(wall_s, 3),
        "explore_s": round(outcome.explore_s, 3),
        "shrink_s": round(outcome.shrink_s, 3),
        "runs_per_s": rate,
        "interrupted": outcome.interrupted,
        "error": outcome.error,
    }
    report = write_report(settings.out_dir, found, run_info)
    page = None
    if html is not None:
        page = _write_html(html[0], targets, found, html[1], report, settings)
    for warning in outcome.warnings:
        click.echo(f"turnsim: warning: {warning}", err=True)
    if as_json:
        from sim.scenario.exploration import report_json

        emit_json(
            {
                **report_json(found),
                "run": run_info,
                "report": report,
                "interrupted": outcome.interrupted,
                **({"html": page} if page is not None else {}),
            }
        )
    else:
        lines = [header]
        for e in found:
            lines.extend(describe(e, show=show))
        runs = sum(e.runs for e in found)
        failed_runs = sum(len(e.failed) for e in found)
        shrunk = f", shrinking {outcome.shrink_s:.1f}s" if outcome.shrink_s else ""
        lines.append(
            f"{runs - failed_runs} passed, {failed_runs} failed ({runs} runs, "
            f"{sum(e.turns for e in found)} turns, {sum(e.switches for e in found)} switches, "
            f"{sum(e.faults_injected for e in found)} faults injected): "
            f"{rate:,.1f} runs/s on {executor.describe()}, store {settings.store} "
            f"({outcome.explore_s:.1f}s{shrunk})"
        )
        lines.append(f"report: {report}")
        if page is not None:
            lines.append(f"web page: {page}")
        if outcome.interrupted:
            lines.append("interrupted: the figures above cover only the seeds that ran")
        click.echo(printable("\n".join(lines), keep_newlines=True))  # names from files
    if outcome.error is not None:
        fail(f"{outcome.error}; the report covers the seeds that ran: {report}")
    if outcome.interrupted:
        sys.exit(130)
    sys.exit(0 if all(e.passed for e in found) else 1)


def _check_html_dir(html_dir: str) -> None:
    """Refuse ``--html DIR`` before exploring when the page could not be drawn (click has
    already refused a DIR that is a file)."""
    from sim.logs.plot import PlotError, require_matplotlib

    try:
        require_matplotlib()
    except PlotError as exc:
        fail(f"--html {html_dir}: {exc}")


def _write_html(
    html_dir: str,
    targets: list[Any],
    found: list[Any],
    seeds: range,
    report: str,
    settings: Any,
) -> str:
    """Write the report's page; each failure group's run is run once more, in this
    process on the exploration's store, to draw it (seed outcomes came back with the
    batches, from whichever process ran them)."""
    import os

    import anyio

    from persisters.stores import StoreSpec
    from sim.logs.plot import run_svg
    from sim.scenario.explore_html import build_views, write_page

    scenarios = [t.source.scenario() for t in targets]
    store = StoreSpec.parse(settings.store)

    async def views() -> list[Any]:
        return await build_views(scenarios, found, draw_run=run_svg, store=store)

    built = anyio.run(views, backend=settings.backend)
    return write_page(html_dir, built, seeds, report_json=os.path.relpath(report, html_dir))


def runs_per_s(found: list[Any], seconds: float) -> float:
    runs = sum(e.runs for e in found)
    return round(runs / seconds, 1) if seconds > 0 else 0.0


@contextmanager
def _stop_on_sigint() -> Iterator[Any]:
    """Ctrl-C asks the exploration to stop after the batches in flight (a second one
    interrupts at once); yields the callable explore polls."""
    stop = {"asked": False}

    def asked(_signum: int, _frame: Any) -> None:
        stop["asked"] = True
        signal.signal(signal.SIGINT, previous)

    try:
        previous = signal.signal(signal.SIGINT, asked)
    except ValueError:  # not the main thread: no handler, explore runs to its end
        yield lambda: False
        return
    try:
        yield lambda: stop["asked"]
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr (one bar per scenario: runs, rate, ETA, failures;
    one for shrinking) as an exploration :class:`~sim.scenario.explore.Listener`."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    from sim.scenario.explore import Listener

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            unit = task.fields["unit"]
            return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(stderr=True, highlight=False),
        disable=not enabled,
        transient=False,
    )

    class Bars(Listener):
        def __init__(self) -> None:
            self.tasks: dict[int, Any] = {}
            self.shrink_task: Any = None

        def planned(self, found: Any) -> None:
            name = found.scenario + (f" [{'+'.join(found.variants)}]" if found.variants else "")
            name = escape(printable(name))  # a name from a file: no escapes, no rich markup
            self.tasks[id(found)] = bar.add_task(name, total=found.planned, failed=0, unit="runs")

        def ran(self, found: Any, result: Any) -> None:
            bar.update(self.tasks[id(found)], advance=result.runs, failed=len(found.failed))

        def shrinking(self, jobs: int) -> None:
            self.shrink_task = bar.add_task(
                f"  shrinking {jobs} failure{'s' if jobs != 1 else ''}",
                total=jobs,
                failed=0,
                unit="shrinks",
            )

        def shrunk(self, found: Any, example: Any) -> None:
            bar.update(self.shrink_task, advance=1)

    with bar:
        yield Bars()


@explore.command("merge")
@click.argument("reports", nargs=-1, required=True)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="explore-report",
    show_default=True,
    help="Folder for the merged report.json and the falsifying examples.",
)
@click.option(
    "--show",
    type=click.IntRange(0, 10_000_000),
    default=10,
    show_default=True,
    help="Failing seeds listed per group (0: all; the report lists every one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the merged report as JSON.")
def merge(reports: tuple[str, ...], out_dir: str, show: int, as_json: bool) -> None:
    """Merge the reports of `explore --shard K/N` runs into one report.

    Each REPORT is a report.json (or the folder holding it). The shards of one
    exploration merge into the report a single run over all their seeds would have
    written: the same groups, the same falsifying examples (copied into --out). Missing
    shards are named, and the merged report is then not complete.
    """
    from sim.scenario.exploration import ReportError, report_json
    from sim.scenario.explore import (
        describe,
        merge_reports,
        relocate,
        write_examples,
        write_report,
    )

    try:
        found = merge_reports(list(reports))
    except ReportError as exc:
        fail(str(exc))
    relocate(found, out_dir)
    write_examples(found)
    run_info = {"merged": list(reports)}
    report = write_report(out_dir, found, run_info)
    if as_json:
        emit_json({**report_json(found), "run": run_info, "report": report})
    else:
        lines = [f"turnsim explore merge: {len(reports)} report(s), {len(found)} scenario(s)"]
        for e in found:
            lines.extend(describe(e, show=show))
        runs = sum(e.runs for e in found)
        failed_runs = sum(len(e.failed) for e in found)
        lines.append(f"{runs - failed_runs} passed, {failed_runs} failed ({runs} runs)")
        lines.append(f"report: {report}")
        click.echo(printable("\n".join(lines), keep_newlines=True))  # names from files
    sys.exit(0 if all(e.passed for e in found) else 1)
