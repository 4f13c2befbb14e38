"""``turnsim variants --check PATH...``: the suite's mutation score, as a table (or JSON).

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

from sim.cli._common import emit_json
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
