"""``turnsim conformance SPEC``: is this store a TurnStore? Rule by rule (thin over
:mod:`sim.scenario.conformance`).

Exit codes as everywhere: 0 every rule holds, 1 a rule is broken, 2 bad input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import click

from sim.cli._common import BACKENDS, emit_json, fail, load_scenarios, parse_store

_VERDICT = {True: "holds", False: "BROKEN"}


def _count(row: Any) -> str:
    if not row.has_checks:
        return "-"
    total = row.checks_passed + row.checks_failed
    skipped = f" ({row.checks_skipped} skipped)" if row.checks_skipped else ""
    return f"{row.checks_passed}/{total}{skipped}"


def render(report: Any, explored: str) -> str:
    """The table, the failures under it, and one summary line."""
    rows = report.rows()
    width = max(len(r.rule) for r in rows)
    lines = [
        f"turnsim conformance {report.spec}",
        "",
        f"{'rule':<{width}}  {'contract':>16}  {'scenarios':>9}  {'exploration':>11}  verdict",
    ]
    for r in rows:
        explore_cell = str(r.exploration_failures) if report.exploration else "-"
        lines.append(
            f"{r.rule:<{width}}  {_count(r):>16}  {r.scenario_failures:>9}  "
            f"{explore_cell:>11}  {_VERDICT[r.holds]}"
        )
    lines.append("(contract: checks passed/run; scenarios, exploration: failures found)")
    broken = [o for o in report.outcomes if o.status == "failed"]
    failing_runs = [r for r in report.scenarios if not r.passed]
    if broken or failing_runs or (report.exploration and report.exploration.failed):
        lines += ["", "What failed:"]
    for o in broken:
        case = f"[{o.case}]" if o.case else ""
        lines.append(f"  [{o.rule}] contract {o.check}{case}: {o.message}")
    for r in failing_runs:
        first = r.failures[0]
        lines.append(f"  scenario {r.scenario}: {first.kind} {first.name}: {first.message}")
        lines.append(f"    replay: {r.replay} --store {report.spec}")
    if report.exploration:
        for seed_failure in report.exploration.failed[:5]:
            first = seed_failure.failures[0]
            lines.append(f"  exploration seed {seed_failure.seed}: {first.name}: {first.message}")
            lines.append(f"    replay: {seed_failure.replay} --store {report.spec}")
    outcomes = report.outcomes
    summary = (
        f"contract: {len(outcomes)} checks ({sum(o.status == 'passed' for o in outcomes)} "
        f"passed, {len(broken)} failed, {sum(o.status == 'skipped' for o in outcomes)} skipped)"
        f"; scenarios: {len(report.scenarios)} run, {len(failing_runs)} failed"
    )
    if report.exploration:
        e = report.exploration
        summary += f"; exploration: {explored} x {e.runs} seeds, {len(e.failed)} failed"
    lines += ["", summary]
    lines.append("every rule holds" if report.passed else "some rules are broken")
    return "\n".join(lines)


@click.command()
@click.argument("spec", metavar="SPEC")
@click.option(
    "--scenarios",
    "scenario_dir",
    default="scenarios",
    show_default=True,
    help="The scenario suite to run on the store (files or folders).",
)
@click.option(
    "--explore",
    "explore_file",
    default=None,
    help="Scenario to explore under many seeds [default: random_switches.yaml of --scenarios].",
)
@click.option(
    "--seeds",
    type=click.IntRange(0, 100_000),
    default=20,
    show_default=True,
    help="Seeds of the exploration (0: none).",
)
@click.option("--backend", type=click.Choice(BACKENDS), default="asyncio", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr.")
def conformance(
    spec: str,
    scenario_dir: str,
    explore_file: str | None,
    seeds: int,
    backend: str,
    as_json: bool,
    progress: bool,
) -> None:
    """Check a store against the TurnStore contract, rule by rule.

    SPEC is any --store value: sqlite, memory, postgresql://HOST/DB, mysql://USER@HOST/DB,
    module:factory (your own store) or a name registered under 'turnsim.stores'. Runs the
    contract suite (fresh stores from SPEC), the scenario suite and an exploration on it,
    and prints for each rule (write-once, empty-runtime refusal, append-only snapshots, the
    pointer kept apart from history, filters and ordering, concurrency, ...) whether it
    holds, with every failure and the command that replays it.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sim.scenario.conformance import ConformanceReport, run_conformance
    from sim.scenario.parse import ScenarioError, load_scenario

    store = parse_store(spec)
    if not Path(scenario_dir).exists():
        fail(f"no scenario suite at {scenario_dir!r}: pass --scenarios PATH (the shipped suite)")
    scenarios = load_scenarios((scenario_dir,))
    explore = None
    if seeds:
        path = explore_file or str(Path(scenario_dir) / "random_switches.yaml")
        if not Path(path).exists():
            fail(f"no scenario to explore at {path!r}: pass --explore FILE or --seeds 0")
        try:
            explore = load_scenario(path)
        except ScenarioError as exc:
            fail(str(exc))

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True, highlight=False),
        disable=not progress,
    )
    tasks: dict[str, Any] = {}

    def advance(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done)

    report = ConformanceReport(store.label)

    async def main() -> None:
        await run_conformance(
            store,
            scenarios,
            explore=explore,
            seeds=range(seeds),
            on_progress=advance,
            report=report,
        )

    from persisters.errors import StoreError

    with bar:
        try:
            anyio.run(main, backend=backend)
        except StoreError as exc:  # the store cannot even be opened
            fail(str(exc))
        except KeyboardInterrupt:
            sys.exit(130)
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo(render(report, explore.name if explore else ""))
    sys.exit(0 if report.passed else 1)
