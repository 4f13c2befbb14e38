"""``turnsim variants --check PATH...``: the suite's mutation score, as a table (or JSON);
``turnsim variants --describe NAME``: one variant in full.

A thin layer over :func:`sim.scenario.mutation.mutation_matrix`. Exit codes: 0 every
variant is caught by some scenario, 1 a variant is caught by none (or a scenario fails
without any variant), 2 bad input.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from sim.cli._common import emit_json, fail
from sim.logs.setup import configure_logging
from sim.printable import printable
from sim.scenario.report import console_for


def check_variants(scenarios: list[Any], backend: str, progress: bool, as_json: bool) -> int:
    """Run the check, print it, and return the exit code."""
    from sim.runtime.variants import VARIANTS
    from sim.scenario.mutation import mutation_matrix

    configure_logging(fmt="console", level="error")  # the table says what failed
    runs = len(scenarios) * (len(VARIANTS) + 1)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True, highlight=False),
        disable=not progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("variants --check", total=runs)

        def advance(scenario: Any, variant: str, result: Any) -> None:
            bar.update(task, advance=1, description=escape(printable(scenario.name)[:40]))

        report = anyio.run(lambda: mutation_matrix(scenarios, on_run=advance), backend=backend)
    code = 0 if not report.uncaught() and all(s.sound for s in report.scenarios) else 1
    if as_json:
        emit_json(report.to_json())
        return code
    console = console_for(sys.stdout)
    table = Table("scenario", "catches (variant: what failed)", title="turnsim variants --check")
    for s in report.scenarios:
        if not s.sound:
            cell = Text(
                printable(f"fails without a variant ({', '.join(s.baseline)}): catches nothing"),
                style="yellow",
            )
        elif not s.caught():
            cell = Text("-", style="dim")
        else:
            cell = Text("\n".join(printable(f"{v}: {', '.join(s.catches[v])}") for v in s.caught()))
        table.add_row(Text(printable(s.scenario)), cell)
    console.print(table)
    uncaught = report.uncaught()
    caught = len(report.variants) - len(uncaught)
    if uncaught:
        console.print(Text(f"caught by no scenario: {', '.join(uncaught)}", style="bold red"))
    console.print(
        f"mutation score: {caught}/{len(report.variants)} variants caught "
        f"({report.score:.0%}) by {len(report.scenarios)} scenarios"
    )
    sys.stdout.flush()
    return code


def describe_variant(name: str, paths: tuple[str, ...], backend: str, as_json: bool) -> int:
    """``turnsim variants --describe NAME [FOLDER...]``: print one variant in full and
    return the exit code (1 when its scenario is missing or does not catch it)."""
    from pathlib import Path

    import sim
    from sim.runtime.variants import UnknownVariantError, available
    from sim.scenario.mutation import describe

    try:
        found = available()
    except UnknownVariantError as exc:
        fail(str(exc), as_json=as_json)
    if name not in found:
        fail(
            f"unknown variant {name!r}; known variants: {', '.join(found)} "
            "(turnsim variants lists them)",
            as_json=as_json,
        )
    configure_logging(fmt="console", level="error")
    # the folders given, else ./scenarios, else the scenarios shipped beside the package
    folders = [Path(p) for p in paths] or [
        Path("scenarios"),
        Path(sim.__file__).resolve().parents[1] / "scenarios",
    ]
    d = anyio.run(lambda: describe(found[name], folders), backend=backend)
    code = 0 if d.caught else 1
    if as_json:
        emit_json(d.to_json())
        return code
    console = console_for(sys.stdout)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    if not d.scenario:
        verdict = Text("no catching scenario named (caught_by is empty)", style="yellow")
    elif not d.path:
        verdict = Text(f"scenario {d.scenario}.yaml not found", style="yellow")
    elif not d.passes_without:
        verdict = Text(f"{d.scenario} fails without the variant: it catches nothing", "yellow")
    elif not d.caught_by:
        verdict = Text(f"{d.scenario} passes under the variant: NOT caught", style="bold red")
    else:
        verdict = Text(printable(f"{', '.join(d.caught_by)} (scenario {d.path})"))
    for label, value in (
        ("variant", Text(printable(d.name))),
        ("source", Text(printable(d.source or "-"))),
        ("the bug", Text(printable(d.bug))),
        ("substitution", Text(printable(d.substitution or "-"))),
        ("invariants", Text(printable(", ".join(d.invariants) or "-"))),
        ("caught by", verdict),
        ("replay", Text(printable(d.replay))),
    ):
        table.add_row(label, value)
    console.print(table)
    sys.stdout.flush()
    return code
