"""Printing run results: a rich summary table for people, JSON for machines.

The table fits the width it is given (the terminal's, else 120 columns): the scenario
name is never cut; when the figures do not fit, the least telling columns go first (wall
time, virtual time, a variant common to all rows, checks, switches; ``--json`` has them
all). Everything a scenario file
or a store supplied is printed through :func:`sim.printable.printable`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import IO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from persisters.model import dumps
from sim.printable import printable
from sim.scenario.result import ScenarioResult

#: Width when the output is not a terminal (a CI log, a file).
DEFAULT_WIDTH = 120
#: Columns in the order they are dropped when the table does not fit (the variant only
#: when every row has the same one: the title says it then).
_OPTIONAL = ("wall", "virtual", "variant", "checks", "switches", "turns")


def results_json(results: Sequence[ScenarioResult]) -> dict:
    return {
        "passed": all(r.passed for r in results),
        "summary": {
            "scenarios": len(results),
            "passed": sum(r.passed for r in results),
            "failed": sum(not r.passed for r in results),
            "turns": sum(r.turns for r in results),
            "switches": sum(r.switches for r in results),
        },
        "scenarios": [r.to_json() for r in results],
    }


def _cells(r: ScenarioResult) -> dict[str, Text]:
    return {
        "scenario": Text(printable(r.scenario)),
        "variant": Text(printable("+".join(r.variants) or "-")),
        "seed": Text(str(r.seed)),
        "turns": Text(str(r.turns)),
        "switches": Text(str(r.switches)),
        "checks": Text(str(r.checks)),
        "result": Text("pass", style="green")
        if r.passed
        else Text(f"FAIL ({len(r.failures)})", style="red"),
        "virtual": Text(f"{r.virtual_ms / 1000:.1f}s"),
        "wall": Text(f"{r.wall_s:.2f}s"),
    }


def results_table(results: Sequence[ScenarioResult], width: int) -> Table:
    """The run table, with as many columns as fit in ``width`` (the scenario name whole)."""
    rows = [_cells(r) for r in results]
    columns = ["scenario", "variant", "seed", "turns", "switches", "checks", "result"]
    columns += ["virtual", "wall"]

    def need(names: list[str]) -> int:  # cells plus borders and one space of padding a side
        return sum(max([len(n)] + [r[n].cell_len for r in rows]) + 3 for n in names) + 1

    title = "turnsim run"
    variants = {r["variant"].plain for r in rows}
    for name in _OPTIONAL:
        if need(columns) <= width:
            break
        if name == "variant":
            if len(variants) == 1:  # the same for every row: said once, in the title
                columns.remove("variant")
                only = next(iter(variants))
                title += " (no bug variant)" if only == "-" else f" (variant {only})"
            continue
        columns.remove(name)
    table = Table(title=Text(title), title_justify="left")
    for name in columns:
        right = name not in ("scenario", "variant", "result")
        table.add_column(
            name,
            justify="right" if right else "left",
            no_wrap=name != "variant",
            min_width=max([len(name)] + [r[name].cell_len for r in rows])
            if name == "scenario"
            else None,
        )
    for r in rows:
        table.add_row(*(r[name] for name in columns))
    return table


def print_hanging(console: Console, line: str) -> None:
    """Print one line of text wrapped to the console, continuation lines under its first
    character (a hanging indent); no trailing spaces."""
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    room = max(console.width - indent, 20)
    for part in Text(body).wrap(console, room):
        part.rstrip()
        console.print(Text(" " * indent) + part, soft_wrap=True)


def console_for(out: IO[str]) -> Console:
    """A console on ``out``: the terminal's width there (or ``COLUMNS``), else
    :data:`DEFAULT_WIDTH`."""
    tty = bool(getattr(out, "isatty", lambda: False)())
    sized = tty or os.environ.get("COLUMNS", "").isdigit()
    return Console(
        file=out,
        highlight=False,
        markup=False,
        emoji=False,
        width=None if sized else DEFAULT_WIDTH,
    )


def print_results(
    results: Sequence[ScenarioResult], *, as_json: bool = False, out: IO[str] | None = None
) -> None:
    """The summary table (scenario, turns, switches, checks, result, times) and failures,
    on ``out`` (stdout by default); with ``as_json`` the JSON document instead."""
    stream = out if out is not None else sys.stdout
    if as_json:
        stream.write(dumps(results_json(results)) + "\n")
        return
    console = console_for(stream)
    console.print(results_table(results, console.width))
    failed = [r for r in results if not r.passed]
    for r in failed:
        for line in r.describe().splitlines():
            print_hanging(console, line)
    passed = len(results) - len(failed)
    console.print(f"{passed} passed, {len(failed)} failed")
