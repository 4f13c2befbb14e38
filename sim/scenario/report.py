"""Printing run results: a rich summary table for people, JSON for machines."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from persisters.model import dumps
from sim.scenario.result import ScenarioResult


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


def print_results(results: Sequence[ScenarioResult], *, as_json: bool = False) -> None:
    """The summary table (scenario, turns, switches, checks, result, times) and failures."""
    if as_json:
        sys.stdout.write(dumps(results_json(results)) + "\n")
        return
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    table = Table(title="turnsim run", title_justify="left")
    for column, justify in (
        ("scenario", "left"),
        ("variant", "left"),
        ("seed", "right"),
        ("turns", "right"),
        ("switches", "right"),
        ("checks", "right"),
        ("result", "left"),
        ("virtual", "right"),
        ("wall", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(
            r.scenario,
            "+".join(r.variants) or "-",
            str(r.seed),
            str(r.turns),
            str(r.switches),
            str(r.checks),
            "[green]pass[/]" if r.passed else f"[red]FAIL ({len(r.failures)})[/]",
            f"{r.virtual_ms / 1000:.1f}s",
            f"{r.wall_s:.2f}s",
        )
    console.print(table)
    failed = [r for r in results if not r.passed]
    for r in failed:
        console.print(r.describe(), markup=False)
    passed = len(results) - len(failed)
    console.print(f"{passed} passed, {len(failed)} failed", markup=False)
