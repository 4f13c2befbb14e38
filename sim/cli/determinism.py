"""What ``turnsim run --check-determinism`` prints: the first divergent events side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from sim.cli._common import emit_json, fail
from sim.printable import printable

#: Width of each side's column.
_SIDE = 46


def _cell(value: Any) -> str:
    text = "-" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = text.strip('"') if isinstance(value, str) else text
    return printable(text if len(text) <= _SIDE else text[: _SIDE - 3] + "...")


def check_determinism_command(paths: Sequence[str], args: Sequence[str], as_json: bool) -> int:
    """Run the check, print it; the exit code (0 deterministic, 1 a divergence)."""
    from sim.check.determinism import DeterminismError, check_determinism

    try:
        report = check_determinism(paths, args)
    except DeterminismError as exc:
        fail(str(exc))
    if as_json:
        emit_json(report.to_json())
        return 0 if report.ok else 1
    return print_report(report)


def print_report(report: Any) -> int:
    """Print a :class:`~sim.check.determinism.DeterminismReport`; the exit code."""
    runs = f"{report.runs} run(s) under {len(report.configs)} configurations"
    if report.ok:
        click.echo(f"deterministic: {runs} ({'; '.join(report.configs)}) wrote the same logs")
        return 0
    for d in report.divergences:
        step = d.step or {}
        where = (
            f"step {step.get('step')} ({step.get('kind')}) at {d.path}:{step.get('line')}"
            if step
            else "before the first step"
        )
        click.echo(printable(f"DIVERGED {d.scenario}: event {d.index}, during {where}"))
        left, right = d.left or {}, d.right or {}
        click.echo(f"  {'field':<18} {d.reference:<{_SIDE}} {d.other}")
        for key in sorted(set(left) | set(right)):
            mark = "*" if left.get(key) != right.get(key) else " "
            click.echo(
                f"{mark} {printable(key):<18} {_cell(left.get(key)):<{_SIDE}} "
                f"{_cell(right.get(key))}"
            )
    click.echo(f"not deterministic: {len(report.divergences)} divergence(s) in {runs}")
    return 1
