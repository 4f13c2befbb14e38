"""``turnsim explore``: run scenarios under many seeds, group failures, shrink them.

Exit codes as everywhere: 0 every seed passed, 1 a seed failed, 2 bad input.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import click

from sim.cli._common import BACKENDS, emit_json, fail, load_scenarios, parse_store, store_option
from sim.logs.setup import configure_logging
from sim.printable import printable
from sim.scenario.parse import MAX_INT


@click.command()
@click.argument("paths", nargs=-1, required=True)
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
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="explore-report",
    show_default=True,
    help="Folder for report.json and the shrunk scenario files.",
)
@click.option("--shrink/--no-shrink", default=True, show_default=True, help="Shrink failures.")
@click.option(
    "--shrink-runs",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="Most runs spent shrinking one failure group.",
)
@click.option(
    "--show",
    type=click.IntRange(0, 10_000_000),
    default=10,
    show_default=True,
    help="Failing seeds listed per group (0: all; the report lists every one).",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="asyncio", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
@store_option("sqlite")
def explore(
    paths: tuple[str, ...],
    count: int,
    start: int,
    variant: str | None,
    out_dir: str,
    shrink: bool,
    shrink_runs: int,
    show: int,
    backend: str,
    as_json: bool,
    progress: bool,
    store_spec: str,
) -> None:
    """Run each scenario under many seeds and check every invariant.

    Each seed perturbs the schedule within the scenario's constraints: latency jitter per
    phase (profile jitter_ms), the order of simultaneously ready actors, and the timing of
    switches marked `at: random`. Failing seeds are printed grouped by invariant, each with
    the `turnsim run FILE --seed N` command that replays it exactly; the first seed of each
    group is shrunk to the smallest scenario that still fails the same way, written next
    to the report.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from sim.runtime.variants import UnknownVariantError, parse_variants
    from sim.scenario.explore import describe, explore_scenario, shrink_groups, write_report

    try:
        variants = parse_variants(variant)
    except UnknownVariantError as exc:
        fail(str(exc))
    if start + count - 1 > MAX_INT:
        # a shrunk scenario records its seed in the file, where seeds stop at 2**53
        fail(f"--start {start} with --seeds {count} runs past the largest seed ({MAX_INT})")
    store = parse_store(store_spec)
    scenarios = load_scenarios(paths)
    seeds = range(start, start + count)
    configure_logging(fmt="console", level="error")  # the report says what failed

    console = Console(stderr=True, highlight=False)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )

    explorations: list[Any] = []  # filled as it goes: an interrupted run still reports

    async def main() -> None:
        for scenario in scenarios:
            task = bar.add_task(scenario.name, total=len(seeds), failed=0)
            failed = 0

            def advance(_sc: Any, _seed: int, result: Any, task: Any = task) -> None:
                nonlocal failed
                failed += 0 if result.passed else 1
                bar.update(task, advance=1, failed=failed)

            found = await explore_scenario(
                scenario,
                seeds,
                variants=variants,
                on_result=advance,
                on_start=explorations.append,
                store=store,
            )
            if shrink and not found.passed:
                groups = len(found.groups())
                shrink_task = bar.add_task(
                    f"  shrinking {groups} group{'s' if groups != 1 else ''}",
                    total=groups * (shrink_runs + 2),
                    failed=failed,
                )
                await shrink_groups(
                    scenario,
                    found,
                    out_dir,
                    max_runs=shrink_runs,
                    on_run=lambda t=shrink_task: bar.update(t, advance=1),
                )
                bar.update(shrink_task, completed=groups * (shrink_runs + 2))

    interrupted = False
    with bar:
        try:
            anyio.run(main, backend=backend)
        except KeyboardInterrupt:
            interrupted = True  # report what was explored so far
    report = write_report(out_dir, explorations, seeds)
    if as_json:
        from sim.scenario.explore import report_json

        doc = report_json(explorations, seeds)
        doc["report"] = report
        doc["interrupted"] = interrupted
        emit_json(doc)
    else:
        runs = sum(e.runs for e in explorations)
        failed_runs = sum(len(e.failed) for e in explorations)
        lines = [
            f"turnsim explore: {len(explorations)} scenario(s) x {len(seeds)} seeds "
            f"({seeds.start}..{seeds.stop - 1})"
            + (f", variant {'+'.join(variants)}" if variants else "")
        ]
        for found in explorations:
            lines.extend(describe(found, show=show))
        faults = sum(e.faults_injected for e in explorations)
        lines.append(
            f"{runs - failed_runs} passed, {failed_runs} failed ({runs} runs, "
            f"{sum(e.turns for e in explorations)} turns, "
            f"{sum(e.switches for e in explorations)} switches, {faults} faults injected)"
        )
        lines.append(f"report: {report}")
        if interrupted:
            lines.append("interrupted: the figures above cover only the seeds that ran")
        click.echo(printable("\n".join(lines), keep_newlines=True))  # names from files
    if interrupted:
        sys.exit(130)
    sys.exit(0 if all(e.passed for e in explorations) else 1)
