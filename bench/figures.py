"""What a bench script reports: ratios against goals, a rich table, a JSON file, the machine.

Every bench script builds a :class:`Report`, adds its measured rows and its ratios (each a
measurement divided by a baseline measured in the same run on the same data), prints the
table and writes ``bench/results/<name>.json``. ``run_all.py`` reads those files back.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"

# Wide enough for every table when the output goes to a file or a pipe.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)


def machine() -> dict[str, Any]:
    """The facts a reader needs to compare numbers across machines."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def parse_args(doc: str | None, argv: Sequence[str] | None = None, **extra: Any) -> Any:
    """The options every bench script takes (``--quick``), plus ``extra`` flags."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="Small sizes: a smoke run in a few seconds."
    )
    for flag, help_text in extra.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", action="store_true", help=help_text)
    return parser.parse_args(argv)


@attrs.define
class Ratio:
    """One figure: ``value`` is a measurement divided by its same-run baseline."""

    figure: str
    value: float | None
    goal: str | None = None  # ">= 0.5", "<= 1.5" or None (informational)
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        op, target = self.goal.split()
        return self.value >= float(target) if op == ">=" else self.value <= float(target)

    def to_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "goal": self.goal,
            "met": self.met,
            "note": self.note,
        }


def verdict(met: bool | None) -> str:
    return {True: "[green]met[/]", False: "[red]missed[/]", None: "-"}[met]


def fmt(value: float | int | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}g}"


@attrs.define
class Report:
    """The measured rows and ratios of one bench script."""

    name: str
    title: str
    quick: bool
    columns: list[str] = attrs.field(factory=list)
    rows: list[list[Any]] = attrs.field(factory=list)
    ratios: list[Ratio] = attrs.field(factory=list)
    details: dict[str, Any] = attrs.field(factory=dict)
    started: float = attrs.field(factory=time.perf_counter)

    def row(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def ratio(
        self, figure: str, value: float | None, goal: str | None = None, note: str = ""
    ) -> Ratio:
        r = Ratio(figure, value, goal, note)
        self.ratios.append(r)
        return r

    def print(self) -> None:
        if self.rows:
            table = Table(title=self.title, title_justify="left")
            for i, column in enumerate(self.columns):
                table.add_column(column, justify="left" if i == 0 else "right")
            for cells in self.rows:
                table.add_row(*(c if isinstance(c, str) else fmt(c) for c in cells))
            out.print(table)
        table = Table(title=f"{self.name}: ratios", title_justify="left")
        for column, justify in (("figure", "left"), ("ratio", "right"), ("goal", "right")):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        table.add_column("verdict")
        for r in self.ratios:
            table.add_row(r.figure, fmt(r.value), r.goal or "-", verdict(r.met))
        out.print(table)
        for r in self.ratios:
            if r.note:
                out.print(f"  {r.figure}: {r.note}")

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        data = {
            "bench": self.name,
            "title": self.title,
            "quick": self.quick,
            "command": " ".join(["python", *sys.argv]),
            "machine": machine(),
            "wall_s": round(time.perf_counter() - self.started, 2),
            "columns": self.columns,
            "rows": self.rows,
            "ratios": [r.to_json() for r in self.ratios],
            "details": self.details,
        }
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")
        return path

    def finish(self) -> None:
        self.print()
        path = self.write()
        err.print(f"[dim]{self.name}: {time.perf_counter() - self.started:.1f}s, wrote {path}[/]")


@contextmanager
def progress() -> Iterator[Progress]:
    """Progress bars for long steps, on stderr so the tables on stdout stay clean."""
    bar = Progress(
        TextColumn("{task.description:<46}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        refresh_per_second=4,
        transient=False,
    )
    with bar:
        yield bar


@contextmanager
def step(bar: Progress, description: str, total: float = 1) -> Iterator[Any]:
    """A progress task for one bench step; it is completed when the block ends."""
    task = bar.add_task(description, total=total)

    def advance(n: float = 1) -> None:
        bar.advance(task, n)

    yield advance
    bar.update(task, completed=total)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank, of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
